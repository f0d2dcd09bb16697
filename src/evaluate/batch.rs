//! Evaluating a batch of loaded objects (CLI inputs, a side-endpoint body): NodePools are
//! paired with a HostedCluster from the same batch (else the facts), and HostedClusters
//! see the verdicts of their NodePools in the batch. Reports keep the input order.

use std::collections::HashMap;

use crate::facts::Facts;
use crate::facts::load::{Loaded, Object};
use crate::resources::HostedCluster;

use super::report::{Report, Reports, Verdict};
use super::{hostedcluster, nodepool};

/// An input object that produced no report, and why (shown to the user, never dropped).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Skipped {
    pub source: String,
    pub kind: String,
    pub reason: String,
}

pub fn evaluate_all(inputs: &[Loaded], facts: &Facts) -> (Reports, Vec<Skipped>) {
    match evaluate_all_until(inputs, facts, None) {
        Ok(done) => done,
        // without a deadline the evaluation always completes
        Err(_) => (Reports { reports: Vec::new() }, Vec::new()),
    }
}

/// [`evaluate_all`], stopping between objects once `deadline` has passed: `Err` carries how
/// many objects were evaluated by then. Pairing is indexed by (namespace, cluster name), so
/// the work is linear in the number of objects.
pub fn evaluate_all_until(
    inputs: &[Loaded],
    facts: &Facts,
    deadline: Option<std::time::Instant>,
) -> Result<(Reports, Vec<Skipped>), usize> {
    let mut batch_hcs: HashMap<(&str, &str), &HostedCluster> = HashMap::new();
    for l in inputs {
        if let Object::HostedCluster(hc) = &l.object {
            // the first of duplicates wins, as a linear scan would pick it
            batch_hcs.entry(hc.key()).or_insert(hc.as_ref());
        }
    }
    let past = |i: usize| deadline.is_some_and(|d| i.is_multiple_of(16) && std::time::Instant::now() >= d);
    let mut slots: Vec<Option<Report>> = vec![None; inputs.len()];
    let mut nodepool_verdicts: HashMap<(String, String), Vec<(String, Verdict)>> = HashMap::new();
    let mut skipped = Vec::new();

    for (i, l) in inputs.iter().enumerate() {
        if past(i) {
            return Err(i);
        }
        match &l.object {
            Object::NodePool(np) => {
                let ns = np.metadata.namespace.clone().unwrap_or_default();
                let hc = batch_hcs
                    .get(&(ns.as_str(), np.spec.cluster_name.as_str()))
                    .copied()
                    .or_else(|| facts.hosted_cluster(&ns, &np.spec.cluster_name));
                let report = nodepool::evaluate(np, hc, facts);
                nodepool_verdicts
                    .entry((ns, np.spec.cluster_name.clone()))
                    .or_default()
                    .push((report.name.clone(), report.hostedcluster_contribution()));
                slots[i] = Some(report);
            }
            Object::HostedCluster(_) => {}
            Object::StorageClass(_) | Object::StorageProfile(_) | Object::KubeVirt(_) | Object::Namespace(_) => {
                skipped.push(Skipped {
                    source: l.source.to_string(),
                    kind: l.object.kind().to_owned(),
                    reason: "describes the cluster, not a workload: pass it as facts (--facts)".into(),
                });
            }
            Object::Other { api_version, kind, name } => skipped.push(Skipped {
                source: l.source.to_string(),
                kind: kind.clone(),
                reason: format!(
                    "{api_version} {kind} {name} is not evaluated (only hypershift.openshift.io/v1beta1 NodePool and HostedCluster are)"
                ),
            }),
        }
    }
    for (i, l) in inputs.iter().enumerate() {
        if past(i) {
            return Err(i);
        }
        if let Object::HostedCluster(hc) = &l.object {
            let (ns, name) = hc.key();
            let nps = nodepool_verdicts
                .get(&(ns.to_owned(), name.to_owned()))
                .map(Vec::as_slice)
                .unwrap_or_default();
            slots[i] = Some(hostedcluster::evaluate(hc, facts, nps));
        }
    }
    Ok((
        Reports {
            reports: slots.into_iter().flatten().collect(),
        },
        skipped,
    ))
}
