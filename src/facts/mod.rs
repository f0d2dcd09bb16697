//! Cluster facts: the snapshot type the evaluator reads, and the ways to fill it
//! (files for the CLI and `--facts`, kube reflectors for a live cluster).

pub mod cluster;
pub mod load;
pub mod snapshot;

pub use snapshot::{
    CapabilitySource, ClassFacts, DefaultKind, Facts, FactsBuilder, InfraFacts, KubeVirtConfig,
    KubeVirtVersion,
};

use load::{Loaded, Object};

/// Builds facts from loaded objects (`--facts` files). Objects that are not facts are
/// returned with their source so the caller can tell the user they were not used.
pub fn builder_from(loaded: &[Loaded]) -> (FactsBuilder, Vec<(String, String)>) {
    let mut b = FactsBuilder::default();
    let mut unused = Vec::new();
    for l in loaded {
        match &l.object {
            Object::StorageClass(sc) => b.add_storage_class(sc),
            Object::StorageProfile(sp) => b.add_storage_profile(sp),
            Object::KubeVirt(kv) => b.add_kubevirt(kv),
            Object::HostedCluster(hc) => b.add_hosted_cluster(hc.as_ref().clone()),
            other => unused.push((l.source.to_string(), other.kind().to_owned())),
        }
    }
    (b, unused)
}

/// What the server reads for one request: one consistent view, swapped atomically when
/// the cluster changes (`tokio::sync::watch`), never locked or copied per request.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub facts: std::sync::Arc<Facts>,
    /// `live-migration-guard.io/mode` label values by namespace; `None` when no cluster is
    /// connected (the global mode applies everywhere).
    pub namespace_modes: Option<std::sync::Arc<std::collections::HashMap<String, String>>>,
    /// Whether the facts are complete enough to serve (caches synced once).
    pub ready: bool,
    /// Why not ready, for `/readyz`.
    pub not_ready_reason: Option<String>,
    /// How long the cluster watches have been failing (0 while healthy).
    pub stale_seconds: f64,
}

impl Snapshot {
    /// A fixed snapshot (facts from files, or none at all).
    pub fn fixed(facts: Facts) -> Self {
        Self {
            facts: std::sync::Arc::new(facts),
            namespace_modes: None,
            ready: true,
            not_ready_reason: None,
            stale_seconds: 0.0,
        }
    }
}
