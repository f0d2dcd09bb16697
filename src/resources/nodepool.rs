//! `hypershift.openshift.io/v1beta1` NodePool — the fields the rules read (docs/rules.md §R1, §R1).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;

use super::storage::{AccessMode, VolumeMode};
use super::{HYPERSHIFT_GROUP, HYPERSHIFT_VERSION, impl_resource};

#[derive(Deserialize, Clone, Debug, Default)]
pub struct NodePool {
    #[serde(default, deserialize_with = "super::meta::lean")]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: NodePoolSpec,
}

impl_resource!(
    NodePool,
    k8s_openapi::NamespaceResourceScope,
    group = HYPERSHIFT_GROUP,
    version = HYPERSHIFT_VERSION,
    kind = "NodePool",
    plural = "nodepools"
);

#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct NodePoolSpec {
    /// Name of the HostedCluster in the same namespace (docs/rules.md §R1).
    #[serde(default)]
    pub cluster_name: String,
    pub replicas: Option<i32>,
    pub auto_scaling: Option<NodePoolAutoScaling>,
    pub platform: NodePoolPlatform,
}

#[derive(Deserialize, Clone, Debug, Default)]
pub struct NodePoolAutoScaling {
    pub min: Option<i32>,
    pub max: Option<i32>,
}

#[derive(Deserialize, Clone, Debug, Default)]
pub struct NodePoolPlatform {
    #[serde(rename = "type")]
    pub type_: String,
    pub kubevirt: Option<KubevirtNodePoolPlatform>,
}

/// `spec.platform.kubevirt` (docs/rules.md §R1).
#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct KubevirtNodePoolPlatform {
    pub root_volume: Option<KubevirtRootVolume>,
    /// Defaults to `true` (CRD default, docs/rules.md §R1).
    pub attach_default_network: Option<bool>,
    pub additional_networks: Option<Vec<KubevirtNetwork>>,
    pub host_devices: Option<Vec<KubevirtHostDevice>>,
    /// `compute` (memory, cores, qosClass), kept as JSON: only rendered into the VM
    /// template that JSON patches see (docs/rules.md §P1).
    pub compute: Option<serde_json::Value>,
    pub network_interface_multiqueue: Option<String>,
    pub node_selector: Option<serde_json::Value>,
}

impl KubevirtNodePoolPlatform {
    pub fn additional_networks(&self) -> &[KubevirtNetwork] {
        self.additional_networks.as_deref().unwrap_or_default()
    }
    pub fn host_devices(&self) -> &[KubevirtHostDevice] {
        self.host_devices.as_deref().unwrap_or_default()
    }
}

#[derive(Deserialize, Clone, Debug, Default)]
pub struct KubevirtRootVolume {
    /// Only `Persistent` exists; CRD default `Persistent` (docs/rules.md §R1).
    #[serde(rename = "type")]
    pub type_: Option<String>,
    pub persistent: Option<KubevirtPersistentVolume>,
}

#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct KubevirtPersistentVolume {
    pub storage_class: Option<String>,
    pub access_modes: Option<Vec<AccessMode>>,
    pub volume_mode: Option<VolumeMode>,
    /// The root volume size (a quantity), rendered as the storage request.
    pub size: Option<serde_json::Value>,
}

#[derive(Deserialize, Clone, Debug, Default)]
pub struct KubevirtNetwork {
    pub name: String,
}

#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct KubevirtHostDevice {
    pub device_name: String,
    /// CRD default 1, minimum 1 (docs/rules.md §R1).
    pub count: Option<i64>,
}
