//! Live cluster facts: the real `kube` client and reflectors against an in-process fake
//! API server speaking the list/watch protocol (issue: live cluster facts).
//!
//! What the real kube-apiserver shows is in `tests/e2e_admission.rs`, and was removed here:
//! watch events of StorageClasses, the default-class annotation moving and a deleted class
//! (`facts_follow_the_cluster_default_class_moves_and_deleted_classes`), and the audit's
//! `/v1/report` and `live_migration_guard_objects` (`the_audit_reports_existing_nodepools_in_v1_report_and_the_objects_metric`).
//! The fake still covers what the real server cannot be made to do, or what the e2e tests do
//! not see: 410 Gone after compaction during a watch partition (re-list), optional APIs (CDI
//! StorageProfiles) absent then installed, readiness and its reason against a server that never
//! answers, an outage served from cache then Unknown past `--facts-max-staleness`, the
//! namespace watch's label selector (the test cluster's audit policy records HyperShift objects
//! only), and external infra clusters read through credentials Secrets (missing, forbidden,
//! then present).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::fake_apiserver::*;
use common::*;
use live_migration_guard::facts::Snapshot;
use live_migration_guard::facts::cluster::{self, ClusterFacts, Options};
use serde_json::{Value, json};
use tokio::sync::watch;

fn sc(name: &str, provisioner: &str, annotations: &[(&str, &str)]) -> Value {
    serde_json::from_str(&storage_class(name, provisioner, annotations, None)).unwrap()
}

const K8S_DEFAULT: (&str, &str) = ("storageclass.kubernetes.io/is-default-class", "true");
const VIRT_DEFAULT: (&str, &str) = ("storageclass.kubevirt.io/is-default-virt-class", "true");

fn opts() -> Options {
    Options {
        debounce: Duration::from_millis(20),
        ..Options::default()
    }
}

/// Waits (up to 10 s) until the snapshot satisfies `pred`.
async fn until(
    rx: &watch::Receiver<Arc<Snapshot>>,
    what: &str,
    pred: impl Fn(&Snapshot) -> bool,
) -> Arc<Snapshot> {
    let mut waiter = rx.clone();
    let found = tokio::time::timeout(Duration::from_secs(10), waiter.wait_for(|s| pred(s)))
        .await
        .ok()
        .and_then(Result::ok)
        .map(|s| s.clone());
    found.unwrap_or_else(|| {
        let last = rx.borrow();
        panic!(
            "timed out waiting for: {what}; last snapshot: ready={} reason={:?}",
            last.ready, last.not_ready_reason
        )
    })
}

fn verdict_of(snapshot: &Snapshot, np: &Value) -> String {
    let np = nodepool(np.clone());
    live_migration_guard::evaluate::evaluate_nodepool(&np, &snapshot.facts)
        .verdict
        .as_str()
        .to_owned()
}

/// The minimal NodePool is `Unknown` against `snap`, with a finding of `reason`.
fn unknown_because(snap: &Snapshot, reason: &str) -> live_migration_guard::evaluate::Finding {
    let report = live_migration_guard::evaluate::evaluate_nodepool(&nodepool(minimal_np()), &snap.facts);
    assert_eq!(report.verdict.as_str(), "Unknown", "{:#?}", report.findings);
    report
        .findings
        .into_iter()
        .find(|f| f.reason == reason)
        .unwrap_or_else(|| panic!("no {reason} finding"))
}

fn minimal_np() -> Value {
    with(
        fixture_value("nodepool-kubevirt-minimal.yaml"),
        &[("/spec/replicas", json!(2))],
    )
}

#[tokio::test]
async fn gone_forces_a_relist() {
    let api = FakeApiServer::start().await;
    api.register_all();
    let live = cluster::start(api.client(), opts());
    until(&live.snapshot, "ready", |s| s.ready).await;
    // a partition: the watch drops, a class is added and history compacted meanwhile
    api.block_watches(true);
    tokio::time::sleep(Duration::from_millis(100)).await;
    api.apply(STORAGE_CLASSES, sc("nfs", "nfs.csi.k8s.io", &[VIRT_DEFAULT]));
    api.compact();
    api.block_watches(false);
    // the watcher's resourceVersion is too old: 410 Gone, then a re-list finds the class
    let snap = until(&live.snapshot, "nfs after re-list", |s| {
        s.facts.class("nfs").is_some()
    })
    .await;
    assert_eq!(verdict_of(&snap, &minimal_np()), "Migratable");
    let lists = api
        .requests()
        .iter()
        .filter(|r| r.starts_with(STORAGE_CLASSES) && !r.contains("watch=true"))
        .count();
    assert!(
        lists >= 2,
        "410 Gone made the watcher list again: {:?}",
        api.requests()
    );
}

#[tokio::test]
async fn optional_apis_absent_is_ready_and_degraded() {
    let api = FakeApiServer::start().await; // no CDI, KubeVirt or HyperShift CRDs
    api.apply(STORAGE_CLASSES, sc("gp3-csi", "ebs.csi.aws.com", &[K8S_DEFAULT]));
    let live = cluster::start(api.client(), opts());
    let snap = until(&live.snapshot, "ready without optional APIs", |s| s.ready).await;
    assert!(!snap.facts.profiles_known());
    let report = live_migration_guard::evaluate::evaluate_nodepool(&nodepool(minimal_np()), &snap.facts);
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.reason == "BuiltinStorageCapabilities"),
        "{:#?}",
        report.findings
    );
    // a CRD installed later is picked up
    api.register(STORAGE_PROFILES, "cdi.kubevirt.io/v1beta1", "StorageProfile");
    api.apply(
        STORAGE_PROFILES,
        serde_json::from_str(&profile(
            "gp3-csi",
            "ebs.csi.aws.com",
            &[(&["ReadWriteMany"], "Block")],
        ))
        .unwrap(),
    );
    let snap = until(&live.snapshot, "profiles after CRD install", |s| {
        s.facts.profiles_known()
    })
    .await;
    // the profile is read now: the verdict no longer rests on CDI's built-in table (it
    // stays NotMigratable: EBS cannot provision RWX whatever a customized profile says,
    // docs/rules.md)
    let report = live_migration_guard::evaluate::evaluate_nodepool(&nodepool(minimal_np()), &snap.facts);
    assert!(
        !report
            .findings
            .iter()
            .any(|f| f.reason == "BuiltinStorageCapabilities"),
        "{:#?}",
        report.findings
    );
}

#[tokio::test]
async fn required_apis_gate_readiness() {
    let api = FakeApiServer::start().await;
    api.register_all();
    let live = cluster::start(api.client(), opts());
    let snap = until(&live.snapshot, "ready", |s| s.ready).await;
    assert!(snap.not_ready_reason.is_none());
    // a server that never answers keeps us not ready, with the reason
    let dead = cluster::start(
        ::kube::Client::try_from(::kube::Config::new("http://127.0.0.1:9".parse().unwrap())).unwrap(),
        opts(),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = dead.snapshot.borrow().clone();
    assert!(!s.ready);
    assert!(
        s.not_ready_reason
            .as_deref()
            .unwrap_or("")
            .contains("StorageClasses"),
        "{:?}",
        s.not_ready_reason
    );
}

#[tokio::test]
async fn outage_serves_from_cache_then_unknown_past_the_bound() {
    let mut api = FakeApiServer::start().await;
    api.register_all();
    api.apply(STORAGE_CLASSES, sc("ceph", "rbd.csi.ceph.com", &[VIRT_DEFAULT]));
    let live = cluster::start(
        api.client(),
        Options {
            max_staleness: Duration::from_secs(2),
            ..opts()
        },
    );
    until(&live.snapshot, "ready", |s| s.ready).await;
    api.stop().await;
    let snap = until(&live.snapshot, "stale", |s| s.stale_seconds > 0.0).await;
    assert_eq!(verdict_of(&snap, &minimal_np()), "Migratable", "still from cache");
    let snap = until(&live.snapshot, "past the bound", |s| {
        s.facts.unavailable_reason().is_some()
    })
    .await;
    let f = unknown_because(&snap, "StorageFactsMissing");
    assert!(f.message.contains("has not answered for"), "{}", f.message);
    assert!(
        snap.ready,
        "an outage does not make the pod unready (it keeps admitting from cache)"
    );
}

#[tokio::test]
async fn namespace_mode_labels() {
    let api = FakeApiServer::start().await;
    api.register_all();
    api.apply(
        NAMESPACES,
        json!({"metadata": {"name": "strict", "labels": {"live-migration-guard.io/mode": "deny"}}}),
    );
    api.apply(NAMESPACES, json!({"metadata": {"name": "plain"}}));
    let live = cluster::start(api.client(), opts());
    let snap = until(&live.snapshot, "ready", |s| s.ready).await;
    let modes = snap.namespace_modes.clone().unwrap();
    assert_eq!(modes.get("strict").map(String::as_str), Some("deny"));
    assert!(!modes.contains_key("plain"));
    assert!(
        api.requests().iter().any(|r| r.starts_with("/api/v1/namespaces?")
            && r.contains("labelSelector=live-migration-guard.io%2Fmode")),
        "{:?}",
        api.requests()
    );
    api.apply(NAMESPACES, json!({"metadata": {"name": "strict", "labels": {}}}));
    until(&live.snapshot, "label removed", |s| {
        !s.namespace_modes.as_ref().unwrap().contains_key("strict")
    })
    .await;
}

fn external_hc() -> Value {
    let creds = json!({"infraKubeConfigSecret": {"name": "example-infra", "key": "kubeconfig"}, "infraNamespace": "guests"});
    with(
        fixture_value("hostedcluster-kubevirt-minimal.yaml"),
        &[("/spec/platform/kubevirt/credentials", creds)],
    )
}

#[tokio::test]
async fn external_infra_clusters_from_credentials() {
    let api = FakeApiServer::start().await;
    api.register_all();
    api.apply(STORAGE_CLASSES, sc("gp3-csi", "ebs.csi.aws.com", &[K8S_DEFAULT]));
    api.apply(HOSTED_CLUSTERS, external_hc());
    let infra = FakeApiServer::start().await;
    infra.apply(
        STORAGE_CLASSES,
        sc("infra-rbd", "rbd.csi.ceph.com", &[VIRT_DEFAULT]),
    );

    let live: ClusterFacts = cluster::start(
        api.client(),
        Options {
            infra_credentials: true,
            infra_retry: Duration::from_millis(200),
            ..opts()
        },
    );
    // the Secret does not exist yet: Unknown, with a warning naming it
    let snap = until(&live.snapshot, "infra pending", |s| {
        matches!(s.facts.infra("clusters", "example"), Some(live_migration_guard::facts::InfraFacts::Unavailable(w)) if w.contains("does not exist"))
    })
    .await;
    let f = unknown_because(&snap, "ExternalInfraFactsUnavailable");
    assert!(
        f.message.contains("Secret clusters/example-infra does not exist"),
        "{}",
        f.message
    );

    // RBAC forbids reading it: named as such
    api.forbid_secrets(true);
    let snap = until(&live.snapshot, "forbidden", |s| {
        matches!(s.facts.infra("clusters", "example"), Some(live_migration_guard::facts::InfraFacts::Unavailable(w)) if w.contains("forbidden"))
    })
    .await;
    drop(snap);

    // the Secret appears: the NodePool is judged against the infra cluster's facts
    api.forbid_secrets(false);
    api.set_secret(
        "clusters",
        "example-infra",
        BTreeMap::from([("kubeconfig".to_owned(), infra.kubeconfig().into_bytes())]),
    );
    let snap = until(&live.snapshot, "infra ready", |s| {
        matches!(
            s.facts.infra("clusters", "example"),
            Some(live_migration_guard::facts::InfraFacts::Ready(_))
        )
    })
    .await;
    assert_eq!(
        verdict_of(&snap, &minimal_np()),
        "Migratable",
        "infra default is RBD, local default gp3 would be RWO"
    );
    let hc = hostedcluster(external_hc());
    let r = live_migration_guard::evaluate::evaluate_hostedcluster(&hc, &snap.facts, &[]);
    assert_eq!(r.verdict.as_str(), "Migratable", "{:#?}", r.findings);
}

/// A watch that fails and is then restarted by kube's watcher yields no event until an object
/// changes; in a quiet cluster the facts would count as stale forever and, past the bound,
/// every verdict would turn Unknown. The failing watch is probed (list + watch) until it
/// answers: the staleness goes back to zero with no object changed.
#[tokio::test]
async fn a_quiet_recovery_ends_the_staleness() {
    let api = FakeApiServer::start().await;
    api.register_all();
    api.apply(STORAGE_CLASSES, sc("ceph", "rbd.csi.ceph.com", &[VIRT_DEFAULT]));
    let live = cluster::start(api.client(), opts());
    until(&live.snapshot, "ready", |s| s.ready).await;
    api.refuse_watches(Some(500));
    until(&live.snapshot, "stale", |s| s.stale_seconds > 0.0).await;
    api.refuse_watches(None);
    let snap = until(&live.snapshot, "fresh again without any change", |s| {
        s.stale_seconds == 0.0
    })
    .await;
    assert_eq!(verdict_of(&snap, &minimal_np()), "Migratable");
}
