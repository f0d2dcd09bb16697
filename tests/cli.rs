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

// ---- issue 13, "The first hour of a user" ----

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_live-migration-guard"));
    c.env_remove("LMG_LISTEN")
        .env_remove("LMG_OPS_LISTEN")
        .env_remove("LMG_MODE")
        .env_remove("LMG_LOG_FORMAT")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("NO_COLOR");
    c
}

#[test]
fn directory_with_non_objects_skips_them_and_lists_every_broken_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("values.yaml"), "replicaCount: 2\nimage:\n  tag: latest\n").unwrap();
    std::fs::write(
        d.join("kustomization.yaml"),
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [np.yaml]\n",
    )
    .unwrap();
    std::fs::write(
        d.join("np.yaml"),
        fixture_text("nodepool-kubevirt-rwo-root-volume.yaml"),
    )
    .unwrap();
    let o = run(&["evaluate", d.to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(1), "the rest is reported: {}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "note: {}: skipped: not a Kubernetes object",
            d.join("values.yaml").display()
        )),
        "{err}"
    );
    assert!(err.contains("Kustomization skipped"), "{err}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("NodePool clusters/test1: NotMigratable"));

    // broken objects of our kinds still exit 2, and every one is named
    let np = fixture_text("nodepool-kubevirt-minimal.yaml");
    std::fs::write(
        d.join("a-bad.yaml"),
        np.replace("  replicas: 0\nstatus", "  replicas: three\nstatus"),
    )
    .unwrap();
    std::fs::write(d.join("z-bad.yaml"), format!("{np}---\nkey: [unclosed\n")).unwrap();
    let o = run(&["evaluate", d.to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 2, "{err}");
    assert!(
        errors[0].contains("a-bad.yaml document 1: NodePool clusters/example: field `spec.replicas`"),
        "{err}"
    );
    assert!(errors[1].contains("z-bad.yaml: invalid YAML"), "{err}");
    assert!(err.contains("values.yaml: skipped"), "{err}");
    assert!(o.stdout.is_empty());
}

#[test]
fn closed_output_pipe_ends_quietly_with_exit_0() {
    let mut child = bin()
        .args(["evaluate", "--facts", "storageclass-gp3-csi-aws-ebs.yaml", "-"])
        .current_dir(fixture_path(""))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // the reader goes away before anything is written (`evaluate … | head -0`)
    drop(child.stdout.take());
    let np = fixture_text("nodepool-kubevirt-rwo-root-volume.yaml");
    child.stdin.take().unwrap().write_all(np.as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stderr(&o), "", "nothing about the pipe on stderr");
}

#[test]
fn every_flag_and_value_is_described() {
    use clap::CommandFactory;
    fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if matches!(id, "help" | "version") {
                continue;
            }
            if arg.get_help().is_none() && arg.get_long_help().is_none() {
                missing.push(format!("{path} --{id}"));
            }
            let values = if arg.get_action().takes_values() {
                arg.get_possible_values()
            } else {
                Vec::new()
            };
            for v in values {
                if v.get_help().is_none() {
                    missing.push(format!("{path} --{id} {}", v.get_name()));
                }
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, &format!("{path} {}", sub.get_name()), missing);
        }
    }
    let mut missing = Vec::new();
    walk(
        &live_migration_guard::cli::Cli::command(),
        "live-migration-guard",
        &mut missing,
    );
    assert!(missing.is_empty(), "undocumented: {missing:#?}");

    let help = |args: &[&str], env: Option<&str>| {
        let mut c = bin();
        if let Some(host) = env {
            c.env("KUBERNETES_SERVICE_HOST", host);
        }
        let o = c.args(args).arg("--help").output().unwrap();
        assert_eq!(o.status.code(), Some(0));
        String::from_utf8(o.stdout).unwrap()
    };
    let h = help(&["evaluate"], None);
    for want in [
        "Exit codes:",
        "  0  nothing is NotMigratable",
        "  1  something",
        "  2  usage or input errors",
    ] {
        assert!(h.contains(want), "{h}");
    }
    assert!(h.contains("[default: text]"), "{h}");
    let h = help(&["serve"], None);
    assert!(
        h.contains("[default: 127.0.0.1:8443]") && h.contains("[default: 127.0.0.1:8080]"),
        "{h}"
    );
    assert!(
        h.contains("off:") && h.contains("without warnings"),
        "--mode off is described: {h}"
    );
    assert!(h.contains("[default: 5s]"), "{h}");
    let h = help(&["serve"], Some("10.0.0.1"));
    assert!(
        h.contains("[default: 0.0.0.0:8443]") && h.contains("[default: 0.0.0.0:8080]"),
        "in a pod: {h}"
    );
    let h = help(&["certs", "generate"], None);
    assert!(h.contains("--force") && h.contains("[default: 365]"), "{h}");
}

#[test]
fn certs_generate_validates_flags_and_keeps_existing_keys() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("certs");
    let out_s = out.to_str().unwrap();
    let gen_ = |extra: &[&str]| {
        let mut args = vec!["certs", "generate", "--out", out_s];
        args.extend_from_slice(extra);
        bin().args(&args).output().unwrap()
    };
    for (args, flag, why) in [
        (
            &["--service", "my_webhook", "--namespace", "ns"][..],
            "--service",
            "'_'",
        ),
        (
            &["--service", "svc", "--namespace=ns-"][..],
            "--namespace",
            "start and end",
        ),
        (
            &["--service", &"a".repeat(64), "--namespace", "ns"][..],
            "--service",
            "at most 63",
        ),
        (
            &["--service", "svc", "--namespace", "ns", "--days", "0"][..],
            "--days",
            "0",
        ),
    ] {
        let o = gen_(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        let first = err.lines().next().unwrap();
        assert!(
            first.starts_with("error: invalid value") && first.contains(flag) && first.contains(why),
            "{err}"
        );
        assert!(!out.exists(), "nothing written for {args:?}");
    }
    let o = gen_(&["--service", "svc", "--namespace", "ns"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let key = std::fs::read(out.join("tls.key")).unwrap();
    let o = gen_(&["--service", "svc", "--namespace", "ns"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o).trim_end(),
        format!(
            "error: --out {out_s}: {} already exists; pass --force to overwrite it",
            out.join("ca.crt").display()
        )
    );
    assert_eq!(
        std::fs::read(out.join("tls.key")).unwrap(),
        key,
        "the key is kept"
    );
    let o = gen_(&["--service", "svc", "--namespace", "ns", "--force"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_ne!(std::fs::read(out.join("tls.key")).unwrap(), key);
}

/// A `serve` process whose stderr is collected as it arrives.
struct Serve {
    child: std::process::Child,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Serve {
    fn start(args: &[&str], tmpdir: &std::path::Path) -> Self {
        let mut child = bin()
            .arg("serve")
            .args(args)
            .env("TMPDIR", tmpdir)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (mut err, sink) = (child.stderr.take().unwrap(), log.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = std::io::Read::read(&mut err, &mut buf) {
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Self { child, log }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    fn wait_for(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            assert!(std::time::Instant::now() < deadline, "no {needle:?} in: {log}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    fn wait(mut self, within: std::time::Duration) -> (Option<i32>, String) {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(std::time::Duration::from_millis(50));
                return (status.code(), self.log());
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("still running after {within:?}: {}", self.log());
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

#[test]
fn serve_ca_bundle_per_instance_second_ctrl_c_and_no_facts_warning() {
    let tmp = tempfile::tempdir().unwrap();
    // Port 0: the kernel picks a free port as the server binds it (a port found free first
    // could be taken by a parallel test before the server bound it).
    let a = Serve::start(&["--listen=127.0.0.1:0", "--ops-listen=127.0.0.1:0"], tmp.path());
    let log = a.wait_for("serving admission");
    let port = common::bound(&log).expect("bound addresses logged").listen.port();
    let listen = format!("--listen=127.0.0.1:{port}");
    // (5) no facts, no cluster: said once
    let warned = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("storage verdicts will be Unknown"))
        .count();
    assert_eq!(warned, 1, "{log}");
    // (2) the default bundle is per instance (the bound port is in its path) and logged
    let bundle = tmp
        .path()
        .join("live-migration-guard")
        .join(port.to_string())
        .join("ca.crt");
    assert!(log.contains(&bundle.display().to_string()), "{log}");
    let pem = std::fs::read_to_string(&bundle).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));

    // a second instance on the same port fails, names the flag, and leaves the bundle alone
    let b = Serve::start(&[&listen, "--ops-listen=127.0.0.1:0"], tmp.path());
    let (code, blog) = b.wait(std::time::Duration::from_secs(20));
    assert_eq!(code, Some(1), "{blog}");
    let errors: Vec<&str> = blog.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{blog}");
    assert!(
        errors[0].contains(&format!("--listen 127.0.0.1:{port}: cannot listen")),
        "{blog}"
    );
    assert_eq!(
        std::fs::read_to_string(&bundle).unwrap(),
        pem,
        "the first server's clients keep working"
    );

    // (4) Ctrl-C starts the drain and says how to skip it; a second one exits at once
    let started = std::time::Instant::now();
    a.signal("-INT");
    a.wait_for("press Ctrl-C again to exit at once");
    a.signal("-INT");
    let (code, log) = a.wait(std::time::Duration::from_secs(4));
    assert_eq!(code, Some(130), "{log}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(4),
        "did not wait for the 5 s delay"
    );
    assert!(!log.contains("shut down cleanly"), "{log}");
}

#[test]
fn serve_errors_are_one_line_naming_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Serve::start(
        &[
            "--listen=127.0.0.1:0",
            "--ops-listen=127.0.0.1:0",
            "--facts",
            "does-not-exist",
        ],
        tmp.path(),
    );
    let (code, log) = s.wait(std::time::Duration::from_secs(20));
    assert_eq!(code, Some(1), "{log}");
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{log}");
    assert!(
        errors[0].contains("--facts does-not-exist: No such file or directory"),
        "{log}"
    );
    assert_eq!(errors[0].matches("os error 2").count(), 1, "not doubled: {log}");
    assert!(!log.contains('\x1b'), "no colour codes in piped logs: {log:?}");
}

// ---- issue 13, the new capabilities ----

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

fn in_repo(args: &[&str]) -> Output {
    bin()
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

/// Every report names its file, document and `List` item, in text, JSON and YAML alike, and
/// the YAML document is the JSON document.
#[test]
fn reports_carry_their_source_in_text_json_and_yaml() {
    let dir = tempfile::tempdir().unwrap();
    let np = fixture_value("nodepool-kubevirt-rwo-root-volume.yaml");
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
        fixture_value("configmap-kubevirt-csi-driver-config-default.yaml"),
        fixture_value("nodepool-kubevirt-minimal.yaml"),
    ]});
    let file = write(dir.path(), "objects.yaml", &format!("{np}\n---\n{list}\n"));
    let o = run(&["evaluate", "-o", "json", &file], None);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v = json_out(&o);
    let sources: Vec<&Value> = v["reports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["source"])
        .collect();
    assert_eq!(
        sources,
        [
            &serde_json::json!({"file": file, "document": 1, "item": null}),
            &serde_json::json!({"file": file, "document": 2, "item": 2}),
        ]
    );
    // additive: the contract's fields are all still there, `source` is one more
    let keys: Vec<&str> = v["reports"][0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for k in [
        "apiVersion",
        "kind",
        "namespace",
        "name",
        "verdict",
        "condition",
        "findings",
        "source",
    ] {
        assert!(keys.contains(&k), "{k} missing: {keys:?}");
    }
    assert_eq!(v["skipped"][0]["kind"], "ConfigMap", "{v}");

    let y = run(&["evaluate", "-o", "yaml", &file], None);
    assert_eq!(y.status.code(), Some(1));
    let yaml: Value = serde_saphyr::from_str(&String::from_utf8_lossy(&y.stdout)).unwrap();
    assert_eq!(yaml, v, "YAML and JSON are one document");

    let t = run(&["evaluate", &file], None);
    let text = String::from_utf8_lossy(&t.stdout);
    assert!(
        text.contains(&format!(
            "NodePool clusters/test1: NotMigratable ({file} document 1)\n"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "NodePool clusters/example: Unknown ({file} document 2 item 2)\n"
        )),
        "{text}"
    );
}

/// JUnit: one testcase per object, a failure for NotMigratable (and Unknown with --fail-on
/// unknown), names and texts escaped so that the file parses back to them.
#[test]
fn junit_report_counts_failures_and_escapes_names() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = "np-<&\"'>";
    let mut np = fixture_value("nodepool-kubevirt-rwo-root-volume.yaml");
    np["metadata"]["name"] = serde_json::json!(hostile);
    let file = write(
        dir.path(),
        "np.json",
        &format!("{np}\n{}", fixture_value("nodepool-kubevirt-minimal.yaml")),
    );
    let parse = |xml: &str| {
        // (element, attributes) in document order, and the text
        let mut reader = quick_xml::Reader::from_str(xml);
        let mut elements: Vec<(String, std::collections::BTreeMap<String, String>)> = Vec::new();
        let mut text = String::new();
        loop {
            match reader.read_event().unwrap_or_else(|e| panic!("{e}: {xml}")) {
                quick_xml::events::Event::Eof => break,
                quick_xml::events::Event::Start(e) | quick_xml::events::Event::Empty(e) => {
                    let attrs = e
                        .attributes()
                        .map(|a| {
                            let a = a.unwrap();
                            (
                                a.key.into_inner().to_owned(),
                                a.normalized_value(quick_xml::XmlVersion::Explicit1_0)
                                    .unwrap()
                                    .into_owned(),
                            )
                        })
                        .collect();
                    elements.push((e.name().into_inner().to_owned(), attrs));
                }
                quick_xml::events::Event::Text(t) => text.push_str(&t.xml10_content()),
                quick_xml::events::Event::GeneralRef(r) => {
                    let name = r.xml10_content();
                    text.push_str(match name.as_ref() {
                        "lt" => "<",
                        "gt" => ">",
                        "amp" => "&",
                        "quot" => "\"",
                        "apos" => "'",
                        other => panic!("entity {other}"),
                    });
                }
                _ => {}
            }
        }
        (elements, text)
    };
    let o = run(&["evaluate", "-o", "junit", &file], None);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let xml = String::from_utf8(o.stdout).unwrap();
    let (elements, text) = parse(&xml);
    let names: Vec<&str> = elements.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "testsuites",
            "testsuite",
            "testcase",
            "failure",
            "testcase",
            "system-out"
        ],
        "{xml}"
    );
    let suite = &elements[1].1;
    assert_eq!(suite["name"], "live-migration-guard evaluate");
    assert_eq!((suite["tests"].as_str(), suite["failures"].as_str()), ("2", "1"));
    let case = &elements[2].1;
    assert_eq!(case["classname"], "NodePool/clusters");
    assert_eq!(case["name"], hostile, "{xml}");
    assert_eq!(case["file"], file);
    assert_eq!(
        elements[3].1["message"],
        "NotMigratable: DisksNotLiveMigratable at spec.platform.kubevirt.rootVolume.persistent.accessModes"
    );
    assert!(
        text.contains(&format!("NodePool clusters/{hostile}: NotMigratable"))
            && text.contains("fix: set rootVolume.persistent.storageClass"),
        "{text}"
    );

    let o = run(&["evaluate", "-o", "junit", "--fail-on", "unknown", &file], None);
    assert_eq!(o.status.code(), Some(1));
    let (elements, _) = parse(&String::from_utf8(o.stdout).unwrap());
    assert_eq!(elements[1].1["failures"], "2");
    assert_eq!(elements[5].0, "failure");
    assert_eq!(elements[5].1["type"], "Unknown");
}

/// --quiet: only NotMigratable and Unknown objects, no notes, no counts; a clean run prints
/// nothing and exits 0.
#[test]
fn quiet_prints_only_problems() {
    let dir = tempfile::tempdir().unwrap();
    let facts = write(
        dir.path(),
        "facts.yaml",
        &storage_class(
            "ceph",
            "openshift-storage.rbd.csi.ceph.com",
            &[("storageclass.kubevirt.io/is-default-virt-class", "true")],
            None,
        ),
    );
    let fine = write(
        dir.path(),
        "fine.yaml",
        &format!(
            "{}\n---\n{}",
            fixture_text("nodepool-kubevirt-minimal.yaml"),
            fixture_text("configmap-kubevirt-csi-driver-config-default.yaml")
        ),
    );
    let bad = write(
        dir.path(),
        "bad.yaml",
        &fixture_text("nodepool-kubevirt-rwo-root-volume.yaml"),
    );
    let o = run(&["evaluate", "-q", "--facts", &facts, &fine, &bad], None);
    assert_eq!(o.status.code(), Some(1));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.starts_with("NodePool clusters/test1: NotMigratable"),
        "{text}"
    );
    assert!(
        !text.contains("clusters/example") && !text.contains("object(s)"),
        "{text}"
    );
    assert_eq!(stderr(&o), "", "no notes (the ConfigMap) with --quiet");
    let o = run(
        &["evaluate", "-q", "-o", "json", "--facts", &facts, &fine, &bad],
        None,
    );
    let v = json_out(&o);
    assert_eq!(v["reports"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["reports"][0]["name"], "test1");
    let o = run(&["evaluate", "--quiet", "--facts", &facts, &fine], None);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(o.stdout.is_empty() && o.stderr.is_empty(), "{o:?}");
}

/// What `evaluate --admission` answers is what the running server answers for the same object:
/// the AdmissionReviews of examples/requests/ (CREATE and UPDATE) against the same facts, in
/// deny and warn mode; and what it prints is kubectl's wording of that answer.
#[tokio::test]
async fn admission_simulation_answers_as_the_server_does() {
    use live_migration_guard::admission::{Mode, Policy};
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let loaded = live_migration_guard::facts::load::load_path(&root.join("examples/facts")).unwrap();
    let facts = || live_migration_guard::facts::builder_from(&loaded).0.build();
    let dir = tempfile::tempdir().unwrap();
    let request = |name: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(root.join("examples/requests").join(name)).unwrap())
            .unwrap()
    };
    let create = request("nodepool-create.json");
    let update = request("nodepool-update.json");
    let new = write(dir.path(), "new.json", &create["request"]["object"].to_string());
    let updated = write(
        dir.path(),
        "updated.json",
        &update["request"]["object"].to_string(),
    );
    let old = write(
        dir.path(),
        "old.json",
        &update["request"]["oldObject"].to_string(),
    );
    for mode in [Mode::Deny, Mode::Warn] {
        let server = common::server::TestServer::start(
            Policy {
                mode,
                ..Policy::default()
            },
            facts(),
        )
        .await;
        for (review, files) in [
            (&create, vec![new.as_str()]),
            (&update, vec!["--old", &old, &updated]),
        ] {
            let mut args = vec![
                "evaluate",
                "--admission",
                "--mode",
                mode.as_str(),
                "--facts",
                "examples/facts",
            ];
            args.extend(files);
            let o = in_repo(&[&args[..], &["-o", "json"]].concat());
            let v: Value =
                serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&o)));
            let ours = &v["reviews"][0];
            assert_eq!(ours["operation"], review["request"]["operation"]);
            let mut theirs = server.post_review("/validate/nodepools", review).await;
            // the uid is the request's; everything else is the server's answer
            theirs["response"]["uid"] = ours["review"]["response"]["uid"].clone();
            assert_eq!(
                ours["review"], theirs,
                "{mode} {}",
                review["request"]["operation"]
            );
            let denied = theirs["response"]["allowed"] == false;
            assert_eq!(o.status.code(), Some(i32::from(denied)), "{}", stderr(&o));

            // text: the warnings as kubectl prints them, then the denial or the created line
            let t = in_repo(&args);
            assert_eq!(t.status.code(), Some(i32::from(denied)));
            let err = stderr(&t);
            let mut lines = err.lines();
            for w in theirs["response"]["warnings"].as_array().unwrap() {
                assert_eq!(
                    lines.next(),
                    Some(format!("Warning: {}", w.as_str().unwrap()).as_str()),
                    "{err}"
                );
            }
            let stdout = String::from_utf8_lossy(&t.stdout);
            if denied {
                let status = &theirs["response"]["status"];
                let cause = &status["details"]["causes"][0];
                assert_eq!(status["details"]["causes"].as_array().unwrap().len(), 1);
                assert_eq!(
                    lines.next(),
                    Some(
                        format!(
                            "The NodePool \"test1\" is invalid: {}: {}",
                            cause["field"].as_str().unwrap(),
                            cause["message"].as_str().unwrap()
                        )
                        .as_str()
                    ),
                    "{err}"
                );
                assert!(stdout.is_empty());
            } else {
                let verb = if review == &update {
                    "configured"
                } else {
                    "created"
                };
                assert_eq!(
                    stdout,
                    format!(
                        "nodepool.hypershift.openshift.io/test1 {verb} (admission simulated: nothing was sent)\n"
                    )
                );
            }
            assert_eq!(lines.next(), None, "{err}");
        }
        server.stop().await;
    }
}

/// --namespace-mode plays the namespace label; --old must hold the stored object of each input;
/// report formats are refused with --admission; the admission flags need --admission.
#[test]
fn admission_simulation_flags() {
    let np = "examples/nodepool-rwo.yaml";
    let facts = ["--facts", "examples/facts"];
    let o = in_repo(
        &[
            &["evaluate", "--admission"][..],
            &facts,
            &["--namespace-mode", "deny", np],
        ]
        .concat(),
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "the namespace label denies: {}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("The NodePool \"test1\" is invalid: "),
        "{}",
        stderr(&o)
    );
    let o = in_repo(
        &[
            &["evaluate", "--admission", "--mode", "deny"][..],
            &facts,
            &["--namespace-mode", "off", np],
        ]
        .concat(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stderr(&o), "", "off: no warning at all");

    let dir = tempfile::tempdir().unwrap();
    let mut other = fixture_value("nodepool-kubevirt-rwo-root-volume.yaml");
    other["metadata"]["name"] = serde_json::json!("another");
    let old = write(dir.path(), "old.json", &other.to_string());
    let o = in_repo(&[&["evaluate", "--admission", "--old", &old][..], &facts, &[np]].concat());
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "error: examples/nodepool-rwo.yaml document 1: --old has no NodePool clusters/test1 to update; pass the stored object, or drop --old to admit a CREATE\n"
    );
    for format in ["yaml", "junit"] {
        let o = in_repo(&[&["evaluate", "--admission", "-o", format][..], &facts, &[np]].concat());
        assert_eq!(o.status.code(), Some(2));
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with("error: --admission prints what kubectl shows"),
            "{err}"
        );
    }
    for flag in [
        &["--old", "x.yaml"][..],
        &["--namespace-mode", "deny"],
        &["--deny-unknown"],
        &["--mode", "deny"],
    ] {
        let o = in_repo(&[&["evaluate"][..], flag, &[np]].concat());
        assert_eq!(o.status.code(), Some(2), "{flag:?}");
        assert!(stderr(&o).contains("--admission"), "{flag:?}: {}", stderr(&o));
    }
}

/// `--cluster` and `audit` against an API server that is not there: one line naming the
/// server and what was being listed, exit 2, nothing on stdout.
#[test]
fn unreachable_api_server_is_one_error_line() {
    let dir = tempfile::tempdir().unwrap();
    // Bound, not listening, for the whole test: refused, and no other process can take it.
    let (_closed, port) = common::closed_port();
    let kubeconfig = write(
        dir.path(),
        "kubeconfig",
        &format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:{port}\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\n"
        ),
    );
    let want =
        format!("error: cannot reach the API server https://127.0.0.1:{port} while listing StorageClasses: ");
    for args in [
        &["audit", "--kubeconfig", &kubeconfig][..],
        &[
            "evaluate",
            "--cluster",
            "--kubeconfig",
            &kubeconfig,
            "examples/nodepool-rwo.yaml",
        ],
    ] {
        let o = in_repo(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with(&want) && err.contains("Connection refused"),
            "{err}"
        );
        assert!(o.stdout.is_empty());
    }
    // a context that does not exist, a kubeconfig that does not exist: the flag is named
    let o = in_repo(&["audit", "--kubeconfig", &kubeconfig, "--context", "nope"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with("error: --context nope: "),
        "{}",
        stderr(&o)
    );
    let o = in_repo(&["audit", "--kubeconfig", "/nonexistent/kubeconfig"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with("error: --kubeconfig /nonexistent/kubeconfig: "),
        "{}",
        stderr(&o)
    );
    // --kubeconfig without --cluster is a usage error naming the missing flag
    let o = in_repo(&[
        "evaluate",
        "--kubeconfig",
        &kubeconfig,
        "examples/nodepool-rwo.yaml",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--cluster"), "{}", stderr(&o));
}

/// `serve --facts DIR` reads a directory as `evaluate --facts` does: values.yaml and
/// kustomization.yaml are skipped with one log line each, the StorageClass is a fact.
#[test]
fn serve_facts_directory_skips_files_that_are_not_facts() {
    let tmp = tempfile::tempdir().unwrap();
    let facts = tmp.path().join("facts");
    std::fs::create_dir(&facts).unwrap();
    write(&facts, "values.yaml", "replicaCount: 2\nimage:\n  tag: latest\n");
    write(
        &facts,
        "kustomization.yaml",
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [sc.yaml]\n",
    );
    write(
        &facts,
        "sc.yaml",
        &fixture_text("storageclass-gp3-csi-aws-ebs.yaml"),
    );
    let s = Serve::start(
        &[
            "--listen=127.0.0.1:0",
            "--ops-listen=127.0.0.1:0",
            "--facts",
            facts.to_str().unwrap(),
        ],
        tmp.path(),
    );
    let log = s.wait_for("serving admission");
    let values = facts.join("values.yaml").display().to_string();
    let lines = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(lines(&values), 1, "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains(&values) && l.contains("skipped: not a Kubernetes object")),
        "{log}"
    );
    assert_eq!(lines("kustomization.yaml"), 1, "{log}");
    assert!(log.contains("storage_classes=1"), "{log}");
    s.signal("-INT");
    s.signal("-INT");
    let _ = s.wait(std::time::Duration::from_secs(10));
}

/// The binary as a kubectl plugin: a `kubectl-live_migration_guard` symlink on PATH, run
/// through the real kubectl. Help and usage say `kubectl live-migration-guard`; exit codes
/// pass through.
#[test]
fn runs_as_a_kubectl_plugin() {
    if !common::kube::available() {
        return;
    }
    let plugins = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_live-migration-guard"),
        plugins.path().join("kubectl-live_migration_guard"),
    )
    .unwrap();
    let kubectl = |args: &[&str]| {
        Command::new(common::kube::kubectl_binary())
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("PATH", format!("{}:/usr/bin:/bin", plugins.path().display()))
            .env("HOME", plugins.path())
            .env_remove("KUBECONFIG")
            .output()
            .unwrap()
    };
    let o = kubectl(&["plugin", "list"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("kubectl-live_migration_guard"),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
    let o = kubectl(&["live-migration-guard", "--help"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let help = String::from_utf8_lossy(&o.stdout);
    assert!(
        help.contains("Usage: kubectl live-migration-guard <COMMAND>") && help.contains("  audit "),
        "{help}"
    );
    let o = kubectl(&["live-migration-guard", "audit", "--help"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("Usage: kubectl live-migration-guard audit [OPTIONS]"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let o = kubectl(&["live-migration-guard", "audit", "--bogus"]);
    assert_eq!(o.status.code(), Some(2), "usage errors keep exit 2");
    assert!(
        stderr(&o).contains("Usage: kubectl live-migration-guard audit"),
        "{}",
        stderr(&o)
    );
    let o = kubectl(&[
        "live-migration-guard",
        "evaluate",
        "--facts",
        "examples/facts",
        "examples/nodepool-rwo.yaml",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("NodePool clusters/test1: NotMigratable"));
}

#[test]
fn plugin_name_follows_kubectls_naming() {
    use live_migration_guard::cli::plugin_name;
    let name = |s: &str| plugin_name(Some(std::ffi::OsStr::new(s)));
    assert_eq!(
        name("/home/u/.local/bin/kubectl-live_migration_guard").as_deref(),
        Some("kubectl live-migration-guard")
    );
    assert_eq!(
        name("oc-live_migration_guard").as_deref(),
        Some("oc live-migration-guard")
    );
    assert_eq!(name("/usr/local/bin/live-migration-guard"), None);
    assert_eq!(name("kubectl"), None);
    assert_eq!(name("kubectl-"), None);
}

/// `--help` of the new commands and flags: every default and the exit codes.
#[test]
fn new_commands_document_flags_defaults_and_exit_codes() {
    let help = |args: &[&str]| {
        let o = bin().args(args).arg("--help").output().unwrap();
        assert_eq!(o.status.code(), Some(0));
        String::from_utf8(o.stdout).unwrap()
    };
    let h = help(&["audit"]);
    for want in [
        "--kubeconfig <PATH>",
        "--context <NAME>",
        "-n, --namespace <NS>",
        "-A, --all-namespaces",
        "[default: table]",
        "- wide:",
        "- junit:",
        "[default: not-migratable]",
        "--infra-credentials <INFRA_CREDENTIALS>",
        "[default: off]",
        "Permissions (RBAC verb list)",
        "Exit codes:",
        "  2  usage errors, or the API server cannot be read",
    ] {
        assert!(h.contains(want), "audit --help lacks {want:?}:\n{h}");
    }
    let h = help(&["evaluate"]);
    for want in [
        "- yaml:",
        "- junit:",
        "-q, --quiet",
        "--cluster",
        "--admission",
        "--mode <MODE>",
        "[default: warn]",
        "--old <PATH>",
        "--namespace-mode <NAMESPACE_MODE>",
        "Admission simulation:",
        "Facts from a cluster:",
    ] {
        assert!(h.contains(want), "evaluate --help lacks {want:?}:\n{h}");
    }
    let h = help(&["completions"]);
    assert!(
        h.contains("- bash:") && h.contains("- zsh:") && h.contains("- fish:"),
        "{h}"
    );
    let o = bin().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
}

/// A closed pipe ends `completions` and `--admission` quietly too.
#[test]
fn closed_pipe_ends_new_commands_quietly() {
    for args in [
        &["completions", "bash"][..],
        &[
            "evaluate",
            "--admission",
            "--facts",
            "examples/facts",
            "-o",
            "json",
            "examples/nodepool-rwo.yaml",
        ],
    ] {
        let mut child = bin()
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let o = child.wait_with_output().unwrap();
        assert!(matches!(o.status.code(), Some(0 | 1)), "{args:?}: {o:?}");
        assert!(!stderr(&o).contains("panicked"), "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).contains("Broken pipe"), "{args:?}: {}", stderr(&o));
    }
}
