//! Audit of existing objects: every interval, evaluate every cached NodePool and
//! HostedCluster against the current facts, export one gauge series per object, and
//! publish the ones at risk (not migratable, or undecidable) for `GET /v1/report` — so an
//! operator sees the risk before the next management-cluster upgrade, not after.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kube::runtime::reflector::Store;
use tokio::sync::watch;

use crate::evaluate::siblings::{self, Machines};
use crate::evaluate::{Report, Reports, Verdict, evaluate_hostedcluster, nodepool};
use crate::facts::Snapshot;
use crate::resources::NodePool;
use crate::server::metrics::{Metrics, ObjectLabels};

/// Evaluates every object: NodePools with their HostedCluster from the facts, the condition
/// HyperShift aggregates over each HostedCluster's NodePools (docs/rules.md §H3), then
/// HostedClusters with their NodePools' verdicts. Sorted by kind, namespace, name.
pub fn evaluate_all(snapshot: &Snapshot, nodepools: &[Arc<NodePool>]) -> Vec<Report> {
    let facts = &snapshot.facts;
    let mut evaluated: Vec<((String, String), Report, Machines)> = nodepools
        .iter()
        .map(|np| {
            let ns = np.metadata.namespace.clone().unwrap_or_default();
            let hc = facts.hosted_cluster(&ns, &np.spec.cluster_name);
            let (report, machines) = nodepool::evaluate_with_machines(np, hc, facts);
            ((ns, np.spec.cluster_name.clone()), report, machines)
        })
        .collect();
    let mut groups: HashMap<(String, String), Vec<(&mut Report, Machines)>> = HashMap::new();
    for (key, report, machines) in &mut evaluated {
        groups
            .entry(key.clone())
            .or_default()
            .push((report, machines.clone()));
    }
    let mut by_cluster: HashMap<(String, String), Vec<(String, Verdict)>> = HashMap::new();
    for (key, mut members) in groups {
        siblings::aggregate(&mut members, &key.0, &key.1);
        let verdicts = members
            .iter()
            .map(|(r, _)| (r.name.clone(), r.hostedcluster_contribution()))
            .collect();
        by_cluster.insert(key, verdicts);
    }
    let mut reports: Vec<Report> = evaluated.into_iter().map(|(_, r, _)| r).collect();
    for hc in facts.hosted_clusters() {
        let (ns, name) = hc.key();
        let nps = by_cluster
            .get(&(ns.to_owned(), name.to_owned()))
            .map(Vec::as_slice)
            .unwrap_or_default();
        reports.push(evaluate_hostedcluster(hc, facts, nps));
    }
    reports.sort_by(|a, b| (a.kind, &a.namespace, &a.name).cmp(&(b.kind, &b.namespace, &b.name)));
    reports
}

/// Runs the audit loop: first once the facts are ready, then every `every`.
pub async fn run(
    mut snapshot: watch::Receiver<Arc<Snapshot>>,
    nodepools: Store<NodePool>,
    every: Duration,
    publish: watch::Sender<Option<Arc<Reports>>>,
    metrics: Arc<Metrics>,
) {
    if snapshot.wait_for(|s| s.ready).await.is_err() {
        return;
    }
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let snap = snapshot.borrow().clone();
        let started = std::time::Instant::now();
        let reports = evaluate_all(&snap, &nodepools.state());
        metrics.objects.clear();
        for r in &reports {
            metrics
                .objects
                .get_or_create(&ObjectLabels {
                    kind: r.kind,
                    namespace: r.namespace.clone().unwrap_or_default(),
                    name: r.name.clone(),
                    verdict: r.verdict.as_str(),
                })
                .set(1);
        }
        let at_risk: Vec<Report> = reports
            .iter()
            .filter(|r| matches!(r.verdict, Verdict::NotMigratable | Verdict::Unknown))
            .cloned()
            .collect();
        tracing::info!(
            objects = reports.len(),
            at_risk = at_risk.len(),
            duration_ms = started.elapsed().as_millis() as u64,
            "audit of existing NodePools and HostedClusters"
        );
        publish.send_replace(Some(Arc::new(Reports { reports: at_risk })));
    }
}
