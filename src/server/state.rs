//! State shared by the handlers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

use crate::admission::Policy;
use crate::facts::Snapshot;

use super::metrics::Metrics;

/// Shutdown progress: draining (readiness false, `Connection: close` on HTTP/1 responses),
/// then the moment the listener stopped accepting.
#[derive(Debug, Default)]
pub struct Health {
    draining: AtomicBool,
    stopped_accepting: std::sync::OnceLock<std::time::Instant>,
}

impl Health {
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
    pub fn mark_stopped_accepting(&self, at: std::time::Instant) {
        let _ = self.stopped_accepting.set(at);
    }
    /// When the listener stopped accepting connections, once it has.
    pub fn stopped_accepting_at(&self) -> Option<std::time::Instant> {
        self.stopped_accepting.get().copied()
    }
}

/// What the handlers share, behind one `Arc`: axum clones the state for every request (the
/// router, the body middleware, the handler), and one reference count is cheaper to bump
/// than the seven of the fields below.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

#[derive(Debug)]
pub struct Shared {
    pub policy: Arc<Policy>,
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    /// The last audit's reports, JSON, for `GET /v1/report` (issue: audit); `None` before the first.
    pub audit: watch::Receiver<Option<Arc<crate::evaluate::Reports>>>,
}

impl Shared {
    /// The current snapshot (an `Arc` clone; the lock is held only for the clone).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
    }
}
