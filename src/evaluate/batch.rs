//! Evaluating a batch of loaded objects (CLI inputs, a side-endpoint body): NodePools are
//! paired with a HostedCluster from the same batch (else the facts), and HostedClusters
//! see the verdicts of their NodePools in the batch. Reports keep the input order.

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
    let batch_hcs: Vec<&HostedCluster> = inputs
        .iter()
        .filter_map(|l| match &l.object {
            Object::HostedCluster(hc) => Some(hc.as_ref()),
            _ => None,
        })
        .collect();
    let mut slots: Vec<Option<Report>> = vec![None; inputs.len()];
    let mut nodepool_verdicts: Vec<((String, String), String, Verdict)> = Vec::new();
    let mut skipped = Vec::new();

    for (i, l) in inputs.iter().enumerate() {
        match &l.object {
            Object::NodePool(np) => {
                let ns = np.metadata.namespace.clone().unwrap_or_default();
                let hc = batch_hcs
                    .iter()
                    .copied()
                    .find(|hc| hc.key() == (ns.as_str(), np.spec.cluster_name.as_str()))
                    .or_else(|| facts.hosted_cluster(&ns, &np.spec.cluster_name));
                let report = nodepool::evaluate(np, hc, facts);
                nodepool_verdicts.push((
                    (ns, np.spec.cluster_name.clone()),
                    report.name.clone(),
                    report.hostedcluster_contribution(),
                ));
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
        if let Object::HostedCluster(hc) = &l.object {
            let (ns, name) = hc.key();
            let nps: Vec<(String, Verdict)> = nodepool_verdicts
                .iter()
                .filter(|(owner, _, _)| owner.0 == ns && owner.1 == name)
                .map(|(_, n, v)| (n.clone(), *v))
                .collect();
            slots[i] = Some(hostedcluster::evaluate(hc, facts, &nps));
        }
    }
    (
        Reports {
            reports: slots.into_iter().flatten().collect(),
        },
        skipped,
    )
}
