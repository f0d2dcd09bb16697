//! A corpus of malformed inputs (issue: reliability): each gets its documented status and a
//! message that names the problem, and the server keeps serving afterwards.
//!
//! Documented behaviour: an AdmissionReview the server cannot read → 400 with a Status
//! body; a readable review whose object has a field of the wrong type → allowed with a
//! warning naming the field (the API server validated the object against the CRD, so we do
//! not block on our own reading); wrong Content-Type → 415; over the body limit → 413;
//! side endpoint: unreadable YAML/JSON or objects → 400 naming the document and field.

mod common;

use common::server::*;
use common::*;
use live_migration_guard::admission::Policy;
use live_migration_guard::facts::{Facts, Snapshot};
use serde_json::{Value, json};

const NP: &str = "/validate/nodepools";
const EVAL: &str = "/v1/evaluate";
const JSON: &str = "application/json";
const YAML: &str = "application/yaml";

/// The expected answer: HTTP status, and a fragment of the body (for 200: of a warning).
struct Case {
    name: &'static str,
    path: &'static str,
    content_type: &'static str,
    body: Vec<u8>,
    status: u16,
    expect: String,
}

fn case(
    name: &'static str,
    path: &'static str,
    ct: &'static str,
    body: impl Into<Vec<u8>>,
    status: u16,
    expect: &str,
) -> Case {
    Case {
        name,
        path,
        content_type: ct,
        body: body.into(),
        status,
        expect: expect.to_owned(),
    }
}

fn np() -> Value {
    fixture_value("nodepool-kubevirt-rwo-root-volume.yaml")
}

/// A CREATE review of the NodePool with `edits` applied to the object.
fn object_case(name: &'static str, edits: &[(&str, Value)], expect: &str) -> Case {
    let body = review("NodePool", "CREATE", Some(&with(np(), edits)), None).to_string();
    case(name, NP, JSON, body, 200, expect)
}

/// A review with `edits` applied to the review itself.
fn review_case(name: &'static str, edits: &[(&str, Value)], status: u16, expect: &str) -> Case {
    let body = with(review("NodePool", "CREATE", Some(&np()), None), edits).to_string();
    case(name, NP, JSON, body, status, expect)
}

fn nested(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

fn corpus() -> Vec<Case> {
    let good = review("NodePool", "CREATE", Some(&np()), None).to_string();
    let alias_bomb = "a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]\n";
    let mut many_ops = Vec::new();
    for i in 0..300 {
        many_ops.push(json!({"op": "add", "path": "/spec/dataVolumeTemplates/-", "value": {"metadata": {"name": format!("d{i}")}, "spec": {"storage": {"accessModes": ["ReadWriteOnce"]}}}}));
        many_ops.push(json!({"op": "add", "path": "/spec/template/spec/volumes/-", "value": {"name": format!("d{i}"), "dataVolume": {"name": format!("d{i}")}}}));
    }
    let mut huge_body = good.clone().into_bytes();
    huge_body.resize(8 * 1024 * 1024, b' ');
    vec![
        // the AdmissionReview itself
        case(
            "empty body",
            NP,
            JSON,
            "",
            400,
            "malformed AdmissionReview: EOF while parsing",
        ),
        case(
            "truncated JSON",
            NP,
            JSON,
            &good[..good.len() / 2],
            400,
            "malformed AdmissionReview: EOF while parsing",
        ),
        case(
            "not JSON",
            NP,
            JSON,
            "{apiVersion: v1}",
            400,
            "malformed AdmissionReview: key must be a string",
        ),
        case(
            "invalid UTF-8",
            NP,
            JSON,
            b"{\"apiVersion\": \"admission.k8s.io/v1\xff\"}".to_vec(),
            400,
            "malformed AdmissionReview",
        ),
        case(
            "top-level array",
            NP,
            JSON,
            "[]",
            400,
            "malformed AdmissionReview: expected a JSON object",
        ),
        // 100,000 levels of nesting in fields the rules do not read: skipped without recursion
        case(
            "deeply nested unknown fields",
            NP,
            JSON,
            good.replacen(
                "\"spec\":{",
                &format!("\"spec\":{{\"extra\":{},", nested(100_000)),
                1,
            ),
            200,
            "DisksNotLiveMigratable",
        ),
        // a byte that is not UTF-8 in a string no rule reads: evaluated all the same
        case(
            "invalid UTF-8 in an unread field",
            NP,
            JSON,
            {
                let (head, tail) = good.split_once("\"spec\":{").unwrap();
                [
                    head.as_bytes(),
                    b"\"spec\":{\"extra\":\"caf\xe9\",",
                    tail.as_bytes(),
                ]
                .concat()
            },
            200,
            "DisksNotLiveMigratable",
        ),
        review_case(
            "wrong apiVersion",
            &[("/apiVersion", json!("admission.k8s.io/v1beta1"))],
            400,
            "unsupported AdmissionReview apiVersion \"admission.k8s.io/v1beta1\"",
        ),
        review_case(
            "wrong kind",
            &[("/kind", json!("ConversionReview"))],
            400,
            "expected kind AdmissionReview, got \"ConversionReview\"",
        ),
        review_case(
            "no request",
            &[("/request", Value::Null)],
            400,
            "AdmissionReview has no request",
        ),
        case(
            "request without uid",
            NP,
            JSON,
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"operation":"CREATE"}}"#,
            400,
            "missing field `uid`",
        ),
        review_case(
            "uid of the wrong type",
            &[("/request/uid", json!(42))],
            400,
            "invalid type: integer `42`, expected a string",
        ),
        review_case(
            "unknown operation",
            &[("/request/operation", json!("PATCH"))],
            400,
            "unknown variant `PATCH`",
        ),
        review_case(
            "dryRun not a boolean",
            &[("/request/dryRun", json!("yes"))],
            400,
            "invalid type: string \"yes\", expected a boolean",
        ),
        review_case(
            "CREATE without object",
            &[("/request/object", Value::Null)],
            400,
            "request.object is required for CREATE",
        ),
        case(
            "wrong content type",
            NP,
            "text/plain",
            good.clone(),
            415,
            "Content-Type must be application/json",
        ),
        case("body over the limit", NP, JSON, huge_body, 413, ""),
        // every field the rules read, with the wrong type: allowed, the warning names the field
        review_case(
            "object is a string",
            &[("/request/object", json!("NodePool"))],
            200,
            "not evaluated: object: invalid type: string \"NodePool\", expected struct NodePool",
        ),
        object_case(
            "replicas a string",
            &[("/spec/replicas", json!("three"))],
            "not evaluated: object field `spec.replicas`",
        ),
        object_case(
            "replicas beyond i32",
            &[("/spec/replicas", json!(99_999_999_999_999_999u64))],
            "not evaluated: object field `spec.replicas`: invalid value",
        ),
        object_case(
            "platform type a number",
            &[("/spec/platform/type", json!(5))],
            "field `spec.platform.type`",
        ),
        object_case(
            "kubevirt a string",
            &[("/spec/platform/kubevirt", json!("yes"))],
            "field `spec.platform.kubevirt`",
        ),
        object_case(
            "accessModes not a list",
            &[(
                "/spec/platform/kubevirt/rootVolume/persistent/accessModes",
                json!("ReadWriteMany"),
            )],
            "field `spec.platform.kubevirt.rootVolume.persistent.accessModes`",
        ),
        object_case(
            "accessModes item a number",
            &[(
                "/spec/platform/kubevirt/rootVolume/persistent/accessModes",
                json!([1]),
            )],
            "field `spec.platform.kubevirt.rootVolume.persistent.accessModes[0]`",
        ),
        object_case(
            "unknown volumeMode",
            &[(
                "/spec/platform/kubevirt/rootVolume/persistent/volumeMode",
                json!("Tape"),
            )],
            "unknown variant `Tape`, expected `Filesystem` or `Block`",
        ),
        object_case(
            "storageClass a number",
            &[(
                "/spec/platform/kubevirt/rootVolume/persistent/storageClass",
                json!(5),
            )],
            "field `spec.platform.kubevirt.rootVolume.persistent.storageClass`",
        ),
        object_case(
            "attachDefaultNetwork a string",
            &[("/spec/platform/kubevirt/attachDefaultNetwork", json!("yes"))],
            "field `spec.platform.kubevirt.attachDefaultNetwork`",
        ),
        object_case(
            "hostDevices a map",
            &[("/spec/platform/kubevirt/hostDevices", json!({}))],
            "field `spec.platform.kubevirt.hostDevices`",
        ),
        object_case(
            "hostDevice count a string",
            &[(
                "/spec/platform/kubevirt/hostDevices",
                json!([{"deviceName": "gpu", "count": "two"}]),
            )],
            "field `spec.platform.kubevirt.hostDevices[0].count`",
        ),
        object_case(
            "additionalNetworks a string",
            &[("/spec/platform/kubevirt/additionalNetworks", json!("ns/nad"))],
            "field `spec.platform.kubevirt.additionalNetworks`",
        ),
        object_case(
            "annotation value a number",
            &[("/metadata/annotations", json!({"a": 5}))],
            "field `metadata.annotations.a`",
        ),
        object_case(
            "huge float",
            &[("/spec/replicas", json!(1e300))],
            "field `spec.replicas`",
        ),
        object_case(
            "nested lists where devices belong",
            &[(
                "/spec/platform/kubevirt/hostDevices",
                serde_json::from_str::<Value>(&nested(100)).unwrap(),
            )],
            "field `spec.platform.kubevirt.hostDevices[0]",
        ),
        // valid shape, bad content: evaluated, the finding says so
        object_case(
            "JSON patch not JSON",
            &[(
                "/metadata/annotations",
                json!({"hypershift.openshift.io/kubevirt-vm-jsonpatch": "[{op: add"}),
            )],
            "InvalidKubevirtVMJSONPatch",
        ),
        object_case(
            "host device count near 2^31",
            &[(
                "/spec/platform/kubevirt/hostDevices",
                json!([{"deviceName": "gpu", "count": 2_147_483_647}]),
            )],
            "HostDeviceNotLiveMigratable",
        ),
        object_case(
            "enormous number of findings",
            &[(
                "/metadata/annotations",
                json!({"hypershift.openshift.io/kubevirt-vm-jsonpatch": Value::from(many_ops).to_string()}),
            )],
            "more finding(s) not shown",
        ),
        // the side endpoint
        case("YAML alias bomb", EVAL, YAML, alias_bomb, 400, "budget breached"),
        case(
            "invalid YAML",
            EVAL,
            YAML,
            "kind: [NodePool\n",
            400,
            "invalid YAML",
        ),
        case(
            "empty YAML",
            EVAL,
            YAML,
            "",
            400,
            "no NodePool or HostedCluster in the body",
        ),
        case(
            "YAML scalar",
            EVAL,
            YAML,
            "just text\n",
            400,
            "document 1: expected a Kubernetes object",
        ),
        case(
            "invalid UTF-8 YAML",
            EVAL,
            YAML,
            b"kind: caf\xe9\n".to_vec(),
            400,
            "not valid UTF-8",
        ),
        case(
            "second document broken",
            EVAL,
            YAML,
            format!(
                "{}---\napiVersion: hypershift.openshift.io/v1beta1\nkind: NodePool\nmetadata: {{name: x}}\nspec: {{replicas: many, platform: {{type: KubeVirt}}}}\n",
                fixture_text("nodepool-kubevirt-minimal.yaml")
            ),
            400,
            "request body document 2: NodePool x: field `spec.replicas`",
        ),
        case(
            "List items not a list",
            EVAL,
            JSON,
            r#"{"apiVersion":"v1","kind":"List","items":{"a":1}}"#,
            400,
            "`items` of a List must be a sequence",
        ),
        case(
            "review without object",
            EVAL,
            JSON,
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"1"}}"#,
            400,
            "AdmissionReview has no request.object",
        ),
        case(
            "deeply nested JSON",
            EVAL,
            JSON,
            nested(100_000),
            400,
            "recursion limit exceeded",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_inputs_get_clear_answers_and_the_server_keeps_serving() {
    // The corpus checks answers, not speed: a debug build on a loaded machine may take longer
    // than the 4 s request deadline to refuse the alias bomb, which would answer 503.
    let s = TestServer::start_with(Policy::default(), Snapshot::fixed(Facts::none()), |c| {
        c.limits.request_timeout = std::time::Duration::from_secs(60);
    })
    .await;
    let client = s.client(false);
    let corpus = corpus();
    assert!(corpus.len() >= 30, "corpus of {}", corpus.len());
    for c in &corpus {
        let resp = client
            .post(s.url(c.path))
            .header("Content-Type", c.content_type)
            .body(c.body.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", c.name));
        assert_eq!(resp.status().as_u16(), c.status, "{}", c.name);
        let text = resp.text().await.unwrap();
        if c.status == 200 {
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["response"]["allowed"], true, "{}", c.name);
            let warnings: Vec<&str> = v["response"]["warnings"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            assert!(
                warnings.iter().any(|w| w.contains(&c.expect)),
                "{}: {warnings:?}",
                c.name
            );
            assert!(warnings.iter().all(|w| w.len() <= 256), "{}", c.name);
        } else if c.status == 413 {
            assert!(text.contains("length limit exceeded"), "{}: {text}", c.name);
        } else {
            let v: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: Status body: {e}: {text}", c.name));
            assert_eq!(
                (v["kind"].as_str(), v["code"].as_u64()),
                (Some("Status"), Some(u64::from(c.status))),
                "{}",
                c.name
            );
            let message = v["message"].as_str().unwrap_or_default();
            assert!(message.contains(&c.expect), "{}: {message}", c.name);
        }
    }
    // still serving
    assert_eq!(s.ops_get("/healthz").await.0, 200);
    let good = review("NodePool", "CREATE", Some(&np()), None);
    let v = s.post_review(NP, &good).await;
    assert_eq!(v["response"]["allowed"], true);
    s.stop().await;
}
