//! Access/volume modes and the CDI StorageProfile (docs/rules.md §S3).

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use super::impl_resource;

/// A PersistentVolume access mode. `ReadOnly` is not a Kubernetes mode but the NodePool CRD
/// accepts it (docs/rules.md §R1 quirk), so we parse it to be able to reject it with a clear finding.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccessMode {
    ReadWriteOnce,
    ReadOnlyMany,
    ReadWriteMany,
    ReadWriteOncePod,
    ReadOnly,
}

impl AccessMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadWriteOnce => "ReadWriteOnce",
            Self::ReadOnlyMany => "ReadOnlyMany",
            Self::ReadWriteMany => "ReadWriteMany",
            Self::ReadWriteOncePod => "ReadWriteOncePod",
            Self::ReadOnly => "ReadOnly",
        }
    }
}

impl fmt::Display for AccessMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VolumeMode {
    Filesystem,
    Block,
}

impl VolumeMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Filesystem => "Filesystem",
            Self::Block => "Block",
        }
    }
}

impl fmt::Display for VolumeMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of `claimPropertySets` (docs/rules.md §S3).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ClaimPropertySet {
    #[serde(default)]
    pub access_modes: Vec<AccessMode>,
    pub volume_mode: Option<VolumeMode>,
}

impl ClaimPropertySet {
    pub fn has_rwx(&self) -> bool {
        self.access_modes.contains(&AccessMode::ReadWriteMany)
    }
}

impl fmt::Display for ClaimPropertySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let modes: Vec<&str> = self.access_modes.iter().map(|m| m.as_str()).collect();
        match self.volume_mode {
            Some(vm) => write!(f, "{} {vm}", modes.join("+")),
            None => f.write_str(&modes.join("+")),
        }
    }
}

/// A claim property set of CDI's built-in capability table (docs/rules.md §S1).
#[derive(Clone, Copy, Debug)]
pub struct StaticClaimPropertySet {
    pub access_modes: &'static [AccessMode],
    pub volume_mode: VolumeMode,
}

impl From<StaticClaimPropertySet> for ClaimPropertySet {
    fn from(s: StaticClaimPropertySet) -> Self {
        Self {
            access_modes: s.access_modes.to_vec(),
            volume_mode: Some(s.volume_mode),
        }
    }
}

/// `cdi.kubevirt.io/v1beta1` StorageProfile, cluster-scoped, named like its StorageClass (docs/rules.md §S3).
#[derive(Deserialize, Clone, Debug, Default)]
pub struct StorageProfile {
    #[serde(default, deserialize_with = "super::meta::lean")]
    pub metadata: ObjectMeta,
    pub spec: Option<StorageProfileSpec>,
    pub status: Option<StorageProfileStatus>,
}

impl_resource!(
    StorageProfile,
    k8s_openapi::ClusterResourceScope,
    group = "cdi.kubevirt.io",
    version = "v1beta1",
    kind = "StorageProfile",
    plural = "storageprofiles"
);

#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct StorageProfileSpec {
    pub claim_property_sets: Option<Vec<ClaimPropertySet>>,
}

#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct StorageProfileStatus {
    pub storage_class: Option<String>,
    pub provisioner: Option<String>,
    pub claim_property_sets: Option<Vec<ClaimPropertySet>>,
}
