//! Evaluating a batch of loaded objects (CLI inputs, a side-endpoint body): NodePools are
//! paired with a HostedCluster from the same batch (else the facts), NodePools of one
//! HostedCluster share HyperShift's aggregated condition (docs/rules.md §H3), and
//! HostedClusters see the verdicts of their NodePools in the batch. Reports keep the input order.
//!
//! Lives outside `evaluate/` because it works on loaded inputs ([`crate::facts::load`]):
//! the evaluator itself is pure and never sees files or sources.

use std::collections::HashMap;

use crate::facts::Facts;
use crate::facts::load::{Loaded, Object};
use crate::resources::HostedCluster;

use crate::evaluate::report::{Report, Reports, Verdict};
use crate::evaluate::siblings::{self, Machines};
use crate::evaluate::{hostedcluster, nodepool};

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
///
/// Steps: NodePools (with their batch or facts HostedCluster) → the condition shared by the
/// NodePools of each HostedCluster (docs/rules.md §H3) → HostedClusters with their
/// NodePools' contributions (§H2).
pub fn evaluate_all_until(
    inputs: &[Loaded],
    facts: &Facts,
    deadline: Option<std::time::Instant>,
) -> Result<(Reports, Vec<Skipped>), usize> {
    let (slots, skipped) = evaluate_slots(inputs, facts, deadline)?;
    Ok((
        Reports {
            reports: slots.into_iter().flatten().collect(),
        },
        skipped,
    ))
}

/// [`evaluate_all`], each report with the index of the input it is about (so the caller can
/// name its file, document and `List` item).
pub fn evaluate_indexed(inputs: &[Loaded], facts: &Facts) -> (Vec<(usize, Report)>, Vec<Skipped>) {
    match evaluate_slots(inputs, facts, None) {
        Ok((slots, skipped)) => (
            slots
                .into_iter()
                .enumerate()
                .filter_map(|(i, r)| Some((i, r?)))
                .collect(),
            skipped,
        ),
        // without a deadline the evaluation always completes
        Err(_) => (Vec::new(), Vec::new()),
    }
}

/// One slot per input: its report, or `None` for inputs that are not evaluated.
fn evaluate_slots(
    inputs: &[Loaded],
    facts: &Facts,
    deadline: Option<std::time::Instant>,
) -> Result<(Vec<Option<Report>>, Vec<Skipped>), usize> {
    let batch_hcs = hostedclusters_by_key(inputs);
    let past = |i: usize| deadline.is_some_and(|d| i.is_multiple_of(16) && std::time::Instant::now() >= d);
    let mut slots: Vec<Option<Report>> = vec![None; inputs.len()];
    let mut groups: HashMap<ClusterKey, Vec<(usize, Machines)>> = HashMap::new();
    let mut skipped = Vec::new();

    for (i, l) in inputs.iter().enumerate() {
        if past(i) {
            return Err(i);
        }
        match &l.object {
            Object::NodePool(np) => {
                let key = (
                    np.metadata.namespace.clone().unwrap_or_default(),
                    np.spec.cluster_name.clone(),
                );
                let hc = batch_hcs
                    .get(&(key.0.as_str(), key.1.as_str()))
                    .copied()
                    .or_else(|| facts.hosted_cluster(&key.0, &key.1));
                let (report, machines) = nodepool::evaluate_with_machines(np, hc, facts);
                groups.entry(key).or_default().push((i, machines));
                slots[i] = Some(report);
            }
            Object::HostedCluster(_) => {}
            _ => skipped.push(skip(l)),
        }
    }
    let nodepool_verdicts = aggregate_siblings(&mut slots, groups);
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
    Ok((slots, skipped))
}

/// (namespace, HostedCluster name).
type ClusterKey = (String, String);

/// The batch's HostedClusters by (namespace, name); the first of duplicates wins, as a
/// linear scan would pick it.
fn hostedclusters_by_key(inputs: &[Loaded]) -> HashMap<(&str, &str), &HostedCluster> {
    let mut batch_hcs: HashMap<(&str, &str), &HostedCluster> = HashMap::new();
    for l in inputs {
        if let Object::HostedCluster(hc) = &l.object {
            batch_hcs.entry(hc.key()).or_insert(hc.as_ref());
        }
    }
    batch_hcs
}

/// Why an input that is neither a NodePool nor a HostedCluster got no report.
fn skip(l: &Loaded) -> Skipped {
    let reason = match &l.object {
        Object::Other {
            api_version,
            kind,
            name,
        } => format!(
            "{api_version} {kind} {name} is not evaluated (only hypershift.openshift.io/v1beta1 NodePool and HostedCluster are)"
        ),
        _ => "describes the cluster, not a workload: pass it as facts (--facts)".into(),
    };
    Skipped {
        source: l.source.to_string(),
        kind: l.object.kind().to_owned(),
        reason,
    }
}

/// Gives the NodePools of each HostedCluster the condition HyperShift aggregates over all
/// of them (§H3), then returns what each contributes to its HostedCluster (§H2), in input
/// order. `groups`: slot indices of each cluster's NodePools.
fn aggregate_siblings(
    slots: &mut [Option<Report>],
    groups: HashMap<ClusterKey, Vec<(usize, Machines)>>,
) -> HashMap<ClusterKey, Vec<(String, Verdict)>> {
    let mut member_of: Vec<Option<(usize, Machines)>> = vec![None; slots.len()];
    let keys: Vec<ClusterKey> = groups
        .into_iter()
        .enumerate()
        .map(|(g, (key, members))| {
            for (i, machines) in members {
                member_of[i] = Some((g, machines));
            }
            key
        })
        .collect();
    let mut by_group: Vec<Vec<(&mut Report, Machines)>> = keys.iter().map(|_| Vec::new()).collect();
    for (slot, member) in slots.iter_mut().zip(member_of) {
        if let (Some(report), Some((g, machines))) = (slot.as_mut(), member) {
            by_group[g].push((report, machines));
        }
    }
    keys.into_iter()
        .zip(by_group)
        .map(|(key, mut members)| {
            siblings::aggregate(&mut members, &key.0, &key.1);
            let verdicts = members
                .iter()
                .map(|(r, _)| (r.name.clone(), r.hostedcluster_contribution()))
                .collect();
            (key, verdicts)
        })
        .collect()
}
