//! `kubevirt.io/v1` KubeVirt CR — `status.observedKubeVirtVersion` and the parts of
//! `spec.configuration` the rules read: feature gates, network binding plugins and the
//! default architecture (docs/rules.md §K1, §N1).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde_json::Value;

use super::impl_resource;

#[derive(Deserialize, Clone, Debug, Default)]
pub struct KubeVirt {
    #[serde(default, deserialize_with = "super::meta::lean")]
    pub metadata: ObjectMeta,
    pub spec: Option<KubeVirtSpec>,
    pub status: Option<KubeVirtStatus>,
}

impl_resource!(
    KubeVirt,
    k8s_openapi::NamespaceResourceScope,
    group = "kubevirt.io",
    version = "v1",
    kind = "KubeVirt",
    plural = "kubevirts"
);

#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct KubeVirtStatus {
    pub observed_kube_virt_version: Option<String>,
}

#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct KubeVirtSpec {
    #[serde(default)]
    pub configuration: KubeVirtConfiguration,
}

#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct KubeVirtConfiguration {
    #[serde(default)]
    pub developer_configuration: DeveloperConfiguration,
    #[serde(default)]
    pub network: NetworkConfiguration,
    #[serde(default)]
    pub architecture_configuration: ArchitectureConfiguration,
}

#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct DeveloperConfiguration {
    #[serde(default)]
    pub feature_gates: Vec<String>,
    #[serde(default)]
    pub disabled_feature_gates: Vec<String>,
}

#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct NetworkConfiguration {
    /// Network binding plugins by name; a plugin with `migration` set is migratable.
    #[serde(default)]
    pub binding: BTreeMap<String, BindingPlugin>,
}

#[derive(Deserialize, Clone, Debug, Default)]
pub struct BindingPlugin {
    pub migration: Option<Value>,
}

#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct ArchitectureConfiguration {
    pub default_architecture: Option<String>,
}
