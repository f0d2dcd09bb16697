//! Prometheus metrics (OpenMetrics text on the ops port's `/metrics`).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Latency buckets in seconds, with sub-millisecond resolution.
const BUCKETS: [f64; 15] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub endpoint: &'static str,
    pub kind: &'static str,
    pub operation: &'static str,
    pub verdict: &'static str,
    /// allow | warn | deny | error
    pub decision: &'static str,
    pub dry_run: bool,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ObjectLabels {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub verdict: &'static str,
}

/// Side-endpoint authorization: which cache, hit or miss.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthCacheLabels {
    /// token | access
    pub cache: &'static str,
    /// hit | miss
    pub result: &'static str,
}

/// Reviews sent to the API server.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthApiLabels {
    /// tokenreviews | subjectaccessreviews
    pub api: &'static str,
    /// ok | error
    pub result: &'static str,
}

/// What the caller of a protected endpoint was told.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthDecisionLabels {
    pub endpoint: &'static str,
    /// allowed | unauthenticated | forbidden | error
    pub result: &'static str,
}

type HistogramFamily = Family<EndpointLabels, Histogram, fn() -> Histogram>;
type AuthHistogramFamily = Family<AuthApiLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub duration: HistogramFamily,
    pub in_flight: Gauge,
    pub rejected: Family<ResultLabels, Counter>,
    pub cert_expiry: Gauge<f64, AtomicU64>,
    pub cert_reloads: Family<ResultLabels, Counter>,
    pub facts_stale: Gauge<f64, AtomicU64>,
    pub objects: Family<ObjectLabels, Gauge>,
    pub auth_cache: Family<AuthCacheLabels, Counter>,
    pub auth_api: Family<AuthApiLabels, Counter>,
    pub auth_api_duration: AuthHistogramFamily,
    pub auth_decisions: Family<AuthDecisionLabels, Counter>,
    pub auth_token_reloads: Family<ResultLabels, Counter>,
    /// Log lines dropped because the log writer fell behind (set by the binary).
    pub log_lines_dropped: Gauge,
    log_drops: std::sync::OnceLock<tracing_appender::non_blocking::ErrorCounter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("live_migration_guard");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "admission_requests",
            "Requests by endpoint, kind, operation, verdict, decision (allow|warn|deny|error) and dry run",
            requests.clone(),
        );
        let duration: HistogramFamily = Family::new_with_constructor(|| Histogram::new(BUCKETS));
        registry.register_with_unit(
            "admission_duration",
            "Time from request to response, by endpoint",
            Unit::Seconds,
            duration.clone(),
        );
        let in_flight = Gauge::default();
        registry.register("in_flight_requests", "Requests being served", in_flight.clone());
        let rejected = Family::<ResultLabels, Counter>::default();
        registry.register(
            "rejected",
            "Connections or requests refused by a limit (result: connections|overload|timeout)",
            rejected.clone(),
        );
        let cert_expiry = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "NotAfter of the serving certificate (Unix seconds)",
            cert_expiry.clone(),
        );
        let cert_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "certificate_reloads",
            "Certificate reloads from disk (result: reloaded|failed)",
            cert_reloads.clone(),
        );
        let facts_stale = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "facts_stale_seconds",
            "Seconds since the cluster facts were last known to be current (0 while watches are healthy)",
            facts_stale.clone(),
        );
        let objects = Family::<ObjectLabels, Gauge>::default();
        registry.register(
            "objects",
            "Existing NodePools and HostedClusters by verdict, from the last audit (value 1)",
            objects.clone(),
        );
        let auth_cache = Family::<AuthCacheLabels, Counter>::default();
        registry.register(
            "auth_cache_lookups",
            "Side-endpoint authorization cache lookups (cache: token|access, result: hit|miss)",
            auth_cache.clone(),
        );
        let auth_api = Family::<AuthApiLabels, Counter>::default();
        registry.register(
            "auth_api_requests",
            "TokenReviews and SubjectAccessReviews sent to the API server (result: ok|error)",
            auth_api.clone(),
        );
        let auth_api_duration: AuthHistogramFamily = Family::new_with_constructor(|| Histogram::new(BUCKETS));
        registry.register_with_unit(
            "auth_api_duration",
            "Time the API server took to answer a TokenReview or SubjectAccessReview",
            Unit::Seconds,
            auth_api_duration.clone(),
        );
        let auth_decisions = Family::<AuthDecisionLabels, Counter>::default();
        registry.register(
            "auth_decisions",
            "Answers of the authorization of protected endpoints (result: allowed|unauthenticated|forbidden|error)",
            auth_decisions.clone(),
        );
        let auth_token_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "auth_token_reloads",
            "Re-reads of a changed --evaluate-token-file (result: reloaded|failed)",
            auth_token_reloads.clone(),
        );
        let log_lines_dropped = Gauge::default();
        registry.register(
            "log_lines_dropped",
            "Log lines dropped since start because the non-blocking log writer's buffer was full",
            log_lines_dropped.clone(),
        );
        Self {
            registry,
            log_lines_dropped,
            log_drops: std::sync::OnceLock::new(),
            requests,
            duration,
            in_flight,
            rejected,
            cert_expiry,
            cert_reloads,
            facts_stale,
            objects,
            auth_cache,
            auth_api,
            auth_api_duration,
            auth_decisions,
            auth_token_reloads,
        }
    }
}

impl Metrics {
    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Where the dropped-log-line count comes from (the binary's non-blocking writer).
    pub fn count_log_drops(&self, counter: tracing_appender::non_blocking::ErrorCounter) {
        let _ = self.log_drops.set(counter);
    }

    /// Refreshes values sampled at scrape time.
    pub fn sample(&self) {
        if let Some(c) = self.log_drops.get() {
            self.log_lines_dropped.set(c.dropped_lines() as i64);
        }
    }

    pub fn reject(&self, result: &'static str) {
        self.rejected.get_or_create(&ResultLabels { result }).inc();
    }
}
