//! AdmissionReview parsing, evaluation and policy on arbitrary bytes, in deny mode with
//! object overrides, against facts with classes, profiles and a KubeVirt version.
#![no_main]

use std::collections::HashMap;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use live_migration_guard::admission::{self, Context, Endpoint, Mode, Policy};
use live_migration_guard::facts::{self, Facts, load};

static FACTS: LazyLock<Facts> = LazyLock::new(|| {
    let text = r#"
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: gp3-csi, annotations: {storageclass.kubernetes.io/is-default-class: "true"}}
provisioner: ebs.csi.aws.com
parameters: {type: gp3}
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: ceph, annotations: {storageclass.kubevirt.io/is-default-virt-class: "true"}}
provisioner: openshift-storage.rbd.csi.ceph.com
---
apiVersion: cdi.kubevirt.io/v1beta1
kind: StorageProfile
metadata: {name: ceph}
status: {provisioner: openshift-storage.rbd.csi.ceph.com, claimPropertySets: [{accessModes: [ReadWriteMany], volumeMode: Block}]}
---
apiVersion: kubevirt.io/v1
kind: KubeVirt
metadata: {name: kv, namespace: openshift-cnv}
status: {observedKubeVirtVersion: v1.7.0}
"#;
    let loaded = load::parse_bytes(text.as_bytes(), "fuzz facts").expect("fuzz facts parse");
    facts::builder_from(&loaded).0.build()
});

fuzz_target!(|data: &[u8]| {
    let modes: HashMap<String, String> = [("clusters".to_owned(), "deny".to_owned())].into();
    let policy = Policy { mode: Mode::Deny, deny_unknown: true, allow_object_override: true };
    let ctx = Context { facts: &FACTS, namespace_modes: Some(&modes), policy: &policy };
    for endpoint in [Endpoint::NodePools, Endpoint::HostedClusters] {
        if let Ok(outcome) = admission::review(data, endpoint, &ctx) {
            let r = &outcome.review.response;
            assert!(r.warnings.iter().all(|w| w.len() <= 256));
            assert!(r.warnings.iter().map(String::len).sum::<usize>() <= 4096);
            assert_eq!(r.allowed, r.status.is_none());
        }
    }
});
