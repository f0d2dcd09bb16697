//! `kubevirt-vm-jsonpatch` annotations built from structured input, mutated in the three
//! dimensions that once crashed or exhausted the server: path depth (up to 20,000
//! segments), document growth (`copy` of a large subtree into itself) and operation count.
//! Every input must be evaluated (or refused with a finding) without a panic, an abort or
//! unbounded memory.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use live_migration_guard::evaluate::nodepool;
use live_migration_guard::facts::Facts;
use live_migration_guard::resources::NodePool;
use serde_json::{Value, json};

#[derive(Arbitrary, Debug)]
enum Kind {
    Add,
    Remove,
    Replace,
    Move,
    Copy,
    Test,
}

#[derive(Arbitrary, Debug)]
struct Op {
    kind: Kind,
    /// Indexes into SEGMENTS, repeated `repeat` times: depth grows fast.
    path: Vec<u8>,
    repeat: u16,
    from: Vec<u8>,
    /// Nesting depth of the value (capped by serde_json's recursion limit when parsed).
    value_depth: u8,
    value_len: u16,
}

#[derive(Arbitrary, Debug)]
struct Input {
    ops: Vec<Op>,
    /// Repeats the whole op list: op counts past the limit.
    times: u8,
}

const SEGMENTS: [&str; 12] = [
    "spec", "template", "domain", "devices", "disks", "-", "0", "1", "-1", "metadata", "annotations", "a~1b",
];

fn pointer(indexes: &[u8], repeat: u16) -> String {
    let mut p = String::new();
    for _ in 0..=repeat.min(20_000 / indexes.len().max(1) as u16) {
        for i in indexes {
            p.push('/');
            p.push_str(SEGMENTS[*i as usize % SEGMENTS.len()]);
        }
    }
    p
}

fn value(depth: u8, len: u16) -> Value {
    let mut v = json!("x".repeat(len as usize));
    for _ in 0..depth.min(200) {
        v = json!([v]);
    }
    v
}

fn op_json(op: &Op) -> Value {
    let path = pointer(&op.path, op.repeat);
    let from = if op.from.is_empty() { "/spec".to_owned() } else { pointer(&op.from, 0) };
    let v = value(op.value_depth, op.value_len);
    match op.kind {
        Kind::Add => json!({"op": "add", "path": path, "value": v}),
        Kind::Remove => json!({"op": "remove", "path": path}),
        Kind::Replace => json!({"op": "replace", "path": path, "value": v}),
        Kind::Move => json!({"op": "move", "from": from, "path": path}),
        Kind::Copy => json!({"op": "copy", "from": from, "path": path}),
        Kind::Test => json!({"op": "test", "path": path, "value": v}),
    }
}

fuzz_target!(|input: Input| {
    let ops: Vec<Value> = input.ops.iter().map(op_json).collect();
    let mut all = Vec::new();
    for _ in 0..=input.times.min(40) {
        all.extend(ops.iter().cloned());
    }
    let annotation = Value::Array(all).to_string();
    let np = json!({
        "apiVersion": "hypershift.openshift.io/v1beta1", "kind": "NodePool",
        "metadata": {"name": "np", "namespace": "clusters",
                     "annotations": {"hypershift.openshift.io/kubevirt-vm-jsonpatch": annotation}},
        "spec": {"clusterName": "c", "replicas": 2,
                 "platform": {"type": "KubeVirt", "kubevirt": {}}}
    });
    if let Ok(np) = serde_json::from_value::<NodePool>(np) {
        let _ = nodepool::evaluate(&np, None, &Facts::none());
    }
});
