//! Helpers shared by the integration tests: fixtures, facts and objects built from them.
#![allow(dead_code)]

pub mod fake_apiserver;
pub mod kube;
pub mod server;

use std::path::PathBuf;

use live_migration_guard::facts::load::{self, Object};
use live_migration_guard::facts::{self, Facts, FactsBuilder};
use live_migration_guard::resources::{HostedCluster, NodePool};
use serde_json::{Value, json};

pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn fixture_text(name: &str) -> String {
    std::fs::read_to_string(fixture_path(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The first YAML document of a fixture as JSON.
pub fn fixture_value(name: &str) -> Value {
    load::split_documents(fixture_text(name).as_bytes(), name)
        .expect("fixture parses")
        .remove(0)
}

/// Sets JSON-pointer paths in a copy of `v` (null removes); non-objects on the way are
/// replaced by objects.
pub fn with(mut v: Value, edits: &[(&str, Value)]) -> Value {
    for (ptr, val) in edits {
        let parts: Vec<&str> = ptr.trim_start_matches('/').split('/').collect();
        let (last, parents) = parts.split_last().expect("non-empty pointer");
        let mut cur = &mut v;
        for p in parents {
            if !cur.is_object() {
                *cur = json!({});
            }
            cur = cur
                .as_object_mut()
                .expect("object")
                .entry(*p)
                .or_insert_with(|| json!({}));
        }
        if !cur.is_object() {
            *cur = json!({});
        }
        let map = cur.as_object_mut().expect("object");
        if val.is_null() {
            map.remove(*last);
        } else {
            map.insert((*last).to_owned(), val.clone());
        }
    }
    v
}

pub fn nodepool(v: Value) -> NodePool {
    serde_json::from_value(v).expect("valid NodePool")
}

pub fn hostedcluster(v: Value) -> HostedCluster {
    serde_json::from_value(v).expect("valid HostedCluster")
}

/// Facts from YAML texts (StorageClasses, StorageProfiles, KubeVirt, HostedClusters).
pub fn builder(yamls: &[&str]) -> FactsBuilder {
    let mut loaded = Vec::new();
    for (i, y) in yamls.iter().enumerate() {
        loaded.extend(load::parse_bytes(y.as_bytes(), &format!("facts-{i}")).expect("facts parse"));
    }
    let (b, unused) = facts::builder_from(&loaded);
    assert!(
        unused.iter().all(|(_, kind)| kind == "CephBlockPool"),
        "unexpected non-fact objects: {unused:?}"
    );
    b
}

pub fn facts(yamls: &[&str]) -> Facts {
    builder(yamls).build()
}

/// A StorageClass as JSON text.
pub fn storage_class(
    name: &str,
    provisioner: &str,
    annotations: &[(&str, &str)],
    created: Option<&str>,
) -> String {
    storage_class_with(name, provisioner, annotations, created, &[])
}

pub fn storage_class_with(
    name: &str,
    provisioner: &str,
    annotations: &[(&str, &str)],
    created: Option<&str>,
    parameters: &[(&str, &str)],
) -> String {
    let map = |kv: &[(&str, &str)]| -> serde_json::Map<String, Value> {
        kv.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect()
    };
    let mut meta = json!({ "name": name, "annotations": map(annotations) });
    if let Some(c) = created {
        meta["creationTimestamp"] = json!(c);
    }
    json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": meta,
        "provisioner": provisioner, "parameters": map(parameters),
    })
    .to_string()
}

/// A reconciled StorageProfile with the given status claim property sets.
pub fn profile(name: &str, provisioner: &str, sets: &[(&[&str], &str)]) -> String {
    let sets: Vec<Value> = sets
        .iter()
        .map(|(m, vm)| json!({ "accessModes": m, "volumeMode": vm }))
        .collect();
    let mut status = json!({ "provisioner": provisioner, "storageClass": name });
    if !sets.is_empty() {
        status["claimPropertySets"] = json!(sets);
    }
    json!({
        "apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "StorageProfile",
        "metadata": { "name": name }, "spec": {}, "status": status,
    })
    .to_string()
}

pub fn kubevirt(version: &str) -> String {
    format!(
        "apiVersion: kubevirt.io/v1\nkind: KubeVirt\nmetadata:\n  name: kubevirt-kubevirt-hyperconverged\n  namespace: openshift-cnv\nstatus:\n  observedKubeVirtVersion: {version}\n"
    )
}

pub fn object_of(yaml: &str) -> Object {
    load::parse_bytes(yaml.as_bytes(), "test")
        .expect("parses")
        .remove(0)
        .object
}

/// The addresses a `serve` process bound, read from its log.
///
/// Tests start `serve` with `--listen 127.0.0.1:0` (and the same for `--ops-listen` and
/// `--evaluate-listen`): the kernel picks the ports as the server binds them, so no other
/// process of the parallel tests can take one in between, as it could with a port found free
/// and released before the child bound it (the suite failed on that once in about 34 runs).
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub listen: std::net::SocketAddr,
    pub ops: std::net::SocketAddr,
    /// `--evaluate-listen`'s address, if the server has a separate listener.
    pub side: Option<std::net::SocketAddr>,
}

/// The text log's `serving admission …` line (and the side listener's line before it), once
/// written: `serve` logs them right after binding its listeners. The child must log as text
/// at `info` or finer: see [`serve_log_env`].
pub fn bound(log: &str) -> Option<Bound> {
    fn field(line: &str, name: &str) -> Option<std::net::SocketAddr> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
    }
    let admission = log.lines().find(|l| l.contains("serving admission on"))?;
    let side = log
        .lines()
        .find(|l| l.contains("on a separate listener"))
        .and_then(|l| field(l, "listen"));
    Some(Bound {
        listen: field(admission, "listen")?,
        ops: field(admission, "ops")?,
        side,
    })
}

/// Waits until a `serve` child has logged the addresses it bound ([`bound`]) in `log`; `Err`
/// says why not: `exited` (polled) reported the child's exit, or `within` passed.
pub fn wait_bound(
    log: &std::path::Path,
    within: std::time::Duration,
    mut exited: impl FnMut() -> Option<std::process::ExitStatus>,
) -> Result<Bound, String> {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(found) = std::fs::read_to_string(log).ok().as_deref().and_then(bound) {
            return Ok(found);
        }
        if let Some(status) = exited() {
            return Err(format!("serve exited ({status})"));
        }
        if std::time::Instant::now() >= deadline {
            return Err(format!("serve bound no listener within {within:?}"));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Environment for a `serve` child whose addresses [`bound`] reads from its log: text logs,
/// `info` (a test that wants more sets `RUST_LOG` after this).
pub fn serve_log_env(cmd: &mut std::process::Command) -> &mut std::process::Command {
    cmd.env_remove("LMG_LOG_FORMAT").env("RUST_LOG", "info")
}

/// A loopback port nothing listens on, held for as long as the guard lives: the socket is
/// bound but not listening, so connecting to it is refused and no other process can bind it.
pub fn closed_port() -> (tokio::net::TcpSocket, u16) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(([127, 0, 0, 1], 0).into()).expect("bind 127.0.0.1:0");
    let port = socket.local_addr().expect("bound address").port();
    (socket, port)
}

/// Standard base64 (for `caBundle` fields).
pub fn b64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The chart rendered by the pinned helm (`helm template RELEASE -n NAMESPACE`), as JSON
/// documents.
pub fn render_chart(release: &str, namespace: &str, set: &[&str]) -> Vec<Value> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let helm_home = root.join(".tools/helm");
    let mut cmd = std::process::Command::new(root.join(".tools/bin/helm"));
    cmd.args(["template", release])
        .arg(root.join("charts/live-migration-guard"))
        .args(["--namespace", namespace, "--kube-version", "1.36.3"]);
    for s in set {
        cmd.args(["--set", s]);
    }
    let out = cmd
        .env("HELM_CACHE_HOME", helm_home.join("cache"))
        .env("HELM_CONFIG_HOME", helm_home.join("config"))
        .env("HELM_DATA_HOME", helm_home.join("data"))
        .output()
        .expect("helm runs (scripts/install-tools.sh installs it)");
    assert!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    load::split_documents(&out.stdout, "helm template")
        .expect("rendered chart parses")
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}
