//! A small, honest fake kube-apiserver on loopback HTTP: it speaks the real list/watch
//! protocol to the real `kube` client and reflectors.
//!
//! - `GET <collection>` lists: `{"kind": "<Kind>List", "metadata": {"resourceVersion"}, "items"}`;
//!   `labelSelector` supports `key` and `key=value` terms.
//! - `GET <collection>?watch=true&resourceVersion=N` streams newline-delimited
//!   `{"type": ADDED|MODIFIED|DELETED|BOOKMARK|ERROR, "object"}` events after N; a
//!   resourceVersion older than the last compaction gets an `ERROR` event with `410 Gone`.
//! - Unregistered collections (a CRD that is not installed) answer `404`.
//! - `GET /api/v1/namespaces/<ns>/secrets/<name>` for Secrets (or `403` when forbidden).
//! - `stop()` ends every watch and closes the listener: the "API server goes away".

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Collection {
    api_version: String,
    kind: String,
    objects: BTreeMap<(String, String), Value>,
    /// (resourceVersion, type, object) in order.
    events: Vec<(u64, &'static str, Value)>,
    compacted: u64,
}

#[derive(Default)]
struct Inner {
    rv: u64,
    collections: HashMap<String, Collection>,
    secrets: HashMap<(String, String), Value>,
    secrets_forbidden: bool,
    /// Watches are refused (503) and running ones end: a network partition.
    watches_blocked: bool,
    /// New watches are answered with this status (running ones end), e.g. 500 or 403.
    watches_refused: Option<u16>,
    requests: Vec<String>,
}

#[derive(Clone)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    rv: watch::Sender<u64>,
    stop: CancellationToken,
}

pub struct FakeApiServer {
    pub addr: SocketAddr,
    shared: Shared,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// An idle watch sends a BOOKMARK this often (short, so tests exercise them).
const BOOKMARK_EVERY: Duration = Duration::from_millis(300);

pub const STORAGE_CLASSES: &str = "/apis/storage.k8s.io/v1/storageclasses";
pub const STORAGE_PROFILES: &str = "/apis/cdi.kubevirt.io/v1beta1/storageprofiles";
pub const KUBEVIRTS: &str = "/apis/kubevirt.io/v1/kubevirts";
pub const HOSTED_CLUSTERS: &str = "/apis/hypershift.openshift.io/v1beta1/hostedclusters";
pub const NODEPOOLS: &str = "/apis/hypershift.openshift.io/v1beta1/nodepools";
pub const NAMESPACES: &str = "/api/v1/namespaces";

impl FakeApiServer {
    /// Starts with the core collections (StorageClasses, Namespaces) registered.
    pub async fn start() -> Self {
        let (rv, _) = watch::channel(0);
        let shared = Shared {
            inner: Arc::default(),
            rv,
            stop: CancellationToken::new(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().fallback(handle).with_state(shared.clone());
        let stop = shared.stop.clone();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
                .unwrap();
        });
        let s = Self {
            addr,
            shared,
            task: Some(task),
        };
        s.register(STORAGE_CLASSES, "storage.k8s.io/v1", "StorageClass");
        s.register(NAMESPACES, "v1", "Namespace");
        s
    }

    /// Installs a collection (like a CRD becoming available).
    pub fn register(&self, path: &str, api_version: &str, kind: &str) {
        let mut inner = self.shared.inner.lock().unwrap();
        inner
            .collections
            .entry(path.to_owned())
            .or_insert_with(|| Collection {
                api_version: api_version.into(),
                kind: kind.into(),
                ..Collection::default()
            });
    }

    /// Registers every collection the webhook watches.
    pub fn register_all(&self) {
        self.register(STORAGE_PROFILES, "cdi.kubevirt.io/v1beta1", "StorageProfile");
        self.register(KUBEVIRTS, "kubevirt.io/v1", "KubeVirt");
        self.register(
            HOSTED_CLUSTERS,
            "hypershift.openshift.io/v1beta1",
            "HostedCluster",
        );
        self.register(NODEPOOLS, "hypershift.openshift.io/v1beta1", "NodePool");
    }

    /// Creates or replaces an object (ADDED or MODIFIED event).
    pub fn apply(&self, path: &str, mut object: Value) {
        let mut inner = self.shared.inner.lock().unwrap();
        inner.rv += 1;
        let rv = inner.rv;
        let coll = inner
            .collections
            .get_mut(path)
            .unwrap_or_else(|| panic!("{path} not registered"));
        object["apiVersion"] = json!(coll.api_version);
        object["kind"] = json!(coll.kind);
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        let key = key_of(&object);
        let kind = if coll.objects.contains_key(&key) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        if kind == "ADDED" && object["metadata"]["creationTimestamp"].is_null() {
            object["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        coll.objects.insert(key, object.clone());
        coll.events.push((rv, kind, object));
        drop(inner);
        self.shared.rv.send_replace(rv);
    }

    pub fn delete(&self, path: &str, namespace: &str, name: &str) {
        let mut inner = self.shared.inner.lock().unwrap();
        inner.rv += 1;
        let rv = inner.rv;
        let coll = inner.collections.get_mut(path).unwrap();
        if let Some(mut obj) = coll.objects.remove(&(namespace.to_owned(), name.to_owned())) {
            obj["metadata"]["resourceVersion"] = json!(rv.to_string());
            coll.events.push((rv, "DELETED", obj));
        }
        drop(inner);
        self.shared.rv.send_replace(rv);
    }

    /// Forgets history: watches from an older resourceVersion get `410 Gone`.
    pub fn compact(&self) {
        let mut inner = self.shared.inner.lock().unwrap();
        let rv = inner.rv;
        for c in inner.collections.values_mut() {
            c.compacted = rv;
            c.events.clear();
        }
    }

    /// Ends running watches and refuses new ones (503) until unblocked.
    pub fn block_watches(&self, blocked: bool) {
        self.shared.inner.lock().unwrap().watches_blocked = blocked;
        // wake the streams so they notice
        let rv = *self.shared.rv.borrow();
        self.shared.rv.send_replace(rv);
    }

    /// Ends running watches and answers new ones with `code` (e.g. 500: kube's client retries
    /// 503 itself, so an error the watcher sees at once needs another code) until `None`.
    pub fn refuse_watches(&self, code: Option<u16>) {
        self.shared.inner.lock().unwrap().watches_refused = code;
        let rv = *self.shared.rv.borrow();
        self.shared.rv.send_replace(rv);
    }

    pub fn set_secret(&self, namespace: &str, name: &str, data: BTreeMap<String, Vec<u8>>) {
        let secret = k8s_openapi::api::core::v1::Secret {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                ..Default::default()
            },
            data: Some(
                data.into_iter()
                    .map(|(k, v)| (k, k8s_openapi::ByteString(v)))
                    .collect(),
            ),
            ..Default::default()
        };
        let mut value = serde_json::to_value(secret).unwrap();
        value["apiVersion"] = json!("v1");
        value["kind"] = json!("Secret");
        self.shared
            .inner
            .lock()
            .unwrap()
            .secrets
            .insert((namespace.into(), name.into()), value);
    }

    pub fn forbid_secrets(&self, forbidden: bool) {
        self.shared.inner.lock().unwrap().secrets_forbidden = forbidden;
    }

    /// Paths and queries received so far.
    pub fn requests(&self) -> Vec<String> {
        self.shared.inner.lock().unwrap().requests.clone()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(self.url().parse().unwrap());
        kube::Client::try_from(config).unwrap()
    }

    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\nusers:\n- name: fake\n  user:\n    token: fake-token\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\ncurrent-context: fake\n",
            self.url()
        )
    }

    /// The API server goes away: watches end and new connections are refused.
    pub async fn stop(&mut self) {
        self.shared.stop.cancel();
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.shared.stop.cancel();
    }
}

fn key_of(object: &Value) -> (String, String) {
    let s = |k: &str| object["metadata"][k].as_str().unwrap_or("").to_owned();
    (s("namespace"), s("name"))
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code})
}

fn json_response(code: StatusCode, v: &Value) -> Response {
    (code, [("content-type", "application/json")], v.to_string()).into_response()
}

fn matches_selector(object: &Value, selector: Option<&str>) -> bool {
    let Some(sel) = selector.filter(|s| !s.is_empty()) else {
        return true;
    };
    let labels = &object["metadata"]["labels"];
    sel.split(',').all(|term| match term.split_once('=') {
        Some((k, v)) => labels[k].as_str() == Some(v),
        None => labels.get(term).is_some(),
    })
}

async fn handle(State(s): State<Shared>, uri: Uri) -> Response {
    let path = uri.path().to_owned();
    let query: HashMap<String, String> = uri.query().map(url_pairs).unwrap_or_default();
    s.inner.lock().unwrap().requests.push(uri.to_string());

    // Secrets: GET /api/v1/namespaces/<ns>/secrets/<name>
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if let ["api", "v1", "namespaces", ns, "secrets", name] = parts.as_slice() {
        let inner = s.inner.lock().unwrap();
        if inner.secrets_forbidden {
            return json_response(
                StatusCode::FORBIDDEN,
                &status(
                    403,
                    "Forbidden",
                    &format!(
                        "secrets \"{name}\" is forbidden: User \"system:serviceaccount:lmg:lmg\" cannot get resource \"secrets\" in the namespace \"{ns}\""
                    ),
                ),
            );
        }
        return match inner.secrets.get(&((*ns).to_owned(), (*name).to_owned())) {
            Some(secret) => json_response(StatusCode::OK, secret),
            None => json_response(
                StatusCode::NOT_FOUND,
                &status(404, "NotFound", &format!("secrets \"{name}\" not found")),
            ),
        };
    }

    let selector = query.get("labelSelector").cloned();
    let (list, current_rv, compacted) = {
        let inner = s.inner.lock().unwrap();
        let Some(coll) = inner.collections.get(&path) else {
            return json_response(
                StatusCode::NOT_FOUND,
                &status(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                ),
            );
        };
        let items: Vec<Value> = coll
            .objects
            .values()
            .filter(|o| matches_selector(o, selector.as_deref()))
            .cloned()
            .collect();
        let list = json!({
            "kind": format!("{}List", coll.kind),
            "apiVersion": coll.api_version,
            "metadata": {"resourceVersion": inner.rv.to_string()},
            "items": items,
        });
        (list, inner.rv, coll.compacted)
    };
    if query.get("watch").map(String::as_str) != Some("true") {
        return json_response(StatusCode::OK, &list);
    }

    if let Some(code) = s.inner.lock().unwrap().watches_refused {
        let status_code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return json_response(status_code, &status(code, "InternalError", "watches are refused"));
    }
    if s.inner.lock().unwrap().watches_blocked {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &status(503, "ServiceUnavailable", "watches are blocked"),
        );
    }
    let from: u64 = query
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(current_rv);
    if from < compacted {
        let gone = json!({"type": "ERROR", "object": status(410, "Expired", &format!("too old resource version: {from} ({compacted})"))});
        return (
            StatusCode::OK,
            [("content-type", "application/json")],
            format!("{gone}\n"),
        )
            .into_response();
    }
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .unwrap_or(290u64);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    let state = (s.clone(), path, from, s.rv.subscribe(), selector, deadline);
    let stream = futures::stream::unfold(
        state,
        |(s, path, mut last, mut rx, selector, deadline)| async move {
            loop {
                let next = {
                    let inner = s.inner.lock().unwrap();
                    let coll = inner.collections.get(&path)?;
                    if last < coll.compacted || inner.watches_blocked || inner.watches_refused.is_some() {
                        return None;
                    }
                    coll.events.iter().find(|(rv, _, _)| *rv > last).cloned()
                };
                if let Some((rv, kind, object)) = next {
                    last = rv;
                    // Selector semantics: objects that stop matching are DELETED for this watch.
                    let kind = match (matches_selector(&object, selector.as_deref()), kind) {
                        (true, k) => k,
                        (false, "ADDED") => continue,
                        (false, _) => "DELETED",
                    };
                    let line = json!({"type": kind, "object": object});
                    let chunk = Ok::<_, std::convert::Infallible>(Bytes::from(format!("{line}\n")));
                    return Some((chunk, (s, path, last, rx, selector, deadline)));
                }
                tokio::select! {
                    _ = s.stop.cancelled() => return None,
                    _ = tokio::time::sleep_until(deadline) => return None,
                    changed = rx.changed() => if changed.is_err() { return None },
                    _ = tokio::time::sleep(BOOKMARK_EVERY) => {
                        let (api_version, kind) = {
                            let inner = s.inner.lock().unwrap();
                            let coll = inner.collections.get(&path)?;
                            (coll.api_version.clone(), coll.kind.clone())
                        };
                        let bookmark = json!({"type": "BOOKMARK", "object": {"apiVersion": api_version, "kind": kind, "metadata": {"resourceVersion": last.to_string()}}});
                        return Some((Ok(Bytes::from(format!("{bookmark}\n"))), (s, path, last, rx, selector, deadline)));
                    }
                }
            }
        },
    );
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .unwrap()
}

fn url_pairs(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), percent_decode(v)))
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = (bytes[i] == b'%' && i + 2 < bytes.len())
            .then(|| u8::from_str_radix(&s[i + 1..i + 3], 16).ok())
            .flatten();
        match hex {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
