//! NodePool rules: render → patch → judge (docs/rules.md §1, §3, §4, §6).

use crate::facts::Facts;
use crate::resources::meta::{annotation, display_name};
use crate::resources::nodepool::KubevirtNodePoolPlatform;
use crate::resources::{HostedCluster, KUBEVIRT_PLATFORM, NodePool, VM_JSONPATCH_ANNOTATION};

use super::condition;
use super::judge::{self, Fields, Judgement};
use super::report::{Condition, Effect, Finding, Report, Verdict};
use super::siblings::{MachineState, Machines};
use super::storage::RequestFields;
use super::vm::{self, VmTemplate};

const PLATFORM: &str = "spec.platform.kubevirt";
const PERSISTENT: &str = "spec.platform.kubevirt.rootVolume.persistent";
/// The NodePool's JSON patch annotation, as a field path.
const NP_PATCH_FIELD: &str = "metadata.annotations[hypershift.openshift.io/kubevirt-vm-jsonpatch]";
/// NodePool annotation that switches HyperShift from anti-affinity to topology spread.
const TOPOLOGY_SPREAD_ANNOTATION: &str =
    "hypershift.openshift.io/nodepool-supports-kubevirt-topology-spread-constraints";

/// HyperShift cannot build the machine template: the NodePool adds no KubevirtMachine.
const NO_MACHINE_TEMPLATE: [&str; 6] = [
    "KubevirtPlatformMissing",
    "UnsupportedRootVolumeType",
    "RootVolumePersistentMissing",
    "DefaultNetworkRequired",
    "InvalidHostDeviceCount",
    "InvalidKubevirtVMJSONPatch",
];

/// Predicts whether the VMs HyperShift creates for `np` will be live migratable.
/// `hc` is the NodePool's HostedCluster when known (its JSON patch and credentials apply).
pub fn evaluate(np: &NodePool, hc: Option<&HostedCluster>, facts: &Facts) -> Report {
    evaluate_with_machines(np, hc, facts).0
}

/// [`evaluate`], with what the NodePool's machines add to the condition shared by all
/// NodePools of its HostedCluster (§H3, [`super::siblings`]).
pub fn evaluate_with_machines(
    np: &NodePool,
    hc: Option<&HostedCluster>,
    facts: &Facts,
) -> (Report, Machines) {
    let mut report = Report {
        api_version: "hypershift.openshift.io/v1beta1",
        kind: "NodePool",
        namespace: np.metadata.namespace.clone(),
        name: display_name(&np.metadata),
        verdict: Verdict::NotApplicable,
        condition: None,
        findings: Vec::new(),
    };
    // §R1: only the KubeVirt platform has these VMs.
    if np.spec.platform.type_ != KUBEVIRT_PLATFORM {
        return (report, Machines::none());
    }
    let findings = &mut report.findings;
    let Some(platform) = np.spec.platform.kubevirt.as_ref() else {
        // §R1: the controller fails with "nodepool.spec.platform.kubevirt is required"
        // (the defaulting webhook that would fill it is off by default).
        findings.push(Finding::blocking(
            "KubevirtPlatformMissing",
            PLATFORM,
            "spec.platform.type is KubeVirt but spec.platform.kubevirt is missing; HyperShift fails with \"nodepool.spec.platform.kubevirt is required\" and creates no VMs",
            "add spec.platform.kubevirt with rootVolume.persistent (storageClass of an RWX-capable class)",
        ));
        report.verdict = Report::verdict_of(findings);
        return (report, no_template());
    };
    validate_platform(platform, findings);

    if hc.is_none() {
        hosted_cluster_not_found(np, findings);
    }
    let none = Facts::none();
    let infra = match hc {
        Some(hc) => super::infra_facts(hc, facts, &none, "spec.clusterName", findings),
        None => facts,
    };

    let (tpl, fields) = render_and_patch(np, platform, hc, findings);
    let judgement = judge::judge(&tpl, infra, &fields, findings);

    report.verdict = Report::verdict_of(findings);
    let machines = machines(np, report.verdict, &judgement, findings);
    report.condition = predicted_condition(np, &report.name, report.verdict, &judgement, findings);
    (report, machines)
}

fn no_template() -> Machines {
    Machines {
        kubevirt: true,
        count: 0,
        state: MachineState::NeverRun,
    }
}

/// `replicas`, else the autoscaler's `min`, else none.
fn machine_count(np: &NodePool) -> u64 {
    np.spec
        .replicas
        .or_else(|| np.spec.auto_scaling.as_ref().and_then(|a| a.min))
        .unwrap_or(0)
        .max(0) as u64
}

/// The VMs never start: a volume cannot be provisioned, or KubeVirt rejects the VM.
fn never_runs(judgement: &Judgement, findings: &[Finding]) -> bool {
    judgement.blocked || findings.iter().any(|f| f.effect == Effect::BlocksProvisioning)
}

/// Why the condition cannot be predicted: the undecided findings' messages.
fn undecided(findings: &[Finding]) -> String {
    let why: Vec<&str> = findings
        .iter()
        .filter(|f| f.effect == Effect::Undecided)
        .map(|f| f.message.as_ref())
        .collect();
    why.join("; ")
}

/// What this NodePool's machines will report (§H3).
fn machines(np: &NodePool, verdict: Verdict, judgement: &Judgement, findings: &[Finding]) -> Machines {
    if findings.iter().any(|f| NO_MACHINE_TEMPLATE.contains(&f.reason)) {
        return no_template();
    }
    let state = match verdict {
        _ if never_runs(judgement, findings) => MachineState::NeverRun,
        Verdict::NotMigratable => judgement.failed.first().map_or(MachineState::NeverRun, |check| {
            MachineState::NotMigratable(check.clone())
        }),
        Verdict::Unknown => MachineState::Undecided(undecided(findings)),
        Verdict::Migratable | Verdict::NotApplicable => MachineState::Migratable,
    };
    Machines {
        kubevirt: true,
        count: machine_count(np),
        state,
    }
}

/// §R1 runtime validation (`PlatformValidation`): errors stop the machine template.
fn validate_platform(platform: &KubevirtNodePoolPlatform, findings: &mut Vec<Finding>) {
    if let Some(rv) = &platform.root_volume {
        if rv.type_.as_deref().is_some_and(|t| t != "Persistent") {
            findings.push(Finding::blocking(
                "UnsupportedRootVolumeType",
                "spec.platform.kubevirt.rootVolume.type",
                format!(
                    "rootVolume.type {:?} is not supported; the only type is Persistent",
                    rv.type_.as_deref().unwrap_or_default()
                ),
                "set spec.platform.kubevirt.rootVolume.type to Persistent",
            ));
        } else if rv.persistent.is_none() {
            findings.push(Finding::blocking(
                "RootVolumePersistentMissing",
                PERSISTENT,
                "rootVolume.type is Persistent but rootVolume.persistent is missing; HyperShift fails with \"the kubevirt persistent storage field must be set when rootVolume.Type=Persistent\"",
                format!("add {PERSISTENT} with size and an RWX-capable storageClass"),
            ));
        }
    }
    if platform.attach_default_network == Some(false) && platform.additional_networks().is_empty() {
        findings.push(Finding::blocking(
            "DefaultNetworkRequired",
            "spec.platform.kubevirt.attachDefaultNetwork",
            "attachDefaultNetwork is false but there are no additionalNetworks; HyperShift fails with \"default network cannot be disabled when no additional networks are configured\"",
            "set spec.platform.kubevirt.attachDefaultNetwork to true, or add spec.platform.kubevirt.additionalNetworks",
        ));
    }
    for (i, dev) in platform.host_devices().iter().enumerate() {
        if let Some(count) = dev.count.filter(|c| *c < 1) {
            findings.push(Finding::blocking(
                "InvalidHostDeviceCount",
                format!("spec.platform.kubevirt.hostDevices[{i}].count"),
                format!("host device count must be greater than or equal to 1. received: {count}"),
                format!(
                    "set spec.platform.kubevirt.hostDevices[{i}].count to 1 or more, or remove the device"
                ),
            ));
        }
    }
}

/// Notes that the NodePool's HostedCluster (same namespace, `spec.clusterName`, §R1) is unknown.
fn hosted_cluster_not_found(np: &NodePool, findings: &mut Vec<Finding>) {
    let namespace = np.metadata.namespace.as_deref().unwrap_or_default();
    let name = np.spec.cluster_name.as_str();
    findings.push(Finding::info(
        "HostedClusterNotFound",
        "spec.clusterName",
        format!(
            "HostedCluster {namespace}/{name} is not among the facts; its {VM_JSONPATCH_ANNOTATION} annotation and infrastructure credentials were not considered"
        ),
        "supply the HostedCluster with the facts (or evaluate it together with the NodePool)",
    ));
}

/// Renders the template (§R2), applies the HostedCluster's then the NodePool's JSON
/// patch, and works out which field to point at for each aspect of the VM.
fn render_and_patch(
    np: &NodePool,
    platform: &KubevirtNodePoolPlatform,
    hc: Option<&HostedCluster>,
    findings: &mut Vec<Finding>,
) -> (VmTemplate, Fields) {
    let mut fields = Fields {
        root: RequestFields {
            volume: "the root volume".into(),
            dv_name: vm::ROOT_DISK.into(),
            access_modes: "spec.platform.kubevirt.rootVolume.persistent.accessModes".into(),
            storage_class: "spec.platform.kubevirt.rootVolume.persistent.storageClass".into(),
            volume_mode: "spec.platform.kubevirt.rootVolume.persistent.volumeMode".into(),
        },
        patched_volumes: NP_PATCH_FIELD.into(),
        host_devices: "spec.platform.kubevirt.hostDevices".into(),
        network: "spec.platform.kubevirt.attachDefaultNetwork".into(),
        cpu: NP_PATCH_FIELD.into(),
    };
    let tpl = VmTemplate::render(platform);

    let hc_patch = hc.and_then(|hc| {
        let value = annotation(&hc.metadata, VM_JSONPATCH_ANNOTATION)?;
        let field = format!(
            "HostedCluster {}/{} metadata.annotations[{VM_JSONPATCH_ANNOTATION}]",
            hc.metadata.namespace.as_deref().unwrap_or_default(),
            hc.metadata.name.as_deref().unwrap_or_default()
        );
        Some((value, field))
    });
    let np_patch = annotation(&np.metadata, VM_JSONPATCH_ANNOTATION).map(|v| (v, NP_PATCH_FIELD.to_owned()));
    if hc_patch.is_none() && np_patch.is_none() {
        return (tpl, fields);
    }

    let ctx = vm::RenderContext {
        nodepool_name: np.metadata.name.as_deref().unwrap_or_default(),
        infra_id: hc.and_then(|hc| hc.spec.infra_id.as_deref()).unwrap_or_default(),
        topology_spread: annotation(&np.metadata, TOPOLOGY_SPREAD_ANNOTATION).is_some(),
        platform,
    };
    // Both patches are applied to one document (docs/rules.md §P1); a failure anywhere means
    // HyperShift builds no machine template at all (§P2), and the report goes on judging the
    // VM without the failing patch.
    let mut run = match vm::PatchRun::new(&tpl, &ctx) {
        Ok(run) => run,
        Err(e) => {
            for (_, field) in [hc_patch, np_patch].into_iter().flatten() {
                push_invalid_patch(findings, &field, &e);
            }
            return (tpl, fields);
        }
    };
    let mut current = tpl;
    // The first patch after which the document did not decode, while no later one repaired it.
    let mut undecodable: Option<(String, vm::PatchError)> = None;
    for (value, field) in [hc_patch, np_patch].into_iter().flatten() {
        if let Err(e) = vm::parse_patch(value).and_then(|p| run.apply(&p)) {
            push_invalid_patch(findings, &field, &e);
            continue;
        }
        match run.decoded() {
            Ok(next) => {
                attribute_changes(&current, &next, &field, &mut fields);
                current = next;
                undecodable = None;
            }
            Err(e) => {
                undecodable.get_or_insert((field, e));
            }
        }
    }
    if let Some((field, e)) = undecodable {
        push_invalid_patch(findings, &field, &e);
    }
    (current, fields)
}

fn push_invalid_patch(findings: &mut Vec<Finding>, field: &str, e: &vm::PatchError) {
    findings.push(Finding::blocking(
        "InvalidKubevirtVMJSONPatch",
        field.to_owned(),
        format!("the {VM_JSONPATCH_ANNOTATION} annotation {e}; HyperShift cannot build the VM template, so no VMs are created (the rest of this report judges the VM without this patch)"),
        "fix the JSON patch: an RFC 6902 array whose paths are relative to the VirtualMachine template (e.g. /spec/template/spec/domain/...)",
    ));
}

/// Points each aspect that a patch changed at the patch's annotation.
fn attribute_changes(before: &VmTemplate, after: &VmTemplate, field: &str, fields: &mut Fields) {
    fn vmi(t: &VmTemplate) -> &super::vm::VmiSpec {
        &t.spec.template.spec
    }
    if before.root_data_volume() != after.root_data_volume() {
        fields.root.access_modes = field.to_owned().into();
        fields.root.storage_class = field.to_owned().into();
        fields.root.volume_mode = field.to_owned().into();
    }
    if before.spec.data_volume_templates != after.spec.data_volume_templates
        || vmi(before).volumes != vmi(after).volumes
    {
        fields.patched_volumes = field.to_owned().into();
    }
    let devices = |t: &VmTemplate| {
        (
            vmi(t).domain.devices.host_devices.clone(),
            vmi(t).domain.devices.gpus.clone(),
        )
    };
    if devices(before) != devices(after) {
        fields.host_devices = field.to_owned().into();
    }
    let network = |t: &VmTemplate| {
        (
            vmi(t).domain.devices.interfaces.clone(),
            vmi(t).networks.clone(),
            t.spec.template.metadata.annotations.clone(),
        )
    };
    if network(before) != network(after) {
        fields.network = field.to_owned().into();
    }
    if vmi(before).domain.cpu != vmi(after).domain.cpu {
        fields.cpu = field.to_owned().into();
    }
}

/// The condition HyperShift would set once the machines exist (§H1).
fn predicted_condition(
    np: &NodePool,
    name: &str,
    verdict: Verdict,
    judgement: &Judgement,
    findings: &mut Vec<Finding>,
) -> Option<Condition> {
    let machines = machine_count(np);
    if machines == 0 {
        findings.push(Finding::info(
            "NoMachines",
            "spec.replicas",
            "the NodePool has no machines: HyperShift sets no KubeVirtNodesLiveMigratable condition until it has; the verdict applies to the machines it creates when scaled up",
            "none needed",
        ));
        return None;
    }
    if never_runs(judgement, findings) {
        // The VMs never run, so no VMI reports LiveMigratable.
        return None;
    }
    match verdict {
        Verdict::Migratable => Some(Condition::all_is_well()),
        Verdict::NotMigratable => judgement
            .failed
            .first()
            .map(|check| condition::nodepool_not_migratable(name, machines, check)),
        Verdict::Unknown => Some(Condition::unknown(format!(
            "cannot be predicted: {}",
            undecided(findings)
        ))),
        Verdict::NotApplicable => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_paths_spell_the_constants_they_repeat() {
        assert_eq!(
            NP_PATCH_FIELD,
            format!("metadata.annotations[{VM_JSONPATCH_ANNOTATION}]")
        );
        let (_, fields) = {
            let platform = KubevirtNodePoolPlatform::default();
            let np = NodePool::default();
            render_and_patch(&np, &platform, None, &mut Vec::new())
        };
        for (path, leaf) in [
            (&fields.root.access_modes, "accessModes"),
            (&fields.root.storage_class, "storageClass"),
            (&fields.root.volume_mode, "volumeMode"),
        ] {
            assert_eq!(path.as_ref(), format!("{PERSISTENT}.{leaf}"));
        }
    }
}
