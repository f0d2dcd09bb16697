//! The `KubeVirtNodesLiveMigratable` condition HyperShift would report, in its exact
//! format (docs/rules.md §H1 and HS `nodepool_controller.go` `aggregateMachineReasonsAndMessages`;
//! §H2 for HostedClusters, §H3 for the aggregation over a HostedCluster's NodePools).

use super::judge::FailedCheck;
use super::report::{CONDITION_TYPE, Condition};

const END_OF_MESSAGE: &str = "... too many similar errors\n";
const END_OF_GLOBAL_MESSAGE: &str = "... message truncated\n";
const END_OF_REASONS: &str = ",ReasonsTruncated";
const MAX_MESSAGE_LENGTH: usize = 1000;
const MAX_GLOBAL_MESSAGE_LENGTH: usize = 3000;
const MAX_REASON_LENGTH: usize = 1024;

/// The machines one NodePool adds to its hosted control plane namespace (§H1, §H3).
#[derive(Clone, Copy, Debug)]
pub struct MachineGroup<'a> {
    pub nodepool: &'a str,
    pub machines: u64,
    /// The check every one of these machines fails; `None` when they report no
    /// `VMLiveMigratable=False` (live migratable, or VMs that never run).
    pub failing: Option<&'a FailedCheck>,
}

/// The NodePool condition when every one of `machines` predicted machines fails `check`.
pub fn nodepool_not_migratable(nodepool: &str, machines: u64, check: &FailedCheck) -> Condition {
    let group = MachineGroup {
        nodepool,
        machines,
        failing: Some(check),
    };
    machines_condition(&[group]).unwrap_or_else(Condition::all_is_well)
}

/// The condition HyperShift sets from all KubevirtMachines of a hosted control plane
/// namespace (HS `kubevirt.go` `setAllMachinesLMCondition`): none without machines, `True`
/// when none reports `VMLiveMigratable=False`, else `N of M machines are not live
/// migratable` with one block per reason in `sort.Strings` order, each block's lines in
/// `sort.Strings` order, cut like `aggregateMachineReasonsAndMessages`.
///
/// Machine names are placeholders `<nodepool>-<n>` (CAPI adds random suffixes we cannot
/// predict). Lines are generated lazily, so a huge `replicas` costs no more than the
/// 1,000-character block it is cut to.
pub fn machines_condition(groups: &[MachineGroup]) -> Option<Condition> {
    let total = groups.iter().fold(0u64, |n, g| n.saturating_add(g.machines));
    if total == 0 {
        return None;
    }
    let failing: Vec<(&MachineGroup, &FailedCheck)> = groups
        .iter()
        .filter(|g| g.machines > 0)
        .filter_map(|g| g.failing.map(|check| (g, check)))
        .collect();
    let not_migratable = failing
        .iter()
        .fold(0u64, |n, (g, _)| n.saturating_add(g.machines));
    if not_migratable == 0 {
        return Some(Condition::all_is_well());
    }
    let mut reasons: Vec<&'static str> = failing.iter().map(|(_, check)| check.reason).collect();
    reasons.sort_unstable();
    reasons.dedup();

    let mut message = format!("{not_migratable} of {total} machines are not live migratable\n");
    for reason in &reasons {
        let block = reason_block(reason, &failing);
        if message.len() + block.len() + END_OF_GLOBAL_MESSAGE.len() > MAX_GLOBAL_MESSAGE_LENGTH {
            message.push_str(END_OF_GLOBAL_MESSAGE);
            break;
        }
        message.push_str(&block);
    }
    Some(Condition {
        type_: CONDITION_TYPE,
        status: "False",
        reason: truncate_reasons(&reasons),
        message,
    })
}

/// HS `aggregateMachineMessages` over one reason's lines, sorted: the lines of every
/// NodePool failing with `reason`, merged in byte order (Go's `sort.Strings`), cut at 1,000
/// characters with `... too many similar errors`.
fn reason_block(reason: &str, failing: &[(&MachineGroup, &FailedCheck)]) -> String {
    let mut streams: Vec<_> = failing
        .iter()
        .filter(|(_, check)| check.reason == reason)
        .map(|(g, check)| machine_lines(g.nodepool, g.machines, check).peekable())
        .collect();
    let mut block = String::new();
    loop {
        let smallest = streams
            .iter_mut()
            .enumerate()
            .filter_map(|(i, s)| s.peek().map(|line| (i, line)))
            .min_by(|a, b| a.1.cmp(b.1))
            .map(|(i, _)| i);
        let Some(line) = smallest.and_then(|i| streams[i].next()) else {
            break;
        };
        if block.len() + line.len() > MAX_MESSAGE_LENGTH {
            block.push_str(END_OF_MESSAGE);
            break;
        }
        block.push_str(&line);
    }
    block
}

/// One NodePool's machine lines `Machine <np>-<n>: <reason>: <message>` in `sort.Strings`
/// order (see [`sorted_machine_numbers`]).
fn machine_lines<'a>(
    nodepool: &'a str,
    machines: u64,
    check: &'a FailedCheck,
) -> impl Iterator<Item = String> + 'a {
    use std::fmt::Write as _;
    sorted_machine_numbers(machines).map(move |n| {
        let machine = format!("{nodepool}-{n}");
        // One buffer per line (writing into a String cannot fail).
        let mut line = String::with_capacity(160 + 2 * machine.len());
        let _ = write!(
            line,
            "Machine {machine}: {}: {machine} is not a live migratable machine: ",
            check.reason
        );
        check.message.write_to(&mut line, &machine);
        line.push('\n');
        line
    })
}

/// The HostedCluster condition (§H2) listing the NodePools predicted not migratable.
pub fn hostedcluster_not_migratable(nodepools: &str) -> Condition {
    Condition {
        type_: CONDITION_TYPE,
        status: "False",
        reason: "KubeVirtNodesNotLiveMigratable".into(),
        message: format!(
            "Non-live-migratable node(s) have been found on the following NodePool(s) attached to this Hosted Cluster: {nodepools}. It is recommended to use live-migratable nodes in order to improve cluster stability and downtime. Check the reason for the non-live-migratability in the corresponding NodePool(s)."
        ),
    }
}

/// HS `truncateReasons`: join with `,`, cut to 1,024 characters with `,ReasonsTruncated`.
fn truncate_reasons(reasons: &[&str]) -> String {
    let joined = reasons.join(",");
    if joined.len() <= MAX_REASON_LENGTH {
        return joined;
    }
    let mut out = String::new();
    for (i, r) in reasons.iter().enumerate() {
        let sep = if i > 0 { "," } else { "" };
        if out.len() + sep.len() + r.len() + END_OF_REASONS.len() > MAX_REASON_LENGTH {
            out.push_str(END_OF_REASONS);
            break;
        }
        out.push_str(sep);
        out.push_str(r);
    }
    out
}

/// Numbers `1..=max` in the order Go's `sort.Strings` puts lines `"Machine <np>-<n>: …"`:
/// a post-order walk of the decimal digit trie (children `n0..n9` before `n`, because the
/// `:` after a shorter number sorts after any digit).
pub fn sorted_machine_numbers(max: u64) -> impl Iterator<Item = u64> {
    // Stack of (number, next child digit to visit); children are visited before the number.
    let mut stack: Vec<(u64, u8)> = Vec::new();
    let mut next_root = 1u64;
    std::iter::from_fn(move || {
        loop {
            if stack.is_empty() {
                if next_root > 9 || next_root > max {
                    return None;
                }
                stack.push((next_root, 0));
                next_root += 1;
            }
            let top = stack.len() - 1;
            let (n, digit) = stack[top];
            if digit < 10 {
                stack[top].1 += 1;
                let child = n.checked_mul(10).and_then(|c| c.checked_add(u64::from(digit)));
                if let Some(child) = child.filter(|c| *c <= max) {
                    stack.push((child, 0));
                }
                continue;
            }
            stack.pop();
            return Some(n);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_order_matches_go_sort_strings() {
        for max in [1u64, 3, 9, 10, 12, 99, 100, 123, 1000, 1234] {
            let mut lines: Vec<(String, u64)> =
                (1..=max).map(|n| (format!("Machine np-{n}: R"), n)).collect();
            lines.sort();
            let want: Vec<u64> = lines.into_iter().map(|(_, n)| n).collect();
            let got: Vec<u64> = sorted_machine_numbers(max).collect();
            assert_eq!(got, want, "max={max}");
        }
    }

    #[test]
    fn huge_replica_counts_are_lazy() {
        let first: Vec<u64> = sorted_machine_numbers(2_147_483_647).take(3).collect();
        assert_eq!(first, vec![1_000_000_000, 1_000_000_001, 1_000_000_002]);
    }

    #[test]
    fn reasons_are_truncated_like_hypershift() {
        let long = "R".repeat(600);
        let r = truncate_reasons(&[&long, &long]);
        assert_eq!(r, format!("{long}{END_OF_REASONS}"));
        assert_eq!(truncate_reasons(&["A", "B"]), "A,B");
    }
}
