//! The admission serving path in process (issue 12): where the µs and the allocations of one
//! request go, without TLS, sockets or the load generator. `cargo bench --bench admission`.
//!
//! Layers, each measured on its own and with a counting allocator (allocations per request
//! printed before the timings):
//! - `review/*`: `admission::review` (parse, evaluate, decide, build the response document);
//! - `router/*`: the whole axum router as the listener runs it (body reception, in-flight
//!   bound, deadline, handler, metrics, response encoding), without a subscriber; the log
//!   line as `serve` formats it by default (`info`, text, non-blocking writer) is in the
//!   `router-logging` path of `ADMISSION_LOOP` (a global subscriber: a scoped one did not
//!   see the handler's events);
//! - `strong-baseline/*`: what examples/baseline_strong.rs does per request (parse into
//!   `AdmissionReview<DynamicObject>`, `AdmissionResponse::from`, `to_vec`).
//!
//! Bodies: the realistic NodePool reviews of scripts/bench_bodies.py; facts: 1,000
//! StorageClasses and StorageProfiles, as in scripts/bench_load.py.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use axum::http::{Request, header};
use criterion::{Criterion, criterion_group};
use http_body_util::BodyExt;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use live_migration_guard::admission::{self, Context, Endpoint, Policy};
use live_migration_guard::facts::{self, Facts, Snapshot, load};
use live_migration_guard::server::Limits;
use live_migration_guard::server::handlers::{self, NODEPOOLS_PATH, Routes};
use live_migration_guard::server::metrics::Metrics;
use live_migration_guard::server::state::{AppState, Health, Shared};
use tower::ServiceExt;

#[path = "support/counting.rs"]
mod counting;

#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting;

const CREATE: &str = include_str!("../examples/requests/nodepool-realistic-create.json");
const UPDATE: &str = include_str!("../examples/requests/nodepool-realistic-update.json");

/// The load benchmark's facts: 1,000 StorageClasses and StorageProfiles, `gp3-csi` the
/// default class (RWO Block only).
fn facts_1000() -> Facts {
    let mut text = String::new();
    for i in 0..1000 {
        let (mut name, prov) = if i % 2 == 1 {
            (format!("ceph-{i}"), "openshift-storage.rbd.csi.ceph.com")
        } else {
            (format!("ebs-{i}"), "ebs.csi.aws.com")
        };
        if i == 0 {
            name = "gp3-csi".into();
        }
        let sets = if i % 2 == 1 {
            "[{accessModes: [ReadWriteMany], volumeMode: Block}, {accessModes: [ReadWriteOnce], volumeMode: Filesystem}]"
        } else {
            "[{accessModes: [ReadWriteOnce], volumeMode: Block}]"
        };
        let ann = if i == 0 {
            "\n  annotations: {storageclass.kubernetes.io/is-default-class: \"true\"}"
        } else {
            ""
        };
        text.push_str(&format!(
            "---\napiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata:\n  name: {name}{ann}\nprovisioner: {prov}\n---\napiVersion: cdi.kubevirt.io/v1beta1\nkind: StorageProfile\nmetadata:\n  name: {name}\nstatus:\n  provisioner: {prov}\n  storageClass: {name}\n  claimPropertySets: {sets}\n"
        ));
    }
    let loaded = load::parse_bytes(text.as_bytes(), "bench").expect("bench facts");
    facts::builder_from(&loaded).0.build()
}

fn state(facts: Facts) -> AppState {
    let (_tx, snapshot) = tokio::sync::watch::channel(Arc::new(Snapshot::fixed(facts)));
    let (_atx, audit) = tokio::sync::watch::channel(None);
    AppState::new(Shared {
        policy: Arc::new(Policy::default()),
        snapshot,
        metrics: Arc::new(Metrics::default()),
        health: Arc::new(Health::default()),
        audit,
    })
}

fn request(body: &'static str) -> Request<Body> {
    Request::post(NODEPOOLS_PATH)
        .header(header::HOST, "localhost:8443")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, body.len())
        .body(Body::from(body))
        .expect("request")
}

async fn route(app: &axum::Router, body: &'static str) -> usize {
    let resp = app.clone().oneshot(request(body)).await.expect("infallible");
    assert_eq!(resp.status(), 200);
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    bytes.len()
}

fn strong_baseline(body: &[u8]) -> Vec<u8> {
    let review: AdmissionReview<DynamicObject> = serde_json::from_slice(body).expect("review");
    let request: AdmissionRequest<DynamicObject> = review.try_into().expect("request");
    serde_json::to_vec(&AdmissionResponse::from(&request).into_review()).expect("encode")
}

/// The `serve` default: text lines at info through a non-blocking writer (to a sink here).
fn serve_logging() -> (tracing::Dispatch, tracing_appender::non_blocking::WorkerGuard) {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(16_384)
        .lossy(true)
        .finish(CountingSink);
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(writer)
        .with_ansi(false)
        .finish();
    (tracing::Dispatch::new(subscriber), guard)
}

fn bench(c: &mut Criterion) {
    let facts = facts_1000();
    let policy = Policy::default();
    let ctx = Context {
        facts: &facts,
        namespace_modes: None,
        policy: &policy,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let app = handlers::router(state(facts_1000()), &Limits::default(), Routes::All);

    for (name, body) in [("create", CREATE), ("update", UPDATE)] {
        let review = || admission::review(body.as_bytes(), Endpoint::NodePools, &ctx).expect("review");
        assert!(
            !review().review.response.warnings.is_empty(),
            "the bench body gets warnings"
        );
        counting::count(&format!("review/{name}"), "request", 2000, || {
            black_box(review());
        });
        counting::count(&format!("router/{name}"), "request", 2000, || {
            black_box(rt.block_on(route(&app, body)));
        });
        counting::count(&format!("strong-baseline/{name}"), "request", 2000, || {
            black_box(strong_baseline(body.as_bytes()));
        });
    }

    for (name, body) in [("create", CREATE), ("update", UPDATE)] {
        c.bench_function(&format!("review/{name}"), |b| {
            b.iter(|| admission::review(black_box(body.as_bytes()), Endpoint::NodePools, &ctx))
        });
        c.bench_function(&format!("router/{name}"), |b| {
            b.iter(|| rt.block_on(route(&app, black_box(body))))
        });
        c.bench_function(&format!("strong-baseline/{name}"), |b| {
            b.iter(|| strong_baseline(black_box(body.as_bytes())))
        });
    }
}

/// Bytes the log writer received (to check that the log line is really produced).
static LOGGED: AtomicU64 = AtomicU64::new(0);

struct CountingSink;

impl std::io::Write for CountingSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGGED.fetch_add(buf.len() as u64, Ordering::Relaxed);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `ADMISSION_LOOP=PATH:N` runs one path N times and exits, for instruction counts that do
/// not depend on the machine's load: `valgrind --tool=callgrind` at two N, the difference
/// divided by the difference of N is the cost of one request.
/// PATH: review/create, review/update, router/create, router/update, router-logging/create,
/// router-logging/update, strong/create, strong/update.
fn loop_mode(spec: &str) {
    let (path, n) = spec.rsplit_once(':').unwrap_or((spec, "1000"));
    let n: u64 = n.parse().expect("ADMISSION_LOOP=PATH:N");
    let (what, body) = path.rsplit_once('/').expect("PATH is layer/body");
    let body = if body == "update" { UPDATE } else { CREATE };
    let facts = facts_1000();
    let policy = Policy::default();
    let ctx = Context {
        facts: &facts,
        namespace_modes: None,
        policy: &policy,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let app = handlers::router(state(facts_1000()), &Limits::default(), Routes::All);
    let _guard = if what == "router-logging" {
        let (dispatch, guard) = serve_logging();
        tracing::dispatcher::set_global_default(dispatch).expect("global subscriber");
        Some(guard)
    } else {
        None
    };
    for _ in 0..n {
        match what {
            "review" => {
                black_box(admission::review(body.as_bytes(), Endpoint::NodePools, &ctx).expect("review"));
            }
            "router" | "router-logging" => {
                black_box(rt.block_on(route(&app, body)));
            }
            "strong" => {
                black_box(strong_baseline(body.as_bytes()));
            }
            other => panic!("unknown layer {other}"),
        }
    }
    drop(_guard);
    eprintln!(
        "{path}: {n} requests, {} bytes logged",
        LOGGED.load(Ordering::Relaxed)
    );
}

criterion_group!(benches, bench);

fn main() {
    if let Ok(spec) = std::env::var("ADMISSION_LOOP") {
        return loop_mode(&spec);
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
