//! §H3: HyperShift's `KubeVirtNodesLiveMigratable` condition is not about one NodePool. HS
//! `nodepool/kubevirt.go` `setAllMachinesLMCondition` lists every KubevirtMachine of the
//! hosted control plane namespace (`<namespace>-<cluster>`, HS `manifests.go`
//! `HostedControlPlaneNamespace`), i.e. the machines of all NodePools of the HostedCluster,
//! and writes the same aggregate into each KubeVirt NodePool's status. When the sibling
//! NodePools are known (same batch, or the audit's NodePool cache) we predict that shared
//! condition; each NodePool's verdict stays about its own VMs.

use super::condition::{self, MachineGroup};
use super::judge::FailedCheck;
use super::report::{Condition, Finding, Report};

pub const AGGREGATED: &str = "ConditionAggregatesSiblingNodePools";

/// Siblings named in each NodePool's finding, and undecided NodePools named in an `Unknown`
/// condition; the rest are counted. Listing all would make a HostedCluster's reports grow
/// with the square of its NodePools (1,000 NodePools: ~60 MB of findings in the audit).
pub const LISTED: usize = 10;

/// What one NodePool's machines will report once they exist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Machines {
    /// Whether the NodePool is a KubeVirt one (only those get the condition, §R1).
    pub kubevirt: bool,
    /// KubevirtMachines it adds to the namespace: `replicas` (or autoscaling `min`), 0 when
    /// HyperShift cannot build its machine template.
    pub count: u64,
    pub state: MachineState,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MachineState {
    /// The VMIs run and report `LiveMigratable=True`.
    Migratable,
    /// Every machine reports `VMLiveMigratable=False` with this check.
    NotMigratable(FailedCheck),
    /// The VMs never run: the machines exist but report no `VMLiveMigratable` condition.
    NeverRun,
    /// The facts do not decide it; why.
    Undecided(String),
}

impl Machines {
    /// A NodePool that contributes nothing (not KubeVirt).
    pub fn none() -> Self {
        Self {
            kubevirt: false,
            count: 0,
            state: MachineState::NeverRun,
        }
    }
}

/// The condition every KubeVirt NodePool in `members` (all of one HostedCluster) shows:
/// `None` without machines, `Unknown` when a member with machines is undecided.
pub fn shared_condition(members: &[(&str, &Machines)]) -> Option<Condition> {
    let undecided: Vec<(&str, &str)> = members
        .iter()
        .filter(|(_, m)| m.count > 0)
        .filter_map(|(name, m)| match &m.state {
            MachineState::Undecided(why) => Some((*name, why.as_str())),
            _ => None,
        })
        .collect();
    let groups: Vec<MachineGroup> = members
        .iter()
        .map(|(name, m)| MachineGroup {
            nodepool: name,
            machines: m.count,
            failing: match &m.state {
                MachineState::NotMigratable(check) => Some(check),
                _ => None,
            },
        })
        .collect();
    let predicted = condition::machines_condition(&groups)?;
    if undecided.is_empty() {
        Some(predicted)
    } else {
        let listed: Vec<String> = undecided
            .iter()
            .take(LISTED)
            .map(|(name, why)| format!("NodePool {name}: {why}"))
            .collect();
        Some(Condition::unknown(format!(
            "cannot be predicted: {}{}",
            listed.join("; "),
            more(undecided.len(), "; ", "undecided NodePool(s)")
        )))
    }
}

/// Replaces each KubeVirt NodePool report's condition by the shared one and says so in an
/// info finding naming the siblings. `group`: the NodePools of HostedCluster
/// `namespace`/`cluster`, with their machines. Groups with fewer than two KubeVirt
/// NodePools are left as they are (the NodePool's own condition is already the aggregate).
pub fn aggregate(group: &mut [(&mut Report, Machines)], namespace: &str, cluster: &str) {
    let members: Vec<(String, Machines)> = group
        .iter()
        .filter(|(_, m)| m.kubevirt)
        .map(|(r, m)| (r.name.clone(), m.clone()))
        .collect();
    if members.len() < 2 {
        return;
    }
    let refs: Vec<(&str, &Machines)> = members.iter().map(|(n, m)| (n.as_str(), m)).collect();
    let shared = shared_condition(&refs);
    for (report, machines) in group.iter_mut().filter(|(_, m)| m.kubevirt) {
        let others = members.iter().filter(|(n, _)| *n != report.name);
        let listed: Vec<String> = others.clone().take(LISTED).map(|(n, m)| describe(n, m)).collect();
        let siblings = format!(
            "{}{}",
            listed.join(", "),
            more(others.count(), ", ", "sibling NodePool(s)")
        );
        report
            .findings
            .push(finding(namespace, cluster, &siblings, machines, shared.as_ref()));
        report.condition = shared.clone();
    }
}

/// `<sep>and N more <what>` for the part of `total` beyond [`LISTED`], else nothing.
fn more(total: usize, sep: &str, what: &str) -> String {
    match total.saturating_sub(LISTED) {
        0 => String::new(),
        n => format!("{sep}and {n} more {what}"),
    }
}

fn describe(name: &str, m: &Machines) -> String {
    let state = match &m.state {
        _ if m.count == 0 => "no machines".to_owned(),
        MachineState::Migratable => "live migratable".to_owned(),
        MachineState::NotMigratable(check) => format!("not live migratable: {}", check.reason),
        MachineState::NeverRun => "VMs never run".to_owned(),
        MachineState::Undecided(_) => "cannot be predicted".to_owned(),
    };
    format!("{name} ({} machine(s), {state})", m.count)
}

fn finding(
    namespace: &str,
    cluster: &str,
    siblings: &str,
    own: &Machines,
    shared: Option<&Condition>,
) -> Finding {
    let control_plane = format!("{namespace}-{}", cluster.replace('.', "-"));
    let shows = match shared {
        None => "no condition (no machines in the namespace)".to_owned(),
        Some(c) => {
            let first_line = c.message.lines().next().unwrap_or_default();
            format!("{} ({}): {first_line}", c.status, c.reason)
        }
    };
    Finding::info(
        AGGREGATED,
        "spec.clusterName",
        format!(
            "HyperShift aggregates all KubevirtMachines of the hosted control plane namespace {control_plane} into every NodePool's KubeVirtNodesLiveMigratable condition, so this NodePool ({} machine(s) of its own) will show {shows}; sibling NodePool(s) of HostedCluster {namespace}/{cluster}: {}. The verdict is about this NodePool's own VMs",
            own.count, siblings
        ),
        "none needed for this NodePool; to clear lines about other machines, fix the sibling NodePools' findings",
    )
}
