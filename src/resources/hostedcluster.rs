//! `hypershift.openshift.io/v1beta1` HostedCluster — the fields the rules read (docs/rules.md §S6).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;

use super::{HYPERSHIFT_GROUP, HYPERSHIFT_VERSION, impl_resource};

#[derive(Deserialize, Clone, Debug, Default)]
pub struct HostedCluster {
    #[serde(default, deserialize_with = "super::meta::lean")]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: HostedClusterSpec,
}

impl HostedCluster {
    /// `spec.platform.kubevirt.credentials`: set when the VMs run on an external cluster.
    pub fn credentials(&self) -> Option<&KubevirtPlatformCredentials> {
        self.spec.platform.kubevirt.as_ref()?.credentials.as_ref()
    }

    /// `(namespace, name)`.
    pub fn key(&self) -> (&str, &str) {
        (
            self.metadata.namespace.as_deref().unwrap_or_default(),
            self.metadata.name.as_deref().unwrap_or_default(),
        )
    }
}

impl_resource!(
    HostedCluster,
    k8s_openapi::NamespaceResourceScope,
    group = HYPERSHIFT_GROUP,
    version = HYPERSHIFT_VERSION,
    kind = "HostedCluster",
    plural = "hostedclusters"
);

#[derive(Deserialize, Clone, Debug, Default)]
pub struct HostedClusterSpec {
    pub platform: HostedClusterPlatform,
    /// `spec.infraID`, rendered into the VM template's labels.
    #[serde(default, rename = "infraID")]
    pub infra_id: Option<String>,
}

#[derive(Deserialize, Clone, Debug, Default)]
pub struct HostedClusterPlatform {
    #[serde(rename = "type")]
    pub type_: String,
    pub kubevirt: Option<KubevirtPlatformSpec>,
}

/// `spec.platform.kubevirt` (docs/rules.md §S6).
#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct KubevirtPlatformSpec {
    pub credentials: Option<KubevirtPlatformCredentials>,
    pub storage_driver: Option<KubevirtStorageDriverSpec>,
}

/// External infrastructure cluster (docs/rules.md §S6, §S6).
#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct KubevirtPlatformCredentials {
    pub infra_kube_config_secret: Option<KubeconfigSecretRef>,
    #[serde(default)]
    pub infra_namespace: String,
}

#[derive(Deserialize, Clone, Debug, Default)]
pub struct KubeconfigSecretRef {
    pub name: String,
    pub key: String,
}

#[derive(Deserialize, Clone, Debug, Default)]
pub struct KubevirtStorageDriverSpec {
    /// `None`, `Default` or `Manual`; CRD default `Default`; nil driver is treated as `Default` (docs/rules.md §S6).
    #[serde(rename = "type")]
    pub type_: Option<StorageDriverType>,
    pub manual: Option<KubevirtManualStorageDriverConfig>,
}

#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageDriverType {
    None,
    Default,
    Manual,
}

#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct KubevirtManualStorageDriverConfig {
    pub storage_class_mapping: Option<Vec<KubevirtStorageClassMapping>>,
}

#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct KubevirtStorageClassMapping {
    pub infra_storage_class_name: String,
    pub guest_storage_class_name: String,
}
