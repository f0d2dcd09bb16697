//! State shared by the handlers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

use crate::admission::Policy;
use crate::facts::Snapshot;

use super::metrics::Metrics;

/// Readiness inputs that are not facts: the certificate, and whether we are draining.
#[derive(Debug, Default)]
pub struct Health {
    draining: AtomicBool,
}

impl Health {
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

#[derive(Clone, Debug)]
pub struct AppState {
    pub policy: Arc<Policy>,
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    /// The last audit's reports, JSON, for `GET /v1/report` (issue: audit); `None` before the first.
    pub audit: watch::Receiver<Option<Arc<crate::evaluate::Reports>>>,
}

impl AppState {
    /// The current snapshot (an `Arc` clone; the lock is held only for the clone).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
    }
}
