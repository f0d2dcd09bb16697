//! Scale (issue: live cluster facts): 10,000 StorageClasses + StorageProfiles and 1,000
//! NodePools cached by a real `serve --cluster=on` process watching the fake API server.
//! Measures the server's resident memory and the evaluation time with those facts.
//!
//! Part of the suite, where it guards the memory bound (a debug build: ≤ 128 MiB; the audit's
//! findings once grew with the square of a HostedCluster's NodePools, to ~400 MiB, unnoticed
//! while this test ran only on request). The release figures and the evaluation-time bound:
//! `scripts/bench-scale.sh`, or `cargo test --release --test scale -- --nocapture`.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::fake_apiserver::*;
use common::*;
use live_migration_guard::evaluate::evaluate_nodepool;
use serde_json::{Value, json};

const CLASS_COUNT: usize = 10_000;
const NODEPOOL_COUNT: usize = 1_000;

fn class(i: usize) -> (Value, Value) {
    let (prov, sets) = if i.is_multiple_of(2) {
        (
            "openshift-storage.rbd.csi.ceph.com",
            json!([{"accessModes": ["ReadWriteMany"], "volumeMode": "Block"}, {"accessModes": ["ReadWriteOnce"], "volumeMode": "Filesystem"}]),
        )
    } else {
        (
            "ebs.csi.aws.com",
            json!([{"accessModes": ["ReadWriteOnce"], "volumeMode": "Block"}]),
        )
    };
    let mut ann = json!({});
    if i == 0 {
        ann["storageclass.kubernetes.io/is-default-class"] = json!("true");
    }
    let sc = json!({
        "metadata": {"name": format!("class-{i}"), "annotations": ann, "labels": {"tier": "bench"}},
        "provisioner": prov,
        "parameters": {"clusterID": "openshift-storage", "pool": "pool-a", "csi.storage.k8s.io/fstype": "ext4"},
        "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer", "allowVolumeExpansion": true,
    });
    let sp = json!({"metadata": {"name": format!("class-{i}")}, "spec": {}, "status": {"provisioner": prov, "storageClass": format!("class-{i}"), "claimPropertySets": sets}});
    (sc, sp)
}

fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_classes_and_a_thousand_nodepools() {
    let api = FakeApiServer::start().await;
    api.register_all();
    let mut facts_text = String::new();
    for i in 0..CLASS_COUNT {
        let (sc, sp) = class(i);
        api.apply(STORAGE_CLASSES, sc.clone());
        api.apply(STORAGE_PROFILES, sp.clone());
        let mut sc = sc;
        sc["apiVersion"] = json!("storage.k8s.io/v1");
        sc["kind"] = json!("StorageClass");
        let mut sp = sp;
        sp["apiVersion"] = json!("cdi.kubevirt.io/v1beta1");
        sp["kind"] = json!("StorageProfile");
        facts_text.push_str(&format!("{sc}\n{sp}\n"));
    }
    api.apply(
        HOSTED_CLUSTERS,
        fixture_value("hostedcluster-kubevirt-minimal.yaml"),
    );
    let np_base = fixture_value("nodepool-kubevirt-rwo-root-volume.yaml");
    for i in 0..NODEPOOL_COUNT {
        let np = with(
            np_base.clone(),
            &[
                ("/metadata/name", json!(format!("pool-{i}"))),
                ("/spec/clusterName", json!("example")),
                (
                    "/spec/platform/kubevirt/rootVolume/persistent/storageClass",
                    json!(format!("class-{}", i % CLASS_COUNT)),
                ),
            ],
        );
        api.apply(NODEPOOLS, np);
    }
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, api.kubeconfig()).unwrap();
    let started = Instant::now();
    let log = dir.path().join("serve.log");
    let mut child = common::serve_log_env(&mut Command::new(env!("CARGO_BIN_EXE_live-migration-guard")))
        .args(["serve", "--cluster=on", "--audit-interval=2s"])
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .args(["--listen=127.0.0.1:0", "--ops-listen=127.0.0.1:0"])
        .arg(format!("--ca-bundle-out={}", dir.path().join("ca.crt").display()))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let ops = tokio::task::block_in_place(|| {
        common::wait_bound(&log, Duration::from_secs(120), || child.try_wait().ok().flatten())
    })
    .unwrap_or_else(|e| panic!("{e}: {}", std::fs::read_to_string(&log).unwrap_or_default()))
    .ops;
    let ready = loop {
        let ok = http
            .get(format!("http://{ops}/readyz"))
            .send()
            .await
            .map(|r| r.status() == 200)
            .unwrap_or(false);
        if ok || started.elapsed() > Duration::from_secs(120) {
            break ok;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(ready, "server did not become ready");
    let sync_time = started.elapsed();
    // let the first audit (1,000 NodePools) run, then measure
    tokio::time::sleep(Duration::from_secs(5)).await;
    let metrics = http
        .get(format!("http://{ops}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let audited = metrics
        .lines()
        .filter(|l| l.starts_with("live_migration_guard_objects{"))
        .count();
    let (rss, hwm) = rss_kib(child.id());
    let _ = child.kill();
    let _ = child.wait();

    // evaluation cost with the same 10,000 classes (in process, the evaluator alone)
    let facts = facts(&[&facts_text]);
    let np = nodepool(with(
        np_base,
        &[(
            "/spec/platform/kubevirt/rootVolume/persistent/storageClass",
            json!("class-1"),
        )],
    ));
    let n = if cfg!(debug_assertions) { 20_000 } else { 200_000 };
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(evaluate_nodepool(std::hint::black_box(&np), &facts));
    }
    let per_eval = t.elapsed() / n;

    println!(
        "scale: {CLASS_COUNT} StorageClasses + {CLASS_COUNT} StorageProfiles + {NODEPOOL_COUNT} NodePools: synced in {:.1}s; server RSS {:.1} MiB (peak {:.1} MiB); audited {audited} objects; evaluation {:.2} µs per NodePool",
        sync_time.as_secs_f64(),
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0,
        per_eval.as_nanos() as f64 / 1000.0
    );
    assert_eq!(
        audited,
        NODEPOOL_COUNT + 1,
        "every NodePool and the HostedCluster audited"
    );
    // Release: 70 MiB measured (60 with MALLOC_ARENA_MAX=1: ~10 MiB are glibc's per-thread
    // arenas; the same with the audit off); a debug build: ~84 MiB. The audit's quadratic
    // findings took it past 400 MiB.
    let (bound_mib, release) = if cfg!(debug_assertions) {
        (128, false)
    } else {
        (80, true)
    };
    assert!(
        hwm <= bound_mib * 1024,
        "peak RSS {hwm} KiB exceeds {bound_mib} MiB"
    );
    if release {
        assert!(
            per_eval <= Duration::from_micros(5),
            "evaluation {per_eval:?} exceeds 5 µs"
        );
    }
}
