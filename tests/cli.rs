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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn serve_ca_bundle_per_instance_second_ctrl_c_and_no_facts_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let listen = format!("--listen=127.0.0.1:{port}");
    let a = Serve::start(&[&listen, "--ops-listen=127.0.0.1:0"], tmp.path());
    let log = a.wait_for("serving admission");
    // (5) no facts, no cluster: said once
    let warned = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("storage verdicts will be Unknown"))
        .count();
    assert_eq!(warned, 1, "{log}");
    // (2) the default bundle is per instance (the port is in its path) and logged
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
