//! The 401/403/503 mapping, the caches and the report filter, against a scripted API server
//! (a tower service behind a real `kube::Client`). The real API server: tests/e2e_auth.rs.

use std::sync::Mutex as StdMutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Bytes;
use http_body_util::BodyExt;
use serde_json::{Value, json};

use super::*;
use crate::evaluate::Verdict;

/// What the scripted API server answers: `Ok(status JSON)` or `Err(HTTP code)`.
type Script = Arc<dyn Fn(&str, &Value) -> Result<Value, u16> + Send + Sync>;

struct Fake {
    calls: Arc<AtomicUsize>,
    seen: Arc<StdMutex<Vec<Value>>>,
    auth: KubeAuth,
}

fn fake(settings: KubeAuthSettings, script: Script) -> Fake {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(StdMutex::new(Vec::new()));
    let (c, s) = (calls.clone(), seen.clone());
    let service = tower::service_fn(move |req: axum::http::Request<kube::client::Body>| {
        let (c, s, script) = (c.clone(), s.clone(), script.clone());
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            let path = req.uri().path().to_owned();
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let sent: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            s.lock().unwrap().push(sent.clone());
            let (code, answer) = match script(&path, &sent) {
                Ok(status) => {
                    let mut obj = sent.clone();
                    obj["status"] = status;
                    (200, obj)
                }
                Err(code) => (
                    code,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                           "message": "scripted failure", "reason": "InternalError", "code": code}),
                ),
            };
            let resp = axum::http::Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(http_body_util::Full::new(Bytes::from(answer.to_string())))
                .unwrap();
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    let client = kube::Client::new(service, "default");
    Fake {
        calls,
        seen,
        auth: KubeAuth::new(client, settings, Arc::new(Metrics::default())),
    }
}

fn headers(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
    h
}

/// Tokens: `good-*` are user `*`; anything else is rejected. Access: from `allow`.
fn script(allow: fn(&str, &Value) -> bool) -> Script {
    Arc::new(move |path, sent| {
        if path.ends_with("/tokenreviews") {
            let token = sent["spec"]["token"].as_str().unwrap_or_default();
            Ok(match token.strip_prefix("good-") {
                Some(user) => json!({"authenticated": true,
                    "user": {"username": user, "uid": "u-1", "groups": ["system:authenticated"]},
                    "audiences": ["https://kubernetes.default.svc"]}),
                None => json!({"authenticated": false, "error": "invalid bearer token"}),
            })
        } else {
            let user = sent["spec"]["user"].as_str().unwrap_or_default();
            Ok(json!({"allowed": allow(user, &sent["spec"])}))
        }
    })
}

async fn body_of(resp: Response) -> (u16, Value) {
    let code = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (code, serde_json::from_slice(&bytes).unwrap())
}

const EVALUATE: Attributes = Attributes::NonResource {
    path: EVALUATE_PATH,
    verb: "post",
};

#[test]
fn bearer_tokens_are_read_as_the_api_server_reads_them() {
    let mut h = HeaderMap::new();
    assert_eq!(bearer(&h), None);
    for (value, want) in [
        ("Bearer abc", Some("abc")),
        ("bearer abc", Some("abc")),
        ("  Bearer   abc  ", Some("abc")),
        ("Bearer ", None),
        ("Basic abc", None),
        ("abc", None),
    ] {
        h.insert(header::AUTHORIZATION, value.parse().unwrap());
        assert_eq!(bearer(&h), want, "{value:?}");
    }
}

#[tokio::test]
async fn errors_map_to_401_403_503_with_a_status_body() {
    let (code, body) = body_of(AuthError::MissingToken { hint: "x" }.into_response()).await;
    assert_eq!(
        (code, body["kind"].as_str(), body["reason"].as_str()),
        (401, Some("Status"), Some("Unauthorized"))
    );
    let resp = AuthError::Unauthenticated("no".into()).into_response();
    assert_eq!(
        resp.headers().get(header::WWW_AUTHENTICATE).unwrap(),
        "Bearer realm=\"live-migration-guard\""
    );
    assert_eq!(resp.status(), 401);
    let forbidden = AuthError::Forbidden {
        user: "alice".into(),
        action: EVALUATE.describe(),
        reason: String::new(),
        grant: EVALUATE.grant(),
    };
    let (code, body) = body_of(forbidden.into_response()).await;
    assert_eq!(code, 403);
    assert_eq!(body["reason"], "Forbidden");
    assert_eq!(body["code"], 403);
    let message = body["message"].as_str().unwrap();
    assert!(
        message.starts_with("forbidden: User \"alice\" cannot post non-resource URL \"/v1/evaluate\"; grant it with a ClusterRole rule"),
        "{message}"
    );
    assert!(
        message.contains("--non-resource-url=/v1/evaluate --verb=post"),
        "{message}"
    );
    let (code, body) = body_of(
        AuthError::Unavailable {
            api: "tokenreviews",
            message: "connection refused".into(),
        }
        .into_response(),
    )
    .await;
    assert_eq!((code, body["reason"].as_str()), (503, Some("ServiceUnavailable")));
}

#[tokio::test]
async fn a_valid_token_and_an_allowed_review_are_cached_for_the_ttl() {
    let f = fake(KubeAuthSettings::default(), script(|user, _| user == "bob"));
    let bob = f.auth.authenticate(&headers("good-bob")).await.unwrap();
    assert_eq!(bob.name, "bob");
    assert_eq!(bob.groups, ["system:authenticated"]);
    f.auth.require(&bob, &EVALUATE).await.unwrap();
    assert_eq!(f.calls.load(Ordering::SeqCst), 2);
    for _ in 0..5 {
        let again = f.auth.authenticate(&headers("good-bob")).await.unwrap();
        f.auth.require(&again, &EVALUATE).await.unwrap();
    }
    assert_eq!(f.calls.load(Ordering::SeqCst), 2, "served from the caches");
    let text = f.auth.metrics.encode();
    assert!(
        text.contains("live_migration_guard_auth_cache_lookups_total{cache=\"token\",result=\"hit\"} 5"),
        "{text}"
    );
    assert!(
        text.contains("live_migration_guard_auth_cache_lookups_total{cache=\"access\",result=\"miss\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("live_migration_guard_auth_api_requests_total{api=\"tokenreviews\",result=\"ok\"} 1"),
        "{text}"
    );
    // The SubjectAccessReview carries the user as the TokenReview named it.
    let sar = f.seen.lock().unwrap()[1].clone();
    assert_eq!(sar["spec"]["user"], "bob");
    assert_eq!(sar["spec"]["uid"], "u-1");
    assert_eq!(
        sar["spec"]["nonResourceAttributes"],
        json!({"path": "/v1/evaluate", "verb": "post"})
    );
}

#[tokio::test]
async fn a_denied_review_is_403_naming_the_permission_and_cached_for_the_negative_ttl() {
    let settings = KubeAuthSettings {
        negative_ttl: Duration::from_millis(200),
        ..Default::default()
    };
    let f = fake(settings, script(|_, _| false));
    let alice = f.auth.authenticate(&headers("good-alice")).await.unwrap();
    let e = f.auth.require(&alice, &EVALUATE).await.unwrap_err();
    assert_eq!(e.status_code(), 403);
    assert!(
        e.to_string()
            .starts_with("forbidden: User \"alice\" cannot post non-resource URL \"/v1/evaluate\""),
        "{e}"
    );
    let _ = f.auth.require(&alice, &EVALUATE).await.unwrap_err();
    assert_eq!(f.calls.load(Ordering::SeqCst), 2, "the denial is cached");
    tokio::time::sleep(Duration::from_millis(250)).await;
    let _ = f.auth.require(&alice, &EVALUATE).await.unwrap_err();
    assert_eq!(
        f.calls.load(Ordering::SeqCst),
        3,
        "asked again after the negative TTL"
    );
}

#[tokio::test]
async fn an_invalid_or_missing_token_is_401_and_the_rejection_is_cached() {
    let f = fake(KubeAuthSettings::default(), script(|_, _| true));
    let e = f.auth.authenticate(&HeaderMap::new()).await.unwrap_err();
    assert_eq!(e.status_code(), 401);
    assert_eq!(f.calls.load(Ordering::SeqCst), 0, "no review without a token");
    for _ in 0..3 {
        let e = f.auth.authenticate(&headers("forged")).await.unwrap_err();
        assert_eq!(e.status_code(), 401);
        assert!(e.to_string().contains("invalid bearer token"), "{e}");
    }
    assert_eq!(f.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn api_server_errors_are_503_and_never_cached() {
    let f = fake(KubeAuthSettings::default(), Arc::new(|_, _| Err(500)));
    for n in 1..=2 {
        let e = f.auth.authenticate(&headers("good-bob")).await.unwrap_err();
        assert_eq!(e.status_code(), 503, "{e}");
        assert!(e.to_string().contains("tokenreviews failed"), "{e}");
        assert_eq!(f.calls.load(Ordering::SeqCst), n, "an error is not cached");
    }
    // Our own ServiceAccount without system:auth-delegator: the 503 says what to bind.
    let f = fake(KubeAuthSettings::default(), Arc::new(|_, _| Err(403)));
    let e = f.auth.authenticate(&headers("good-bob")).await.unwrap_err();
    assert_eq!(e.status_code(), 503);
    assert!(e.to_string().contains("system:auth-delegator"), "{e}");
    // An allowed token, then the SubjectAccessReview fails: 503, not an allow.
    let f = fake(
        KubeAuthSettings::default(),
        Arc::new(|path, sent| {
            if path.ends_with("/tokenreviews") {
                script(|_, _| true)(path, sent)
            } else {
                Err(503)
            }
        }),
    );
    let bob = f.auth.authenticate(&headers("good-bob")).await.unwrap();
    assert_eq!(
        f.auth.require(&bob, &EVALUATE).await.unwrap_err().status_code(),
        503
    );
}

#[tokio::test]
async fn audiences_are_sent_and_a_token_for_another_audience_is_refused() {
    let settings = KubeAuthSettings {
        audiences: vec!["live-migration-guard".into()],
        ..Default::default()
    };
    let f = fake(settings, script(|_, _| true));
    let e = f.auth.authenticate(&headers("good-bob")).await.unwrap_err();
    assert_eq!(e.status_code(), 401);
    assert!(e.to_string().contains("not [\"live-migration-guard\"]"), "{e}");
    assert_eq!(
        f.seen.lock().unwrap()[0]["spec"]["audiences"],
        json!(["live-migration-guard"])
    );
}

fn report(kind: &'static str, ns: &str, name: &str) -> Report {
    Report {
        api_version: "hypershift.openshift.io/v1beta1",
        kind,
        namespace: Some(ns.into()),
        name: name.into(),
        verdict: Verdict::NotMigratable,
        condition: None,
        findings: Vec::new(),
    }
}

fn names(r: &Reports) -> Vec<String> {
    r.reports
        .iter()
        .map(|r| format!("{}/{}/{}", r.kind, r.namespace.as_deref().unwrap_or(""), r.name))
        .collect()
}

#[tokio::test]
async fn reports_are_filtered_by_list_permission_per_namespace_and_kind() {
    // ops: every NodePool cluster-wide; team-a: both kinds in namespace a only; nobody: nothing.
    let f = fake(
        KubeAuthSettings::default(),
        script(|user, spec| {
            let ra = &spec["resourceAttributes"];
            assert_eq!(ra["group"], "hypershift.openshift.io");
            assert_eq!(ra["verb"], "list");
            match user {
                "ops" => ra["resource"] == "nodepools",
                "team-a" => ra["namespace"] == "a",
                _ => false,
            }
        }),
    );
    let all = Reports {
        reports: vec![
            report("HostedCluster", "a", "hc"),
            report("HostedCluster", "b", "hc"),
            report("NodePool", "a", "np1"),
            report("NodePool", "a", "np2"),
            report("NodePool", "b", "np"),
            report("NodePool", "c", "np"),
        ],
    };
    let user = |name: &str| User {
        name: name.into(),
        uid: None,
        groups: vec![],
        extra: None,
    };
    let ops = f.auth.visible_reports(&user("ops"), &all).await.unwrap();
    assert_eq!(
        names(&ops),
        [
            "NodePool/a/np1",
            "NodePool/a/np2",
            "NodePool/b/np",
            "NodePool/c/np"
        ]
    );
    let a = f.auth.visible_reports(&user("team-a"), &all).await.unwrap();
    assert_eq!(
        names(&a),
        ["HostedCluster/a/hc", "NodePool/a/np1", "NodePool/a/np2"]
    );
    let before = f.calls.load(Ordering::SeqCst);
    let none = f.auth.visible_reports(&user("nobody"), &all).await.unwrap();
    assert!(none.reports.is_empty());
    // two cluster-wide checks, then one per namespace and kind: hostedclusters a, b;
    // nodepools a, b, c
    assert_eq!(f.calls.load(Ordering::SeqCst) - before, 2 + 5);
    let again = f.auth.visible_reports(&user("nobody"), &all).await.unwrap();
    assert!(again.reports.is_empty());
    assert_eq!(
        f.calls.load(Ordering::SeqCst) - before,
        7,
        "the second answer is cached"
    );
}

#[tokio::test]
async fn a_failing_review_fails_the_whole_report() {
    let f = fake(
        KubeAuthSettings::default(),
        Arc::new(|_, sent| {
            if sent["spec"]["resourceAttributes"]["namespace"] == "b" {
                Err(500)
            } else {
                Ok(json!({"allowed": true, "denied": false}))
            }
        }),
    );
    let all = Reports {
        reports: vec![report("NodePool", "a", "np"), report("NodePool", "b", "np")],
    };
    // cluster-wide is allowed here: no per-namespace review, so no error
    let u = User {
        name: "x".into(),
        uid: None,
        groups: vec![],
        extra: None,
    };
    assert_eq!(f.auth.visible_reports(&u, &all).await.unwrap().reports.len(), 2);
    let f = fake(
        KubeAuthSettings::default(),
        Arc::new(
            |_, sent| match sent["spec"]["resourceAttributes"]["namespace"].as_str() {
                Some("b") => Err(500),
                _ => Ok(json!({"allowed": false})),
            },
        ),
    );
    let e = f.auth.visible_reports(&u, &all).await.unwrap_err();
    assert_eq!(e.status_code(), 503, "never a partial list");
}

#[test]
fn a_static_token_file_is_reloaded_when_it_changes_and_a_broken_update_keeps_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, "first\n").unwrap();
    let metrics = Arc::new(Metrics::default());
    let t = StaticToken::from_file(path.clone(), Duration::ZERO, metrics.clone()).unwrap();
    assert!(t.check(&headers("first")).is_ok());
    assert_eq!(t.check(&headers("second")).unwrap_err().status_code(), 401);
    assert_eq!(t.check(&HeaderMap::new()).unwrap_err().status_code(), 401);
    // a Secret update: a new file swapped in by rename (new inode), as the kubelet does
    let tmp = dir.path().join("token.new");
    std::fs::write(&tmp, "second").unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    assert!(t.check(&headers("second")).is_ok());
    assert!(
        t.check(&headers("first")).is_err(),
        "the old token no longer works"
    );
    std::fs::write(&path, "  \n").unwrap();
    assert!(
        t.check(&headers("second")).is_ok(),
        "an empty update keeps the token in force"
    );
    std::fs::remove_file(&path).unwrap();
    assert!(t.check(&headers("second")).is_ok(), "so does a missing file");
    let text = metrics.encode();
    assert!(
        text.contains("live_migration_guard_auth_token_reloads_total{result=\"reloaded\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("live_migration_guard_auth_token_reloads_total{result=\"failed\"}"),
        "{text}"
    );
    // An empty file at start is an error naming the file.
    std::fs::write(&path, "").unwrap();
    let e = StaticToken::from_file(path.clone(), Duration::ZERO, metrics).unwrap_err();
    assert!(e.to_string().contains("the token file is empty"), "{e}");
}

#[test]
fn the_token_file_is_looked_at_no_more_often_than_the_check_interval() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, "first").unwrap();
    let t = StaticToken::from_file(
        path.clone(),
        Duration::from_secs(3600),
        Arc::new(Metrics::default()),
    )
    .unwrap();
    std::fs::write(&path, "second-longer").unwrap();
    assert!(
        t.check(&headers("first")).is_ok(),
        "not re-read before the interval"
    );
}

/// The in-process cost of an authorized call on a cache hit (token SHA-256 and lookup, the
/// access review's key and lookup), below what an HTTP measurement on a shared machine can
/// resolve. `cargo test --release --lib cache_hit_cost -- --ignored --nocapture`.
#[tokio::test]
#[ignore = "a measurement: run it on purpose"]
async fn cache_hit_cost() {
    let f = fake(KubeAuthSettings::default(), script(|_, _| true));
    // A ServiceAccount JWT is about 1 KB.
    let token = format!("good-{}", "x".repeat(1000));
    let h = headers(&token);
    let user = f.auth.authenticate(&h).await.unwrap();
    f.auth.require(&user, &EVALUATE).await.unwrap();
    let n = 100_000u32;
    let t = Instant::now();
    for _ in 0..n {
        let user = f.auth.authenticate(&h).await.unwrap();
        f.auth.require(&user, &EVALUATE).await.unwrap();
    }
    let per = t.elapsed() / n;
    assert_eq!(f.calls.load(Ordering::SeqCst), 2, "all hits");
    println!("cache hit: {per:?} per authorized call (authenticate + require), {n} calls");
}
