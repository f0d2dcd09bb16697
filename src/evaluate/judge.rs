//! KubeVirt's live-migratability checks (domain §3), applied to the VM model: interfaces
//! (§3.4), host devices and GPUs (§3.5), volumes (§3.3), plus the CPU model note (§3.6).
//!
//! virt-handler reports only the first failing check per VMI; the order changed in
//! KubeVirt v1.6.0 (§3.1): interfaces → host devices → disks from v1.6.0 (and when the
//! version is unknown), disks first before. Every failing check still becomes a finding.

use crate::facts::{Facts, KubeVirtVersion};

use super::report::Finding;
use super::storage::{self, Api, DiskOutcome, RequestFields};
use super::vm::{ALLOW_POD_BRIDGE_MIGRATION, VmTemplate};

pub const INTERFACE_NOT_LIVE_MIGRATABLE: &str = "InterfaceNotLiveMigratable";
pub const HOST_DEVICE_NOT_LIVE_MIGRATABLE: &str = "HostDeviceNotLiveMigratable";

/// The fields a user edits for each aspect of the VM, depending on whether the NodePool
/// rendered it or a JSON patch changed it.
#[derive(Clone, Debug)]
pub struct Fields {
    pub root: RequestFields,
    /// Where volumes other than the root disk come from (always a JSON patch).
    pub patched_volumes: String,
    pub host_devices: String,
    pub network: String,
    pub cpu: String,
}

/// The message a failing check puts into the VMI's LiveMigratable condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmiMessage {
    Fixed(String),
    /// `cannot migrate VMI: PVC <machine>-<dv> is not shared, …` (§3.3); the PVC name
    /// depends on the machine (CAPK prefixes DataVolume templates with it, §1.3).
    PvcNotShared {
        dv: String,
    },
}

impl VmiMessage {
    pub fn render(&self, machine: &str) -> String {
        match self {
            Self::Fixed(m) => m.clone(),
            Self::PvcNotShared { dv } => format!(
                "cannot migrate VMI: PVC {machine}-{dv} is not shared, live migration requires that all PVCs must be shared (using ReadWriteMany access mode)"
            ),
        }
    }
}

/// One failing KubeVirt check: its reason and the VMI message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailedCheck {
    pub reason: &'static str,
    pub message: VmiMessage,
}

/// What the judge concluded for the VMI.
#[derive(Clone, Debug, Default)]
pub struct Judgement {
    /// Failing checks in KubeVirt's order for the infra version: the first is what the
    /// VMI (and the machine) reports.
    pub failed: Vec<FailedCheck>,
    /// Some volume cannot be provisioned: the VM never runs.
    pub blocked: bool,
}

pub fn judge(tpl: &VmTemplate, facts: &Facts, fields: &Fields, findings: &mut Vec<Finding>) -> Judgement {
    let version = facts.kubevirt_version();
    let interface = check_interfaces(tpl, version, fields, findings);
    let host_device = check_host_devices(tpl, version, fields, findings);
    let (disk, blocked) = check_volumes(tpl, facts, fields, findings);
    check_cpu_model(tpl, fields, findings);
    let disks_first = version.at_least(1, 6) == Some(false);
    let ordered = if disks_first {
        [disk, interface, host_device]
    } else {
        [interface, host_device, disk]
    };
    Judgement {
        failed: ordered.into_iter().flatten().collect(),
        blocked,
    }
}

/// §3.4 `VerifyVMIMigratable`: only the interface on the pod network matters.
fn check_interfaces(
    tpl: &VmTemplate,
    version: &KubeVirtVersion,
    fields: &Fields,
    findings: &mut Vec<Finding>,
) -> Option<FailedCheck> {
    let vmi = &tpl.spec.template;
    let interfaces = &vmi.spec.domain.devices.interfaces;
    let since_1_8 = version.at_least(1, 8);
    let fail = |findings: &mut Vec<Finding>, detail: String, fix: String| {
        findings.push(Finding::error(
            INTERFACE_NOT_LIVE_MIGRATABLE,
            &fields.network,
            detail,
            fix,
        ));
        Some(FailedCheck {
            reason: INTERFACE_NOT_LIVE_MIGRATABLE,
            message: VmiMessage::Fixed(pod_network_message(version).into()),
        })
    };
    if interfaces.is_empty() {
        return None;
    }
    let Some(pod_net) = vmi.spec.networks.iter().find(|n| n.pod.is_some()) else {
        // No pod network: fine from v1.8.0; older versions fail any VMI with interfaces.
        return match since_1_8 {
            Some(true) => None,
            Some(false) => fail(
                findings,
                format!(
                    "the VM has no pod-network interface (Multus only); KubeVirt {} fails such VMIs, only v1.8.0 and newer live migrate them",
                    version_text(version)
                ),
                "set attachDefaultNetwork to true (or keep the pod network in the JSON patch), or upgrade the infrastructure cluster to KubeVirt v1.8.0 or newer".into(),
            ),
            None => {
                findings.push(Finding::undecided(
                    "KubeVirtVersionUnknown",
                    &fields.network,
                    "the VM has no pod-network interface (Multus only), which KubeVirt live migrates only from v1.8.0; the infrastructure cluster's KubeVirt version is unknown".into(),
                    format!("supply the KubeVirt CR (status.observedKubeVirtVersion) in the facts, or set {} to true", fields.network),
                ));
                None
            }
        };
    };
    let Some(iface) = interfaces.iter().find(|i| i.name == pod_net.name) else {
        findings.push(Finding::error(
            INTERFACE_NOT_LIVE_MIGRATABLE,
            &fields.network,
            format!("the pod network {} has no interface", pod_net.name),
            "fix the pod network interface in the JSON patch".into(),
        ));
        return Some(FailedCheck {
            reason: INTERFACE_NOT_LIVE_MIGRATABLE,
            message: VmiMessage::Fixed(format!("no primary interface found for network {}", pod_net.name)),
        });
    };
    if iface.masquerade.is_some() || iface.passt.is_some() {
        return None;
    }
    if iface.bridge.is_some() {
        let annotated = vmi.metadata.annotations.contains_key(ALLOW_POD_BRIDGE_MIGRATION);
        // The annotation exists since KubeVirt v1.0.0 (§3.4); HyperShift always sets it.
        if annotated && version.at_least(1, 0) != Some(false) {
            return None;
        }
        let (detail, fix) = if annotated {
            (
                format!(
                    "the pod-network interface {} uses bridge binding; KubeVirt {} predates the {ALLOW_POD_BRIDGE_MIGRATION} annotation (v1.0.0) and cannot live migrate it",
                    iface.name,
                    version_text(version)
                ),
                "upgrade the infrastructure cluster to KubeVirt v1.0.0 or newer".to_owned(),
            )
        } else {
            (
                format!(
                    "the pod-network interface {} uses bridge binding without the VMI annotation {ALLOW_POD_BRIDGE_MIGRATION}",
                    iface.name
                ),
                format!(
                    "keep the {ALLOW_POD_BRIDGE_MIGRATION} annotation HyperShift sets (do not patch it away)"
                ),
            )
        };
        return fail(findings, detail, fix);
    }
    if let Some(plugin) = &iface.binding {
        findings.push(Finding::undecided(
            "NetworkBindingPluginUnknown",
            &fields.network,
            format!(
                "the pod-network interface {} uses the network binding plugin {}; it is live migratable only if the plugin is registered with a migration method in the KubeVirt CR",
                iface.name, plugin.name
            ),
            "check spec.configuration.network.binding in the KubeVirt CR, or use bridge/masquerade on the pod network".into(),
        ));
        return None;
    }
    fail(
        findings,
        format!(
            "the pod-network interface {} uses a binding KubeVirt cannot live migrate (e.g. SR-IOV)",
            iface.name
        ),
        format!(
            "use masquerade, passt or bridge with the {ALLOW_POD_BRIDGE_MIGRATION} annotation on the pod network"
        ),
    )
}

/// §3.5: any host device blocks; GPUs block up to v1.8.x, and from v1.9.0 only without
/// the VGPULiveMigration feature gate or for more than one GPU.
fn check_host_devices(
    tpl: &VmTemplate,
    version: &KubeVirtVersion,
    fields: &Fields,
    findings: &mut Vec<Finding>,
) -> Option<FailedCheck> {
    let devices = &tpl.spec.template.spec.domain.devices;
    let since_1_9 = version.at_least(1, 9);
    let fail = |message: &str, detail: String, findings: &mut Vec<Finding>| {
        findings.push(Finding::error(
            HOST_DEVICE_NOT_LIVE_MIGRATABLE,
            &fields.host_devices,
            detail,
            format!("remove {} (passthrough devices pin a VM to its node), or accept that these nodes restart instead of migrating", storage::in_fix(&fields.host_devices, "hostDevices")),
        ));
        Some(FailedCheck {
            reason: HOST_DEVICE_NOT_LIVE_MIGRATABLE,
            message: VmiMessage::Fixed(message.to_owned()),
        })
    };
    if let Some(first) = devices.host_devices.first() {
        let names: Vec<&str> = devices
            .host_devices
            .iter()
            .map(|d| d.device_name.as_str())
            .collect();
        let msg = if since_1_9 == Some(false) {
            "VMI uses a PCI host devices"
        } else {
            "VMI specifies non-migratable generic PCI host device"
        };
        let detail = format!(
            "the VM gets {} PCI host device(s) ({}{}); KubeVirt never live migrates a VMI with host devices",
            names.len(),
            first.device_name,
            if names.iter().any(|n| *n != first.device_name) {
                ", …"
            } else {
                ""
            }
        );
        return fail(msg, detail, findings);
    }
    match (devices.gpus.len(), since_1_9) {
        (0, _) => None,
        (_, Some(false)) => fail(
            "VMI uses a PCI host devices",
            "the VM gets GPUs, which KubeVirt before v1.9.0 never live migrates".into(),
            findings,
        ),
        (n, _) if n > 1 => fail(
            "VMI specifies too many GPUs",
            format!("the VM gets {n} GPUs; KubeVirt live migrates at most one (mediated) GPU"),
            findings,
        ),
        (_, _) => {
            findings.push(Finding::undecided(
                "GPUMigrationDependsOnFeatureGate",
                &fields.host_devices,
                "the VM gets one GPU; KubeVirt v1.9.0+ live migrates it only if it is a mediated (vGPU) device and the VGPULiveMigration feature gate is enabled".into(),
                "check the KubeVirt feature gates and the device type, or remove the GPU".into(),
            ));
            None
        }
    }
}

/// §3.3 `checkVolumesForMigration`: every PVC/DataVolume volume must be ReadWriteMany;
/// host disks must be shared; other sources only force block migration.
fn check_volumes(
    tpl: &VmTemplate,
    facts: &Facts,
    fields: &Fields,
    findings: &mut Vec<Finding>,
) -> (Option<FailedCheck>, bool) {
    let mut first: Option<FailedCheck> = None;
    let mut blocked = false;
    let record = |check: FailedCheck, first: &mut Option<FailedCheck>| {
        first.get_or_insert(check);
    };
    for volume in &tpl.spec.template.spec.volumes {
        if let Some(dv_ref) = &volume.data_volume {
            let Some(dv) = tpl
                .spec
                .data_volume_templates
                .iter()
                .find(|d| d.metadata.name == dv_ref.name)
            else {
                unknown_pvc(&dv_ref.name, &fields.patched_volumes, findings);
                continue;
            };
            let (req, api) = match (&dv.spec.storage, &dv.spec.pvc) {
                (Some(s), _) => (s, Api::Storage),
                (None, Some(p)) => (p, Api::Pvc),
                (None, None) => {
                    findings.push(Finding::blocking(
                        "DataVolumeWithoutStorage",
                        &fields.patched_volumes,
                        format!(
                            "the DataVolume template {} has neither spec.storage nor spec.pvc",
                            dv.metadata.name
                        ),
                        "give the DataVolume template a spec.storage".into(),
                    ));
                    blocked = true;
                    continue;
                }
            };
            let request_fields = if dv.metadata.name == super::vm::ROOT_DISK {
                fields.root.clone()
            } else {
                RequestFields {
                    volume: format!("the DataVolume {} added by the JSON patch", dv.metadata.name),
                    dv_name: dv.metadata.name.clone(),
                    access_modes: fields.patched_volumes.clone(),
                    storage_class: fields.patched_volumes.clone(),
                    volume_mode: fields.patched_volumes.clone(),
                }
            };
            match storage::judge_request(req, api, facts, &request_fields, findings) {
                DiskOutcome::NotShared => record(
                    FailedCheck {
                        reason: storage::DISKS_NOT_LIVE_MIGRATABLE,
                        message: VmiMessage::PvcNotShared {
                            dv: dv.metadata.name.clone(),
                        },
                    },
                    &mut first,
                ),
                DiskOutcome::Blocked => blocked = true,
                DiskOutcome::Shared | DiskOutcome::Undecided => {}
            }
        } else if let Some(claim) = &volume.persistent_volume_claim {
            unknown_pvc(&claim.claim_name, &fields.patched_volumes, findings);
        } else if let Some(host_disk) = &volume.host_disk
            && host_disk.shared != Some(true)
        {
            findings.push(Finding::error(
                storage::DISKS_NOT_LIVE_MIGRATABLE,
                &fields.patched_volumes,
                format!("volume {} is a hostDisk without shared: true", volume.name),
                "remove the hostDisk volume from the JSON patch, or mark it shared: true if it really is on shared storage".into(),
            ));
            record(
                FailedCheck {
                    reason: storage::DISKS_NOT_LIVE_MIGRATABLE,
                    message: VmiMessage::Fixed("cannot migrate VMI with non-shared HostDisk".into()),
                },
                &mut first,
            );
        }
    }
    (first, blocked)
}

/// A volume that references an existing PVC/DataVolume: its access modes are not in the facts.
fn unknown_pvc(claim: &str, field: &str, findings: &mut Vec<Finding>) {
    findings.push(Finding::undecided(
        "PVCAccessModesUnknown",
        field,
        format!("volume {claim} references an existing PVC or DataVolume whose access modes are not among the facts; KubeVirt requires ReadWriteMany"),
        format!("make sure PVC {claim} is ReadWriteMany on the infrastructure cluster"),
    ));
}

/// §3.6: host-passthrough is not flagged by KubeVirt, but such VMs migrate only between
/// identical CPUs (HyperShift PR #7431 warns about it).
fn check_cpu_model(tpl: &VmTemplate, fields: &Fields, findings: &mut Vec<Finding>) {
    let model = tpl
        .spec
        .template
        .spec
        .domain
        .cpu
        .as_ref()
        .and_then(|c| c.model.as_deref());
    if model == Some("host-passthrough") {
        findings.push(Finding::warning(
            "CPUModelHostPassthrough",
            &fields.cpu,
            "the VM uses CPU model host-passthrough; KubeVirt does not flag it, but it live migrates only between nodes with identical CPUs".into(),
            "remove the CPU model from the JSON patch to use the cluster default (host-model), or keep the infrastructure nodes' CPUs identical".into(),
        ));
    }
}

/// The pod-network message of the VMI condition, by KubeVirt version (§3.4); the newest
/// wording when the version is unknown.
fn pod_network_message(version: &KubeVirtVersion) -> &'static str {
    match (
        version.at_least(1, 8),
        version.at_least(1, 2),
        version.at_least(1, 0),
    ) {
        (Some(false), Some(true), _) => {
            "cannot migrate VMI which does not use masquerade, bridge with kubevirt.io/allow-pod-bridge-network-live-migration VM annotation or a migratable plugin to connect to the pod network"
        }
        (Some(false), _, Some(true)) => {
            "cannot migrate VMI which does not use masquerade to connect to the pod network or bridge with kubevirt.io/allow-pod-bridge-network-live-migration VM annotation"
        }
        (Some(false), _, _) => {
            "cannot migrate VMI which does not use masquerade to connect to the pod network"
        }
        _ => {
            "cannot migrate VMI which does not use masquerade or a migratable plugin to connect to the pod network"
        }
    }
}

fn version_text(v: &KubeVirtVersion) -> String {
    match v {
        KubeVirtVersion::Known(v) => format!("v{v}"),
        KubeVirtVersion::Unparsable(raw) => format!("{raw:?}"),
        KubeVirtVersion::Unknown => "(unknown version)".into(),
    }
}
