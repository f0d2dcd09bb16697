//! The `KubeVirtNodesLiveMigratable` condition HyperShift would report, in its exact
//! format (docs/rules.md §H1 and HS `nodepool_controller.go` `aggregateMachineReasonsAndMessages`;
//! §H2 for HostedClusters).

use super::judge::FailedCheck;
use super::report::{CONDITION_TYPE, Condition};

const END_OF_MESSAGE: &str = "... too many similar errors\n";
const END_OF_GLOBAL_MESSAGE: &str = "... message truncated\n";
const END_OF_REASONS: &str = ",ReasonsTruncated";
const MAX_MESSAGE_LENGTH: usize = 1000;
const MAX_GLOBAL_MESSAGE_LENGTH: usize = 3000;
const MAX_REASON_LENGTH: usize = 1024;

/// The NodePool condition when every one of `machines` predicted machines fails `check`.
///
/// Machine names are placeholders `<nodepool>-<n>` (CAPI adds random suffixes we cannot
/// predict). Lines are emitted in Go's `sort.Strings` order of the real lines — a name
/// that is a prefix of another sorts after it (`:` > digits) — generated lazily so a huge
/// `replicas` costs no more than the 1,000-character block it is cut to.
pub fn nodepool_not_migratable(nodepool: &str, machines: u64, check: &FailedCheck) -> Condition {
    let mut message = format!("{machines} of {machines} machines are not live migratable\n");
    let mut block = String::new();
    for n in sorted_machine_numbers(machines) {
        let machine = format!("{nodepool}-{n}");
        let line = format!(
            "Machine {machine}: {}: {machine} is not a live migratable machine: {}\n",
            check.reason,
            check.message.render(&machine)
        );
        if block.len() + line.len() > MAX_MESSAGE_LENGTH {
            block.push_str(END_OF_MESSAGE);
            break;
        }
        block.push_str(&line);
    }
    if message.len() + block.len() + END_OF_GLOBAL_MESSAGE.len() > MAX_GLOBAL_MESSAGE_LENGTH {
        message.push_str(END_OF_GLOBAL_MESSAGE);
    } else {
        message.push_str(&block);
    }
    Condition {
        type_: CONDITION_TYPE,
        status: "False",
        reason: truncate_reasons(&[check.reason]),
        message,
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
