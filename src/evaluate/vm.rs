//! A minimal model of the KubeVirt VirtualMachine template HyperShift renders for a
//! NodePool (domain §1.3), and the `hypershift.openshift.io/kubevirt-vm-jsonpatch`
//! escape hatch applied to it.
//!
//! Only the parts KubeVirt's migratability rules read are modelled: the DataVolume
//! templates' storage requests, the VMI volumes, host devices and GPUs, interfaces and
//! networks, the VMI annotations and the CPU model. Patching serializes the model together
//! with the rest of what HyperShift renders (so `replace`/`remove` find their targets),
//! applies the HostedCluster's patch then the NodePool's, and reads the model back.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::resources::nodepool::KubevirtNodePoolPlatform;
use crate::resources::{AccessMode, VolumeMode};

/// VMI annotation that makes bridge binding on the pod network migratable (domain §3.4).
pub const ALLOW_POD_BRIDGE_MIGRATION: &str = "kubevirt.io/allow-pod-bridge-network-live-migration";
/// Name of the root disk, its volume and its DataVolume template (domain §1.3).
pub const ROOT_DISK: &str = "rhcos";
/// Host device entries rendered at most; HyperShift repeats each device `count` times, and
/// a count near `2^31` (valid for the CRD) must not make us allocate gigabytes.
const MAX_RENDERED_HOST_DEVICES: usize = 256;

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VmTemplate {
    #[serde(default)]
    pub spec: VmSpec,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VmSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data_volume_templates: Vec<DataVolumeTemplate>,
    #[serde(default)]
    pub template: VmiTemplate,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct DataVolumeTemplate {
    #[serde(default)]
    pub metadata: NameMeta,
    #[serde(default)]
    pub spec: DataVolumeSpec,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct NameMeta {
    #[serde(default)]
    pub name: String,
}

/// `DataVolumeSpec`: the CDI `storage` API (what HyperShift uses) or the older `pvc` API.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct DataVolumeSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageRequest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pvc: Option<StorageRequest>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StorageRequest {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access_modes: Vec<AccessMode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_mode: Option<VolumeMode>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct VmiTemplate {
    #[serde(default)]
    pub metadata: AnnotationsMeta,
    #[serde(default)]
    pub spec: VmiSpec,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct AnnotationsMeta {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VmiSpec {
    #[serde(default)]
    pub domain: Domain,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<Network>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Domain {
    #[serde(default)]
    pub devices: Devices,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Cpu>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Devices {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_devices: Vec<Device>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<Device>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub device_name: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Cpu {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// A VMI interface; exactly one binding is expected (the API server enforces it).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    #[serde(default)]
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bridge: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub masquerade: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passt: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sriov: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub binding: Option<PluginBinding>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct PluginBinding {
    #[serde(default)]
    pub name: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Network {
    #[serde(default)]
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multus: Option<Value>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    #[serde(default)]
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_volume: Option<NameMeta>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim: Option<ClaimRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_disk: Option<HostDisk>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_disk: Option<Value>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClaimRef {
    #[serde(default)]
    pub claim_name: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct HostDisk {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared: Option<bool>,
}

impl VmTemplate {
    /// The template HyperShift renders for `platform` (domain §1.3, HS `kubevirt.go`
    /// `virtualMachineTemplateBase`): the root DataVolume on the CDI `storage` API, the
    /// pod network with bridge binding plus the allow-migration annotation when the default
    /// network is attached, a bridge interface per additional network, and the host devices.
    pub fn render(platform: &KubevirtNodePoolPlatform) -> Self {
        let persistent = platform.root_volume.as_ref().and_then(|r| r.persistent.as_ref());
        let storage = StorageRequest {
            access_modes: persistent
                .and_then(|p| p.access_modes.clone())
                .unwrap_or_default(),
            storage_class_name: persistent.and_then(|p| p.storage_class.clone()),
            volume_mode: persistent.and_then(|p| p.volume_mode),
        };
        let mut tpl = VmTemplate::default();
        let spec = &mut tpl.spec;
        spec.data_volume_templates.push(DataVolumeTemplate {
            metadata: NameMeta {
                name: ROOT_DISK.into(),
            },
            spec: DataVolumeSpec {
                storage: Some(storage),
                pvc: None,
            },
        });
        let vmi = &mut spec.template;
        vmi.spec.volumes.push(Volume {
            name: ROOT_DISK.into(),
            data_volume: Some(NameMeta {
                name: ROOT_DISK.into(),
            }),
            ..Volume::default()
        });
        if platform.attach_default_network.unwrap_or(true) {
            vmi.metadata
                .annotations
                .insert(ALLOW_POD_BRIDGE_MIGRATION.into(), String::new());
            vmi.spec.domain.devices.interfaces.push(Interface {
                name: "default".into(),
                bridge: Some(json!({})),
                ..Interface::default()
            });
            vmi.spec.networks.push(Network {
                name: "default".into(),
                pod: Some(json!({})),
                multus: None,
            });
        }
        for (i, net) in platform.additional_networks().iter().enumerate() {
            let name = format!("iface{}_{}", i + 1, net.name.replace('/', "-"));
            vmi.spec.domain.devices.interfaces.push(Interface {
                name: name.clone(),
                bridge: Some(json!({})),
                ..Interface::default()
            });
            vmi.spec.networks.push(Network {
                name,
                pod: None,
                multus: Some(json!({"networkName": net.name})),
            });
        }
        let devices = &mut vmi.spec.domain.devices.host_devices;
        'outer: for dev in platform.host_devices() {
            for _ in 0..dev.count.unwrap_or(1).max(0) {
                if devices.len() == MAX_RENDERED_HOST_DEVICES {
                    break 'outer;
                }
                devices.push(Device {
                    name: format!("hostdevice-{}", devices.len() + 1),
                    device_name: dev.device_name.clone(),
                });
            }
        }
        tpl
    }

    /// The root DataVolume template, if a patch did not remove it.
    pub fn root_data_volume(&self) -> Option<&DataVolumeTemplate> {
        self.spec
            .data_volume_templates
            .iter()
            .find(|d| d.metadata.name == ROOT_DISK)
    }
}

/// Why a JSON patch could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    #[error("is not a JSON patch (an RFC 6902 array of operations): {0}")]
    Parse(serde_json::Error),
    #[error("{0}")]
    Apply(json_patch::PatchError),
    #[error("produces an invalid VirtualMachine template at `{path}`: {message}")]
    Template { path: String, message: String },
    #[error("{0}")]
    Limit(#[from] super::patch_limits::LimitError),
}

/// Parses an annotation value into a patch.
pub fn parse_patch(annotation: &str) -> Result<json_patch::Patch, PatchError> {
    let patch = serde_json::from_str(annotation).map_err(PatchError::Parse)?;
    super::patch_limits::check_patch(&patch)?;
    Ok(patch)
}

/// Applies patches in order to the template HyperShift would render, and reads the model back.
pub fn apply_patches(tpl: &VmTemplate, patches: &[&json_patch::Patch]) -> Result<VmTemplate, PatchError> {
    let mut doc = serde_json::to_value(tpl).map_err(|e| PatchError::Template {
        path: String::new(),
        message: e.to_string(),
    })?;
    add_rendered_context(&mut doc);
    let mut budget = super::patch_limits::SizeBudget::new(&doc);
    for patch in patches {
        super::patch_limits::check_patch(patch)?;
        for (i, op) in patch.0.iter().enumerate() {
            budget.charge(i + 1, op, &doc)?;
            if let json_patch::PatchOperation::Add(add) = op {
                ensure_path_exists(&mut doc, &add.path);
            }
            json_patch::patch(&mut doc, std::slice::from_ref(op)).map_err(PatchError::Apply)?;
        }
    }
    serde_path_to_error::deserialize(doc).map_err(|e| PatchError::Template {
        path: e.path().to_string(),
        message: e.into_inner().to_string(),
    })
}

/// The rest of what HyperShift renders and patches commonly target (run and eviction
/// strategy, compute, node selector), so `replace`/`remove`/`test` see the same document
/// they would in HyperShift. Not read back: the rules do not depend on these fields.
fn add_rendered_context(doc: &mut Value) {
    let Some(spec) = doc.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    spec.insert("runStrategy".into(), json!("Always"));
    let Some(vmi) = spec
        .get_mut("template")
        .and_then(|t| t.get_mut("spec"))
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    vmi.insert("evictionStrategy".into(), json!("External"));
    if let Some(domain) = vmi.get_mut("domain").and_then(Value::as_object_mut) {
        domain.entry("cpu").or_insert_with(|| json!({"cores": 2}));
        domain.insert("memory".into(), json!({"guest": "8Gi"}));
        if let Some(devices) = domain.get_mut("devices").and_then(Value::as_object_mut) {
            devices.insert(
                "disks".into(),
                json!([{"name": ROOT_DISK, "disk": {"bus": "virtio"}}]),
            );
        }
    }
}

/// HyperShift applies patches with `EnsurePathExistsOnAdd` (domain §1.3): an `add` creates
/// missing parents — an array when the next token is an index or `-`, an object otherwise.
fn ensure_path_exists(doc: &mut Value, path: &json_patch::jsonptr::Pointer) {
    let tokens: Vec<String> = path.tokens().map(|t| t.decoded().into_owned()).collect();
    let Some((_, parents)) = tokens.split_last() else {
        return;
    };
    let mut cur = doc;
    for (i, tok) in parents.iter().enumerate() {
        let next_is_index = tokens[i + 1] == "-" || tokens[i + 1].parse::<usize>().is_ok();
        let fresh = || if next_is_index { json!([]) } else { json!({}) };
        cur = match cur {
            Value::Object(map) => map.entry(tok.clone()).or_insert_with(fresh),
            Value::Array(arr) => match tok.parse::<usize>() {
                Ok(idx) if idx < arr.len() => &mut arr[idx],
                _ => return,
            },
            _ => return,
        };
        if cur.is_null() {
            *cur = fresh();
        }
    }
}
