//! Network interfaces (docs/rules.md §N1–§N3): what KubeVirt's admission rejects at VM
//! creation (network admitter) and what its LiveMigratable check (`VerifyVMIMigratable`,
//! KubeVirt `pkg/network/vmispec/interface.go`) says about the pod-network interface.

use crate::facts::{Facts, KubeVirtVersion};

use super::judge::{FailedCheck, Fields, VmiMessage};
use super::report::{Finding, Text};
use super::vm::{ALLOW_POD_BRIDGE_MIGRATION, Interface, VmTemplate};

pub const INTERFACE_NOT_LIVE_MIGRATABLE: &str = "InterfaceNotLiveMigratable";

/// First upstream KubeVirt tags carrying each behaviour (docs/rules.md §K1).
mod since {
    /// The allow-pod-bridge annotation (commit f09a0888c2).
    pub const BRIDGE_ANNOTATION: &str = "0.60.0-alpha.0";
    /// Message mentioning migratable plugins.
    pub const PLUGIN_MESSAGE: &str = "1.2.0-rc.0";
    /// `passt: {}` rejected as discontinued (network admitter `discontinued.go`).
    pub const PASST_DISCONTINUED: &str = "1.8.0-alpha.0";
    /// A pod network without an interface fails (commit fafb9fa561).
    pub const NO_PRIMARY_INTERFACE: &str = "1.8.0-beta.0";
    /// `passtBinding` exists and migrates; shorter message (commits cb3573958e, a5a252bccb).
    pub const PASST_BINDING: &str = "1.8.0-rc.0";
    /// Beta feature gates (PasstBinding) are on unless disabled (commit 6a8dfaf64c).
    pub const BETA_GATES_ON: &str = "1.9.0-beta.0";
    /// "exactly one binding method" enforced (commit 0bb9ff0fb3).
    pub const EXACTLY_ONE_BINDING: &str = "1.9.0";
}

/// The outcome of the interface rules.
pub enum NetOutcome {
    Ok,
    /// KubeVirt rejects the VM at creation: no VMI ever runs.
    Rejected,
    Failed(FailedCheck),
}

/// Runs the creation-time checks, then the LiveMigratable check.
pub fn check(tpl: &VmTemplate, facts: &Facts, fields: &Fields, findings: &mut Vec<Finding>) -> NetOutcome {
    if rejected_at_creation(tpl, facts, fields, findings) {
        return NetOutcome::Rejected;
    }
    match migratable(tpl, facts, fields, findings) {
        Some(check) => NetOutcome::Failed(check),
        None => NetOutcome::Ok,
    }
}

fn reject(findings: &mut Vec<Finding>, field: &Text, message: String, fix: &str) -> bool {
    findings.push(Finding::blocking(
        "VirtualMachineRejected",
        field.clone(),
        message,
        fix.to_owned(),
    ));
    true
}

/// KubeVirt's network admitter (`pkg/network/admitter`): discontinued passt, the
/// PasstBinding feature gate, and the number of binding methods per interface (§N2).
fn rejected_at_creation(
    tpl: &VmTemplate,
    facts: &Facts,
    fields: &Fields,
    findings: &mut Vec<Finding>,
) -> bool {
    let v = facts.kubevirt_version();
    let field = &fields.network;
    // The first rejected interface is the admitter's answer.
    tpl.spec
        .template
        .spec
        .domain
        .devices
        .interfaces
        .iter()
        .any(|iface| {
            bindings_rejected(iface, v, field, findings) || passt_rejected(iface, facts, v, field, findings)
        })
}

/// From v1.9.0 exactly one binding per interface; before, a plugin next to a method (§N2).
fn bindings_rejected(
    iface: &Interface,
    v: &KubeVirtVersion,
    field: &Text,
    findings: &mut Vec<Finding>,
) -> bool {
    let bindings = binding_count(iface);
    let plugin_and_method = iface.binding.is_some() && bindings > 1;
    if v.since(since::EXACTLY_ONE_BINDING) != Some(false) && bindings != 1 {
        let msg = format!(
            "logical {} interface must have exactly one binding method or binding plugin",
            iface.name
        );
        return reject(
            findings,
            field,
            format!(
                "KubeVirt {} rejects the VM: \"{msg}\" (a JSON patch that changes a rendered interface keeps the rendered binding too)",
                text(v)
            ),
            "replace the whole interfaces list in the JSON patch, or remove the other binding explicitly",
        );
    }
    if plugin_and_method {
        let msg = format!(
            "logical {} interface cannot have both binding plugin and interface binding method",
            iface.name
        );
        return reject(
            findings,
            field,
            format!("KubeVirt {} rejects the VM: \"{msg}\"", text(v)),
            "keep exactly one binding on the interface",
        );
    }
    false
}

/// Discontinued `passt: {}` and `passtBinding` without its feature gate (§N2).
fn passt_rejected(
    iface: &Interface,
    facts: &Facts,
    v: &KubeVirtVersion,
    field: &Text,
    findings: &mut Vec<Finding>,
) -> bool {
    if iface.passt.is_some() && !passt_gate_listed(facts, v) {
        let msg = match v.since(since::PASST_DISCONTINUED) {
            Some(false) => "Passt feature gate is not enabled",
            _ => "Passt network binding has been discontinued since v1.3",
        };
        return reject(
            findings,
            field,
            format!(
                "interface {} uses the discontinued `passt: {{}}` binding; KubeVirt {} rejects the VM: \"{msg}\"",
                iface.name,
                text(v)
            ),
            "use `passtBinding: {}` (KubeVirt v1.8+) or masquerade on the pod network",
        );
    }
    if iface.passt_binding.is_some()
        && v.since(since::PASST_BINDING) == Some(true)
        && passt_binding_gate(facts, v) == Some(false)
    {
        return reject(
            findings,
            field,
            format!(
                "interface {} uses passtBinding, but the PasstBinding feature gate is not enabled in the KubeVirt CR; KubeVirt {} rejects the VM: \"PasstBinding feature gate is not enabled\"",
                iface.name,
                text(v)
            ),
            "enable the PasstBinding feature gate (spec.configuration.developerConfiguration.featureGates), or use masquerade",
        );
    }
    false
}

fn binding_count(i: &Interface) -> usize {
    [
        i.bridge.is_some(),
        i.masquerade.is_some(),
        i.sriov.is_some(),
        i.passt_binding.is_some(),
        i.binding.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count()
}

/// Before v1.8 the `Passt` gate could still be listed; then the VM is created.
fn passt_gate_listed(facts: &Facts, v: &KubeVirtVersion) -> bool {
    v.since(since::PASST_DISCONTINUED) == Some(false)
        && facts
            .kubevirt_config()
            .is_some_and(|c| c.feature_gates.iter().any(|g| g == "Passt"))
}

/// Whether the PasstBinding gate is on: listed (v1.8.x), or not disabled (Beta gates are
/// on by default from v1.9.0-beta.0). `None` when the KubeVirt CR is unknown.
fn passt_binding_gate(facts: &Facts, v: &KubeVirtVersion) -> Option<bool> {
    let c = facts.kubevirt_config()?;
    let has = |list: &[String]| list.iter().any(|g| g == "PasstBinding");
    if has(&c.feature_gates) {
        return Some(true);
    }
    Some(v.since(since::BETA_GATES_ON) == Some(true) && !has(&c.disabled_feature_gates))
}

/// `VerifyVMIMigratable`: only the pod network's interface matters (§N1).
fn migratable(
    tpl: &VmTemplate,
    facts: &Facts,
    fields: &Fields,
    findings: &mut Vec<Finding>,
) -> Option<FailedCheck> {
    let v = facts.kubevirt_version();
    let vmi = &tpl.spec.template;
    let interfaces = &vmi.spec.domain.devices.interfaces;
    // No interfaces, or no pod network: passes on every version.
    let pod_net = vmi.spec.networks.iter().find(|n| n.pod.is_some())?;
    if interfaces.is_empty() {
        return None;
    }
    let Some(iface) = interfaces.iter().find(|i| i.name == pod_net.name) else {
        return no_primary_interface(&pod_net.name, v, fields, findings);
    };
    if iface.masquerade.is_some() {
        return None;
    }
    if iface.passt_binding.is_some() {
        return passt_binding(iface, v, fields, findings);
    }
    if iface.bridge.is_some() && bridge_allowed(tpl, v) {
        return None;
    }
    if let Some(plugin) = &iface.binding {
        return plugin_check(&plugin.name, iface, facts, fields, findings);
    }
    let detail = if iface.bridge.is_some() {
        format!(
            "the pod-network interface {} uses bridge binding without the VMI annotation {ALLOW_POD_BRIDGE_MIGRATION} (or KubeVirt {} predates it)",
            iface.name,
            text(v)
        )
    } else {
        format!(
            "the pod-network interface {} uses a binding KubeVirt {} cannot live migrate",
            iface.name,
            text(v)
        )
    };
    Some(fail(
        findings,
        &fields.network,
        detail,
        pod_network_message(v).into(),
    ))
}

/// From v1.8.0-beta.0 a pod network without a matching interface fails (§N1).
fn no_primary_interface(
    network: &str,
    v: &KubeVirtVersion,
    fields: &Fields,
    findings: &mut Vec<Finding>,
) -> Option<FailedCheck> {
    if v.since(since::NO_PRIMARY_INTERFACE) == Some(false) {
        return None;
    }
    let msg = format!("no primary interface found for network {network}");
    Some(fail(
        findings,
        &fields.network,
        format!(
            "the pod network {network} has no interface; KubeVirt {} reports \"{msg}\"",
            text(v)
        ),
        msg,
    ))
}

/// `passtBinding` on the pod network migrates from v1.8.0-rc.0 (§N1).
fn passt_binding(
    iface: &Interface,
    v: &KubeVirtVersion,
    fields: &Fields,
    findings: &mut Vec<Finding>,
) -> Option<FailedCheck> {
    match v.since(since::PASST_BINDING) {
        Some(true) => None,
        Some(false) => Some(fail(
            findings,
            &fields.network,
            format!(
                "the pod-network interface {} uses passtBinding, which KubeVirt {} does not know (v1.8.0 and newer migrate it)",
                iface.name,
                text(v)
            ),
            pod_network_message(v).into(),
        )),
        None => {
            findings.push(version_unknown(&fields.network, "passtBinding on the pod network is live migratable from KubeVirt v1.8.0 (and needs the PasstBinding feature gate)"));
            None
        }
    }
}

fn bridge_allowed(tpl: &VmTemplate, v: &KubeVirtVersion) -> bool {
    tpl.spec
        .template
        .metadata
        .annotations
        .contains_key(ALLOW_POD_BRIDGE_MIGRATION)
        && v.since(since::BRIDGE_ANNOTATION) != Some(false)
}

fn plugin_check(
    name: &str,
    iface: &Interface,
    facts: &Facts,
    fields: &Fields,
    findings: &mut Vec<Finding>,
) -> Option<FailedCheck> {
    let v = facts.kubevirt_version();
    let Some(config) = facts.kubevirt_config() else {
        findings.push(Finding::undecided(
            "NetworkBindingPluginUnknown",
            fields.network.clone(),
            format!("the pod-network interface {} uses the network binding plugin {name}; it is live migratable only if the KubeVirt CR registers it with a migration method, and the KubeVirt CR is not among the facts", iface.name),
            "supply the KubeVirt CR in the facts, or use masquerade on the pod network",
        ));
        return None;
    };
    if config.binding_plugins.get(name) == Some(&true) {
        return None;
    }
    Some(fail(
        findings,
        &fields.network,
        format!(
            "the pod-network interface {} uses the binding plugin {name}, which the KubeVirt CR does not register with a migration method",
            iface.name
        ),
        pod_network_message(v).into(),
    ))
}

fn fail(findings: &mut Vec<Finding>, field: &Text, detail: String, message: String) -> FailedCheck {
    findings.push(Finding::error(
        INTERFACE_NOT_LIVE_MIGRATABLE,
        field.clone(),
        detail,
        format!("use masquerade (or passtBinding on KubeVirt v1.8+) on the pod network, or bridge with the {ALLOW_POD_BRIDGE_MIGRATION} annotation HyperShift sets"),
    ));
    FailedCheck {
        reason: INTERFACE_NOT_LIVE_MIGRATABLE,
        message: VmiMessage::Fixed(message),
    }
}

pub fn version_unknown(field: &Text, what: &str) -> Finding {
    Finding::undecided(
        "KubeVirtVersionUnknown",
        field.clone(),
        format!("{what}; the infrastructure cluster's KubeVirt version is unknown"),
        "supply the KubeVirt CR (status.observedKubeVirtVersion) in the facts",
    )
}

/// The pod-network message of the VMI condition, by KubeVirt version (§N1); the newest
/// wording when the version is unknown.
fn pod_network_message(v: &KubeVirtVersion) -> &'static str {
    if v.since(since::PASST_BINDING) != Some(false) {
        "cannot migrate VMI which does not use masquerade or a migratable plugin to connect to the pod network"
    } else if v.since(since::PLUGIN_MESSAGE) == Some(true) {
        "cannot migrate VMI which does not use masquerade, bridge with kubevirt.io/allow-pod-bridge-network-live-migration VM annotation or a migratable plugin to connect to the pod network"
    } else if v.since(since::BRIDGE_ANNOTATION) == Some(true) {
        "cannot migrate VMI which does not use masquerade to connect to the pod network or bridge with kubevirt.io/allow-pod-bridge-network-live-migration VM annotation"
    } else {
        "cannot migrate VMI which does not use masquerade to connect to the pod network"
    }
}

pub fn text(v: &KubeVirtVersion) -> String {
    match v {
        KubeVirtVersion::Known(v) => format!("v{v}"),
        KubeVirtVersion::Unparsable(raw) => format!("{raw:?}"),
        KubeVirtVersion::Unknown => "(unknown version)".into(),
    }
}
