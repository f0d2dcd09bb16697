//! A minimal model of the KubeVirt VirtualMachine template HyperShift renders for a
//! NodePool (docs/rules.md §R2), and the `hypershift.openshift.io/kubevirt-vm-jsonpatch`
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

use super::report::Text;

/// VMI annotation that makes bridge binding on the pod network migratable (docs/rules.md §N1).
pub const ALLOW_POD_BRIDGE_MIGRATION: &str = "kubevirt.io/allow-pod-bridge-network-live-migration";
/// Name of the root disk, its volume and its DataVolume template (docs/rules.md §R2).
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
    pub name: Text,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<Features>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_security: Option<LaunchSecurity>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Features {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hyperv_passthrough: Option<HypervPassthrough>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct HypervPassthrough {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// `domain.launchSecurity`: SEV (and SEV-SNP), TDX; on s390x any value is Secure Execution.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct LaunchSecurity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sev: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snp: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tdx: Option<Value>,
}

/// A disk; only a LUN's SCSI persistent reservation matters for migration.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Disk {
    #[serde(default)]
    pub name: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<DiskTarget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lun: Option<Lun>,
}

/// `disk: {bus}` (Go `DiskTarget`; its other fields are not read).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct DiskTarget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bus: Option<Text>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Lun {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reservation: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Devices {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<Disk>,
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
    pub name: Text,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bridge: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub masquerade: Option<Value>,
    /// The discontinued `passt: {}` binding (Go `DeprecatedPasst`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passt: Option<Value>,
    /// The core passt binding (KubeVirt v1.8+).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passt_binding: Option<Value>,
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
    pub name: Text,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multus: Option<Multus>,
}

/// `multus: {networkName}` (Go `MultusNetwork`; `default` is not read).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Multus {
    #[serde(default)]
    pub network_name: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    #[serde(default)]
    pub name: Text,
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
    /// The template HyperShift renders for `platform` (docs/rules.md §R2, HS `kubevirt.go`
    /// `virtualMachineTemplateBase`): the root DataVolume on the CDI `storage` API, the
    /// pod network with bridge binding plus the allow-migration annotation when the default
    /// network is attached, a bridge interface per additional network, and the host devices.
    pub fn render(platform: &KubevirtNodePoolPlatform) -> Self {
        let mut tpl = VmTemplate::default();
        tpl.render_root_disk(platform);
        tpl.render_networks(platform);
        tpl.render_host_devices(platform);
        tpl
    }

    /// The root DataVolume template (its storage request as the NodePool gives it), the disk
    /// and the volume that use it.
    fn render_root_disk(&mut self, platform: &KubevirtNodePoolPlatform) {
        let persistent = platform.root_volume.as_ref().and_then(|r| r.persistent.as_ref());
        let storage = StorageRequest {
            access_modes: persistent
                .and_then(|p| p.access_modes.clone())
                .unwrap_or_default(),
            storage_class_name: persistent.and_then(|p| p.storage_class.clone()),
            volume_mode: persistent.and_then(|p| p.volume_mode),
        };
        self.spec.data_volume_templates.push(DataVolumeTemplate {
            metadata: NameMeta {
                name: ROOT_DISK.into(),
            },
            spec: DataVolumeSpec {
                storage: Some(storage),
                pvc: None,
            },
        });
        let vmi = &mut self.spec.template;
        vmi.spec.domain.devices.disks.push(Disk {
            name: ROOT_DISK.into(),
            disk: Some(DiskTarget {
                bus: Some("virtio".into()),
            }),
            lun: None,
        });
        vmi.spec.volumes.push(Volume {
            name: ROOT_DISK.into(),
            data_volume: Some(NameMeta {
                name: ROOT_DISK.into(),
            }),
            ..Volume::default()
        });
    }

    /// The pod network with a bridge binding (unless `attachDefaultNetwork: false`, with the
    /// annotation that allows migrating it), then one Multus network per additional network.
    fn render_networks(&mut self, platform: &KubevirtNodePoolPlatform) {
        let vmi = &mut self.spec.template;
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
            let name: Text = format!("iface{}_{}", i + 1, net.name.replace('/', "-")).into();
            vmi.spec.domain.devices.interfaces.push(Interface {
                name: name.clone(),
                bridge: Some(json!({})),
                ..Interface::default()
            });
            vmi.spec.networks.push(Network {
                name,
                pod: None,
                multus: Some(Multus {
                    network_name: net.name.clone(),
                }),
            });
        }
    }

    /// `count` host devices per entry, numbered across entries, at most
    /// `MAX_RENDERED_HOST_DEVICES` in all.
    fn render_host_devices(&mut self, platform: &KubevirtNodePoolPlatform) {
        let devices = &mut self.spec.template.spec.domain.devices.host_devices;
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
    Parse(super::jsonpatch::JsonPatchError),
    #[error("cannot be applied: {0}")]
    Apply(super::jsonpatch::JsonPatchError),
    #[error("produces a VirtualMachine template HyperShift cannot decode at `{path}`: {message}")]
    Template { path: String, message: String },
    #[error("{0}")]
    Limit(#[from] super::patch_limits::LimitError),
}

/// A decoded patch.
pub type Patch = Vec<super::jsonpatch::Op>;

/// Parses an annotation value like `DecodePatch` (`null` is an empty patch).
pub fn parse_patch(annotation: &str) -> Result<Patch, PatchError> {
    let patch = super::jsonpatch::decode(annotation).map_err(PatchError::Parse)?;
    super::patch_limits::check_patch(&patch)?;
    Ok(patch)
}

/// What HyperShift renders besides the modelled parts (docs/rules.md §P1): read from the
/// NodePool and its HostedCluster, so patches see the same document.
pub struct RenderContext<'a> {
    pub nodepool_name: &'a str,
    pub infra_id: &'a str,
    pub topology_spread: bool,
    pub platform: &'a KubevirtNodePoolPlatform,
}

/// HS `applyJsonPatches`: the rendered template encoded once, each patch applied in order
/// (the HostedCluster's, then the NodePool's) to that same JSON, the result decoded back
/// into the rendered template the way Go's `encoding/json` does (docs/rules.md §P1–§P3).
///
/// [`PatchRun::apply`] applies one patch (one that fails leaves the document as it was);
/// [`PatchRun::decoded`] decodes the document so far, so a caller can tell which patch
/// changed what. Only the last decode decides (HyperShift decodes once, after both).
pub struct PatchRun {
    /// The rendered template's JSON: what Go decodes into.
    rendered: Value,
    /// The JSON the patches so far produced.
    doc: Value,
    /// Bounded before it is paid for: op count, path depth, document growth (patch_limits).
    budget: super::patch_limits::SizeBudget,
}

impl PatchRun {
    pub fn new(tpl: &VmTemplate, ctx: &RenderContext) -> Result<Self, PatchError> {
        let rendered = render_document(tpl, ctx)?;
        let budget = super::patch_limits::SizeBudget::new(&rendered);
        Ok(Self {
            doc: rendered.clone(),
            rendered,
            budget,
        })
    }

    /// Applies `patch` to the document, or leaves the document as it was.
    pub fn apply(&mut self, patch: &Patch) -> Result<(), PatchError> {
        super::patch_limits::check_patch(patch)?;
        let mut doc = self.doc.clone();
        let mut budget = self.budget;
        for (index, op) in patch.iter().enumerate() {
            budget.charge(index + 1, op, &doc)?;
            super::jsonpatch::apply_op(&mut doc, op).map_err(|why| {
                PatchError::Apply(super::jsonpatch::JsonPatchError::Apply {
                    index,
                    path: op.path().to_owned(),
                    why,
                })
            })?;
        }
        self.doc = doc;
        self.budget = budget;
        Ok(())
    }

    /// The template Go's decoder makes of the document so far.
    pub fn decoded(&self) -> Result<VmTemplate, PatchError> {
        decode(&self.rendered, &self.doc)
    }
}

/// Go's `Decode` of `patched` into the rendered template (§P3), read back into the model.
fn decode(rendered: &Value, patched: &Value) -> Result<VmTemplate, PatchError> {
    let mut base = rendered.clone();
    super::godecode::decode_into(&mut base, patched).map_err(|message| PatchError::Template {
        path: String::new(),
        message,
    })?;
    serde_path_to_error::deserialize(base).map_err(|e| PatchError::Template {
        path: e.path().to_string(),
        message: e.into_inner().to_string(),
    })
}

/// The JSON HyperShift's encoder emits for the fully rendered template (HS `kubevirt.go`
/// `virtualMachineTemplateBase`, `MachineTemplateSpec`): the model plus run and eviction
/// strategy, compute, node selector, spreading, labels and the safe-to-evict annotation.
fn render_document(tpl: &VmTemplate, ctx: &RenderContext) -> Result<Value, PatchError> {
    let mut doc = serde_json::to_value(tpl).map_err(|e| PatchError::Template {
        path: String::new(),
        message: e.to_string(),
    })?;
    let labels = json!({"hypershift.openshift.io/nodepool-name": ctx.nodepool_name, "hypershift.openshift.io/infra-id": ctx.infra_id});
    doc["metadata"] = json!({"creationTimestamp": null, "labels": labels});
    let spec = &mut doc["spec"];
    spec["runStrategy"] = json!("Always");
    render_root_volume(spec, ctx.platform);
    let vmi = &mut spec["template"];
    vmi["metadata"]["creationTimestamp"] = Value::Null;
    vmi["metadata"]["labels"] = labels;
    vmi["metadata"]["annotations"]["cluster-autoscaler.kubernetes.io/safe-to-evict-local-volumes"] =
        json!(LOCAL_STORAGE_VOLUMES);
    let vmi_spec = &mut vmi["spec"];
    vmi_spec["evictionStrategy"] = json!("External");
    if ctx.topology_spread {
        vmi_spec["topologySpreadConstraints"] = json!([{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": {"hypershift.openshift.io/nodepool-name": ctx.nodepool_name}}}]);
    } else {
        vmi_spec["affinity"] = json!({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": {"labelSelector": {"matchExpressions": [{"key": "hypershift.openshift.io/nodepool-name", "operator": "In", "values": [ctx.nodepool_name]}]}, "topologyKey": "kubernetes.io/hostname"}}]}});
    }
    if let Some(sel) = ctx
        .platform
        .node_selector
        .as_ref()
        .filter(|s| s.as_object().is_some_and(|m| !m.is_empty()))
    {
        vmi_spec["nodeSelector"] = sel.clone();
    }
    render_compute(&mut vmi_spec["domain"], ctx.platform);
    Ok(doc)
}

/// `cluster-autoscaler.kubernetes.io/safe-to-evict-local-volumes` (HS `LocalStorageVolumes`).
const LOCAL_STORAGE_VOLUMES: &str =
    "private,public,sockets,virt-bin-share-dir,libvirt-runtime,ephemeral-disks,container-disks,hotplug-disks";

fn render_root_volume(spec: &mut Value, platform: &KubevirtNodePoolPlatform) {
    let Some(dv) = spec["dataVolumeTemplates"].get_mut(0) else {
        return;
    };
    dv["metadata"]["creationTimestamp"] = Value::Null;
    dv["metadata"]["labels"] = json!({"hypershift.openshift.io/is-kubevirt-rhcos": "true"});
    dv["spec"]["source"] = json!({"registry": {"url": "docker://<release payload RHCOS image>"}});
    let size = platform
        .root_volume
        .as_ref()
        .and_then(|r| r.persistent.as_ref())
        .and_then(|p| p.size.clone());
    if let Some(storage) = dv["spec"].get_mut("storage") {
        storage["resources"] = match size {
            Some(size) => json!({"requests": {"storage": size}}),
            None => json!({}),
        };
    }
}

/// `domain.memory.guest` and `domain.cpu.cores`, or with `qosClass: Guaranteed`
/// `domain.resources` requests = limits and no `cpu`.
fn render_compute(domain: &mut Value, platform: &KubevirtNodePoolPlatform) {
    let compute = platform.compute.clone().unwrap_or(Value::Null);
    let memory = compute.get("memory").cloned().unwrap_or(json!("0"));
    let cores = compute.get("cores").and_then(Value::as_u64).unwrap_or(0);
    let guaranteed = compute.get("qosClass").and_then(Value::as_str) == Some("Guaranteed");
    domain["resources"] = json!({});
    if guaranteed {
        let mut res = json!({"memory": memory});
        if cores > 0 {
            res["cpu"] = json!(cores.to_string());
        }
        domain["resources"] = json!({"requests": res.clone(), "limits": res});
        if let Some(d) = domain.as_object_mut() {
            d.remove("cpu");
        }
    } else {
        domain["memory"] = json!({"guest": memory});
        if cores > 0 {
            let cpu = &mut domain["cpu"];
            cpu["cores"] = json!(cores);
        }
    }
    if platform.network_interface_multiqueue.as_deref() == Some("Enable") {
        domain["devices"]["networkInterfaceMultiqueue"] = json!(true);
    }
}
