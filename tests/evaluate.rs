//! The evaluator, rule by rule (docs/rules.md), on the upstream example objects in
//! tests/fixtures (origins in tests/fixtures/SOURCES.md).

#![allow(clippy::type_complexity)] // case tables are tuples by design

mod common;

use common::*;
use live_migration_guard::evaluate::{Report, Severity, Verdict, evaluate_hostedcluster, evaluate_nodepool};
use live_migration_guard::facts::{Facts, InfraFacts};
use serde_json::{Value, json};

const RWX: &str = "ReadWriteMany";
const RWO: &str = "ReadWriteOnce";
const PERSISTENT: &str = "/spec/platform/kubevirt/rootVolume/persistent";

fn minimal() -> Value {
    // upstream minimal NodePool, scaled to 3 machines
    with(
        fixture_value("nodepool-kubevirt-minimal.yaml"),
        &[("/spec/replicas", json!(3))],
    )
}

fn eval(np: Value, facts: &Facts) -> Report {
    evaluate_nodepool(&nodepool(np), facts)
}

fn reasons(r: &Report) -> Vec<&str> {
    r.findings.iter().map(|f| f.reason).collect()
}

fn finding<'a>(r: &'a Report, reason: &str) -> &'a live_migration_guard::evaluate::Finding {
    r.findings
        .iter()
        .find(|f| f.reason == reason)
        .unwrap_or_else(|| panic!("no {reason} in {:#?}", r.findings))
}

/// Ceph RBD (RWX Block first), EBS gp3 (RWO Block only), a CephFS class, all with profiles.
fn cluster() -> Vec<String> {
    vec![
        storage_class("ceph-rbd", "openshift-storage.rbd.csi.ceph.com", &[], None),
        profile(
            "ceph-rbd",
            "openshift-storage.rbd.csi.ceph.com",
            &[(&[RWX], "Block"), (&[RWO], "Block"), (&[RWO], "Filesystem")],
        ),
        storage_class(
            "gp3-csi",
            "ebs.csi.aws.com",
            &[("storageclass.kubernetes.io/is-default-class", "true")],
            None,
        ),
        profile("gp3-csi", "ebs.csi.aws.com", &[(&[RWO], "Block")]),
        storage_class("cephfs", "openshift-storage.cephfs.csi.ceph.com", &[], None),
        profile(
            "cephfs",
            "openshift-storage.cephfs.csi.ceph.com",
            &[(&[RWX], "Filesystem"), (&[RWO], "Filesystem")],
        ),
    ]
}

fn cluster_facts(extra: &[String]) -> Facts {
    let mut all = cluster();
    all.extend_from_slice(extra);
    facts(&all.iter().map(String::as_str).collect::<Vec<_>>())
}

// Rule 1: other platforms are not ours.
#[test]
fn non_kubevirt_nodepool_is_not_applicable() {
    let np = with(minimal(), &[("/spec/platform/type", json!("AWS"))]);
    let r = eval(np, &cluster_facts(&[]));
    assert_eq!(r.verdict, Verdict::NotApplicable);
    assert!(r.findings.is_empty());
    assert!(r.condition.is_none());
}

// Rule 2: explicit class, else virt default, else k8s default; newest wins, ties by name.
#[test]
fn storage_class_resolution_order() {
    let virt = ("storageclass.kubevirt.io/is-default-virt-class", "true");
    let k8s = ("storageclass.kubernetes.io/is-default-class", "true");
    let cases: Vec<(&str, Vec<String>, Option<&str>, Verdict)> = vec![
        // only the k8s default (gp3, RWO) exists
        ("k8s default", vec![], None, Verdict::NotMigratable),
        // a virt default (RBD) beats the k8s default (gp3)
        (
            "virt default wins",
            vec![storage_class("virt", "rbd.csi.ceph.com", &[virt], None)],
            None,
            Verdict::Migratable,
        ),
        // explicit class beats every default
        (
            "explicit",
            vec![storage_class("virt", "rbd.csi.ceph.com", &[virt], None)],
            Some("gp3-csi"),
            Verdict::NotMigratable,
        ),
        // two virt defaults: the newest (RWO hostpath) wins
        (
            "newest virt default",
            vec![
                storage_class(
                    "a-old-rbd",
                    "rbd.csi.ceph.com",
                    &[virt],
                    Some("2024-01-01T00:00:00Z"),
                ),
                storage_class(
                    "z-new-hpp",
                    "kubevirt.io.hostpath-provisioner",
                    &[virt],
                    Some("2025-01-01T00:00:00Z"),
                ),
            ],
            None,
            Verdict::NotMigratable,
        ),
        // same timestamp: name ascending (a-rbd)
        (
            "tie by name",
            vec![
                storage_class(
                    "b-hpp",
                    "kubevirt.io.hostpath-provisioner",
                    &[virt],
                    Some("2025-01-01T00:00:00Z"),
                ),
                storage_class("a-rbd", "rbd.csi.ceph.com", &[virt], Some("2025-01-01T00:00:00Z")),
            ],
            None,
            Verdict::Migratable,
        ),
        (
            "two k8s defaults, newest RWX",
            vec![storage_class(
                "nfs",
                "nfs.csi.k8s.io",
                &[k8s],
                Some("2030-01-01T00:00:00Z"),
            )],
            None,
            Verdict::Migratable,
        ),
    ];
    for (name, extra, class, want) in cases {
        let np = match class {
            Some(c) => with(minimal(), &[(&format!("{PERSISTENT}/storageClass"), json!(c))]),
            None => minimal(),
        };
        let r = eval(np, &cluster_facts(&extra));
        assert_eq!(r.verdict, want, "{name}: {:#?}", r.findings);
    }
}

// Rule 3: CDI's four rendering rules (domain §4.3), on Ceph RBD [RWX Block, RWO Block, RWO FS].
#[test]
fn cdi_rendering_rules() {
    let rbd = (&format!("{PERSISTENT}/storageClass"), json!("ceph-rbd"));
    let cases: Vec<(&str, Vec<(String, Value)>, Verdict, Option<&str>)> = vec![
        (
            "nothing set: first set RWX Block",
            vec![],
            Verdict::Migratable,
            None,
        ),
        (
            "only volumeMode Filesystem: first FS set is RWO",
            vec![(format!("{PERSISTENT}/volumeMode"), json!("Filesystem"))],
            Verdict::NotMigratable,
            Some("DisksNotLiveMigratable"),
        ),
        (
            "only accessModes RWX: Block picked",
            vec![(format!("{PERSISTENT}/accessModes"), json!([RWX]))],
            Verdict::Migratable,
            None,
        ),
        (
            "both RWX Block: as given",
            vec![
                (format!("{PERSISTENT}/accessModes"), json!([RWX])),
                (format!("{PERSISTENT}/volumeMode"), json!("Block")),
            ],
            Verdict::Migratable,
            None,
        ),
        (
            "both RWX Filesystem: RBD cannot provision it",
            vec![
                (format!("{PERSISTENT}/accessModes"), json!([RWX])),
                (format!("{PERSISTENT}/volumeMode"), json!("Filesystem")),
            ],
            Verdict::NotMigratable,
            Some("AccessModesNotSupported"),
        ),
    ];
    for (name, edits, want, reason) in cases {
        let mut all: Vec<(&str, Value)> = vec![(rbd.0.as_str(), rbd.1.clone())];
        all.extend(edits.iter().map(|(p, v)| (p.as_str(), v.clone())));
        let r = eval(with(minimal(), &all), &cluster_facts(&[]));
        assert_eq!(r.verdict, want, "{name}: {:#?}", r.findings);
        if let Some(reason) = reason {
            assert_eq!(finding(&r, reason).severity, Severity::Error, "{name}");
        }
    }
}

// Rule 4: no StorageProfile → CDI's built-in table, said in a finding; unknown → Unknown.
#[test]
fn builtin_capabilities_when_no_profile() {
    let facts = facts(&[
        &fixture_text("storageclass-rook-ceph-block-rbd.yaml"),
        &fixture_text("storageclass-gp3-csi-aws-ebs.yaml"),
    ]);
    let r = eval(
        with(
            minimal(),
            &[(&format!("{PERSISTENT}/storageClass"), json!("rook-ceph-block"))],
        ),
        &facts,
    );
    assert_eq!(r.verdict, Verdict::Migratable, "{:#?}", r.findings);
    let f = finding(&r, "BuiltinStorageCapabilities");
    assert_eq!(f.severity, Severity::Info);
    assert!(
        f.message.contains("rook-ceph.rbd.csi.ceph.com") && f.message.contains("ReadWriteMany Block"),
        "{}",
        f.message
    );

    let r = eval(
        with(
            minimal(),
            &[(&format!("{PERSISTENT}/storageClass"), json!("gp3-csi"))],
        ),
        &facts,
    );
    assert_eq!(r.verdict, Verdict::NotMigratable);
    assert!(reasons(&r).contains(&"BuiltinStorageCapabilities"));

    let unknown = facts_with_unknown();
    let r = eval(
        with(
            minimal(),
            &[(&format!("{PERSISTENT}/storageClass"), json!("mystery"))],
        ),
        &unknown,
    );
    assert_eq!(r.verdict, Verdict::Unknown, "{:#?}", r.findings);
    let f = finding(&r, "UnknownProvisioner");
    assert_eq!(f.severity, Severity::Warning);
    assert!(f.message.contains("example.com/mystery"), "{}", f.message);
    assert_eq!(r.condition.as_ref().map(|c| c.status), Some("Unknown"));
}

fn facts_with_unknown() -> Facts {
    cluster_facts(&[storage_class("mystery", "example.com/mystery", &[], None)])
}

// Rule 5: only ReadWriteMany counts (RWOP, RWO are not shared; Block vs FS does not matter).
#[test]
fn only_rwx_counts() {
    for (modes, vm, want) in [
        (vec![RWO], "Block", Verdict::NotMigratable),
        (vec!["ReadWriteOncePod"], "Filesystem", Verdict::NotMigratable),
        (vec![RWX], "Filesystem", Verdict::Migratable),
        (vec![RWX], "Block", Verdict::Migratable),
    ] {
        let np = with(
            minimal(),
            &[
                (&format!("{PERSISTENT}/storageClass"), json!("pxd")),
                (&format!("{PERSISTENT}/accessModes"), json!(modes)),
                (&format!("{PERSISTENT}/volumeMode"), json!(vm)),
            ],
        );
        // Portworx: RWX Block, RWX FS, RWO Block, RWO FS (built-in table); RWOP FS from a profile
        let f = cluster_facts(&[
            storage_class("pxd", "pxd.portworx.com", &[], None),
            profile(
                "pxd",
                "pxd.portworx.com",
                &[
                    (&[RWX], "Block"),
                    (&[RWX], "Filesystem"),
                    (&[RWO, "ReadWriteOncePod"], "Block"),
                    (&[RWO, "ReadWriteOncePod"], "Filesystem"),
                ],
            ),
        ]);
        let r = eval(np, &f);
        assert_eq!(r.verdict, want, "{modes:?} {vm}: {:#?}", r.findings);
    }
}

// Rule 6: things that stop the disk from being provisioned.
#[test]
fn provisioning_blockers_are_errors() {
    let sc = format!("{PERSISTENT}/storageClass");
    let am = format!("{PERSISTENT}/accessModes");
    let vm = format!("{PERSISTENT}/volumeMode");
    let cases: Vec<(&str, Vec<(&str, Value)>, Vec<String>, &str, &str)> = vec![
        (
            "RWX on an RWO-only class",
            vec![(&sc, json!("gp3-csi")), (&am, json!([RWX]))],
            vec![],
            "AccessModesNotSupported",
            "spec.platform.kubevirt.rootVolume.persistent.accessModes",
        ),
        (
            "profile without claimPropertySets",
            vec![(&sc, json!("odd"))],
            vec![
                storage_class("odd", "example.com/odd", &[], None),
                profile("odd", "example.com/odd", &[]),
            ],
            "NoClaimPropertySets",
            "spec.platform.kubevirt.rootVolume.persistent.storageClass",
        ),
        (
            "class does not exist",
            vec![(&sc, json!("nope"))],
            vec![],
            "StorageClassNotFound",
            "spec.platform.kubevirt.rootVolume.persistent.storageClass",
        ),
        (
            "ReadOnly access mode",
            vec![(&am, json!(["ReadOnly"]))],
            vec![],
            "InvalidAccessMode",
            "spec.platform.kubevirt.rootVolume.persistent.accessModes",
        ),
        (
            "empty class name",
            vec![(&sc, json!(""))],
            vec![],
            "EmptyStorageClassName",
            "spec.platform.kubevirt.rootVolume.persistent.storageClass",
        ),
        (
            "volumeMode only, no matching set",
            vec![(&sc, json!("gp3-csi")), (&vm, json!("Filesystem"))],
            vec![],
            "NoMatchingAccessMode",
            "spec.platform.kubevirt.rootVolume.persistent.volumeMode",
        ),
    ];
    for (name, edits, extra, reason, field) in cases {
        let edits: Vec<(&str, Value)> = edits.iter().map(|(p, v)| (*p, v.clone())).collect();
        let r = eval(with(minimal(), &edits), &cluster_facts(&extra));
        assert_eq!(r.verdict, Verdict::NotMigratable, "{name}");
        let f = finding(&r, reason);
        assert_eq!((f.severity, f.field.as_ref()), (Severity::Error, field), "{name}");
        assert!(!f.fix.is_empty(), "{name}");
        // the VMs never run: HyperShift would not compute the condition
        assert!(r.condition.is_none(), "{name}: {:?}", r.condition);
    }
    // a missing default class when nothing is explicit
    let only_rbd = facts(&[&storage_class("ceph-rbd", "rbd.csi.ceph.com", &[], None)]);
    let r = eval(minimal(), &only_rbd);
    assert_eq!(finding(&r, "NoDefaultStorageClass").severity, Severity::Error);
}

// Rule 5 + the documented example (domain §1.5, OSD hcp-virt-live-migration.adoc).
#[test]
fn documented_example_three_rwo_machines() {
    let np = with(
        fixture_value("nodepool-kubevirt-rwo-root-volume.yaml"),
        &[("/spec/replicas", json!(3)), ("/metadata/name", json!("user-np"))],
    );
    let r = eval(np, &facts(&[&fixture_text("storageclass-gp3-csi-aws-ebs.yaml")]));
    assert_eq!(r.verdict, Verdict::NotMigratable);
    let c = r.condition.expect("condition");
    assert_eq!(
        (c.type_, c.status, c.reason.as_str()),
        ("KubeVirtNodesLiveMigratable", "False", "DisksNotLiveMigratable")
    );

    // Same shape as the real condition: first line, then one line per machine, each like
    // "Machine X: DisksNotLiveMigratable: X is not a live migratable machine: cannot migrate VMI: PVC X-rhcos is not shared, ..."
    let real: Value = serde_json::from_value(fixture_value_list(
        "nodepool-status-conditions-not-live-migratable.yaml",
    ))
    .unwrap();
    let real_msg = real[0]["message"].as_str().unwrap();
    let shape = |msg: &str, names: &[&str]| {
        let mut m = msg.to_owned();
        for n in names {
            m = m.replace(n, "<machine>");
        }
        m.lines().map(str::to_owned).collect::<Vec<_>>()
    };
    let real_lines = shape(
        real_msg,
        &[
            "user-np-ngst4-gw2hz",
            "user-np-ngst4-npq7x",
            "user-np-ngst4-q5nkb",
        ],
    );
    let ours = shape(&c.message, &["user-np-1", "user-np-2", "user-np-3"]);
    assert_eq!(ours, real_lines);
    assert!(c.message.ends_with('\n'));
    assert_eq!(real[0]["reason"], json!(c.reason));
}

fn fixture_value_list(name: &str) -> Value {
    serde_saphyr_value(&fixture_text(name))
}

fn serde_saphyr_value(text: &str) -> Value {
    live_migration_guard::facts::load::split_documents(text.as_bytes(), "fixture")
        .unwrap()
        .remove(0)
}

// Rule 7: host devices (upstream GPU example).
#[test]
fn host_devices_block_live_migration() {
    let np = fixture_value("nodepool-kubevirt-gpu-hostdevices.yaml");
    let facts = cluster_facts(&[storage_class(
        "virt",
        "rbd.csi.ceph.com",
        &[("storageclass.kubevirt.io/is-default-virt-class", "true")],
        None,
    )]);
    let r = eval(np, &facts);
    assert_eq!(r.verdict, Verdict::NotMigratable);
    let f = finding(&r, "HostDeviceNotLiveMigratable");
    assert_eq!(f.field, "spec.platform.kubevirt.hostDevices");
    let c = r.condition.unwrap();
    assert_eq!(c.reason, "HostDeviceNotLiveMigratable");
    assert!(c.message.starts_with("3 of 3 machines are not live migratable\nMachine example-1: HostDeviceNotLiveMigratable: example-1 is not a live migratable machine: VMI specifies non-migratable generic PCI host device\n"), "{}", c.message);
}

// §3.1: only one reason per VMI; KubeVirt < v1.6 checks disks first.
#[test]
fn reported_reason_follows_kubevirt_check_order() {
    let np = with(
        fixture_value("nodepool-kubevirt-gpu-hostdevices.yaml"),
        &[
            (&format!("{PERSISTENT}/accessModes"), json!([RWO])),
            (&format!("{PERSISTENT}/storageClass"), json!("gp3-csi")),
        ],
    );
    for (version, reason, msg) in [
        (
            "v1.5.2",
            "DisksNotLiveMigratable",
            "cannot migrate VMI: PVC example-1-rhcos is not shared",
        ),
        (
            "v1.6.0",
            "HostDeviceNotLiveMigratable",
            "VMI uses a PCI host devices",
        ),
        (
            "v1.9.0",
            "HostDeviceNotLiveMigratable",
            "VMI specifies non-migratable generic PCI host device",
        ),
    ] {
        let r = eval(np.clone(), &cluster_facts(&[kubevirt(version)]));
        let mut got = reasons(&r);
        got.retain(|r| r.ends_with("LiveMigratable"));
        got.sort();
        assert_eq!(
            got,
            vec!["DisksNotLiveMigratable", "HostDeviceNotLiveMigratable"],
            "{version}: every failing check is a finding"
        );
        let c = r.condition.unwrap();
        assert_eq!(c.reason, reason, "{version}");
        assert!(c.message.contains(msg), "{version}: {}", c.message);
    }
}

// §N1, KubeVirt pkg/network/vmispec/interface.go VerifyVMIMigratable (v0.59 … v1.9): a VM
// without a pod network passes on every version. (Changed deliberately: the old test
// expected NotMigratable before v1.8 and Unknown without a version, which the source refutes:
// before v1.8 the helpers return true when there is no pod network.)
#[test]
fn multus_only_passes_on_every_kubevirt_version() {
    let np = with(
        minimal(),
        &[
            ("/spec/platform/kubevirt/attachDefaultNetwork", json!(false)),
            (
                "/spec/platform/kubevirt/additionalNetworks",
                json!([{"name": "default/nad1"}]),
            ),
            (&format!("{PERSISTENT}/storageClass"), json!("ceph-rbd")),
        ],
    );
    for version in [
        None,
        Some("v0.59.0"),
        Some("v1.1.0"),
        Some("v1.7.3"),
        Some("v1.8.0"),
        Some("v1.9.0"),
    ] {
        let extra: Vec<String> = version.map(kubevirt).into_iter().collect();
        let r = eval(np.clone(), &cluster_facts(&extra));
        assert_eq!(r.verdict, Verdict::Migratable, "{version:?}: {:#?}", r.findings);
        assert_eq!(r.condition.unwrap().message, "All is well");
    }

    // no additional networks at all: HyperShift's own validation fails
    let bad = with(
        minimal(),
        &[("/spec/platform/kubevirt/attachDefaultNetwork", json!(false))],
    );
    let r = eval(bad, &cluster_facts(&[kubevirt("v1.8.0")]));
    assert_eq!(finding(&r, "DefaultNetworkRequired").severity, Severity::Error);
}

// Rule 9: no facts → Unknown, never a guess; explicit RWO is still NotMigratable.
#[test]
fn without_facts_only_what_the_object_decides() {
    let r = eval(minimal(), &Facts::none());
    assert_eq!(r.verdict, Verdict::Unknown);
    assert_eq!(finding(&r, "StorageFactsMissing").severity, Severity::Warning);

    let r = eval(
        fixture_value("nodepool-kubevirt-rwo-root-volume.yaml"),
        &Facts::none(),
    );
    assert_eq!(r.verdict, Verdict::NotMigratable);
    assert_eq!(
        reasons(&r),
        vec!["HostedClusterNotFound", "DisksNotLiveMigratable"]
    );

    // explicit RWX is undecided without facts (can the class provide it?)
    let r = eval(
        with(minimal(), &[(&format!("{PERSISTENT}/accessModes"), json!([RWX]))]),
        &Facts::none(),
    );
    assert_eq!(r.verdict, Verdict::Unknown);
}

#[test]
fn no_machines_means_no_condition() {
    let r = eval(
        fixture_value("nodepool-kubevirt-minimal.yaml"),
        &cluster_facts(&[]),
    );
    assert_eq!(r.verdict, Verdict::NotMigratable);
    assert!(r.condition.is_none());
    assert_eq!(finding(&r, "NoMachines").severity, Severity::Info);
}

#[test]
fn fixes_name_an_rwx_class_from_the_facts() {
    let r = eval(minimal(), &cluster_facts(&[]));
    let f = finding(&r, "DisksNotLiveMigratable");
    assert_eq!(
        f.field,
        "spec.platform.kubevirt.rootVolume.persistent.storageClass"
    );
    assert!(f.fix.contains("ceph-rbd or cephfs"), "{}", f.fix);
    assert!(
        f.message.contains("default StorageClass gp3-csi"),
        "{}",
        f.message
    );
}

// JSON patch annotations (domain §1.3): HostedCluster's first, then the NodePool's.
#[test]
fn json_patches_change_the_vm_and_take_the_blame() {
    let facts_rbd = cluster_facts(&[]);
    let sc = (format!("{PERSISTENT}/storageClass"), json!("gp3-csi"));
    let patch = |ops: Value| json!({ "hypershift.openshift.io/kubevirt-vm-jsonpatch": ops.to_string() });

    // NodePool patch moves the root disk to RBD with RWX: migratable
    let np = with(
        minimal(),
        &[
            (&sc.0, sc.1.clone()),
            (
                "/metadata/annotations",
                patch(json!([
                    {"op": "replace", "path": "/spec/dataVolumeTemplates/0/spec/storage/storageClassName", "value": "ceph-rbd"},
                    {"op": "add", "path": "/spec/dataVolumeTemplates/0/spec/storage/accessModes", "value": [RWX]},
                ])),
            ),
        ],
    );
    let r = eval(np, &facts_rbd);
    assert_eq!(r.verdict, Verdict::Migratable, "{:#?}", r.findings);

    // HostedCluster patch adds a host device: the finding points at the HC annotation
    let hc = with(
        fixture_value("hostedcluster-kubevirt-minimal.yaml"),
        &[(
            "/metadata/annotations",
            patch(
                json!([{"op": "add", "path": "/spec/template/spec/domain/devices/hostDevices/-", "value": {"name": "gpu", "deviceName": "nvidia"}}]),
            ),
        )],
    );
    let facts_hc = cluster_facts(&[serde_json::to_string(&hc).unwrap()]);
    let np = with(
        minimal(),
        &[(&format!("{PERSISTENT}/storageClass"), json!("ceph-rbd"))],
    );
    let r = eval(np, &facts_hc);
    let f = finding(&r, "HostDeviceNotLiveMigratable");
    assert_eq!(
        f.field,
        "HostedCluster clusters/example metadata.annotations[hypershift.openshift.io/kubevirt-vm-jsonpatch]"
    );

    // removing the bridge annotation breaks the pod network
    let np = with(
        minimal(),
        &[
            (&format!("{PERSISTENT}/storageClass"), json!("ceph-rbd")),
            (
                "/metadata/annotations",
                patch(
                    json!([{"op": "remove", "path": "/spec/template/metadata/annotations/kubevirt.io~1allow-pod-bridge-network-live-migration"}]),
                ),
            ),
        ],
    );
    let r = eval(np, &facts_rbd);
    let f = finding(&r, "InterfaceNotLiveMigratable");
    assert_eq!(
        f.field,
        "metadata.annotations[hypershift.openshift.io/kubevirt-vm-jsonpatch]"
    );

    // invalid patches stop the machine template: error, no condition
    for bad in [
        "not json",
        "{\"op\":\"add\"}",
        "[{\"op\":\"replace\",\"path\":\"/spec/nothing/here\",\"value\":1}]",
    ] {
        let np = with(
            minimal(),
            &[(
                "/metadata/annotations",
                json!({"hypershift.openshift.io/kubevirt-vm-jsonpatch": bad}),
            )],
        );
        let r = eval(np, &facts_rbd);
        let f = finding(&r, "InvalidKubevirtVMJSONPatch");
        assert_eq!(f.severity, Severity::Error, "{bad}");
        assert!(r.condition.is_none(), "{bad}");
    }
}

#[test]
fn upstream_jsonpatch_example_adds_nested_paths() {
    // add with missing parents (/spec/template/spec/affinity/nodeAffinity/...) must work
    let np = with(
        fixture_value("nodepool-kubevirt-jsonpatch-node-affinity.yaml"),
        &[(&format!("{PERSISTENT}/storageClass"), json!("ceph-rbd"))],
    );
    let r = eval(np, &cluster_facts(&[]));
    assert_eq!(r.verdict, Verdict::Migratable, "{:#?}", r.findings);
    assert!(!reasons(&r).contains(&"InvalidKubevirtVMJSONPatch"));
}

// Rules 10-12: HostedCluster storage mappings.
#[test]
fn hostedcluster_manual_mapping() {
    let hc = hostedcluster(fixture_value(
        "hostedcluster-kubevirt-manual-storage-mapping.yaml",
    ));
    let f = facts(&[&fixture_text("storageclass-gp3-csi-aws-ebs.yaml")]);
    let r = evaluate_hostedcluster(&hc, &f, &[]);
    assert_eq!(r.verdict, Verdict::NotMigratable);
    let errs: Vec<(&str, &str)> = r.errors().map(|e| (e.reason, e.field.as_ref())).collect();
    assert_eq!(
        errs,
        vec![
            (
                "DisksNotLiveMigratable",
                "spec.platform.kubevirt.storageDriver.manual.storageClassMapping[0].infraStorageClassName"
            ),
            (
                "InfraStorageClassNotFound",
                "spec.platform.kubevirt.storageDriver.manual.storageClassMapping[1].infraStorageClassName"
            ),
        ]
    );
    let c = r.condition.unwrap();
    assert_eq!(
        (c.status, c.reason.as_str()),
        ("False", "KubeVirtNodesNotLiveMigratable")
    );

    // both infra classes RWX-first: migratable, condition True
    let ok = facts(&[
        &storage_class("gp3-csi", "efs.csi.aws.com", &[], None),
        &storage_class(
            "ocs-storagecluster-ceph-rbd",
            "openshift-storage.rbd.csi.ceph.com",
            &[],
            None,
        ),
    ]);
    let r = evaluate_hostedcluster(&hc, &ok, &[("test1".into(), Verdict::Migratable)]);
    assert_eq!(r.verdict, Verdict::Migratable, "{:#?}", r.findings);
    assert_eq!(r.condition.unwrap().message, "All is well");
}

#[test]
fn hostedcluster_default_and_none_drivers() {
    let hc_default = hostedcluster(fixture_value("hostedcluster-kubevirt-minimal.yaml"));
    let r = evaluate_hostedcluster(
        &hc_default,
        &cluster_facts(&[]),
        &[("np1".into(), Verdict::Migratable)],
    );
    assert_eq!(r.verdict, Verdict::NotMigratable);
    let f = finding(&r, "DisksNotLiveMigratable");
    assert_eq!(f.field, "spec.platform.kubevirt.storageDriver.type");
    assert!(f.message.contains("gp3-csi"));
    // the storage mapping affects every NodePool that attaches guest volumes
    assert!(
        r.condition
            .unwrap()
            .message
            .contains("attached to this Hosted Cluster: np1.")
    );

    let virt = storage_class(
        "virt",
        "rbd.csi.ceph.com",
        &[("storageclass.kubevirt.io/is-default-virt-class", "true")],
        None,
    );
    let r = evaluate_hostedcluster(
        &hc_default,
        &cluster_facts(&[virt]),
        &[("np1".into(), Verdict::NotMigratable)],
    );
    assert_eq!(r.verdict, Verdict::Migratable);
    assert!(
        r.condition
            .unwrap()
            .message
            .contains("following NodePool(s) attached to this Hosted Cluster: np1."),
        "a non-migratable NodePool makes the HC condition False"
    );

    let hc_none = hostedcluster(with(
        fixture_value("hostedcluster-kubevirt-minimal.yaml"),
        &[("/spec/platform/kubevirt/storageDriver", json!({"type": "None"}))],
    ));
    let r = evaluate_hostedcluster(&hc_none, &cluster_facts(&[]), &[]);
    assert_eq!(r.verdict, Verdict::Migratable);
    assert!(r.findings.is_empty());

    let r = evaluate_hostedcluster(&hc_default, &Facts::none(), &[]);
    assert_eq!(r.verdict, Verdict::Unknown);
}

#[test]
fn external_infra_needs_its_own_facts() {
    let creds = json!({"infraKubeConfigSecret": {"name": "example-infra-credentials", "key": "kubeconfig"}, "infraNamespace": "guests"});
    let hc_value = with(
        fixture_value("hostedcluster-kubevirt-minimal.yaml"),
        &[("/spec/platform/kubevirt/credentials", creds)],
    );
    let hc = hostedcluster(hc_value.clone());
    let local = cluster_facts(&[serde_json::to_string(&hc_value).unwrap()]);
    let r = evaluate_hostedcluster(&hc, &local, &[]);
    assert_eq!(r.verdict, Verdict::Unknown);
    let f = finding(&r, "ExternalInfraFactsUnavailable");
    assert!(f.message.contains("example-infra-credentials"), "{}", f.message);

    // NodePools of that cluster: storage undecided, but host devices still decide
    let np = with(minimal(), &[]);
    let r = eval(np, &local);
    assert_eq!(r.verdict, Verdict::Unknown, "{:#?}", r.findings);
    let r = eval(fixture_value("nodepool-kubevirt-gpu-hostdevices.yaml"), &local);
    assert_eq!(r.verdict, Verdict::NotMigratable);

    // with the infra cluster's facts it is decided
    let infra = facts(&[&storage_class(
        "rbd",
        "rbd.csi.ceph.com",
        &[("storageclass.kubevirt.io/is-default-virt-class", "true")],
        None,
    )]);
    let with_infra = builder(&[&serde_json::to_string(&hc_value).unwrap()])
        .infra(
            "clusters",
            "example",
            InfraFacts::Ready(std::sync::Arc::new(infra)),
        )
        .build();
    let r = evaluate_hostedcluster(&hc, &with_infra, &[]);
    assert_eq!(r.verdict, Verdict::Migratable, "{:#?}", r.findings);
    let r = eval(minimal(), &with_infra);
    assert_eq!(r.verdict, Verdict::Migratable, "{:#?}", r.findings);
}

#[test]
fn unusable_facts_answer_unknown() {
    let stale = cluster_facts(&[]).mark_unavailable("facts are 900s old".into());
    let r = eval(minimal(), &stale);
    assert_eq!(r.verdict, Verdict::Unknown);
    assert!(finding(&r, "StorageFactsMissing").message.contains("900s old"));
}

#[test]
fn runtime_validation_errors() {
    let cases = [
        (json!({"type": "KubeVirt"}), "KubevirtPlatformMissing"),
        (
            json!({"type": "KubeVirt", "kubevirt": {"rootVolume": {"type": "Persistent"}}}),
            "RootVolumePersistentMissing",
        ),
        (
            json!({"type": "KubeVirt", "kubevirt": {"hostDevices": [{"deviceName": "x", "count": 0}]}}),
            "InvalidHostDeviceCount",
        ),
    ];
    for (platform, reason) in cases {
        let r = eval(
            with(minimal(), &[("/spec/platform", platform)]),
            &cluster_facts(&[]),
        );
        assert_eq!(r.verdict, Verdict::NotMigratable, "{reason}");
        assert_eq!(finding(&r, reason).severity, Severity::Error);
    }
}

/// A NodePool on RBD (RWX) whose VM template is changed by a NodePool JSON patch.
fn patched(ops: Value) -> Value {
    with(
        minimal(),
        &[
            (&format!("{PERSISTENT}/storageClass"), json!("ceph-rbd")),
            (
                "/metadata/annotations",
                json!({ "hypershift.openshift.io/kubevirt-vm-jsonpatch": ops.to_string() }),
            ),
        ],
    )
}

// §3.3–§3.6 through JSON patches: GPUs by version, pod-network bindings, other volume kinds,
// the DataVolume `pvc` API and the CPU model.
#[test]
fn patched_devices_bindings_and_volumes() {
    let gpu = |n: usize| {
        let gpus: Vec<Value> = (0..n)
            .map(|i| json!({"name": format!("gpu{i}"), "deviceName": "nvidia.com/GRID_T4-1Q"}))
            .collect();
        patched(json!([{"op": "add", "path": "/spec/template/spec/domain/devices/gpus", "value": gpus}]))
    };
    let iface = |binding: Value| {
        patched(
            json!([{"op": "replace", "path": "/spec/template/spec/domain/devices/interfaces/0", "value": binding}]),
        )
    };
    let volume =
        |v: Value| patched(json!([{"op": "add", "path": "/spec/template/spec/volumes/-", "value": v}]));
    let dv = |spec: Value| {
        patched(json!([
            {"op": "add", "path": "/spec/dataVolumeTemplates/-", "value": {"metadata": {"name": "data"}, "spec": spec}},
            {"op": "add", "path": "/spec/template/spec/volumes/-", "value": {"name": "data", "dataVolume": {"name": "data"}}},
        ]))
    };
    let cases: Vec<(&str, Value, &str, Verdict, &str, Option<&str>)> = vec![
        (
            "one GPU on v1.8",
            gpu(1),
            "v1.8.2",
            Verdict::NotMigratable,
            "HostDeviceNotLiveMigratable",
            Some("VMI uses a PCI host devices"),
        ),
        (
            "one GPU on v1.9",
            gpu(1),
            "v1.9.0",
            Verdict::Unknown,
            "GPUMigrationDependsOnFeatureGate",
            None,
        ),
        (
            "two GPUs on v1.9",
            gpu(2),
            "v1.9.0",
            Verdict::NotMigratable,
            "HostDeviceNotLiveMigratable",
            Some("VMI specifies too many GPUs"),
        ),
        // §P3 (Go decodes the patched array element by element into the rendered one):
        // replacing interfaces/0 keeps the rendered bridge unless the patch sets it to null.
        // (Changed deliberately: these cases used to replace the binding outright.)
        (
            "masquerade on the pod network (bridge: null)",
            iface(json!({"name": "default", "bridge": null, "masquerade": {}})),
            "v1.7.0",
            Verdict::Migratable,
            "",
            None,
        ),
        (
            "masquerade next to the kept bridge on v1.9",
            iface(json!({"name": "default", "masquerade": {}})),
            "v1.9.0",
            Verdict::NotMigratable,
            "VirtualMachineRejected",
            None,
        ),
        (
            "SR-IOV on the pod network (bridge: null)",
            iface(json!({"name": "default", "bridge": null, "sriov": {}})),
            "v1.8.0",
            Verdict::NotMigratable,
            "InterfaceNotLiveMigratable",
            Some(
                "cannot migrate VMI which does not use masquerade or a migratable plugin to connect to the pod network",
            ),
        ),
        (
            "binding plugin next to the kept bridge on v1.8",
            iface(json!({"name": "default", "binding": {"name": "l2bridge"}})),
            "v1.8.0",
            Verdict::NotMigratable,
            "VirtualMachineRejected",
            None,
        ),
        (
            "binding plugin not registered in the KubeVirt CR",
            iface(json!({"name": "default", "bridge": null, "binding": {"name": "l2bridge"}})),
            "v1.8.0",
            Verdict::NotMigratable,
            "InterfaceNotLiveMigratable",
            None,
        ),
        (
            "bridge on v0.59 (annotation unknown)",
            minimal_rbd(),
            "v0.59.0",
            Verdict::NotMigratable,
            "InterfaceNotLiveMigratable",
            Some("cannot migrate VMI which does not use masquerade to connect to the pod network"),
        ),
        (
            "non-shared hostDisk",
            volume(json!({"name": "scratch", "hostDisk": {"path": "/var/scratch", "type": "DiskOrCreate"}})),
            "v1.8.0",
            Verdict::NotMigratable,
            "DisksNotLiveMigratable",
            Some("cannot migrate VMI with non-shared HostDisk"),
        ),
        (
            "shared hostDisk",
            volume(json!({"name": "scratch", "hostDisk": {"path": "/nfs", "shared": true}})),
            "v1.8.0",
            Verdict::Migratable,
            "",
            None,
        ),
        (
            "existing PVC",
            volume(json!({"name": "logs", "persistentVolumeClaim": {"claimName": "logs"}})),
            "v1.8.0",
            Verdict::Unknown,
            "PVCAccessModesUnknown",
            None,
        ),
        (
            "containerDisk",
            volume(json!({"name": "tools", "containerDisk": {"image": "quay.io/x/tools"}})),
            "v1.8.0",
            Verdict::Migratable,
            "",
            None,
        ),
        (
            "extra RWO DataVolume",
            dv(json!({"storage": {"accessModes": [RWO], "storageClassName": "gp3-csi"}})),
            "v1.8.0",
            Verdict::NotMigratable,
            "DisksNotLiveMigratable",
            Some("PVC example-1-data is not shared"),
        ),
        (
            "pvc API with RWX on RBD",
            dv(json!({"pvc": {"accessModes": [RWX], "storageClassName": "ceph-rbd", "volumeMode": "Block"}})),
            "v1.8.0",
            Verdict::Migratable,
            "",
            None,
        ),
        (
            "pvc API without accessModes",
            dv(json!({"pvc": {"storageClassName": "ceph-rbd"}})),
            "v1.8.0",
            Verdict::NotMigratable,
            "MissingAccessModes",
            None,
        ),
        (
            "CPU host-passthrough",
            patched(
                json!([{"op": "add", "path": "/spec/template/spec/domain/cpu/model", "value": "host-passthrough"}]),
            ),
            "v1.8.0",
            Verdict::Migratable,
            "CPUModelHostPassthrough",
            None,
        ),
    ];
    for (name, np, version, verdict, reason, vmi_message) in cases {
        let r = eval(np, &cluster_facts(&[kubevirt(version)]));
        assert_eq!(r.verdict, verdict, "{name}: {:#?}", r.findings);
        if !reason.is_empty() {
            // findings caused by the patch point at its annotation; the unpatched case at the NodePool
            let want = if name.starts_with("bridge") {
                "spec.platform.kubevirt.attachDefaultNetwork"
            } else {
                "metadata.annotations[hypershift.openshift.io/kubevirt-vm-jsonpatch]"
            };
            assert_eq!(finding(&r, reason).field, want, "{name}");
        }
        if let Some(msg) = vmi_message {
            let c = r
                .condition
                .as_ref()
                .unwrap_or_else(|| panic!("{name}: condition"));
            assert!(c.message.contains(msg), "{name}: {}", c.message);
        }
    }
}

fn minimal_rbd() -> Value {
    with(
        minimal(),
        &[(&format!("{PERSISTENT}/storageClass"), json!("ceph-rbd"))],
    )
}

// §4.2: spec-only profiles (not reconciled yet), local no-provisioner classes, the rootVolume type.
#[test]
fn profile_sources_and_root_volume_type() {
    let spec_only = r#"{"apiVersion":"cdi.kubevirt.io/v1beta1","kind":"StorageProfile","metadata":{"name":"custom"},"spec":{"claimPropertySets":[{"accessModes":["ReadWriteMany"],"volumeMode":"Block"}]}}"#;
    let f = cluster_facts(&[
        storage_class("custom", "example.com/custom", &[], None),
        spec_only.to_owned(),
    ]);
    let r = eval(
        with(
            minimal(),
            &[(&format!("{PERSISTENT}/storageClass"), json!("custom"))],
        ),
        &f,
    );
    assert_eq!(
        r.verdict,
        Verdict::Migratable,
        "spec.claimPropertySets count before CDI copies them: {:#?}",
        r.findings
    );

    let f = cluster_facts(&[storage_class("local", "kubernetes.io/no-provisioner", &[], None)]);
    let r = eval(
        with(
            minimal(),
            &[(&format!("{PERSISTENT}/storageClass"), json!("local"))],
        ),
        &f,
    );
    assert_eq!(
        r.verdict,
        Verdict::Unknown,
        "local PVs: CDI derives modes from existing PVs we do not watch"
    );

    let r = eval(
        with(
            minimal(),
            &[("/spec/platform/kubevirt/rootVolume/type", json!("Ephemeral"))],
        ),
        &cluster_facts(&[]),
    );
    assert_eq!(finding(&r, "UnsupportedRootVolumeType").severity, Severity::Error);
}

// ---------------------------------------------------------------------------------------
// Issue 11: fidelity to the upstream sources (docs/rules.md names each rule's source).
// ---------------------------------------------------------------------------------------

use live_migration_guard::cdi;
use std::collections::BTreeMap;

fn params(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn np_on(class: &str, modes: Option<&[&str]>, volume_mode: Option<&str>) -> Value {
    let mut edits = vec![(format!("{PERSISTENT}/storageClass"), json!(class))];
    if let Some(m) = modes {
        edits.push((format!("{PERSISTENT}/accessModes"), json!(m)));
    }
    if let Some(v) = volume_mode {
        edits.push((format!("{PERSISTENT}/volumeMode"), json!(v)));
    }
    let edits: Vec<(&str, Value)> = edits.iter().map(|(p, v)| (p.as_str(), v.clone())).collect();
    with(minimal(), &edits)
}

// §S1, CDI pkg/storagecapabilities/storagecapabilities.go CapabilitiesByProvisionerKey:
// every key with its sets, in CDI's order (fixture transcribed from CDI c07cdb6fbd18).
#[test]
fn cdi_capability_table_matches_cdi_key_for_key() {
    let text = fixture_text("cdi-capabilities-by-provisioner-key.txt");
    let want: Vec<(String, Vec<String>)> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (k, v) = l.split_once(" = ").expect("key = sets");
            (k.to_owned(), v.split(", ").map(str::to_owned).collect())
        })
        .collect();
    assert_eq!(want.len(), 79, "CDI has 79 keys at the commit read");
    let got: Vec<(String, Vec<String>)> = cdi::TABLE
        .iter()
        .map(|(k, caps)| {
            (
                (*k).to_owned(),
                caps.iter().map(|(a, v)| format!("{a} {v}")).collect(),
            )
        })
        .collect();
    assert_eq!(got, want);
    for (k, sets) in &want {
        let caps = cdi::capabilities(k).expect("lookup by key");
        assert_eq!(caps.len(), sets.len(), "{k}");
    }
}

// §S1, CDI storagecapabilities.go storageClassToProvisionerKeyMapper: every mapper.
#[test]
fn cdi_provisioner_key_mappers_like_cdi() {
    let cases: &[(&str, &[(&str, &str)], &str)] = &[
        // HPP: overlayCSI present ⇒ overlay key, whatever its value
        (
            "kubevirt.io.hostpath-provisioner",
            &[("overlayCSI", "false")],
            "kubevirt.io.hostpath-provisioner/overlay",
        ),
        (
            "kubevirt.io.hostpath-provisioner",
            &[("overlayCSI", "")],
            "kubevirt.io.hostpath-provisioner/overlay",
        ),
        (
            "kubevirt.io.hostpath-provisioner",
            &[("storagePool", "x")],
            "kubevirt.io.hostpath-provisioner",
        ),
        // Portworx
        (
            "kubernetes.io/portworx-volume",
            &[("sharedv4_mount_options", "vers=3.0,nolock")],
            "kubernetes.io/portworx-volume/nfs",
        ),
        (
            "pxd.portworx.com",
            &[("backend", "pure_block")],
            "pxd.portworx.com/pure_block",
        ),
        (
            "pxd.portworx.com",
            &[("backend", "pure_fa_file")],
            "pxd.portworx.com/pure_fa_file",
        ),
        // a backend parameter disables the NFS check even with NFS options
        (
            "pxd.portworx.com",
            &[
                ("backend", "other"),
                ("sharedv4_mount_options", "vers=3.0,nolock"),
            ],
            "pxd.portworx.com",
        ),
        (
            "pxd.portworx.com",
            &[("sharedv4_mount_options", "nolock,vers=3.0")],
            "pxd.portworx.com/nfs",
        ),
        // Trident: backendType prefixes, GCNV flex by an exact selector element
        (
            "csi.trident.netapp.io",
            &[("backendType", "ontap-nas-economy")],
            "csi.trident.netapp.io/ontap-nas",
        ),
        (
            "csi.trident.netapp.io",
            &[("backendType", "ontap-san-economy")],
            "csi.trident.netapp.io/ontap-san",
        ),
        (
            "csi.trident.netapp.io",
            &[
                ("backendType", "google-cloud-netapp-volumes"),
                ("selector", "tier=a ; performance=flex"),
            ],
            "csi.trident.netapp.io/gcnv-flex",
        ),
        (
            "csi.trident.netapp.io",
            &[
                ("backendType", "google-cloud-netapp-volumes"),
                ("selector", "performance=flex"),
            ],
            "csi.trident.netapp.io/gcnv-flex",
        ),
        // Go's regexp.Split keeps whitespace at the ends of the string
        (
            "csi.trident.netapp.io",
            &[
                ("backendType", "google-cloud-netapp-volumes"),
                ("selector", " performance=flex"),
            ],
            "UNKNOWN",
        ),
        (
            "csi.trident.netapp.io",
            &[
                ("backendType", "google-cloud-netapp-volumes"),
                ("selector", "performance=flexible"),
            ],
            "UNKNOWN",
        ),
        (
            "csi.trident.netapp.io",
            &[("backendType", "solidfire-san")],
            "UNKNOWN",
        ),
        // Infinidat
        (
            "infinibox-csi-driver",
            &[("storage_protocol", "fc")],
            "infinibox-csi-driver/iscsiorfibrechannel",
        ),
        (
            "infinibox-csi-driver",
            &[("storage_protocol", "nvme")],
            "infinibox-csi-driver/nvme",
        ),
        (
            "infinibox-csi-driver",
            &[("storage_protocol", "nfs_treeq")],
            "infinibox-csi-driver/nfs",
        ),
        ("infinibox-csi-driver", &[], "UNKNOWN"),
        // vSphere and Dell by fsType / protocol
        (
            "csi.vsphere.vmware.com",
            &[("csi.storage.k8s.io/fstype", "NFS4")],
            "csi.vsphere.vmware.com/nfs",
        ),
        (
            "csi-unity.dellemc.com",
            &[("protocol", "NFS")],
            "csi-unity.dellemc.com/nfs",
        ),
        (
            "csi-powerstore.dellemc.com",
            &[("csi.storage.k8s.io/fstype", "nfs")],
            "csi-powerstore.dellemc.com/nfs",
        ),
        (
            "csi-vxflexos.dellemc.com",
            &[("csi.storage.k8s.io/fstype", "NFS")],
            "csi-vxflexos.dellemc.com/nfs",
        ),
        (
            "csi-powermax.dellemc.com",
            &[("csi.storage.k8s.io/fstype", "nfs4")],
            "csi-powermax.dellemc.com",
        ),
        ("csi.huawei.com", &[("protocol", "nfs")], "csi.huawei.com/nfs"),
        ("csi.huawei.com", &[("protocol", "NFS")], "csi.huawei.com"),
        // Longhorn
        (
            "driver.longhorn.io",
            &[("migratable", "true"), ("nfsOptions", "x")],
            "driver.longhorn.io/migratable",
        ),
        (
            "driver.longhorn.io",
            &[("nfsOptions", "x")],
            "driver.longhorn.io/nfs",
        ),
        (
            "driver.longhorn.io",
            &[("fsType", "ext4")],
            "driver.longhorn.io/fs",
        ),
        ("driver.longhorn.io", &[], "driver.longhorn.io"),
        // EBS, GCE PD
        ("ebs.csi.aws.com", &[("type", "gp3")], "ebs.csi.aws.com/gp"),
        ("ebs.csi.aws.com", &[("type", "io1")], "ebs.csi.aws.com/io1"),
        ("ebs.csi.aws.com", &[("type", "io2")], "ebs.csi.aws.com/io2"),
        ("ebs.csi.aws.com", &[("type", "st1")], "ebs.csi.aws.com"),
        (
            "pd.csi.storage.gke.io",
            &[("type", "hyperdisk-balanced-high-availability")],
            "pd.csi.storage.gke.io/hyperdisk",
        ),
        (
            "pd.csi.storage.gke.io",
            &[("type", "pd-ssd")],
            "pd.csi.storage.gke.io",
        ),
        // Synology by protocol
        ("csi.san.synology.com", &[], "csi.san.synology.com/iscsi"),
        (
            "csi.san.synology.com",
            &[("protocol", "iscsi")],
            "csi.san.synology.com/iscsi",
        ),
        (
            "csi.san.synology.com",
            &[("protocol", "smb")],
            "csi.san.synology.com/smb",
        ),
        (
            "csi.san.synology.com",
            &[("protocol", "nfs_treeq")],
            "csi.san.synology.com/nfs",
        ),
        ("csi.san.synology.com", &[("protocol", "ftp")], "UNKNOWN"),
        // IBM VPC File by profile and vmState; VPC Block has no mapper
        (
            "vpc.file.csi.ibm.io",
            &[("profile", "rfs")],
            "vpc.file.csi.ibm.io/rfs",
        ),
        (
            "vpc.file.csi.ibm.io",
            &[("profile", "rfs"), ("vmState", "true")],
            "vpc.file.csi.ibm.io/rfs-rwo",
        ),
        (
            "vpc.file.csi.ibm.io",
            &[("profile", "dp2")],
            "vpc.file.csi.ibm.io/dp2",
        ),
        (
            "vpc.file.csi.ibm.io",
            &[("profile", "dp2"), ("vmState", "true")],
            "vpc.file.csi.ibm.io/dp2-rwo",
        ),
        (
            "vpc.file.csi.ibm.io",
            &[("profile", "other"), ("vmState", "true")],
            "vpc.file.csi.ibm.io",
        ),
        (
            "vpc.block.csi.ibm.io",
            &[("profile", "10iops-tier")],
            "vpc.block.csi.ibm.io",
        ),
        (
            "rook-ceph.rbd.csi.ceph.com",
            &[("pool", "x")],
            "rook-ceph.rbd.csi.ceph.com",
        ),
    ];
    for (prov, kv, want) in cases {
        assert_eq!(cdi::provisioner_key(prov, &params(kv)), *want, "{prov} {kv:?}");
    }
    for (k, _) in cdi::TABLE {
        assert!(!k.is_empty());
    }
    assert!(cdi::class_capabilities(cdi::NO_PROVISIONER, &params(&[])).is_none());
}

// §S1: the table drives the verdict when there is no StorageProfile (CDI storagecapabilities.go).
#[test]
fn builtin_table_entries_decide_without_profiles() {
    let hpp_overlay = storage_class_with(
        "hpp-overlay",
        "kubevirt.io.hostpath-provisioner",
        &[],
        None,
        &[("overlayCSI", "true")],
    );
    let gce = storage_class("gce-pd", "pd.csi.storage.gke.io", &[], None);
    let synology_nfs = storage_class_with("syno", "csi.san.synology.com", &[], None, &[("protocol", "nfs")]);
    let ibm_rwo = storage_class_with(
        "ibm-rfs-rwo",
        "vpc.file.csi.ibm.io",
        &[],
        None,
        &[("profile", "rfs"), ("vmState", "true")],
    );
    let f = facts(&[&hpp_overlay, &gce, &synology_nfs, &ibm_rwo]);
    // HPP overlay: RWX Filesystem ⇒ migratable
    assert_eq!(
        eval(np_on("hpp-overlay", None, None), &f).verdict,
        Verdict::Migratable
    );
    // GCE PD offers RWO Block and RWO Filesystem: volumeMode Filesystem renders RWO FS, the
    // VM runs and is DisksNotLiveMigratable (not "no matching accessMode")
    let r = eval(np_on("gce-pd", None, Some("Filesystem")), &f);
    assert_eq!(r.verdict, Verdict::NotMigratable);
    assert!(
        reasons(&r).contains(&"DisksNotLiveMigratable"),
        "{:#?}",
        r.findings
    );
    assert_eq!(
        r.condition.as_ref().map(|c| c.reason.as_str()),
        Some("DisksNotLiveMigratable")
    );
    // Synology NFS: RWX Filesystem first
    assert_eq!(eval(np_on("syno", None, None), &f).verdict, Verdict::Migratable);
    // IBM VPC file rfs with vmState: RWO only
    assert_eq!(
        eval(np_on("ibm-rfs-rwo", None, None), &f).verdict,
        Verdict::NotMigratable
    );
}

// §S4, CDI pkg/controller/datavolume/util.go renderPvcSpecVolumeModeAndAccessModesAndStorageClass /
// getDefaultVolumeMode: explicit access modes are never refused by the profile; the driver decides.
#[test]
fn explicit_access_modes_are_judged_by_the_driver_not_the_profile() {
    let narrowed_cephfs = [
        storage_class(
            "cephfs-narrow",
            "openshift-storage.cephfs.csi.ceph.com",
            &[],
            None,
        ),
        profile(
            "cephfs-narrow",
            "openshift-storage.cephfs.csi.ceph.com",
            &[(&[RWO], "Filesystem")],
        ),
    ];
    let narrowed_rbd = [
        storage_class("rbd-narrow", "openshift-storage.rbd.csi.ceph.com", &[], None),
        profile(
            "rbd-narrow",
            "openshift-storage.rbd.csi.ceph.com",
            &[(&[RWO], "Block")],
        ),
    ];
    let mut extra = narrowed_cephfs.to_vec();
    extra.extend(narrowed_rbd);
    extra.push(storage_class("mystery", "example.com/mystery", &[], None));
    let f = cluster_facts(&extra);
    let cases: &[(&str, &str, &[&str], Option<&str>, Verdict, Option<&str>)] = &[
        // multi-mode request with RWX: Block from the first set containing any mode ⇒ shared
        (
            "RWO+RWX on RBD",
            "ceph-rbd",
            &[RWO, RWX],
            None,
            Verdict::Migratable,
            None,
        ),
        // the admin narrowed the profile; the CephFS driver still provisions RWX Filesystem
        (
            "RWX on narrowed CephFS",
            "cephfs-narrow",
            &[RWX],
            None,
            Verdict::Migratable,
            None,
        ),
        // EBS refuses RWX whatever the profile
        (
            "RWX on gp3",
            "gp3-csi",
            &[RWX],
            None,
            Verdict::NotMigratable,
            Some("AccessModesNotSupported"),
        ),
        // narrowed RBD profile has no RWX set ⇒ no volumeMode ⇒ Filesystem; RBD refuses RWX FS
        (
            "RWX on narrowed RBD",
            "rbd-narrow",
            &[RWX],
            None,
            Verdict::NotMigratable,
            Some("AccessModesNotSupported"),
        ),
        // ReadWriteOncePod on RBD: provisioned, not shared ⇒ the VM runs, DisksNotLiveMigratable
        (
            "RWOP on RBD",
            "ceph-rbd",
            &["ReadWriteOncePod"],
            None,
            Verdict::NotMigratable,
            Some("DisksNotLiveMigratable"),
        ),
        // RWO Filesystem on RBD: provisioned, not shared
        (
            "RWO FS on RBD",
            "ceph-rbd",
            &[RWO],
            Some("Filesystem"),
            Verdict::NotMigratable,
            Some("DisksNotLiveMigratable"),
        ),
        // unknown driver with RWX: cannot tell whether it provisions
        (
            "RWX on unknown driver",
            "mystery",
            &[RWX],
            Some("Block"),
            Verdict::Unknown,
            Some("UnknownProvisioner"),
        ),
    ];
    for (name, class, modes, vm, want, reason) in cases {
        let r = eval(np_on(class, Some(modes), *vm), &f);
        assert_eq!(r.verdict, *want, "{name}: {:#?}", r.findings);
        if let Some(reason) = reason {
            assert!(reasons(&r).contains(reason), "{name}: {:#?}", r.findings);
        }
        let cond = r.condition.as_ref().map(|c| c.reason.as_str());
        match *reason {
            Some("DisksNotLiveMigratable") => assert_eq!(cond, Some("DisksNotLiveMigratable"), "{name}"),
            Some("AccessModesNotSupported") => assert_eq!(cond, None, "{name}: never provisioned"),
            _ => {}
        }
    }
}

/// A KubeVirt CR with feature gates (and optionally disabled ones).
fn kubevirt_with_gates(version: &str, gates: &[&str], disabled: &[&str]) -> String {
    json!({
        "apiVersion": "kubevirt.io/v1", "kind": "KubeVirt",
        "metadata": {"name": "kubevirt", "namespace": "kubevirt"},
        "spec": {"configuration": {"developerConfiguration": {"featureGates": gates, "disabledFeatureGates": disabled}}},
        "status": {"observedKubeVirtVersion": version},
    })
    .to_string()
}

fn on(np: Value, kubevirt_cr: String) -> Report {
    eval(np, &cluster_facts(&[kubevirt_cr]))
}

// §K1, KubeVirt tags: behaviour arrives with a specific pre-release (v1.6.0-rc.0 reorders the
// checks, v1.9.0-alpha.0 has the GPU messages); git-describe builds behave like their tag.
#[test]
fn kubevirt_versions_compare_by_first_upstream_tag() {
    use live_migration_guard::facts::KubeVirtVersion as V;
    let cases = [
        ("v1.6.0-rc.0", "1.6.0-rc.0", true),
        ("v1.6.0-beta.0", "1.6.0-rc.0", false),
        ("v1.6.0-12-gabcdef0", "1.6.0", true),
        ("v1.5.3-4-g0123abc", "1.6.0-rc.0", false),
        ("v1.8.0-rc.1-3-gabc", "1.8.0-rc.0", true),
        ("1.9.0+build.7", "1.9.0", true),
        ("v1.4.1-rhel9.4", "1.4.1", true),
    ];
    for (raw, tag, want) in cases {
        assert_eq!(V::parse(raw).since(tag), Some(want), "{raw} >= {tag}");
    }
    assert_eq!(V::parse("garbage").since("1.0.0"), None);
    // RWO disk + host device: v1.6.0-beta.0 still reports the disk first, rc.0 the device
    let np = with(
        minimal(),
        &[
            (&format!("{PERSISTENT}/accessModes"), json!([RWO])),
            (
                "/spec/platform/kubevirt/hostDevices",
                json!([{"deviceName": "nvidia.com/A100"}]),
            ),
        ],
    );
    let first = |v: &str| {
        eval(np.clone(), &cluster_facts(&[kubevirt(v)]))
            .condition
            .map(|c| c.reason)
    };
    assert_eq!(first("v1.6.0-beta.0").as_deref(), Some("DisksNotLiveMigratable"));
    assert_eq!(
        first("v1.6.0-rc.0").as_deref(),
        Some("HostDeviceNotLiveMigratable")
    );
    // GPU messages from v1.9.0-alpha.0
    let msg = |v: &str| {
        eval(np.clone(), &cluster_facts(&[kubevirt(v)]))
            .condition
            .map(|c| c.message)
            .unwrap_or_default()
    };
    assert!(msg("v1.9.0-alpha.0").contains("VMI specifies non-migratable generic PCI host device"));
    assert!(msg("v1.8.4").contains("VMI uses a PCI host devices"));
}

// §N1/§N2, KubeVirt pkg/network/vmispec/interface.go VerifyVMIMigratable and
// pkg/network/admitter (passt.go, discontinued.go, binding.go).
#[test]
fn pod_network_bindings_by_kubevirt_version() {
    let passt_binding = patched(json!([
        {"op": "add", "path": "/spec/template/spec/domain/devices/interfaces/0/bridge", "value": null},
        {"op": "add", "path": "/spec/template/spec/domain/devices/interfaces/0/passtBinding", "value": {}},
    ]));
    // v1.8 with the gate: migratable; without: rejected at creation; v1.9: Beta gate on by default
    assert_eq!(
        on(
            passt_binding.clone(),
            kubevirt_with_gates("v1.8.0", &["PasstBinding"], &[])
        )
        .verdict,
        Verdict::Migratable
    );
    let r = on(passt_binding.clone(), kubevirt_with_gates("v1.8.0", &[], &[]));
    assert!(
        finding(&r, "VirtualMachineRejected")
            .message
            .contains("PasstBinding feature gate is not enabled")
    );
    assert!(r.condition.is_none());
    assert_eq!(
        on(passt_binding.clone(), kubevirt_with_gates("v1.9.0", &[], &[])).verdict,
        Verdict::Migratable
    );
    let r = on(
        passt_binding.clone(),
        kubevirt_with_gates("v1.9.0", &[], &["PasstBinding"]),
    );
    assert!(reasons(&r).contains(&"VirtualMachineRejected"));
    // the old `passt: {}` binding is rejected at creation
    let old_passt = patched(json!([
        {"op": "add", "path": "/spec/template/spec/domain/devices/interfaces/0/bridge", "value": null},
        {"op": "add", "path": "/spec/template/spec/domain/devices/interfaces/0/passt", "value": {}},
    ]));
    let r = on(old_passt.clone(), kubevirt("v1.8.0"));
    assert!(
        finding(&r, "VirtualMachineRejected")
            .message
            .contains("Passt network binding has been discontinued since v1.3")
    );
    let r = on(old_passt, kubevirt("v1.5.0"));
    assert!(
        finding(&r, "VirtualMachineRejected")
            .message
            .contains("Passt feature gate is not enabled")
    );
    // v1.8's new failure: a pod network without a matching interface
    let renamed =
        patched(json!([{"op": "replace", "path": "/spec/template/spec/networks/0/name", "value": "podnet"}]));
    let r = on(renamed.clone(), kubevirt("v1.8.0"));
    assert_eq!(
        r.condition.map(|c| c
            .message
            .contains("no primary interface found for network podnet")),
        Some(true)
    );
    assert_eq!(
        on(renamed.clone(), kubevirt("v1.8.0-alpha.0")).verdict,
        Verdict::Migratable
    );
    assert_eq!(on(renamed, kubevirt("v1.7.2")).verdict, Verdict::Migratable);
}

// §K4, KubeVirt pkg/virt-handler/vm.go calculateLiveMigrationCondition: each blocker with its
// reason and message, in KubeVirt's order.
#[test]
fn other_vmi_blockers_with_kubevirt_reasons() {
    let add = |path: &str, value: Value| patched(json!([{"op": "add", "path": path, "value": value}]));
    let ls = "/spec/template/spec/domain/launchSecurity";
    let lun = json!({"name": "pr", "lun": {"reservation": true}});
    let cases: Vec<(&str, Value, &str, &str, &str)> = vec![
        (
            "hyperv",
            add(
                "/spec/template/spec/domain/features/hypervPassthrough",
                json!({"enabled": true}),
            ),
            "v1.8.0",
            "HypervPassthroughNotLiveMigratable",
            "VMI uses hyperv passthrough",
        ),
        (
            "sev",
            add(ls, json!({"sev": {}})),
            "v1.8.0",
            "SEVNotLiveMigratable",
            "VMI uses SEV",
        ),
        (
            "snp",
            add(ls, json!({"snp": {}})),
            "v1.8.0",
            "SEVNotLiveMigratable",
            "VMI uses SEV",
        ),
        (
            "tdx",
            add(ls, json!({"tdx": {}})),
            "v1.8.0",
            "TDXNotLiveMigratable",
            "VMI uses TDX",
        ),
        (
            "secure execution",
            patched(
                json!([{"op": "add", "path": ls, "value": {}}, {"op": "add", "path": "/spec/template/spec/architecture", "value": "s390x"}]),
            ),
            "v1.8.0",
            "SecureExecutionNotLiveMigratable",
            "VMI uses Secure Execution",
        ),
        (
            "PR v1.8",
            add("/spec/template/spec/domain/devices/disks/-", lun.clone()),
            "v1.8.0",
            "PersistentReservationNotLiveMigratable",
            "VMI uses SCSI persistent reservation",
        ),
        (
            "PR v1.6 spelling",
            add("/spec/template/spec/domain/devices/disks/-", lun.clone()),
            "v1.6.1",
            "PersistentReservationNotLiveMigratable",
            "VMI uses SCSI persitent reservation",
        ),
    ];
    for (name, np, version, reason, message) in cases {
        let r = on(np, kubevirt(version));
        assert_eq!(r.verdict, Verdict::NotMigratable, "{name}: {:#?}", r.findings);
        let c = r.condition.unwrap_or_else(|| panic!("{name}: condition"));
        assert_eq!(c.reason, reason, "{name}");
        assert!(c.message.contains(message), "{name}: {}", c.message);
    }
    // PR is migratable from v1.9.0-rc.0 (not in v1.9.0-beta.0)
    let pr = add("/spec/template/spec/domain/devices/disks/-", lun);
    assert_eq!(
        on(pr.clone(), kubevirt("v1.9.0-rc.0")).verdict,
        Verdict::Migratable
    );
    assert_eq!(on(pr, kubevirt("v1.9.0-beta.0")).verdict, Verdict::NotMigratable);
    // order: host devices before SEV before Hyper-V before disks
    let np = patched(json!([
        {"op": "add", "path": "/spec/template/spec/domain/features/hypervPassthrough", "value": {"enabled": true}},
        {"op": "add", "path": ls, "value": {"sev": {}}},
    ]));
    assert_eq!(
        on(np, kubevirt("v1.8.0")).condition.map(|c| c.reason).as_deref(),
        Some("SEVNotLiveMigratable")
    );
}

// §P1–§P3, HyperShift kubevirt.go applyJsonPatches/applyJsonPatch and evanphx/json-patch v5.9.11.
#[test]
fn json_patches_see_the_rendered_template_and_decode_like_go() {
    let np_ann = |ops: Value| {
        (
            "/metadata/annotations",
            json!({"hypershift.openshift.io/kubevirt-vm-jsonpatch": ops.to_string()}),
        )
    };
    let f = cluster_facts(&[kubevirt("v1.8.0")]);
    let run = |ops: Value| eval(with(minimal_rbd(), &[np_ann(ops)]), &f);
    // rendered parts patches may replace/remove: affinity, storage request, safe-to-evict, cpu
    for ok in [
        json!([{"op": "remove", "path": "/spec/template/spec/affinity"}]),
        json!([{"op": "replace", "path": "/spec/dataVolumeTemplates/0/spec/storage/resources/requests/storage", "value": "64Gi"}]),
        json!([{"op": "remove", "path": "/spec/template/metadata/annotations/cluster-autoscaler.kubernetes.io~1safe-to-evict-local-volumes"}]),
        json!([{"op": "replace", "path": "/spec/template/spec/domain/cpu/cores", "value": 4}]),
        json!([{"op": "test", "path": "/spec/runStrategy", "value": "Always"}]),
        // negative indices (SupportNegativeIndices) and a null patch
        json!([{"op": "replace", "path": "/spec/template/spec/domain/devices/interfaces/-1/name", "value": "default"}]),
        Value::Null,
    ] {
        let r = run(ok.clone());
        assert_eq!(r.verdict, Verdict::Migratable, "{ok}: {:#?}", r.findings);
    }
    // a failing op means no VMs: nothing to replace
    let r = run(json!([{"op": "replace", "path": "/spec/template/spec/domain/firmware", "value": {}}]));
    assert!(reasons(&r).contains(&"InvalidKubevirtVMJSONPatch"));
    assert!(r.condition.is_none());
    // Guaranteed QoS renders domain.resources and no cpu
    let guaranteed = with(
        minimal_rbd(),
        &[
            (
                "/spec/platform/kubevirt/compute",
                json!({"cores": 2, "memory": "8Gi", "qosClass": "Guaranteed"}),
            ),
            np_ann(json!([{"op": "replace", "path": "/spec/template/spec/domain/cpu/cores", "value": 4}])),
        ],
    );
    assert!(reasons(&eval(guaranteed, &f)).contains(&"InvalidKubevirtVMJSONPatch"));
    // removing a rendered key does not clear the rendered field (Go decodes into the struct)
    let rwo = with(
        minimal(),
        &[
            (&format!("{PERSISTENT}/accessModes"), json!([RWO])),
            np_ann(json!([{"op": "remove", "path": "/spec/dataVolumeTemplates/0/spec/storage/accessModes"}])),
        ],
    );
    let r = eval(rwo, &f);
    assert!(
        reasons(&r).contains(&"DisksNotLiveMigratable"),
        "{:#?}",
        r.findings
    );
    let hostdev = with(
        minimal_rbd(),
        &[
            (
                "/spec/platform/kubevirt/hostDevices",
                json!([{"deviceName": "nvidia.com/A100"}]),
            ),
            np_ann(json!([{"op": "remove", "path": "/spec/template/spec/domain/devices/hostDevices"}])),
        ],
    );
    assert!(reasons(&eval(hostdev, &f)).contains(&"HostDeviceNotLiveMigratable"));
    // the HostedCluster's patch runs first, the NodePool's on its result
    let r = eval_with_hc_patch(
        json!([{"op": "add", "path": "/spec/template/spec/domain/devices/gpus", "value": [{"name": "g", "deviceName": "x"}]}]),
        json!([{"op": "remove", "path": "/spec/template/spec/domain/devices/gpus/0"}]),
    );
    assert_eq!(r.verdict, Verdict::Migratable, "{:#?}", r.findings);
    // ... on the same JSON (HS kubevirt.go applyJsonPatches: one encode, both patches, one
    // decode): what the HostedCluster's patch removed is gone for the NodePool's patch ...
    let r = eval_with_hc_patch(
        json!([{"op": "remove", "path": "/spec/template/spec/evictionStrategy"}]),
        json!([{"op": "remove", "path": "/spec/template/spec/evictionStrategy"}]),
    );
    let invalid = finding(&r, "InvalidKubevirtVMJSONPatch");
    assert_eq!(
        invalid.field, "metadata.annotations[hypershift.openshift.io/kubevirt-vm-jsonpatch]",
        "the NodePool's patch fails: {:#?}",
        r.findings
    );
    assert!(
        r.condition.is_none(),
        "no machine template, no VMs: {:#?}",
        r.condition
    );
    // ... decoded once, at the end: a document the HostedCluster's patch left undecodable
    // (a string where HyperShift's struct has a list) is fine once the NodePool's patch
    // repairs it ...
    let r = eval_with_hc_patch(
        json!([{"op": "replace", "path": "/spec/template/spec/domain/devices/interfaces", "value": "none"}]),
        json!([{"op": "replace", "path": "/spec/template/spec/domain/devices/interfaces", "value": [{"name": "default", "bridge": {}}]}]),
    );
    assert_eq!(r.verdict, Verdict::Migratable, "{:#?}", r.findings);
    // ... and fails when nothing repairs it, named on the patch that left it so
    let r = eval_with_hc_patch(
        json!([{"op": "replace", "path": "/spec/template/spec/domain/devices/interfaces", "value": "none"}]),
        json!([{"op": "test", "path": "/spec/runStrategy", "value": "Always"}]),
    );
    let invalid: Vec<&str> = r
        .findings
        .iter()
        .filter(|f| f.reason == "InvalidKubevirtVMJSONPatch")
        .map(|f| f.field.as_ref())
        .collect();
    assert_eq!(invalid.len(), 1, "{:#?}", r.findings);
    assert!(invalid[0].starts_with("HostedCluster "), "{invalid:?}");
    assert!(
        r.condition.is_none(),
        "no machine template, no VMs: {:#?}",
        r.condition
    );
    // ... and what it added outside the modelled fields is there for the NodePool's patch
    let r = eval_with_hc_patch(
        json!([{"op": "add", "path": "/spec/template/spec/domain/devices/autoattachSerialConsole", "value": false}]),
        json!([{"op": "test", "path": "/spec/template/spec/domain/devices/autoattachSerialConsole", "value": false}]),
    );
    assert_eq!(r.verdict, Verdict::Migratable, "{:#?}", r.findings);
}

/// A migratable NodePool whose HostedCluster (in the facts) carries `hc_ops` and which
/// carries `np_ops` itself, as JSON patch annotations.
fn eval_with_hc_patch(hc_ops: Value, np_ops: Value) -> Report {
    let mut hc = fixture_value("hostedcluster-kubevirt-minimal.yaml");
    hc["metadata"]["annotations"] =
        json!({"hypershift.openshift.io/kubevirt-vm-jsonpatch": hc_ops.to_string()});
    let ns = hc["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let name = hc["metadata"]["name"].as_str().unwrap_or_default().to_owned();
    let np = with(
        minimal_rbd(),
        &[
            ("/metadata/namespace", json!(ns)),
            ("/spec/clusterName", json!(name)),
            (
                "/metadata/annotations",
                json!({"hypershift.openshift.io/kubevirt-vm-jsonpatch": np_ops.to_string()}),
            ),
        ],
    );
    let mut all = cluster();
    all.push(kubevirt("v1.8.0"));
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    let facts_with_hc = builder(&refs).hosted_cluster(hostedcluster(hc)).build();
    eval(np, &facts_with_hc)
}

// §H2, HyperShift hostedcluster_controller.go syncKVLiveMigratableCondition + CAPK
// IsLiveMigratable: NodePools whose VMs never start do not make the HostedCluster False.
#[test]
fn hostedcluster_condition_ignores_nodepools_without_vms() {
    use live_migration_guard::batch::evaluate_all;
    use live_migration_guard::facts::load;
    let hc = fixture_text("hostedcluster-kubevirt-minimal.yaml");
    let hcv = fixture_value("hostedcluster-kubevirt-minimal.yaml");
    let np = |name: &str, class: &str| {
        with(
            minimal(),
            &[
                ("/metadata/name", json!(name)),
                ("/metadata/namespace", hcv["metadata"]["namespace"].clone()),
                ("/spec/clusterName", hcv["metadata"]["name"].clone()),
                (&format!("{PERSISTENT}/storageClass"), json!(class)),
            ],
        )
        .to_string()
    };
    let rbd_default = storage_class(
        "virt",
        "rbd.csi.ceph.com",
        &[("storageclass.kubevirt.io/is-default-virt-class", "true")],
        None,
    );
    let f = cluster_facts(&[rbd_default]);
    let mut inputs = load::parse_bytes(hc.as_bytes(), "hc").expect("hc");
    inputs.extend(load::parse_bytes(np("never-starts", "missing-class").as_bytes(), "np").expect("np"));
    inputs.extend(load::parse_bytes(np("fine", "ceph-rbd").as_bytes(), "np").expect("np"));
    let (reports, _) = evaluate_all(&inputs, &f);
    let hc_report = reports
        .reports
        .iter()
        .find(|r| r.kind == "HostedCluster")
        .expect("hc report");
    assert_eq!(
        hc_report.condition.as_ref().map(|c| c.status),
        Some("True"),
        "{:#?}",
        hc_report
    );
}

// §H3, HyperShift hypershift-operator/controllers/nodepool/kubevirt.go
// setAllMachinesLMCondition: every KubevirtMachine of the hosted control plane namespace
// (all NodePools of the HostedCluster) is aggregated into each NodePool's condition by
// nodepool_controller.go aggregateMachineReasonsAndMessages. Verdicts stay per NodePool.
mod siblings {
    use super::*;
    use live_migration_guard::batch::evaluate_all;
    use live_migration_guard::facts::load;

    const AGGREGATED: &str = "ConditionAggregatesSiblingNodePools";

    fn cluster_nodepool(base: Value, name: &str, replicas: i64, edits: &[(&str, Value)]) -> String {
        let hcv = fixture_value("hostedcluster-kubevirt-minimal.yaml");
        let mut all: Vec<(&str, Value)> = vec![
            ("/metadata/name", json!(name)),
            ("/metadata/namespace", hcv["metadata"]["namespace"].clone()),
            ("/spec/clusterName", hcv["metadata"]["name"].clone()),
            ("/spec/replicas", json!(replicas)),
        ];
        all.extend(edits.iter().map(|(p, v)| (*p, v.clone())));
        with(base, &all).to_string()
    }

    fn rwo(name: &str, replicas: i64) -> String {
        cluster_nodepool(
            minimal(),
            name,
            replicas,
            &[
                (&format!("{PERSISTENT}/accessModes"), json!([RWO])),
                (&format!("{PERSISTENT}/storageClass"), json!("gp3-csi")),
            ],
        )
    }

    fn rwx(name: &str, replicas: i64) -> String {
        cluster_nodepool(
            minimal(),
            name,
            replicas,
            &[(&format!("{PERSISTENT}/storageClass"), json!("ceph-rbd"))],
        )
    }

    fn run(objects: &[String]) -> Vec<Report> {
        let mut inputs = load::parse_bytes(
            fixture_text("hostedcluster-kubevirt-minimal.yaml").as_bytes(),
            "hc",
        )
        .expect("hc");
        for (i, o) in objects.iter().enumerate() {
            inputs.extend(load::parse_bytes(o.as_bytes(), &format!("np-{i}")).expect("np"));
        }
        let facts = cluster_facts(&[storage_class(
            "virt",
            "rbd.csi.ceph.com",
            &[("storageclass.kubevirt.io/is-default-virt-class", "true")],
            None,
        )]);
        evaluate_all(&inputs, &facts).0.reports
    }

    fn report<'a>(reports: &'a [Report], name: &str) -> &'a Report {
        reports
            .iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("no {name}"))
    }

    fn disk_line(machine: &str) -> String {
        format!(
            "Machine {machine}: DisksNotLiveMigratable: {machine} is not a live migratable machine: cannot migrate VMI: PVC {machine}-rhcos is not shared, live migration requires that all PVCs must be shared (using ReadWriteMany access mode)\n"
        )
    }

    /// aggregateMachineMessages over one reason's lines, restated from HyperShift for the test.
    fn block(mut lines: Vec<String>) -> String {
        lines.sort();
        let mut out = String::new();
        for l in lines {
            if out.len() + l.len() > 1000 {
                out.push_str("... too many similar errors\n");
                break;
            }
            out.push_str(&l);
        }
        out
    }

    #[test]
    fn siblings_share_the_aggregated_condition() {
        let gpu = cluster_nodepool(
            fixture_value("nodepool-kubevirt-gpu-hostdevices.yaml"),
            "gpu",
            2,
            &[],
        );
        let reports = run(&[rwo("workers", 3), gpu, rwx("fine", 1)]);
        let expected = format!(
            "5 of 6 machines are not live migratable\n{}{}",
            block((1..=3).map(|n| disk_line(&format!("workers-{n}"))).collect()),
            block(
                (1..=2)
                    .map(|n| format!("Machine gpu-{n}: HostDeviceNotLiveMigratable: gpu-{n} is not a live migratable machine: VMI specifies non-migratable generic PCI host device\n"))
                    .collect()
            ),
        );
        for (name, verdict) in [
            ("workers", Verdict::NotMigratable),
            ("gpu", Verdict::NotMigratable),
            ("fine", Verdict::Migratable),
        ] {
            let r = report(&reports, name);
            assert_eq!(r.verdict, verdict, "{name}: the verdict stays about its own VMs");
            let c = r.condition.as_ref().expect("condition");
            assert_eq!(
                (c.status, c.reason.as_str()),
                ("False", "DisksNotLiveMigratable,HostDeviceNotLiveMigratable")
            );
            assert_eq!(c.message, expected, "{name}");
            let f = finding(r, AGGREGATED);
            assert_eq!(f.severity, Severity::Info);
            assert!(
                f.message
                    .contains("hosted control plane namespace clusters-example"),
                "{}",
                f.message
            );
            for sibling in ["workers", "gpu", "fine"] {
                assert_eq!(
                    f.message.contains(&format!("{sibling} (")),
                    sibling != name,
                    "{name}: {}",
                    f.message
                );
            }
        }
        // §H2 lists every NodePool whose condition is False: with the aggregate, all of them.
        let hc = reports.iter().find(|r| r.kind == "HostedCluster").expect("hc");
        let c = hc.condition.as_ref().expect("hc condition");
        assert!(
            c.message
                .contains("attached to this Hosted Cluster: fine, gpu, workers."),
            "{}",
            c.message
        );
    }

    #[test]
    fn sibling_lines_merge_in_sort_strings_order_and_truncate() {
        // "a-1-1" < "a-10" < "a-1:" byte-wise: the NodePools' lines interleave.
        let reports = run(&[rwo("a", 12), rwo("a-1", 2)]);
        let mut lines: Vec<String> = (1..=12).map(|n| disk_line(&format!("a-{n}"))).collect();
        lines.extend((1..=2).map(|n| disk_line(&format!("a-1-{n}"))));
        let expected = format!("14 of 14 machines are not live migratable\n{}", block(lines));
        assert!(expected.contains("Machine a-1-1:") && expected.ends_with("... too many similar errors\n"));
        assert!(expected.find("Machine a-1-2:") < expected.find("Machine a-10:"));
        for name in ["a", "a-1"] {
            assert_eq!(
                report(&reports, name)
                    .condition
                    .as_ref()
                    .expect("condition")
                    .message,
                expected
            );
        }
    }

    #[test]
    fn machineless_and_templateless_siblings() {
        let bad_patch = cluster_nodepool(
            minimal(),
            "bad-patch",
            4,
            &[(
                "/metadata/annotations",
                json!({"hypershift.openshift.io/kubevirt-vm-jsonpatch": "not json"}),
            )],
        );
        let never_runs = cluster_nodepool(
            minimal(),
            "never-runs",
            2,
            &[(&format!("{PERSISTENT}/storageClass"), json!("missing-class"))],
        );
        let reports = run(&[rwo("workers", 1), rwx("empty", 0), bad_patch, never_runs]);
        // bad-patch has no machine template (no KubevirtMachines); never-runs' machines exist
        // without a VMLiveMigratable condition; empty has none but still gets the condition.
        for name in ["workers", "empty", "bad-patch", "never-runs"] {
            let c = report(&reports, name).condition.as_ref().expect("condition");
            assert_eq!(
                c.message,
                format!(
                    "1 of 3 machines are not live migratable\n{}",
                    disk_line("workers-1")
                ),
                "{name}"
            );
        }
        assert_eq!(report(&reports, "empty").verdict, Verdict::Migratable);
    }

    #[test]
    fn undecided_sibling_makes_the_condition_unknown_and_migratable_siblings_stay_true() {
        let unknown = cluster_nodepool(
            minimal(),
            "unknown",
            1,
            &[(&format!("{PERSISTENT}/storageClass"), json!("nfs"))],
        );
        let nfs = storage_class("nfs", "example.com/unknown-driver", &[], None);
        let mut inputs = load::parse_bytes(
            fixture_text("hostedcluster-kubevirt-minimal.yaml").as_bytes(),
            "hc",
        )
        .expect("hc");
        for o in [rwx("fine", 2), unknown.clone(), rwx("fine-too", 1)] {
            inputs.extend(load::parse_bytes(o.as_bytes(), "np").expect("np"));
        }
        let reports = evaluate_all(&inputs, &cluster_facts(&[nfs])).0.reports;
        let u = report(&reports, "unknown");
        assert_eq!(u.verdict, Verdict::Unknown, "{:#?}", u.findings);
        for name in ["fine", "unknown"] {
            let c = report(&reports, name).condition.as_ref().expect("condition");
            assert_eq!(c.status, "Unknown", "{name}");
            assert!(c.message.contains("NodePool unknown: "), "{}", c.message);
        }
        // Without the undecided one: True / All is well for both, with the finding.
        let mut inputs = load::parse_bytes(
            fixture_text("hostedcluster-kubevirt-minimal.yaml").as_bytes(),
            "hc",
        )
        .expect("hc");
        for o in [rwx("fine", 2), rwx("fine-too", 1)] {
            inputs.extend(load::parse_bytes(o.as_bytes(), "np").expect("np"));
        }
        let reports = evaluate_all(&inputs, &cluster_facts(&[])).0.reports;
        let r = report(&reports, "fine");
        assert_eq!(
            r.condition.as_ref().map(|c| c.message.as_str()),
            Some("All is well")
        );
        assert!(
            finding(r, AGGREGATED)
                .message
                .contains("fine-too (1 machine(s), live migratable)")
        );
    }

    #[test]
    fn single_nodepool_is_unchanged_and_other_clusters_do_not_mix() {
        let other_cluster = with(
            serde_json::from_str::<Value>(&rwo("elsewhere", 2)).expect("json"),
            &[("/spec/clusterName", json!("another"))],
        )
        .to_string();
        let reports = run(&[rwo("workers", 3), other_cluster]);
        let r = report(&reports, "workers");
        assert!(!reasons(r).contains(&AGGREGATED));
        assert!(
            r.condition
                .as_ref()
                .expect("condition")
                .message
                .starts_with("3 of 3 machines")
        );
        assert!(!reasons(report(&reports, "elsewhere")).contains(&AGGREGATED));
    }

    /// Many siblings: each finding names ten and counts the rest, and an `Unknown` condition
    /// names ten undecided NodePools and counts the rest — listing all would make a
    /// HostedCluster's reports grow with the square of its NodePools (the audit of 1,000
    /// NodePools held ~350 MiB).
    #[test]
    fn many_siblings_are_counted_not_all_listed() {
        let nfs = storage_class("nfs", "example.com/unknown-driver", &[], None);
        let mut inputs = load::parse_bytes(
            fixture_text("hostedcluster-kubevirt-minimal.yaml").as_bytes(),
            "hc",
        )
        .expect("hc");
        for i in 0..300 {
            let np = if i % 2 == 0 {
                rwx(&format!("pool-{i:03}"), 1)
            } else {
                cluster_nodepool(
                    minimal(),
                    &format!("pool-{i:03}"),
                    1,
                    &[(&format!("{PERSISTENT}/storageClass"), json!("nfs"))],
                )
            };
            inputs.extend(load::parse_bytes(np.as_bytes(), "np").expect("np"));
        }
        let reports = evaluate_all(&inputs, &cluster_facts(&[nfs])).0.reports;
        let r = report(&reports, "pool-000");
        let f = finding(r, AGGREGATED);
        assert!(
            f.message.contains(
                "pool-001 (1 machine(s), cannot be predicted), pool-002 (1 machine(s), live migratable)"
            ),
            "{}",
            f.message
        );
        assert!(
            f.message.contains("pool-010 (") && !f.message.contains("pool-011 ("),
            "{}",
            f.message
        );
        assert!(
            f.message.contains(", and 289 more sibling NodePool(s)."),
            "{}",
            f.message
        );
        // bounded whatever the count: ten siblings and the condition's first line
        assert!(f.message.len() < 4_000, "{} bytes", f.message.len());
        let c = r.condition.as_ref().expect("condition");
        assert_eq!(c.status, "Unknown");
        assert!(
            c.message.starts_with("cannot be predicted: NodePool pool-001: "),
            "{}",
            c.message
        );
        assert!(c.message.contains("NodePool pool-019: ") && !c.message.contains("NodePool pool-021: "));
        assert!(
            c.message.ends_with("; and 140 more undecided NodePool(s)"),
            "{}",
            c.message
        );
        // every report still has its own finding and the shared condition
        assert!(
            reports
                .iter()
                .filter(|r| r.kind == "NodePool")
                .all(|r| reasons(r).contains(&AGGREGATED))
        );
    }

    // The audit sees every cached NodePool: same aggregation.
    #[test]
    fn audit_aggregates_cached_siblings() {
        use std::sync::Arc;
        let hc = hostedcluster(fixture_value("hostedcluster-kubevirt-minimal.yaml"));
        let mut all = cluster();
        all.push(storage_class(
            "virt",
            "rbd.csi.ceph.com",
            &[("storageclass.kubevirt.io/is-default-virt-class", "true")],
            None,
        ));
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let facts = builder(&refs).hosted_cluster(hc).build();
        let nps: Vec<Arc<live_migration_guard::resources::NodePool>> = [rwo("workers", 1), rwx("fine", 1)]
            .iter()
            .map(|y| Arc::new(nodepool(serde_json::from_str(y).expect("json"))))
            .collect();
        let reports = live_migration_guard::audit::evaluate_all(
            &live_migration_guard::facts::Snapshot::fixed(facts),
            &nps,
        );
        let fine = report(&reports, "fine");
        assert_eq!(fine.verdict, Verdict::Migratable);
        assert_eq!(
            fine.condition.as_ref().map(|c| c.message.as_str()),
            Some(
                format!(
                    "1 of 2 machines are not live migratable\n{}",
                    disk_line("workers-1")
                )
                .as_str()
            )
        );
    }
}
