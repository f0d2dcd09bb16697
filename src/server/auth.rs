//! Who may call the side endpoints (`/v1/evaluate`, `/v1/report`) and, optionally, the ops
//! port's `/metrics`: authorized like the Kubernetes API itself, the way controller-runtime's
//! secured metrics filter and kube-rbac-proxy do it.
//!
//! - `kubernetes`: the bearer token goes to a `TokenReview` (optionally for given audiences),
//!   the user it names to a `SubjectAccessReview`: non-resource URL `/v1/evaluate` verb `post` (non-resource verbs are the lowercase HTTP method, as the API server authorizes its own non-resource URLs),
//!   `/metrics` verb `get`; `/v1/report` is filtered to the objects of the namespaces where the
//!   user may `list` `nodepools` / `hostedclusters` (`hypershift.openshift.io`), everything with
//!   a cluster-wide `list`. Answers are cached for a short TTL (denials for a shorter one) in
//!   bounded maps; tokens are keyed by their SHA-256, never stored.
//! - `token`: one static bearer token from a file, re-read when the file changes.
//!
//! 401 without a (valid) token, 403 with a `Status` naming the missing permission, 503 when the
//! API server cannot answer — never an allow on error.

pub mod cache;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::{StreamExt, TryStreamExt};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

use super::handlers::{EVALUATE_PATH, REPORT_PATH, status};
use super::metrics::{AuthApiLabels, AuthCacheLabels, AuthDecisionLabels, Metrics, ResultLabels};
use crate::evaluate::{Report, Reports};
use cache::TtlCache;

/// The API group of the objects `/v1/report` lists.
pub const HYPERSHIFT_GROUP: &str = "hypershift.openshift.io";
/// The ops endpoint that `--metrics-auth kubernetes` protects.
pub const METRICS_PATH: &str = "/metrics";
/// How often a request may look whether `--evaluate-token-file` changed.
pub const TOKEN_FILE_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Reviews sent at once for one `/v1/report` (one per namespace and resource on a miss).
const REPORT_REVIEWS_AT_ONCE: usize = 8;

/// Why a request is refused; each maps to the status the caller sees.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("this endpoint needs `Authorization: Bearer <token>`: {hint}")]
    MissingToken { hint: &'static str },
    #[error("the bearer token is not valid: {0}")]
    Unauthenticated(String),
    #[error("forbidden: User {user:?} cannot {action}{reason}; {grant}")]
    Forbidden {
        user: String,
        action: String,
        /// The authorizer's reason, as `: <reason>`, or empty.
        reason: String,
        grant: String,
    },
    /// The API server could not answer: never treated as an allow.
    #[error("cannot check the caller's access: {api} failed: {message}")]
    Unavailable { api: &'static str, message: String },
}

impl AuthError {
    pub fn status_code(&self) -> StatusCode {
        match self {
            Self::MissingToken { .. } | Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn result_label(&self) -> &'static str {
        match self {
            Self::MissingToken { .. } | Self::Unauthenticated(_) => "unauthenticated",
            Self::Forbidden { .. } => "forbidden",
            Self::Unavailable { .. } => "error",
        }
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let code = self.status_code();
        let reason = match code {
            StatusCode::UNAUTHORIZED => "Unauthorized",
            StatusCode::FORBIDDEN => "Forbidden",
            _ => "ServiceUnavailable",
        };
        let mut resp = status(code, reason, self.to_string());
        if code == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"live-migration-guard\""),
            );
        }
        resp
    }
}

/// The bearer token of `Authorization: Bearer <token>` (scheme case-insensitive, as the API
/// server reads it), if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The user a token belongs to, as the `TokenReview` answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: Option<String>,
    pub groups: Vec<String>,
    pub extra: Option<BTreeMap<String, Vec<String>>>,
}

/// What a `SubjectAccessReview` asks about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attributes {
    NonResource {
        path: &'static str,
        verb: &'static str,
    },
    /// `list` of a HyperShift resource, in a namespace or (`None`) cluster-wide.
    List {
        resource: &'static str,
        namespace: Option<String>,
    },
}

impl Attributes {
    /// In the API server's words: `create non-resource URL "/v1/evaluate"`.
    pub fn describe(&self) -> String {
        match self {
            Self::NonResource { path, verb } => format!("{verb} non-resource URL {path:?}"),
            Self::List {
                resource,
                namespace: Some(ns),
            } => format!(
                "list resource {resource:?} in API group {HYPERSHIFT_GROUP:?} in the namespace {ns:?}"
            ),
            Self::List {
                resource,
                namespace: None,
            } => format!("list resource {resource:?} in API group {HYPERSHIFT_GROUP:?} at the cluster scope"),
        }
    }

    /// How an administrator grants it (README: Access).
    pub fn grant(&self) -> String {
        match self {
            Self::NonResource { path, verb } => format!(
                "grant it with a ClusterRole rule nonResourceURLs: [\"{path}\"], verbs: [\"{verb}\"] and a ClusterRoleBinding (kubectl create clusterrole NAME --non-resource-url={path} --verb={verb})"
            ),
            Self::List { resource, .. } => format!(
                "grant it with a Role rule apiGroups: [\"{HYPERSHIFT_GROUP}\"], resources: [\"{resource}\"], verbs: [\"list\"] and a RoleBinding in the namespace"
            ),
        }
    }

    fn spec(&self, user: &User) -> SubjectAccessReviewSpec {
        let mut spec = SubjectAccessReviewSpec {
            user: Some(user.name.clone()),
            uid: user.uid.clone(),
            groups: Some(user.groups.clone()),
            extra: user.extra.clone(),
            ..Default::default()
        };
        match self {
            Self::NonResource { path, verb } => {
                spec.non_resource_attributes = Some(NonResourceAttributes {
                    path: Some((*path).to_owned()),
                    verb: Some((*verb).to_owned()),
                });
            }
            Self::List { resource, namespace } => {
                spec.resource_attributes = Some(ResourceAttributes {
                    group: Some(HYPERSHIFT_GROUP.to_owned()),
                    resource: Some((*resource).to_owned()),
                    verb: Some("list".to_owned()),
                    namespace: namespace.clone(),
                    ..Default::default()
                });
            }
        }
        spec
    }
}

/// Settings of `kubernetes` authorization (`--evaluate-auth-audience`, `--auth-cache-*`).
#[derive(Clone, Debug)]
pub struct KubeAuthSettings {
    /// Audiences the token must be valid for; empty: the API server's own.
    pub audiences: Vec<String>,
    /// How long an authenticated token and an allow are reused.
    pub ttl: Duration,
    /// How long a rejected token and a denial are reused.
    pub negative_ttl: Duration,
    /// Entries per cache (tokens, access decisions).
    pub cache_size: usize,
}

impl Default for KubeAuthSettings {
    fn default() -> Self {
        Self {
            audiences: Vec::new(),
            ttl: Duration::from_secs(10),
            negative_ttl: Duration::from_secs(5),
            cache_size: 4096,
        }
    }
}

type Digest = [u8; 32];

fn sha256(data: &[u8]) -> Digest {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// A token's review: its user, or why it was refused.
#[derive(Clone, Debug)]
enum TokenOutcome {
    User(Arc<User>),
    Rejected(String),
}

/// `kubernetes` authorization: `TokenReview` + `SubjectAccessReview` through the server's kube
/// client, with bounded TTL caches.
pub struct KubeAuth {
    client: kube::Client,
    settings: KubeAuthSettings,
    tokens: TtlCache<Digest, TokenOutcome>,
    access: TtlCache<Digest, (bool, String)>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for KubeAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeAuth")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl KubeAuth {
    pub fn new(client: kube::Client, settings: KubeAuthSettings, metrics: Arc<Metrics>) -> Self {
        Self {
            tokens: TtlCache::new(settings.cache_size),
            access: TtlCache::new(settings.cache_size),
            client,
            settings,
            metrics,
        }
    }

    pub fn settings(&self) -> &KubeAuthSettings {
        &self.settings
    }

    fn count_cache(&self, cache: &'static str, hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        self.metrics
            .auth_cache
            .get_or_create(&AuthCacheLabels { cache, result })
            .inc();
    }

    fn count_api(&self, api: &'static str, ok: bool, started: Instant) {
        let result = if ok { "ok" } else { "error" };
        self.metrics
            .auth_api
            .get_or_create(&AuthApiLabels { api, result })
            .inc();
        self.metrics
            .auth_api_duration
            .get_or_create(&AuthApiLabels { api, result })
            .observe(started.elapsed().as_secs_f64());
    }

    /// The user behind the request's bearer token.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Arc<User>, AuthError> {
        let token = bearer(headers).ok_or(AuthError::MissingToken {
            hint: "a Kubernetes token, e.g. $(kubectl create token SERVICEACCOUNT)",
        })?;
        let key = sha256(token.as_bytes());
        let outcome = match self.tokens.get(&key, Instant::now()) {
            Some(o) => {
                self.count_cache("token", true);
                o
            }
            None => {
                self.count_cache("token", false);
                let outcome = self.review_token(token).await?;
                let ttl = match outcome {
                    TokenOutcome::User(_) => self.settings.ttl,
                    TokenOutcome::Rejected(_) => self.settings.negative_ttl,
                };
                self.tokens.insert(key, outcome.clone(), ttl, Instant::now());
                outcome
            }
        };
        match outcome {
            TokenOutcome::User(u) => Ok(u),
            TokenOutcome::Rejected(why) => Err(AuthError::Unauthenticated(why)),
        }
    }

    async fn review_token(&self, token: &str) -> Result<TokenOutcome, AuthError> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_owned()),
                audiences: (!self.settings.audiences.is_empty()).then(|| self.settings.audiences.clone()),
            },
            ..Default::default()
        };
        let started = Instant::now();
        let answer = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await;
        self.count_api("tokenreviews", answer.is_ok(), started);
        let answer = answer.map_err(|e| unavailable("tokenreviews", e))?;
        Ok(token_outcome(
            answer.status.unwrap_or_default(),
            &self.settings.audiences,
        ))
    }

    /// Whether `user` may do `attrs` (cached).
    pub async fn allowed(&self, user: &User, attrs: &Attributes) -> Result<(bool, String), AuthError> {
        let spec = attrs.spec(user);
        // The spec is serialized in a fixed field order (extra is a BTreeMap): a stable key.
        // (It cannot fail to serialize; if it did, the answer would just not be cached.)
        let key = serde_json::to_vec(&spec).ok().map(|bytes| sha256(&bytes));
        if let Some(decision) = key.as_ref().and_then(|k| self.access.get(k, Instant::now())) {
            self.count_cache("access", true);
            return Ok(decision);
        }
        self.count_cache("access", false);
        let review = SubjectAccessReview {
            spec,
            ..Default::default()
        };
        let started = Instant::now();
        let answer = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await;
        self.count_api("subjectaccessreviews", answer.is_ok(), started);
        let answer = answer.map_err(|e| unavailable("subjectaccessreviews", e))?;
        let st = answer.status.unwrap_or_default();
        if let Some(e) = st.evaluation_error.as_deref().filter(|e| !e.is_empty()) {
            tracing::debug!(error = e, "SubjectAccessReview evaluation error (partial answer)");
        }
        let decision = (
            st.allowed && st.denied != Some(true),
            st.reason.unwrap_or_default(),
        );
        let ttl = if decision.0 {
            self.settings.ttl
        } else {
            self.settings.negative_ttl
        };
        if let Some(key) = key {
            self.access.insert(key, decision.clone(), ttl, Instant::now());
        }
        Ok(decision)
    }

    /// `Ok` when `user` may do `attrs`, else 403 naming the permission.
    pub async fn require(&self, user: &User, attrs: &Attributes) -> Result<(), AuthError> {
        let (allowed, reason) = self.allowed(user, attrs).await?;
        if allowed {
            return Ok(());
        }
        Err(AuthError::Forbidden {
            user: user.name.clone(),
            action: attrs.describe(),
            reason: if reason.is_empty() {
                String::new()
            } else {
                format!(": {reason}")
            },
            grant: attrs.grant(),
        })
    }

    /// The reports `user` may see: per kind, all with a cluster-wide `list`, else those of
    /// the namespaces where it may `list` that kind. Any review that fails fails the whole
    /// answer (503): a partial list would look complete.
    pub async fn visible_reports(&self, user: &User, reports: &Reports) -> Result<Reports, AuthError> {
        let mut cluster_wide = [false; 2];
        for (i, resource) in ["nodepools", "hostedclusters"].into_iter().enumerate() {
            let attrs = Attributes::List {
                resource,
                namespace: None,
            };
            cluster_wide[i] = self.allowed(user, &attrs).await?.0;
        }
        let mut visible: BTreeSet<(&'static str, Option<String>)> = BTreeSet::new();
        let mut per_namespace: BTreeSet<(&'static str, String)> = BTreeSet::new();
        for r in &reports.reports {
            let Some(resource) = resource_of(r) else { continue };
            let all = cluster_wide[usize::from(resource != "nodepools")];
            if all {
                visible.insert((resource, r.namespace.clone()));
            } else if let Some(ns) = &r.namespace {
                per_namespace.insert((resource, ns.clone()));
            }
        }
        let reviews: Vec<_> = per_namespace
            .into_iter()
            .map(|(resource, ns)| self.may_list_in(user, resource, ns))
            .collect();
        let allowed: Vec<(&'static str, String, bool)> = futures::stream::iter(reviews)
            .buffer_unordered(REPORT_REVIEWS_AT_ONCE)
            .try_collect()
            .await?;
        for (resource, ns, ok) in allowed {
            if ok {
                visible.insert((resource, Some(ns)));
            }
        }
        let reports = reports
            .reports
            .iter()
            .filter(|r| resource_of(r).is_some_and(|res| visible.contains(&(res, r.namespace.clone()))))
            .cloned()
            .collect();
        Ok(Reports { reports })
    }
}

impl KubeAuth {
    async fn may_list_in(
        &self,
        user: &User,
        resource: &'static str,
        namespace: String,
    ) -> Result<(&'static str, String, bool), AuthError> {
        let attrs = Attributes::List {
            resource,
            namespace: Some(namespace.clone()),
        };
        let allowed = self.allowed(user, &attrs).await?.0;
        Ok((resource, namespace, allowed))
    }
}

/// The resource whose `list` permission shows a report.
fn resource_of(r: &Report) -> Option<&'static str> {
    match r.kind {
        "NodePool" => Some("nodepools"),
        "HostedCluster" => Some("hostedclusters"),
        _ => None,
    }
}

fn unavailable(api: &'static str, e: kube::Error) -> AuthError {
    let message = match &e {
        kube::Error::Api(s) if s.code == 403 => format!(
            "{}: the server's own ServiceAccount may not create {api}; bind it to the ClusterRole system:auth-delegator (the chart does when sideEndpoints.auth is kubernetes)",
            s.message
        ),
        kube::Error::Api(s) => format!("{} ({})", s.message, s.code),
        e => e.to_string(),
    };
    tracing::warn!(api, error = %message, "authorization review failed; answering 503");
    AuthError::Unavailable { api, message }
}

/// What a `TokenReview` status means for the caller.
fn token_outcome(
    st: k8s_openapi::api::authentication::v1::TokenReviewStatus,
    audiences: &[String],
) -> TokenOutcome {
    let why = || {
        st.error
            .clone()
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| "the API server did not authenticate it".into())
    };
    if st.authenticated != Some(true) {
        return TokenOutcome::Rejected(why());
    }
    if !audiences.is_empty() {
        let granted = st.audiences.as_deref().unwrap_or_default();
        if !granted.iter().any(|a| audiences.contains(a)) {
            return TokenOutcome::Rejected(format!(
                "the token is valid for audiences {granted:?}, not {audiences:?} (see --evaluate-auth-audience)"
            ));
        }
    }
    let Some(user) = st
        .user
        .filter(|u| u.username.as_deref().is_some_and(|n| !n.is_empty()))
    else {
        return TokenOutcome::Rejected("the API server named no user for it".into());
    };
    TokenOutcome::User(Arc::new(User {
        name: user.username.unwrap_or_default(),
        uid: user.uid,
        groups: user.groups.unwrap_or_default(),
        extra: user.extra,
    }))
}

/// A static bearer token from a file, re-read when the file changes (checked at most every
/// `check_every`, on a request): a rotated Secret takes effect without a restart.
#[derive(Debug)]
pub struct StaticToken {
    path: Option<PathBuf>,
    check_every: Duration,
    state: Mutex<TokenState>,
    metrics: Arc<Metrics>,
}

#[derive(Debug)]
struct TokenState {
    token: Arc<str>,
    stamp: Option<FileStamp>,
    checked: Instant,
}

/// What tells a changed file: the kubelet's `..data` symlink swap changes the inode.
#[derive(Clone, Debug, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &std::path::Path) -> std::io::Result<FileStamp> {
    let m = std::fs::metadata(path)?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let inode = 0;
    Ok(FileStamp {
        modified: m.modified().ok(),
        len: m.len(),
        inode,
    })
}

/// Errors reading `--evaluate-token-file`.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: the token file is empty; write the token into it")]
    Empty { path: String },
}

fn read_token(path: &std::path::Path) -> Result<(Arc<str>, FileStamp), TokenFileError> {
    let shown = || path.display().to_string();
    let before = stamp(path).map_err(|source| TokenFileError::Read {
        path: shown(),
        source,
    })?;
    let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Read {
        path: shown(),
        source,
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(TokenFileError::Empty { path: shown() });
    }
    Ok((Arc::from(token), before))
}

impl StaticToken {
    /// Reads the file once (an error names it); later changes are picked up on requests.
    pub fn from_file(
        path: PathBuf,
        check_every: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<Self, TokenFileError> {
        let (token, stamp) = read_token(&path)?;
        Ok(Self {
            path: Some(path),
            check_every,
            state: Mutex::new(TokenState {
                token,
                stamp: Some(stamp),
                checked: Instant::now(),
            }),
            metrics,
        })
    }

    /// A fixed token (tests, embedding).
    pub fn fixed(token: &str, metrics: Arc<Metrics>) -> Self {
        Self {
            path: None,
            check_every: Duration::MAX,
            state: Mutex::new(TokenState {
                token: Arc::from(token),
                stamp: None,
                checked: Instant::now(),
            }),
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TokenState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The token in force, re-reading the file if it changed since the last check. A broken
    /// update (unreadable, empty) keeps the previous token and is logged and counted.
    pub fn current(&self) -> Arc<str> {
        let (token, due) = {
            let mut st = self.lock();
            let due = st.checked.elapsed() >= self.check_every;
            if due {
                st.checked = Instant::now();
            }
            (st.token.clone(), due.then(|| st.stamp.clone()))
        };
        let (Some(path), Some(previous)) = (&self.path, due) else {
            return token;
        };
        let changed = match stamp(path) {
            Ok(now) => Some(now) != previous,
            Err(_) => true,
        };
        if !changed {
            return token;
        }
        let count = |result: &'static str| {
            self.metrics
                .auth_token_reloads
                .get_or_create(&ResultLabels { result })
                .inc();
        };
        match read_token(path) {
            Ok((new, stamp)) => {
                let mut st = self.lock();
                st.stamp = Some(stamp);
                if new != st.token {
                    tracing::info!(path = %path.display(), "--evaluate-token-file changed: the new token is in force");
                    count("reloaded");
                }
                st.token = new.clone();
                new
            }
            Err(e) => {
                tracing::error!(error = %e, "--evaluate-token-file could not be re-read; the previous token stays in force");
                count("failed");
                token
            }
        }
    }

    pub fn check(&self, headers: &HeaderMap) -> Result<(), AuthError> {
        let hint = "the token in --evaluate-token-file";
        let presented = bearer(headers).ok_or(AuthError::MissingToken { hint })?;
        let token = self.current();
        if bool::from(subtle::ConstantTimeEq::ct_eq(
            presented.as_bytes(),
            token.as_bytes(),
        )) {
            Ok(())
        } else {
            Err(AuthError::Unauthenticated(
                "it is not the token of --evaluate-token-file".into(),
            ))
        }
    }
}

/// How the side endpoints are protected.
#[derive(Clone, Debug, Default)]
pub enum SideAuth {
    /// Unauthenticated (loopback by default outside a pod).
    #[default]
    None,
    Token(Arc<StaticToken>),
    Kubernetes(Arc<KubeAuth>),
}

impl SideAuth {
    pub fn name(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Token(_) => "token",
            Self::Kubernetes(_) => "kubernetes",
        }
    }
}

/// An authenticated caller of `/v1/report`, for the handler's filter.
#[derive(Clone)]
pub struct Caller {
    pub auth: Arc<KubeAuth>,
    pub user: Arc<User>,
}

fn decided(metrics: &Metrics, endpoint: &'static str, result: &'static str) {
    metrics
        .auth_decisions
        .get_or_create(&AuthDecisionLabels { endpoint, result })
        .inc();
}

/// What the side listener's gate ([`side`]) needs.
#[derive(Clone)]
pub struct SideGate {
    pub auth: SideAuth,
    pub metrics: Arc<Metrics>,
    pub health: Arc<super::state::Health>,
    /// Kubernetes checks (TokenReview, SubjectAccessReview on a cache miss) at once; one
    /// more is refused with 503 at once.
    pub checks: Arc<tokio::sync::Semaphore>,
    /// Each Kubernetes check's deadline (the request timeout).
    pub timeout: Duration,
    /// How long a refused caller's body is read at most (the body timeout).
    pub body_timeout: Duration,
}

/// The side listener's gate, the outermost layer: the caller is checked before its body is
/// read, so a client without a valid token cannot make the server receive (and hold) a body
/// of up to `--max-evaluate-body-bytes`. Paths other than `/v1/evaluate` and `/v1/report`
/// pass (their 404 needs no token).
pub async fn side(State(gate): State<SideGate>, mut req: Request, next: Next) -> Response {
    let endpoint = match req.uri().path() {
        EVALUATE_PATH => EVALUATE_PATH,
        REPORT_PATH => REPORT_PATH,
        _ => return next.run(req).await,
    };
    let checked: Result<(), AuthError> = match &gate.auth {
        SideAuth::None => return next.run(req).await,
        SideAuth::Token(t) => t.check(req.headers()),
        SideAuth::Kubernetes(k) => {
            let Ok(_slot) = gate.checks.clone().try_acquire_owned() else {
                gate.metrics.reject("overload");
                let resp = status(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    "server overloaded: too many authentication checks in flight; retry".into(),
                );
                return super::body::refuse_unread(req, resp, gate.body_timeout, gate.health.draining())
                    .await;
            };
            let headers = req.headers();
            let check = async {
                let user = k.authenticate(headers).await?;
                if endpoint == REPORT_PATH {
                    // Filtered by the handler: every authenticated caller gets an answer.
                    return Ok(Some(user));
                }
                let attrs = Attributes::NonResource {
                    path: EVALUATE_PATH,
                    verb: "post",
                };
                k.require(&user, &attrs).await.inspect_err(|e| {
                    tracing::info!(user = user.name.as_str(), endpoint, error = %e, "refused");
                })?;
                Ok(None)
            };
            match tokio::time::timeout(gate.timeout, check).await {
                Ok(Ok(caller)) => {
                    if let Some(user) = caller {
                        req.extensions_mut().insert(Caller {
                            auth: k.clone(),
                            user,
                        });
                    }
                    Ok(())
                }
                Ok(Err(e)) => Err(e),
                Err(_) => Err(AuthError::Unavailable {
                    api: "tokenreviews/subjectaccessreviews",
                    message: format!("no answer within {:?}", gate.timeout),
                }),
            }
        }
    };
    match checked {
        Ok(()) => {
            decided(&gate.metrics, endpoint, "allowed");
            next.run(req).await
        }
        Err(e) => {
            decided(&gate.metrics, endpoint, e.result_label());
            super::body::refuse_unread(req, e.into_response(), gate.body_timeout, gate.health.draining())
                .await
        }
    }
}

/// `--metrics-auth kubernetes` on the ops port's `/metrics`: `get` on the non-resource URL
/// `/metrics`, within `timeout` (the ops listener has no request deadline of its own).
pub async fn metrics(
    State((auth, timeout)): State<(Arc<KubeAuth>, Duration)>,
    req: Request,
    next: Next,
) -> Response {
    let headers = req.headers().clone();
    let check = async {
        let user = auth.authenticate(&headers).await?;
        auth.require(
            &user,
            &Attributes::NonResource {
                path: METRICS_PATH,
                verb: "get",
            },
        )
        .await
    };
    let result = match tokio::time::timeout(timeout, check).await {
        Ok(r) => r,
        Err(_) => Err(AuthError::Unavailable {
            api: "tokenreviews/subjectaccessreviews",
            message: format!("no answer within {timeout:?}"),
        }),
    };
    match result {
        Ok(()) => {
            decided(&auth.metrics, METRICS_PATH, "allowed");
            next.run(req).await
        }
        Err(e) => {
            decided(&auth.metrics, METRICS_PATH, e.result_label());
            e.into_response()
        }
    }
}

#[cfg(test)]
mod tests;
