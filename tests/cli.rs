//! The `evaluate` command end to end: the real binary, its output contract and exit codes.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::*;
use serde_json::Value;

fn run(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_live-migration-guard"))
        .args(args)
        .current_dir(fixture_path(""))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn json_out(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn json_report_contract_and_exit_1_for_not_migratable() {
    let o = run(
        &[
            "evaluate",
            "--output",
            "json",
            "--facts",
            "storageclass-gp3-csi-aws-ebs.yaml",
            "nodepool-kubevirt-rwo-root-volume.yaml",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v = json_out(&o);
    let r = &v["reports"][0];
    assert_eq!(r["apiVersion"], "hypershift.openshift.io/v1beta1");
    assert_eq!(r["kind"], "NodePool");
    assert_eq!(r["namespace"], "clusters");
    assert_eq!(r["name"], "test1");
    assert_eq!(r["verdict"], "NotMigratable");
    assert_eq!(r["condition"]["type"], "KubeVirtNodesLiveMigratable");
    assert_eq!(r["condition"]["status"], "False");
    assert_eq!(r["condition"]["reason"], "DisksNotLiveMigratable");
    let f = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["reason"] == "DisksNotLiveMigratable")
        .unwrap();
    let keys: Vec<&str> = f.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, vec!["field", "fix", "message", "reason", "severity"]);
    assert_eq!(f["severity"], "error");
    assert_eq!(
        f["field"],
        "spec.platform.kubevirt.rootVolume.persistent.accessModes"
    );
}

#[test]
fn exit_0_when_migratable_and_text_output_is_actionable() {
    let facts = format!(
        "{}\n---\n{}",
        storage_class(
            "ceph",
            "openshift-storage.rbd.csi.ceph.com",
            &[("storageclass.kubevirt.io/is-default-virt-class", "true")],
            None
        ),
        storage_class("gp3-csi", "ebs.csi.aws.com", &[], None)
    );
    let dir = tempfile::tempdir().unwrap();
    let facts_path = dir.path().join("facts.yaml");
    std::fs::write(&facts_path, facts).unwrap();
    let np = with(
        fixture_value("nodepool-kubevirt-minimal.yaml"),
        &[("/spec/replicas", serde_json::json!(2))],
    );
    let o = run(
        &["evaluate", "--facts", facts_path.to_str().unwrap(), "-"],
        Some(&np.to_string()),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("NodePool clusters/example: Migratable"), "{text}");
    assert!(
        text.contains("predicted condition KubeVirtNodesLiveMigratable=True reason=AsExpected"),
        "{text}"
    );

    // the RWO example in text: the field and the fix are printed
    let o = run(
        &[
            "evaluate",
            "--facts",
            facts_path.to_str().unwrap(),
            "nodepool-kubevirt-rwo-root-volume.yaml",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains(
            "error   DisksNotLiveMigratable  (spec.platform.kubevirt.rootVolume.persistent.accessModes)"
        ),
        "{text}"
    );
    assert!(text.contains("fix: set rootVolume.persistent.storageClass to an RWX-capable class such as ceph and drop rootVolume.persistent.accessModes (or set [ReadWriteMany])"), "{text}");
}

#[test]
fn fail_on_unknown() {
    let o = run(&["evaluate", "nodepool-kubevirt-minimal.yaml"], None);
    assert_eq!(
        o.status.code(),
        Some(0),
        "Unknown alone does not fail: {}",
        stderr(&o)
    );
    let o = run(
        &[
            "evaluate",
            "--fail-on",
            "unknown",
            "nodepool-kubevirt-minimal.yaml",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn input_errors_exit_2_naming_file_and_document() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str, body: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let np = fixture_text("nodepool-kubevirt-minimal.yaml");
    let cases = [
        (
            p("syntax.yaml", &format!("{np}---\nkey: [unclosed\n")),
            "invalid YAML",
        ),
        (
            p(
                "type.yaml",
                &format!(
                    "{np}---\n{}",
                    np.replace("  replicas: 0\nstatus", "  replicas: three\nstatus")
                ),
            ),
            "document 2: NodePool clusters/example: field `spec.replicas`",
        ),
        (
            p(
                "mode.yaml",
                &fixture_text("nodepool-kubevirt-rwo-root-volume.yaml").replace("- ReadWriteOnce", "- RWX"),
            ),
            " field `spec.platform.kubevirt.rootVolume.persistent.accessModes[0]`: unknown variant `RWX`",
        ),
        (
            p("scalar.yaml", "just a string\n"),
            "document 1: expected a Kubernetes object",
        ),
        (
            p("nokind.yaml", "apiVersion: v1\nmetadata: {}\n"),
            "document 1: not a Kubernetes object: `kind` is missing",
        ),
        (p("bad.json", "{\"apiVersion\": \"v1\", "), "invalid JSON"),
    ];
    for (path, want) in &cases {
        let o = run(&["evaluate", path], None);
        assert_eq!(o.status.code(), Some(2), "{path}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains(path.as_str()) && err.contains(want), "{path}: {err}");
        assert!(
            o.stdout.is_empty(),
            "nothing is evaluated when an input is broken"
        );
    }
    let bytes = dir.path().join("latin1.yaml");
    std::fs::write(&bytes, b"kind: caf\xe9\n").unwrap();
    let o = run(&["evaluate", bytes.to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not valid UTF-8"), "{}", stderr(&o));

    let o = run(&["evaluate", "does-not-exist.yaml"], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("does-not-exist.yaml"));
    let o = run(&["evaluate", "--output", "xml", "x.yaml"], None);
    assert_eq!(o.status.code(), Some(2), "usage errors exit 2");
}

#[test]
fn lists_directories_and_skipped_kinds_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("nested");
    std::fs::create_dir(&sub).unwrap();
    let np: Value = fixture_value("nodepool-kubevirt-minimal.yaml");
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [np, fixture_value("hostedcluster-kubevirt-minimal.yaml")]});
    std::fs::write(sub.join("list.json"), list.to_string()).unwrap();
    std::fs::write(
        dir.path().join("gpu.yaml"),
        fixture_text("nodepool-kubevirt-gpu-hostdevices.yaml"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("cm.yaml"),
        fixture_text("configmap-kubevirt-csi-driver-config-default.yaml"),
    )
    .unwrap();
    std::fs::write(dir.path().join("README.md"), "not yaml, not read").unwrap();
    let o = run(
        &["evaluate", "--output", "json", dir.path().to_str().unwrap()],
        None,
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v = json_out(&o);
    let got: Vec<(String, String)> = v["reports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap().to_owned(),
                r["verdict"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("NodePool".into(), "NotMigratable".into()),
            ("NodePool".into(), "Unknown".into()),
            ("HostedCluster".into(), "Unknown".into()),
        ]
    );
    let err = stderr(&o);
    assert!(err.contains("cm.yaml document 1: ConfigMap skipped"), "{err}");
}

#[test]
fn infra_facts_decide_external_clusters() {
    let dir = tempfile::tempdir().unwrap();
    let creds = serde_json::json!({"infraKubeConfigSecret": {"name": "infra", "key": "kubeconfig"}, "infraNamespace": "guests"});
    let hc = with(
        fixture_value("hostedcluster-kubevirt-minimal.yaml"),
        &[("/spec/platform/kubevirt/credentials", creds)],
    );
    std::fs::write(dir.path().join("hc.json"), hc.to_string()).unwrap();
    let infra = dir.path().join("infra.json");
    std::fs::write(
        &infra,
        storage_class(
            "nfs",
            "nfs.csi.k8s.io",
            &[("storageclass.kubernetes.io/is-default-class", "true")],
            None,
        ),
    )
    .unwrap();
    let hc_path = dir.path().join("hc.json");
    let o = run(&["evaluate", "--output", "json", hc_path.to_str().unwrap()], None);
    assert_eq!(json_out(&o)["reports"][0]["verdict"], "Unknown");
    let arg = format!("clusters/example={}", infra.display());
    let o = run(
        &[
            "evaluate",
            "--output",
            "json",
            "--infra-facts",
            &arg,
            hc_path.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(
        json_out(&o)["reports"][0]["verdict"],
        "Migratable",
        "{}",
        stderr(&o)
    );
}
