//! The evaluator: pure rules, no I/O. Given a NodePool or HostedCluster and the facts
//! about the cluster that runs the VMs, predict live-migratability the way KubeVirt, CDI and
//! HyperShift would decide it (docs/rules.md; each rule cites its section).
//!
//! Pipeline for a NodePool: render the VM HyperShift would create ([`vm`], §R2) → apply
//! the JSON-patch annotations → resolve each DataVolume's class and CDI-rendered modes
//! ([`storage`], §4) → judge with KubeVirt's rules ([`judge`], §3) → predict the condition
//! ([`condition`], §H1).

pub mod condition;
pub mod godecode;
pub mod hostedcluster;
pub mod jsonpatch;
pub mod judge;
pub mod network;
pub mod nodepool;
pub mod patch_limits;
pub mod report;
pub mod siblings;
pub mod storage;
pub mod vm;

pub use report::{Condition, Effect, Finding, Report, Reports, Severity, Verdict};

use crate::facts::Facts;
use crate::resources::{HostedCluster, NodePool};

/// The facts of the cluster a HostedCluster's VMs run on: the local facts, or those of its
/// external infrastructure cluster (`credentials`, docs/rules.md §S6, §S6). When the latter are
/// not available, an `Unknown` finding at `field` says why, and `none` is returned.
fn infra_facts<'a>(
    hc: &HostedCluster,
    facts: &'a Facts,
    none: &'a Facts,
    field: &str,
    findings: &mut Vec<Finding>,
) -> &'a Facts {
    let Some(creds) = hc.credentials() else {
        return facts;
    };
    let (ns, name) = hc.key();
    let why = match facts.infra(ns, name) {
        Some(crate::facts::InfraFacts::Ready(f)) => return f,
        Some(crate::facts::InfraFacts::Unavailable(why)) => why.clone(),
        None => "no facts for that cluster were supplied".to_owned(),
    };
    let secret = creds
        .infra_kube_config_secret
        .as_ref()
        .map(|s| s.name.as_str())
        .unwrap_or("<unset>");
    findings.push(Finding::undecided(
        "ExternalInfraFactsUnavailable",
        field.to_owned(),
        format!(
            "HostedCluster {ns}/{name} runs its VMs on an external infrastructure cluster (credentials Secret {ns}/{secret}, namespace {}), which the local facts do not describe: {why}",
            creds.infra_namespace
        ),
        format!(
            "supply that cluster's StorageClasses and StorageProfiles (`--infra-facts {ns}/{name}=PATH`, or `--infra-credentials=read` with `serve`, `audit` or `evaluate --cluster`)"
        ),
    ));
    none
}

/// Predicts live-migratability of a NodePool's VMs, with its HostedCluster from the facts.
pub fn evaluate_nodepool(np: &NodePool, facts: &Facts) -> Report {
    let namespace = np.metadata.namespace.as_deref().unwrap_or_default();
    nodepool::evaluate(np, facts.hosted_cluster(namespace, &np.spec.cluster_name), facts)
}

/// Predicts whether a HostedCluster's guest storage keeps its nodes live migratable.
/// `nodepools`: this cluster's NodePools (name, verdict), when known.
pub fn evaluate_hostedcluster(hc: &HostedCluster, facts: &Facts, nodepools: &[(String, Verdict)]) -> Report {
    hostedcluster::evaluate(hc, facts, nodepools)
}
