//! Cluster facts: the snapshot type the evaluator reads, and the ways to fill it
//! (files for the CLI and `--facts`, kube reflectors for a live cluster).

pub mod load;
pub mod snapshot;

pub use snapshot::{
    CapabilitySource, ClassFacts, DefaultKind, Facts, FactsBuilder, InfraFacts, KubeVirtVersion,
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
