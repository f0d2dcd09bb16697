//! Property tests: the loaders and the evaluator never panic, whatever they are given.
//! `PROPTEST_CASES=100000 cargo test --release --test properties` runs longer.

mod common;

use common::*;
use live_migration_guard::batch;
use live_migration_guard::evaluate::{evaluate_hostedcluster, evaluate_nodepool};
use live_migration_guard::facts::{Facts, load};
use proptest::prelude::*;
use serde_json::{Value, json};

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        prop_oneof![
            Just("KubeVirt".to_owned()),
            Just("ReadWriteMany".to_owned()),
            Just("ReadWriteOnce".to_owned()),
            Just("Block".to_owned()),
            Just("Persistent".to_owned()),
            Just("ceph-rbd".to_owned()),
            Just("v1.7.0".to_owned()),
            ".{0,12}",
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("storageClass".to_owned()),
                    Just("accessModes".to_owned()),
                    Just("volumeMode".to_owned()),
                    Just("op".to_owned()),
                    Just("path".to_owned()),
                    Just("value".to_owned()),
                    "[a-zA-Z]{1,8}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Paths of the fields the rules read, plus the JSON-patch annotation.
const PATHS: &[&str] = &[
    "/spec/replicas",
    "/spec/clusterName",
    "/spec/platform/type",
    "/spec/platform/kubevirt",
    "/spec/platform/kubevirt/rootVolume",
    "/spec/platform/kubevirt/rootVolume/type",
    "/spec/platform/kubevirt/rootVolume/persistent",
    "/spec/platform/kubevirt/rootVolume/persistent/storageClass",
    "/spec/platform/kubevirt/rootVolume/persistent/accessModes",
    "/spec/platform/kubevirt/rootVolume/persistent/volumeMode",
    "/spec/platform/kubevirt/attachDefaultNetwork",
    "/spec/platform/kubevirt/additionalNetworks",
    "/spec/platform/kubevirt/hostDevices",
    "/metadata/annotations",
    "/metadata/name",
];

fn facts_for_props() -> Facts {
    facts(&[
        &storage_class(
            "ceph-rbd",
            "rbd.csi.ceph.com",
            &[("storageclass.kubevirt.io/is-default-virt-class", "true")],
            None,
        ),
        &profile("gp3", "ebs.csi.aws.com", &[(&["ReadWriteOnce"], "Block")]),
        &storage_class("gp3", "ebs.csi.aws.com", &[], None),
        &kubevirt("v1.7.0"),
    ])
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn loader_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = load::parse_bytes(&bytes, "fuzz");
    }

    #[test]
    fn loader_never_panics_on_text(text in "[ a-z:\\-\\[\\]{}&*!|>'\"#\n,0-9]{0,300}") {
        let _ = load::parse_bytes(text.as_bytes(), "fuzz");
    }

    #[test]
    fn loader_never_panics_on_json(v in arb_json()) {
        let _ = load::parse_bytes(v.to_string().as_bytes(), "fuzz");
    }

    /// Typed, the evaluator sees anything a schema-valid-ish object can hold; a wrong type is
    /// a load error with a field path, never a panic.
    #[test]
    fn evaluator_never_panics_on_mutated_objects(
        edits in prop::collection::vec((prop::sample::select(PATHS), arb_json()), 1..4),
        patch in prop::option::of(prop::collection::vec(
            (prop_oneof![Just("add"), Just("remove"), Just("replace"), Just("test"), Just("move"), Just("copy")],
             prop_oneof![
                Just("/spec/template/spec/domain/devices/hostDevices/-"),
                Just("/spec/dataVolumeTemplates/0/spec/storage/accessModes"),
                Just("/spec/dataVolumeTemplates/0/spec/storage"),
                Just("/spec/template/spec/volumes/0"),
                Just("/spec/template/spec/networks/0/pod"),
                Just("/spec/template/metadata/annotations"),
                Just("/spec/template/spec/domain/cpu/model"),
                Just("/spec/x/1/y"),
             ],
             arb_json()),
            0..4)),
    ) {
        let facts = facts_for_props();
        let edits: Vec<(&str, Value)> = edits.iter().map(|(p, v)| (*p, v.clone())).collect();
        let mut np = with(fixture_value("nodepool-kubevirt-rwo-root-volume.yaml"), &edits);
        if let Some(ops) = patch {
            let ops: Vec<Value> = ops.into_iter().map(|(op, path, value)| json!({"op": op, "path": path, "from": path, "value": value})).collect();
            np["metadata"]["annotations"] = json!({"hypershift.openshift.io/kubevirt-vm-jsonpatch": Value::from(ops).to_string()});
        }
        if let Ok(loaded) = load::parse_bytes(np.to_string().as_bytes(), "fuzz") {
            let (reports, _) = batch::evaluate_all(&loaded, &facts);
            for r in &reports.reports {
                prop_assert!(r.findings.iter().all(|f| !f.field.is_empty() && !f.message.is_empty()));
            }
        }
        let hc = with(fixture_value("hostedcluster-kubevirt-manual-storage-mapping.yaml"), &edits);
        if let Ok(hc) = serde_json::from_value(hc) {
            let _ = evaluate_hostedcluster(&hc, &facts, &[]);
        }
        if let Ok(np) = serde_json::from_value(np) {
            let _ = evaluate_nodepool(&np, &Facts::none());
        }
    }
}

mod admission_fuzz {
    //! Stable-toolchain fuzzing of AdmissionReview parsing + evaluation (CI runs the default
    //! 256 cases; `PROPTEST_CASES=1000000 cargo test --release --test properties` runs longer;
    //! `fuzz/` has cargo-fuzz targets for coverage-guided runs on nightly).
    use super::*;
    use live_migration_guard::admission::{self, Context, Endpoint, Mode, Policy};
    use std::collections::HashMap;

    const REVIEW_PATHS: &[&str] = &[
        "/apiVersion",
        "/kind",
        "/request",
        "/request/uid",
        "/request/kind",
        "/request/kind/group",
        "/request/kind/kind",
        "/request/subResource",
        "/request/namespace",
        "/request/operation",
        "/request/dryRun",
        "/request/object",
        "/request/oldObject",
        "/request/object/metadata/annotations",
        "/request/object/spec/platform/kubevirt/rootVolume/persistent",
        "/request/object/spec/platform/kubevirt/hostDevices",
        "/request/oldObject/spec/platform/kubevirt/rootVolume/persistent/accessModes",
    ];

    fn valid_review() -> Value {
        let np = fixture_value("nodepool-kubevirt-rwo-root-volume.yaml");
        let old = with(np.clone(), &[("/spec/replicas", json!(7))]);
        json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "u", "kind": {"group": "hypershift.openshift.io", "version": "v1beta1", "kind": "NodePool"},
                "namespace": "clusters", "name": "test1", "operation": "UPDATE",
                "object": np, "oldObject": old, "dryRun": false
            }
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn admission_never_panics(
            edits in prop::collection::vec((prop::sample::select(REVIEW_PATHS), arb_json()), 0..4),
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
            deny in any::<bool>(),
            deny_unknown in any::<bool>(),
            allow_object_override in any::<bool>(),
            hostedclusters in any::<bool>(),
        ) {
            let edits: Vec<(&str, Value)> = edits.iter().map(|(p, v)| (*p, v.clone())).collect();
            let mut body = with(valid_review(), &edits).to_string().into_bytes();
            for (at, byte) in flips {
                let i = at.index(body.len());
                body[i] = byte;
            }
            let facts = facts_for_props();
            let modes: HashMap<String, String> = [("clusters".to_owned(), "deny".to_owned())].into();
            let policy = Policy { mode: if deny { Mode::Deny } else { Mode::Warn }, deny_unknown, allow_object_override };
            let ctx = Context { facts: &facts, namespace_modes: Some(&modes), policy: &policy };
            let endpoint = if hostedclusters { Endpoint::HostedClusters } else { Endpoint::NodePools };
            if let Ok(outcome) = admission::review(&body, endpoint, &ctx) {
                let r = &outcome.review.response;
                prop_assert!(r.warnings.iter().all(|w| w.len() <= 256 && w.bytes().all(|b| (b' '..=b'~').contains(&b))));
                prop_assert!(r.warnings.iter().map(String::len).sum::<usize>() <= 4096);
                prop_assert_eq!(r.allowed, r.status.is_none());
            }
        }
    }
}

/// JSON patches mutated in size, depth and op count (the dimensions that once crashed the
/// server: a 14,000-segment path, doubling `copy` ops): evaluated or refused with a
/// finding, quickly, never a panic. The cargo-fuzz target `json_patch` explores further.
mod json_patch_limits {
    use super::*;
    use std::time::{Duration, Instant};

    fn arb_pointer() -> impl Strategy<Value = String> {
        let segment = prop_oneof![
            Just("spec"),
            Just("template"),
            Just("domain"),
            Just("devices"),
            Just("-"),
            Just("0"),
            Just("-1"),
            Just("metadata"),
        ];
        (
            prop::collection::vec(segment, 0..6),
            prop_oneof![3 => Just(1usize), 1 => 1usize..3_000],
        )
            .prop_map(|(segs, repeat)| {
                let one: String = segs.iter().map(|s| format!("/{s}")).collect();
                one.repeat(repeat)
            })
    }

    fn arb_op() -> impl Strategy<Value = Value> {
        (0..6u8, arb_pointer(), arb_pointer(), 0..400usize).prop_map(|(kind, path, from, len)| {
            let value = json!({"x": "y".repeat(len)});
            match kind {
                0 => json!({"op": "add", "path": path, "value": value}),
                1 => json!({"op": "remove", "path": path}),
                2 => json!({"op": "replace", "path": path, "value": value}),
                3 => json!({"op": "move", "from": from, "path": path}),
                4 => json!({"op": "copy", "from": "/spec", "path": path}),
                _ => json!({"op": "copy", "from": from, "path": path}),
            }
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn patches_are_bounded(ops in prop::collection::vec(arb_op(), 0..40), times in prop_oneof![3 => 1usize..4, 1 => 250usize..300]) {
            let mut all = Vec::new();
            for _ in 0..times {
                all.extend(ops.iter().cloned());
            }
            let text = Value::Array(all).to_string();
            // The bound is relative to what no evaluator can avoid, measured here: parsing the
            // annotation once (a debug build on a loaded machine parses a 19 MB patch for
            // seconds). Linear work passes; a blow-up in the op count or depth does not.
            let parsing = Instant::now();
            let parsed: Value = serde_json::from_str(&text).expect("generated JSON parses");
            let parse = parsing.elapsed();
            drop(parsed);
            let np = with(
                fixture_value("nodepool-kubevirt-rwo-root-volume.yaml"),
                &[("/metadata/annotations", json!({"hypershift.openshift.io/kubevirt-vm-jsonpatch": text}))],
            );
            let np = nodepool(np);
            let started = Instant::now();
            let report = evaluate_nodepool(&np, &Facts::none());
            let took = started.elapsed();
            prop_assert!(took < parse * 20 + Duration::from_secs(1), "{took:?} to evaluate, {parse:?} to parse");
            prop_assert!(!report.findings.is_empty());
        }
    }
}
