//! Typed views of the Kubernetes objects the rules read.
//!
//! Each type deserializes only the fields the evaluator needs; everything else in the
//! object is skipped by serde without being materialised. `metadata` goes through
//! [`meta::lean`], which keeps name, namespace, annotations (but the kilobytes of
//! `kubectl.kubernetes.io/last-applied-configuration`) and the bookkeeping fields, checks
//! but drops labels (no rule reads them), and skips `managedFields` and the rest — that
//! keeps admission parsing cheap and the reflector caches small.

pub mod hostedcluster;
pub mod kubevirt;
pub mod meta;
pub mod nodepool;
pub mod storage;

pub use hostedcluster::HostedCluster;
pub use kubevirt::KubeVirt;
pub use nodepool::NodePool;
pub use storage::{AccessMode, ClaimPropertySet, StorageProfile, VolumeMode};

/// `hypershift.openshift.io` — group of NodePool and HostedCluster (docs/rules.md §R1, §S6).
pub const HYPERSHIFT_GROUP: &str = "hypershift.openshift.io";
/// The only served version of NodePool and HostedCluster (docs/rules.md §R1).
pub const HYPERSHIFT_VERSION: &str = "v1beta1";
/// `spec.platform.type` value of the KubeVirt platform (docs/rules.md §R1).
pub const KUBEVIRT_PLATFORM: &str = "KubeVirt";
/// Annotation carrying an RFC 6902 patch for the VM template (docs/rules.md §R2).
pub const VM_JSONPATCH_ANNOTATION: &str = "hypershift.openshift.io/kubevirt-vm-jsonpatch";

/// Implements `kube::Resource` for one of our lean CRD views.
macro_rules! impl_resource {
    ($ty:ty, $scope:ty, group = $group:expr, version = $version:expr, kind = $kind:expr, plural = $plural:expr) => {
        impl kube::Resource for $ty {
            type DynamicType = ();
            type Scope = $scope;

            fn kind(_: &()) -> std::borrow::Cow<'_, str> {
                $kind.into()
            }
            fn group(_: &()) -> std::borrow::Cow<'_, str> {
                $group.into()
            }
            fn version(_: &()) -> std::borrow::Cow<'_, str> {
                $version.into()
            }
            fn plural(_: &()) -> std::borrow::Cow<'_, str> {
                $plural.into()
            }
            fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &mut self.metadata
            }
        }
    };
}
pub(crate) use impl_resource;
