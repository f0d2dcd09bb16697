//! KubeVirt's live-migratability checks applied to the VM model, in virt-handler's order
//! (docs/rules.md §K2, KubeVirt `pkg/virt-handler/vm.go` `calculateLiveMigrationCondition`):
//! interfaces (§N1), host devices and GPUs (§K3), SEV/TDX, Secure Execution, SCSI persistent
//! reservation, Hyper-V passthrough (§K4), disks (§K5); disks first before v1.6.0-rc.0.
//! virt-handler reports only the first failing check per VMI; every failing check still
//! becomes a finding.

use crate::facts::{Facts, KubeVirtVersion};

use super::network::{self, NetOutcome};
use super::report::Finding;
use super::storage::{self, Api, DiskOutcome, RequestFields, Text};
use super::vm::VmTemplate;

pub use super::network::INTERFACE_NOT_LIVE_MIGRATABLE;
pub const HOST_DEVICE_NOT_LIVE_MIGRATABLE: &str = "HostDeviceNotLiveMigratable";

/// The fields a user edits for each aspect of the VM, depending on whether the NodePool
/// rendered it or a JSON patch changed it.
#[derive(Clone, Debug)]
pub struct Fields {
    pub root: RequestFields,
    /// Where volumes other than the root disk come from (always a JSON patch).
    pub patched_volumes: Text,
    pub host_devices: Text,
    pub network: Text,
    pub cpu: Text,
}

/// The message a failing check puts into the VMI's LiveMigratable condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmiMessage {
    Fixed(String),
    /// `cannot migrate VMI: PVC <machine>-<dv> is not shared, …` (§K5); the PVC name
    /// depends on the machine (CAPK prefixes DataVolume templates with it, §R2).
    PvcNotShared {
        dv: Text,
    },
}

impl VmiMessage {
    pub fn render(&self, machine: &str) -> String {
        let mut out = String::new();
        self.write_to(&mut out, machine);
        out
    }

    /// Appends the message for `machine` to `out`.
    pub fn write_to(&self, out: &mut String, machine: &str) {
        match self {
            Self::Fixed(m) => out.push_str(m),
            Self::PvcNotShared { dv } => {
                for part in ["cannot migrate VMI: PVC ", machine, "-", dv] {
                    out.push_str(part);
                }
                out.push_str(" is not shared, live migration requires that all PVCs must be shared (using ReadWriteMany access mode)");
            }
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

/// First upstream KubeVirt tags carrying each behaviour (docs/rules.md §K1).
mod since {
    pub const HYPERV_PASSTHROUGH: &str = "1.3.0-alpha.0";
    pub const INTERFACES_BEFORE_DISKS: &str = "1.6.0-rc.0";
    pub const SECURE_EXECUTION: &str = "1.6.0-rc.0";
    pub const TDX_AND_SNP: &str = "1.7.0-rc.0";
    pub const PR_SPELLED_RIGHT: &str = "1.7.0-alpha.0";
    pub const GPU_MESSAGES: &str = "1.9.0-alpha.0";
    pub const PR_MIGRATABLE: &str = "1.9.0-rc.0";
}

pub fn judge(tpl: &VmTemplate, facts: &Facts, fields: &Fields, findings: &mut Vec<Finding>) -> Judgement {
    let version = facts.kubevirt_version();
    let (interface, rejected) = match network::check(tpl, facts, fields, findings) {
        NetOutcome::Ok => (None, false),
        NetOutcome::Rejected => (None, true),
        NetOutcome::Failed(check) => (Some(check), false),
    };
    let host_device = check_host_devices(tpl, version, fields, findings);
    let launch = check_launch_security(tpl, facts, fields, findings);
    let reservation = check_persistent_reservation(tpl, version, fields, findings);
    let hyperv = check_hyperv_passthrough(tpl, version, fields, findings);
    let (disk, blocked) = check_volumes(tpl, facts, fields, findings);
    check_cpu_model(tpl, fields, findings);
    let middle = [host_device, launch, reservation, hyperv];
    let ordered: Vec<FailedCheck> = if version.since(since::INTERFACES_BEFORE_DISKS) == Some(false) {
        [disk, interface].into_iter().chain(middle).flatten().collect()
    } else {
        [interface]
            .into_iter()
            .chain(middle)
            .chain([disk])
            .flatten()
            .collect()
    };
    Judgement {
        failed: ordered,
        blocked: blocked || rejected,
    }
}

fn blocker(
    findings: &mut Vec<Finding>,
    reason: &'static str,
    field: &Text,
    detail: String,
    message: &str,
    fix: &'static str,
) -> Option<FailedCheck> {
    findings.push(Finding::error(reason, field.clone(), detail, fix));
    Some(FailedCheck {
        reason,
        message: VmiMessage::Fixed(message.to_owned()),
    })
}

/// §K4 `util.IsSEVVMI` (SEV, and SNP from v1.7.0-rc.0), `IsTDXVMI` (v1.7.0-rc.0+), then
/// `IsSecureExecutionVMI` (any launchSecurity on s390x, v1.6.0-rc.0+).
fn check_launch_security(
    tpl: &VmTemplate,
    facts: &Facts,
    fields: &Fields,
    findings: &mut Vec<Finding>,
) -> Option<FailedCheck> {
    let v = facts.kubevirt_version();
    let spec = &tpl.spec.template.spec;
    let ls = spec.domain.launch_security.as_ref()?;
    let new = v.since(since::TDX_AND_SNP) != Some(false);
    let fix = "remove domain.launchSecurity from the JSON patch (confidential VMs cannot be live migrated)";
    if ls.sev.is_some() || (new && ls.snp.is_some()) {
        return blocker(
            findings,
            "SEVNotLiveMigratable",
            &fields.cpu,
            "the VM uses AMD SEV (launchSecurity); KubeVirt never live migrates it".into(),
            "VMI uses SEV",
            fix,
        );
    }
    if new && ls.tdx.is_some() {
        return blocker(
            findings,
            "TDXNotLiveMigratable",
            &fields.cpu,
            "the VM uses Intel TDX (launchSecurity); KubeVirt never live migrates it".into(),
            "VMI uses TDX",
            fix,
        );
    }
    let arch = spec.architecture.clone().or_else(|| {
        facts
            .kubevirt_config()
            .and_then(|c| c.default_architecture.clone())
    });
    if v.since(since::SECURE_EXECUTION) != Some(false) && arch.as_deref() == Some("s390x") {
        return blocker(
            findings,
            "SecureExecutionNotLiveMigratable",
            &fields.cpu,
            "the VM sets launchSecurity on s390x (IBM Secure Execution); KubeVirt never live migrates it"
                .into(),
            "VMI uses Secure Execution",
            fix,
        );
    }
    None
}

/// §K4 `reservation.HasVMIPersistentReservation`: a LUN disk with `reservation: true`
/// blocks up to v1.9.0-beta.0 (migratable from v1.9.0-rc.0).
fn check_persistent_reservation(
    tpl: &VmTemplate,
    v: &KubeVirtVersion,
    fields: &Fields,
    findings: &mut Vec<Finding>,
) -> Option<FailedCheck> {
    let disks = &tpl.spec.template.spec.domain.devices.disks;
    let lun = disks
        .iter()
        .find(|d| d.lun.as_ref().is_some_and(|l| l.reservation))?;
    if v.since(since::PR_MIGRATABLE) == Some(true) {
        return None;
    }
    let message = if v.since(since::PR_SPELLED_RIGHT) == Some(false) {
        "VMI uses SCSI persitent reservation"
    } else {
        "VMI uses SCSI persistent reservation"
    };
    blocker(
        findings,
        "PersistentReservationNotLiveMigratable",
        &fields.patched_volumes,
        format!(
            "disk {} is a LUN with SCSI persistent reservation; KubeVirt {} does not live migrate it (v1.9.0 does)",
            lun.name,
            network::text(v)
        ),
        message,
        "remove lun.reservation from the JSON patch, or upgrade the infrastructure cluster to KubeVirt v1.9.0",
    )
}

/// §K4: `domain.features.hypervPassthrough.enabled: true` blocks (checked from v1.3.0).
fn check_hyperv_passthrough(
    tpl: &VmTemplate,
    v: &KubeVirtVersion,
    fields: &Fields,
    findings: &mut Vec<Finding>,
) -> Option<FailedCheck> {
    let features = tpl.spec.template.spec.domain.features.as_ref()?;
    let hp = features.hyperv_passthrough.as_ref()?;
    if hp.enabled != Some(true) || v.since(since::HYPERV_PASSTHROUGH) == Some(false) {
        return None;
    }
    blocker(
        findings,
        "HypervPassthroughNotLiveMigratable",
        &fields.cpu,
        "the VM enables Hyper-V passthrough (domain.features.hypervPassthrough); KubeVirt never live migrates it".into(),
        "VMI uses hyperv passthrough",
        "remove domain.features.hypervPassthrough from the JSON patch (list the Hyper-V enlightenments under domain.features.hyperv instead)",
    )
}

/// §K3 `vmiContainsNonMigratablePCIHostDevices`: any host device blocks; GPUs block up to
/// v1.8.x, and from v1.9.0-alpha.0 only without the VGPULiveMigration gate or above one GPU.
fn check_host_devices(
    tpl: &VmTemplate,
    version: &KubeVirtVersion,
    fields: &Fields,
    findings: &mut Vec<Finding>,
) -> Option<FailedCheck> {
    let devices = &tpl.spec.template.spec.domain.devices;
    let since_1_9 = version.since(since::GPU_MESSAGES);
    let fail = |message: &str, detail: String, findings: &mut Vec<Finding>| {
        findings.push(Finding::error(
            HOST_DEVICE_NOT_LIVE_MIGRATABLE,
            fields.host_devices.clone(),
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
                fields.host_devices.clone(),
                "the VM gets one GPU; KubeVirt v1.9.0+ live migrates it only if it is a mediated (vGPU) device and the VGPULiveMigration feature gate is enabled",
                "check the KubeVirt feature gates and the device type, or remove the GPU",
            ));
            None
        }
    }
}

/// §K5 `checkVolumesForMigration`: every PVC/DataVolume volume must be ReadWriteMany;
/// host disks must be shared; other sources only force block migration. Returns the first
/// failing check and whether some volume cannot be provisioned (the VM never runs).
fn check_volumes(
    tpl: &VmTemplate,
    facts: &Facts,
    fields: &Fields,
    findings: &mut Vec<Finding>,
) -> (Option<FailedCheck>, bool) {
    let mut first: Option<FailedCheck> = None;
    let mut blocked = false;
    for volume in &tpl.spec.template.spec.volumes {
        let outcome = if let Some(dv_ref) = &volume.data_volume {
            check_data_volume(tpl, &dv_ref.name, facts, fields, findings)
        } else if let Some(claim) = &volume.persistent_volume_claim {
            unknown_pvc(&claim.claim_name, &fields.patched_volumes, findings);
            VolumeOutcome::Passes
        } else if let Some(host_disk) = &volume.host_disk
            && host_disk.shared != Some(true)
        {
            non_shared_host_disk(&volume.name, fields, findings)
        } else {
            VolumeOutcome::Passes
        };
        match outcome {
            VolumeOutcome::Fails(check) => {
                first.get_or_insert(check);
            }
            VolumeOutcome::Blocked => blocked = true,
            VolumeOutcome::Passes => {}
        }
    }
    (first, blocked)
}

/// What one volume does to the VMI's migratability.
enum VolumeOutcome {
    /// Shared, or undecided (a finding says why).
    Passes,
    Fails(FailedCheck),
    /// Cannot be provisioned: the VM never runs.
    Blocked,
}

/// A DataVolume volume: its template's storage request judged like CDI would render it (§S).
fn check_data_volume(
    tpl: &VmTemplate,
    name: &str,
    facts: &Facts,
    fields: &Fields,
    findings: &mut Vec<Finding>,
) -> VolumeOutcome {
    let Some(dv) = tpl
        .spec
        .data_volume_templates
        .iter()
        .find(|d| d.metadata.name == name)
    else {
        unknown_pvc(name, &fields.patched_volumes, findings);
        return VolumeOutcome::Passes;
    };
    let (req, api) = match (&dv.spec.storage, &dv.spec.pvc) {
        (Some(s), _) => (s, Api::Storage),
        (None, Some(p)) => (p, Api::Pvc),
        (None, None) => {
            findings.push(Finding::blocking(
                "DataVolumeWithoutStorage",
                fields.patched_volumes.clone(),
                format!(
                    "the DataVolume template {} has neither spec.storage nor spec.pvc",
                    dv.metadata.name
                ),
                "give the DataVolume template a spec.storage",
            ));
            return VolumeOutcome::Blocked;
        }
    };
    let request_fields = if dv.metadata.name == super::vm::ROOT_DISK {
        fields.root.clone()
    } else {
        RequestFields {
            volume: format!("the DataVolume {} added by the JSON patch", dv.metadata.name).into(),
            dv_name: dv.metadata.name.clone(),
            access_modes: fields.patched_volumes.clone(),
            storage_class: fields.patched_volumes.clone(),
            volume_mode: fields.patched_volumes.clone(),
        }
    };
    match storage::judge_request(req, api, facts, &request_fields, findings) {
        DiskOutcome::NotShared => VolumeOutcome::Fails(FailedCheck {
            reason: storage::DISKS_NOT_LIVE_MIGRATABLE,
            message: VmiMessage::PvcNotShared {
                dv: dv.metadata.name.clone(),
            },
        }),
        DiskOutcome::Blocked => VolumeOutcome::Blocked,
        DiskOutcome::Shared | DiskOutcome::Undecided => VolumeOutcome::Passes,
    }
}

/// A hostDisk without `shared: true`: KubeVirt refuses to migrate it.
fn non_shared_host_disk(volume: &str, fields: &Fields, findings: &mut Vec<Finding>) -> VolumeOutcome {
    findings.push(Finding::error(
        storage::DISKS_NOT_LIVE_MIGRATABLE,
        fields.patched_volumes.clone(),
        format!("volume {volume} is a hostDisk without shared: true"),
        "remove the hostDisk volume from the JSON patch, or mark it shared: true if it really is on shared storage",
    ));
    VolumeOutcome::Fails(FailedCheck {
        reason: storage::DISKS_NOT_LIVE_MIGRATABLE,
        message: VmiMessage::Fixed("cannot migrate VMI with non-shared HostDisk".into()),
    })
}

/// A volume that references an existing PVC/DataVolume: its access modes are not in the facts.
fn unknown_pvc(claim: &str, field: &Text, findings: &mut Vec<Finding>) {
    findings.push(Finding::undecided(
        "PVCAccessModesUnknown",
        field.clone(),
        format!("volume {claim} references an existing PVC or DataVolume whose access modes are not among the facts; KubeVirt requires ReadWriteMany"),
        format!("make sure PVC {claim} is ReadWriteMany on the infrastructure cluster"),
    ));
}

/// §K6: host-passthrough is not flagged by KubeVirt, but such VMs migrate only between
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
            fields.cpu.clone(),
            "the VM uses CPU model host-passthrough; KubeVirt does not flag it, but it live migrates only between nodes with identical CPUs",
            "remove the CPU model from the JSON patch to use the cluster default (host-model), or keep the infrastructure nodes' CPUs identical",
        ));
    }
}
