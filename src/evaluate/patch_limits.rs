//! Bounds on what a `kubevirt-vm-jsonpatch` annotation may make us compute (hardening).
//!
//! A patch is untrusted input that we apply to a document, so its cost must be bounded
//! before it is paid: an `add` with a 14,000-segment path builds (and later drops) a value
//! nested 14,000 deep, and `copy` of `/spec` into itself doubles the document each time
//! (20 such ops reach gigabytes). HyperShift applies the same patch to the same template
//! and would exhaust its own memory or the API server's object size limit, so a patch over
//! these limits is reported as `InvalidKubevirtVMJSONPatch`: no VMs would be created.
//!
//! The limits sit far above any real patch (real paths are under 15 segments, real patches
//! a few dozen operations): Kubernetes caps all annotations of an object at 256 KiB, and
//! etcd refuses objects over 1.5 MiB, which is what a VirtualMachine must fit in.

use serde_json::Value;

use super::jsonpatch::Op;

/// Operations in one annotation (a 256 KiB annotation holds at most ~10,000 tiny ops).
pub const MAX_OPERATIONS: usize = 10_000;
/// Segments of one JSON pointer (`/spec/template/spec/domain/devices/disks/0` has 7).
pub const MAX_PATH_SEGMENTS: usize = 64;
/// The patched VirtualMachine, as JSON: etcd's default request limit (1.5 MiB). HyperShift
/// could not store a bigger VirtualMachine.
pub const MAX_DOCUMENT_BYTES: usize = 1536 * 1024;

/// Which limit a patch exceeded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("has {count} operations, more than the {MAX_OPERATIONS} this server evaluates")]
    Operations { count: usize },
    #[error(
        "operation {op} has a path of {segments} segments (at most {MAX_PATH_SEGMENTS} are evaluated; VirtualMachine fields are under 20 deep)"
    )]
    PathDepth { op: usize, segments: usize },
    #[error(
        "grows the VirtualMachine past {MAX_DOCUMENT_BYTES} bytes at operation {op} (etcd's object size limit: HyperShift could not create that VirtualMachine either)"
    )]
    DocumentSize { op: usize },
}

/// Checks what can be checked before applying anything: the operation count and every
/// path's depth.
pub fn check_patch(patch: &[Op]) -> Result<(), LimitError> {
    if patch.len() > MAX_OPERATIONS {
        return Err(LimitError::Operations { count: patch.len() });
    }
    for (i, op) in patch.iter().enumerate() {
        let from = match op {
            Op::Move { from, .. } | Op::Copy { from, .. } => segments(from),
            _ => 0,
        };
        let segments = segments(op.path()).max(from);
        if segments > MAX_PATH_SEGMENTS {
            return Err(LimitError::PathDepth { op: i + 1, segments });
        }
    }
    Ok(())
}

fn segments(pointer: &str) -> usize {
    pointer.matches('/').count()
}

/// The value at `pointer`, read only (`~1` and `~0` unescaped, array indexes in range);
/// `None` when it cannot be found this simply.
fn lookup<'a>(doc: &'a Value, pointer: &str) -> Option<&'a Value> {
    let mut cur = doc;
    for raw in pointer.split('/').skip(1) {
        let tok = raw.replace("~1", "/").replace("~0", "~");
        cur = match cur {
            Value::Object(m) => m.get(&tok)?,
            Value::Array(a) => a.get(tok.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// A running upper bound of the patched document's JSON size: what each operation adds is
/// measured before it is applied (removals are not subtracted, so the bound only grows).
/// Total measuring work stays below twice the limit.
#[derive(Clone, Copy, Debug)]
pub struct SizeBudget {
    bytes: usize,
}

impl SizeBudget {
    pub fn new(doc: &Value) -> Self {
        Self {
            bytes: json_size(doc, usize::MAX),
        }
    }

    /// Accounts for operation number `op` (1-based) before it is applied to `doc`.
    pub fn charge(&mut self, op: usize, operation: &Op, doc: &Value) -> Result<(), LimitError> {
        let room = MAX_DOCUMENT_BYTES.saturating_sub(self.bytes);
        let added = match operation {
            Op::Add { value, .. } | Op::Replace { value, .. } => json_size(value, room + 1),
            // a copy adds at most the whole document (when its source is not found simply)
            Op::Copy { from, .. } => lookup(doc, from).map_or(self.bytes, |v| json_size(v, room + 1)),
            Op::Remove { .. } | Op::Move { .. } | Op::Test { .. } => 0,
        };
        self.bytes = self.bytes.saturating_add(added);
        if self.bytes > MAX_DOCUMENT_BYTES {
            return Err(LimitError::DocumentSize { op });
        }
        Ok(())
    }
}

/// The length of `v` as compact JSON (strings counted without escapes), counting stops
/// once `stop` is exceeded. Iterative: a deep value cannot overflow the stack.
fn json_size(v: &Value, stop: usize) -> usize {
    let mut total = 0usize;
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        total += match v {
            Value::Null | Value::Bool(_) => 5,
            Value::Number(_) => 8,
            Value::String(s) => s.len() + 2,
            Value::Array(a) => {
                stack.extend(a.iter());
                2 + a.len()
            }
            Value::Object(m) => {
                for (k, v) in m {
                    total += k.len() + 3;
                    stack.push(v);
                }
                2 + m.len()
            }
        };
        if total > stop {
            break;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patch(ops: Value) -> Vec<Op> {
        super::super::jsonpatch::decode(&ops.to_string()).unwrap()
    }

    #[test]
    fn a_deep_path_is_refused_before_anything_is_built() {
        let path = "/a".repeat(14_000);
        let p = patch(json!([{"op": "add", "path": path, "value": 1}]));
        assert_eq!(
            check_patch(&p),
            Err(LimitError::PathDepth {
                op: 1,
                segments: 14_000
            })
        );
        let ok = patch(json!([{"op": "add", "path": "/a".repeat(MAX_PATH_SEGMENTS), "value": 1}]));
        assert_eq!(check_patch(&ok), Ok(()));
    }

    #[test]
    fn doubling_copies_stop_at_the_size_limit() {
        let mut doc = json!({"spec": {"x": "y".repeat(100_000)}});
        let mut budget = SizeBudget::new(&doc);
        let op = patch(json!([{"op": "copy", "from": "/spec", "path": "/spec/again"}])).remove(0);
        let mut stopped_at = None;
        for i in 1..=30 {
            if let Err(e) = budget.charge(i, &op, &doc) {
                stopped_at = Some(e);
                break;
            }
            super::super::jsonpatch::apply_op(&mut doc, &op).unwrap();
        }
        // 100 KB doubles past 1.5 MiB at the fifth copy
        assert_eq!(stopped_at, Some(LimitError::DocumentSize { op: 5 }));
    }

    #[test]
    fn size_is_close_to_the_serialised_length() {
        let v = json!({"a": [1, "bc", {"d": null}], "e": true});
        let real = serde_json::to_string(&v).unwrap().len();
        let estimate = json_size(&v, usize::MAX);
        assert!(
            estimate >= real / 2 && estimate <= real * 2,
            "{estimate} vs {real}"
        );
    }
}
