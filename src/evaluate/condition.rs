//! The `KubeVirtNodesLiveMigratable` condition HyperShift would report, in its exact
//! format (docs/rules.md §H1 and HS `nodepool_controller.go` `aggregateMachineReasonsAndMessages`;
//! §H2 for HostedClusters, §H3 for the aggregation over a HostedCluster's NodePools).

use std::fmt::Write as _;

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

    let lines = usize::try_from(not_migratable).unwrap_or(usize::MAX);
    let mut message =
        String::with_capacity(MAX_MESSAGE_LENGTH.min(lines.saturating_mul(256).saturating_add(64)));
    // Writing into a String cannot fail.
    let _ = writeln!(
        message,
        "{not_migratable} of {total} machines are not live migratable"
    );
    for reason in &reasons {
        let before = message.len();
        append_reason_block(&mut message, reason, &failing);
        if message.len() + END_OF_GLOBAL_MESSAGE.len() > MAX_GLOBAL_MESSAGE_LENGTH {
            message.truncate(before);
            message.push_str(END_OF_GLOBAL_MESSAGE);
            break;
        }
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
/// characters with `... too many similar errors`; appended to `out`.
fn append_reason_block(out: &mut String, reason: &str, failing: &[(&MachineGroup, &FailedCheck)]) {
    let mut streams: Vec<MachineLines> = failing
        .iter()
        .filter(|(_, check)| check.reason == reason)
        .map(|(g, check)| MachineLines::new(g.nodepool, g.machines, check))
        .collect();
    let start = out.len();
    loop {
        streams.iter_mut().for_each(MachineLines::fill);
        let smallest = streams
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.current().map(|line| (i, line)))
            .min_by(|a, b| a.1.cmp(b.1))
            .map(|(i, _)| i);
        let Some(stream) = smallest.map(|i| &mut streams[i]) else {
            break;
        };
        let line = stream.current().unwrap_or_default();
        if out.len() - start + line.len() > MAX_MESSAGE_LENGTH {
            out.push_str(END_OF_MESSAGE);
            break;
        }
        out.push_str(line);
        stream.consume();
    }
}

/// One NodePool's machine lines `Machine <np>-<n>: <reason>: <np>-<n> is not a live
/// migratable machine: <message>` in `sort.Strings` order (see [`sorted_machine_numbers`]),
/// rendered one at a time into a reused buffer.
struct MachineLines<'a> {
    nodepool: &'a str,
    check: &'a FailedCheck,
    numbers: SortedMachineNumbers,
    machine: String,
    line: String,
    /// `line` holds the next line, not yet consumed.
    ready: bool,
}

impl<'a> MachineLines<'a> {
    fn new(nodepool: &'a str, machines: u64, check: &'a FailedCheck) -> Self {
        Self {
            nodepool,
            check,
            numbers: sorted_machine_numbers(machines),
            // `<nodepool>-<n>`, and a line with it twice plus reason and message.
            machine: String::with_capacity(nodepool.len() + 21),
            line: String::with_capacity(256 + 3 * nodepool.len()),
            ready: false,
        }
    }

    /// Renders the next line into the buffer unless one is waiting or none is left.
    fn fill(&mut self) {
        if self.ready {
            return;
        }
        let Some(n) = self.numbers.next() else {
            return;
        };
        self.machine.clear();
        self.machine.push_str(self.nodepool);
        // Writing into a String cannot fail.
        let _ = write!(self.machine, "-{n}");
        let line = &mut self.line;
        line.clear();
        for part in [
            "Machine ",
            &self.machine,
            ": ",
            self.check.reason,
            ": ",
            &self.machine,
        ] {
            line.push_str(part);
        }
        line.push_str(" is not a live migratable machine: ");
        self.check.message.write_to(line, &self.machine);
        line.push('\n');
        self.ready = true;
    }

    fn current(&self) -> Option<&str> {
        self.ready.then_some(self.line.as_str())
    }

    fn consume(&mut self) {
        self.ready = false;
    }
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
pub fn sorted_machine_numbers(max: u64) -> SortedMachineNumbers {
    SortedMachineNumbers {
        max,
        // one entry per decimal digit at most
        stack: Vec::with_capacity(20),
        next_root: 1,
    }
}

/// The iterator of [`sorted_machine_numbers`].
pub struct SortedMachineNumbers {
    max: u64,
    /// (number, next child digit to visit); children are visited before the number.
    stack: Vec<(u64, u8)>,
    next_root: u64,
}

impl Iterator for SortedMachineNumbers {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        loop {
            if self.stack.is_empty() {
                if self.next_root > 9 || self.next_root > self.max {
                    return None;
                }
                self.stack.push((self.next_root, 0));
                self.next_root += 1;
            }
            let top = self.stack.len() - 1;
            let (n, digit) = self.stack[top];
            if digit < 10 {
                self.stack[top].1 += 1;
                let child = n.checked_mul(10).and_then(|c| c.checked_add(u64::from(digit)));
                if let Some(child) = child.filter(|c| *c <= self.max) {
                    self.stack.push((child, 0));
                }
                continue;
            }
            self.stack.pop();
            return Some(n);
        }
    }
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
