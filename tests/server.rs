//! The webhook server end to end: real TLS on loopback, AdmissionReviews shaped as
//! kube-apiserver sends them, warn and deny policies, overrides, bad input, limits,
//! the side endpoint and the ops endpoints.

mod common;

use common::server::*;
use common::*;
use live_migration_guard::admission::{Mode, Policy};
use live_migration_guard::facts::{Facts, Snapshot};
use serde_json::{Value, json};

fn warn() -> Policy {
    Policy::default()
}

fn deny() -> Policy {
    Policy {
        mode: Mode::Deny,
        ..Policy::default()
    }
}

/// gp3-csi (RWO only, k8s default) and ceph-rbd (RWX Block first).
fn cluster() -> Facts {
    facts(&[
        &fixture_text("storageclass-gp3-csi-aws-ebs.yaml").replace(
            "name: gp3-csi",
            "name: gp3-csi\n  annotations: {storageclass.kubernetes.io/is-default-class: \"true\"}",
        ),
        &storage_class(
            "ocs-storagecluster-ceph-rbd",
            "openshift-storage.rbd.csi.ceph.com",
            &[],
            None,
        ),
    ])
}

fn rwo_nodepool() -> Value {
    fixture_value("nodepool-kubevirt-rwo-root-volume.yaml")
}

fn rwx_nodepool() -> Value {
    with(
        rwo_nodepool(),
        &[
            (
                "/spec/platform/kubevirt/rootVolume/persistent/accessModes",
                json!(["ReadWriteMany"]),
            ),
            (
                "/spec/platform/kubevirt/rootVolume/persistent/storageClass",
                json!("ocs-storagecluster-ceph-rbd"),
            ),
        ],
    )
}

fn warnings(resp: &Value) -> Vec<String> {
    resp["response"]["warnings"]
        .as_array()
        .map(|a| a.iter().map(|w| w.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn warn_mode_allows_with_warnings_over_http1_and_http2() {
    let s = TestServer::start(warn(), cluster()).await;
    let rwo_review = review("NodePool", "CREATE", Some(&rwo_nodepool()), None);
    for http2 in [false, true] {
        let resp = s
            .client(http2)
            .post(s.url("/validate/nodepools"))
            .header("Content-Type", "application/json")
            .body(rwo_review.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.version(),
            if http2 {
                reqwest::Version::HTTP_2
            } else {
                reqwest::Version::HTTP_11
            }
        );
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(body["kind"], "AdmissionReview");
        assert_eq!(body["response"]["uid"], rwo_review["request"]["uid"]);
        assert_eq!(body["response"]["allowed"], true);
        let w = warnings(&body);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("DisksNotLiveMigratable: spec.platform.kubevirt.rootVolume.persistent.accessModes: set rootVolume.persistent.storageClass to an RWX-capable class such as ocs-storagecluster-ceph-rbd"), "{w:?}");
    }
    let resp = s
        .post_review(
            "/validate/nodepools",
            &review("NodePool", "CREATE", Some(&rwx_nodepool()), None),
        )
        .await;
    assert_eq!(resp["response"]["allowed"], true);
    assert!(warnings(&resp).is_empty(), "migratable: no warnings");
    s.stop().await;
}

#[tokio::test]
async fn deny_mode_rejects_with_status_and_causes() {
    let s = TestServer::start(deny(), cluster()).await;
    let resp = s
        .post_review(
            "/validate/nodepools",
            &review("NodePool", "CREATE", Some(&rwo_nodepool()), None),
        )
        .await;
    let r = &resp["response"];
    assert_eq!(r["allowed"], false);
    assert_eq!(r["status"]["code"], 422);
    assert_eq!(r["status"]["reason"], "Invalid");
    let msg = r["status"]["message"].as_str().unwrap();
    assert!(msg.starts_with("live-migration-guard: NodePool clusters/test1 would not be live migratable: DisksNotLiveMigratable at spec.platform.kubevirt.rootVolume.persistent.accessModes"), "{msg}");
    assert_eq!(r["status"]["details"]["kind"], "NodePool");
    assert_eq!(
        r["status"]["details"]["causes"][0]["field"],
        "spec.platform.kubevirt.rootVolume.persistent.accessModes"
    );
    assert!(!warnings(&resp).is_empty(), "warnings accompany a denial");

    // HostedCluster with an RWO mapping: each bad mapping is a cause
    let hc = fixture_value("hostedcluster-kubevirt-manual-storage-mapping.yaml");
    let only_gp3 = json!([{"guestStorageClassName": "gp3", "infraStorageClassName": "gp3-csi"}]);
    let hc = with(
        hc,
        &[(
            "/spec/platform/kubevirt/storageDriver/manual/storageClassMapping",
            only_gp3,
        )],
    );
    let resp = s
        .post_review(
            "/validate/hostedclusters",
            &review("HostedCluster", "CREATE", Some(&hc), None),
        )
        .await;
    assert_eq!(resp["response"]["allowed"], false);
    let causes: Vec<&str> = resp["response"]["status"]["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        causes,
        vec!["spec.platform.kubevirt.storageDriver.manual.storageClassMapping[0].infraStorageClassName"]
    );
    s.stop().await;
}

#[tokio::test]
async fn updates_only_deny_new_errors() {
    let s = TestServer::start(deny(), cluster()).await;
    // scaling an already non-migratable NodePool: warned, not blocked
    let scaled = with(rwo_nodepool(), &[("/spec/replicas", json!(5))]);
    let resp = s
        .post_review(
            "/validate/nodepools",
            &review("NodePool", "UPDATE", Some(&scaled), Some(&rwo_nodepool())),
        )
        .await;
    assert_eq!(resp["response"]["allowed"], true);
    assert!(warnings(&resp)[0].starts_with("DisksNotLiveMigratable"));
    // relabelling too
    let relabelled = with(rwo_nodepool(), &[("/metadata/labels", json!({"team": "a"}))]);
    let resp = s
        .post_review(
            "/validate/nodepools",
            &review("NodePool", "UPDATE", Some(&relabelled), Some(&rwo_nodepool())),
        )
        .await;
    assert_eq!(resp["response"]["allowed"], true);
    // introducing the error: denied
    let resp = s
        .post_review(
            "/validate/nodepools",
            &review("NodePool", "UPDATE", Some(&rwo_nodepool()), Some(&rwx_nodepool())),
        )
        .await;
    assert_eq!(resp["response"]["allowed"], false);
    // DELETE and subresources pass unevaluated
    let resp = s
        .post_review(
            "/validate/nodepools",
            &review("NodePool", "DELETE", None, Some(&rwo_nodepool())),
        )
        .await;
    assert_eq!(resp["response"]["allowed"], true);
    assert!(warnings(&resp).is_empty());
    let mut status_update = review("NodePool", "UPDATE", Some(&rwo_nodepool()), Some(&rwx_nodepool()));
    status_update["request"]["subResource"] = json!("status");
    let resp = s.post_review("/validate/nodepools", &status_update).await;
    assert_eq!(resp["response"]["allowed"], true);
    // dry run is evaluated the same way, and counted as such
    let mut dry = review("NodePool", "CREATE", Some(&rwo_nodepool()), None);
    dry["request"]["dryRun"] = json!(true);
    let resp = s.post_review("/validate/nodepools", &dry).await;
    assert_eq!(resp["response"]["allowed"], false);
    let (_, metrics) = s.ops_get("/metrics").await;
    assert!(metrics.contains("endpoint=\"/validate/nodepools\",kind=\"NodePool\",operation=\"CREATE\",verdict=\"NotMigratable\",decision=\"deny\",dry_run=\"true\"} 1"), "{metrics}");
    s.stop().await;
}

#[tokio::test]
async fn unknown_denies_only_with_deny_unknown() {
    let np = fixture_value("nodepool-kubevirt-minimal.yaml");
    for (deny_unknown, allowed) in [(false, true), (true, false)] {
        let s = TestServer::start(
            Policy {
                deny_unknown,
                ..deny()
            },
            Facts::none(),
        )
        .await;
        let resp = s
            .post_review(
                "/validate/nodepools",
                &review("NodePool", "CREATE", Some(&np), None),
            )
            .await;
        assert_eq!(
            resp["response"]["allowed"], allowed,
            "deny_unknown={deny_unknown}"
        );
        assert!(
            warnings(&resp)
                .iter()
                .any(|w| w.starts_with("StorageFactsMissing"))
        );
        s.stop().await;
    }
}

#[tokio::test]
async fn namespace_label_overrides_the_global_mode() {
    let snapshot = Snapshot {
        namespace_modes: namespace_modes(&[("strict", "deny"), ("lab", "off"), ("odd", "sometimes")]),
        ..Snapshot::fixed(cluster())
    };
    let s = TestServer::start_with(warn(), snapshot, |_| {}).await;
    let in_ns = |ns: &str| with(rwo_nodepool(), &[("/metadata/namespace", json!(ns))]);
    let resp = s
        .post_review(
            "/validate/nodepools",
            &review("NodePool", "CREATE", Some(&in_ns("strict")), None),
        )
        .await;
    assert_eq!(resp["response"]["allowed"], false, "deny label");
    let resp = s
        .post_review(
            "/validate/nodepools",
            &review("NodePool", "CREATE", Some(&in_ns("lab")), None),
        )
        .await;
    assert_eq!(resp["response"]["allowed"], true);
    assert!(warnings(&resp).is_empty(), "off label: not evaluated");
    for ns in ["clusters", "odd"] {
        let resp = s
            .post_review(
                "/validate/nodepools",
                &review("NodePool", "CREATE", Some(&in_ns(ns)), None),
            )
            .await;
        assert_eq!(resp["response"]["allowed"], true, "{ns}: global warn");
        assert_eq!(warnings(&resp).len(), 1);
    }
    s.stop().await;
}

#[tokio::test]
async fn object_annotation_downgrades_a_denial_with_a_reason() {
    let annotated = |ann: Value| with(rwo_nodepool(), &[("/metadata/annotations", ann)]);
    let with_reason = annotated(
        json!({"live-migration-guard.io/mode": "warn", "live-migration-guard.io/reason": "CI cluster, RWO accepted"}),
    );
    let no_reason = annotated(json!({"live-migration-guard.io/mode": "warn"}));

    let s = TestServer::start(
        Policy {
            allow_object_override: true,
            ..deny()
        },
        cluster(),
    )
    .await;
    let resp = s
        .post_review(
            "/validate/nodepools",
            &review("NodePool", "CREATE", Some(&with_reason), None),
        )
        .await;
    assert_eq!(resp["response"]["allowed"], true);
    assert_eq!(
        resp["response"]["auditAnnotations"]["override"],
        "warn: CI cluster, RWO accepted"
    );
    assert!(warnings(&resp)[0].starts_with("DisksNotLiveMigratable"));
    let resp = s
        .post_review(
            "/validate/nodepools",
            &review("NodePool", "CREATE", Some(&no_reason), None),
        )
        .await;
    assert_eq!(resp["response"]["allowed"], false);
    assert!(
        warnings(&resp)[0].contains("ignored without a live-migration-guard.io/reason"),
        "{:?}",
        warnings(&resp)
    );
    s.stop().await;

    let s = TestServer::start(deny(), cluster()).await;
    let resp = s
        .post_review(
            "/validate/nodepools",
            &review("NodePool", "CREATE", Some(&with_reason), None),
        )
        .await;
    assert_eq!(resp["response"]["allowed"], false, "overrides are off by default");
    assert!(warnings(&resp)[0].contains("does not allow object overrides"));
    s.stop().await;
}

#[tokio::test]
async fn warnings_fit_kube_apiserver_limits() {
    // 40 extra RWO volumes added by a JSON patch, plus host devices: many findings
    let mut ops = Vec::new();
    for i in 0..40 {
        ops.push(json!({"op": "add", "path": "/spec/dataVolumeTemplates/-", "value": {"metadata": {"name": format!("data{i}")}, "spec": {"storage": {"accessModes": ["ReadWriteOnce"], "storageClassName": "gp3-csi"}}}}));
        ops.push(json!({"op": "add", "path": "/spec/template/spec/volumes/-", "value": {"name": format!("data{i}"), "dataVolume": {"name": format!("data{i}")}}}));
    }
    let np = with(
        fixture_value("nodepool-kubevirt-gpu-hostdevices.yaml"),
        &[(
            "/metadata/annotations",
            json!({"hypershift.openshift.io/kubevirt-vm-jsonpatch": Value::from(ops).to_string(), "note": "données…"}),
        )],
    );
    let s = TestServer::start(warn(), cluster()).await;
    let resp = s
        .post_review(
            "/validate/nodepools",
            &review("NodePool", "CREATE", Some(&np), None),
        )
        .await;
    let w = warnings(&resp);
    assert!(w.len() > 10, "{}", w.len());
    assert!(
        w.iter()
            .all(|l| l.len() <= 256 && l.bytes().all(|b| (b' '..=b'~').contains(&b))),
        "{w:?}"
    );
    assert!(w.iter().map(String::len).sum::<usize>() <= 4096);
    assert!(
        w.last().unwrap().contains("more finding(s) not shown"),
        "{:?}",
        w.last()
    );
    s.stop().await;
}

#[tokio::test]
async fn bad_input_gets_clear_errors_and_the_server_keeps_serving() {
    let s = TestServer::start_with(warn(), Snapshot::fixed(cluster()), |c| {
        c.limits.body_bytes = 64 * 1024
    })
    .await;
    let client = s.client(false);
    let post = |path: &str, ct: &str, body: Vec<u8>| {
        client
            .post(s.url(path))
            .header("Content-Type", ct.to_owned())
            .body(body)
            .send()
    };
    let good = review("NodePool", "CREATE", Some(&rwo_nodepool()), None)
        .to_string()
        .into_bytes();
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        ("/validate/nodepools", "text/plain", good.clone(), 415, "Content-Type must be application/json"),
        ("/validate/nodepools", "application/json", b"{\"apiVersion\": ".to_vec(), 400, "malformed AdmissionReview"),
        ("/validate/nodepools", "application/json", br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(), 400, "AdmissionReview has no request"),
        ("/validate/nodepools", "application/json", br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"operation":"CREATE"}}"#.to_vec(), 400, "missing field `uid`"),
        ("/validate/nodepools", "application/json", br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"1","operation":"CREATE"}}"#.to_vec(), 400, "unsupported AdmissionReview apiVersion"),
        ("/validate/nodepools", "application/json", vec![b' '; 70 * 1024], 413, ""),
        ("/nope", "application/json", good.clone(), 404, "no such endpoint"),
        ("/v1/evaluate", "text/plain", b"x".to_vec(), 415, "application/yaml"),
        ("/v1/evaluate", "application/yaml", b"key: [unclosed".to_vec(), 400, "invalid YAML"),
        ("/v1/evaluate", "application/yaml", b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n".to_vec(), 400, "no NodePool or HostedCluster"),
    ];
    for (path, ct, body, code, want) in cases {
        let resp = post(path, ct, body).await.unwrap();
        assert_eq!(resp.status().as_u16(), code, "{path} {ct} {want}");
        let text = resp.text().await.unwrap();
        assert!(text.contains(want), "{path}: {text}");
    }
    let resp = client.get(s.url("/validate/nodepools")).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    // an object of an unexpected kind is allowed with a warning
    let mut wrong = review("NodePool", "CREATE", Some(&rwo_nodepool()), None);
    wrong["request"]["kind"]["kind"] = json!("MachineSet");
    let resp = s.post_review("/validate/nodepools", &wrong).await;
    assert_eq!(resp["response"]["allowed"], true);
    assert!(warnings(&resp)[0].contains("MachineSet sent to the NodePool webhook is not evaluated"));
    // and the server is still serving
    let resp = s
        .post_review(
            "/validate/nodepools",
            &review("NodePool", "CREATE", Some(&rwo_nodepool()), None),
        )
        .await;
    assert_eq!(resp["response"]["allowed"], true);
    let (_, metrics) = s.ops_get("/metrics").await;
    assert!(metrics.contains("decision=\"error\""));
    s.stop().await;
}

#[tokio::test]
async fn side_endpoint_evaluates_yaml_lists_and_reviews() {
    let s = TestServer::start(warn(), cluster()).await;
    let client = s.client(true);
    let yaml = format!(
        "{}---\n{}",
        fixture_text("nodepool-kubevirt-rwo-root-volume.yaml"),
        fixture_text("hostedcluster-kubevirt-manual-storage-mapping.yaml")
    );
    let list =
        json!({"apiVersion": "v1", "kind": "List", "items": [rwo_nodepool(), rwx_nodepool()]}).to_string();
    let admission_review = review("NodePool", "CREATE", Some(&rwo_nodepool()), None).to_string();
    for (ct, body, verdicts) in [
        ("application/yaml", yaml, vec!["NotMigratable", "NotMigratable"]),
        ("application/json", list, vec!["NotMigratable", "Migratable"]),
        (
            "application/json; charset=utf-8",
            admission_review,
            vec!["NotMigratable"],
        ),
    ] {
        let resp = client
            .post(s.url("/v1/evaluate"))
            .header("Content-Type", ct)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{ct}");
        let v: Value = resp.json().await.unwrap();
        let got: Vec<&str> = v["reports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["verdict"].as_str().unwrap())
            .collect();
        assert_eq!(got, verdicts, "{ct}");
    }
    s.stop().await;
}

#[tokio::test]
async fn ops_endpoints() {
    let s = TestServer::start(warn(), cluster()).await;
    s.post_review(
        "/validate/nodepools",
        &review("NodePool", "CREATE", Some(&rwo_nodepool()), None),
    )
    .await;
    assert_eq!(s.ops_get("/healthz").await.0, 200);
    assert_eq!(s.ops_get("/readyz").await, (200, "ok\n".into()));
    let (code, m) = s.ops_get("/metrics").await;
    assert_eq!(code, 200);
    for want in [
        "live_migration_guard_admission_requests_total{endpoint=\"/validate/nodepools\",kind=\"NodePool\",operation=\"CREATE\",verdict=\"NotMigratable\",decision=\"warn\",dry_run=\"false\"} 1",
        "live_migration_guard_admission_duration_seconds_bucket{le=\"0.0001\",endpoint=\"/validate/nodepools\"}",
        "live_migration_guard_in_flight_requests 0",
        "live_migration_guard_certificate_expiry_timestamp_seconds ",
    ] {
        assert!(m.contains(want), "missing {want} in\n{m}");
    }
    // not ready while facts are not synced
    s.snapshot
        .as_ref()
        .unwrap()
        .send_replace(std::sync::Arc::new(Snapshot {
            ready: false,
            not_ready_reason: Some("StorageClasses not synced".into()),
            ..Snapshot::default()
        }));
    assert_eq!(
        s.ops_get("/readyz").await,
        (503, "not ready: StorageClasses not synced\n".into())
    );
    s.stop().await;
}
