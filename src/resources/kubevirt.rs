//! `kubevirt.io/v1` KubeVirt CR — only `status.observedKubeVirtVersion` (domain §3.4).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;

use super::impl_resource;

#[derive(Deserialize, Clone, Debug, Default)]
pub struct KubeVirt {
    #[serde(default, deserialize_with = "super::meta::lean")]
    pub metadata: ObjectMeta,
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
