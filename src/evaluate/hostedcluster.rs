//! HostedCluster rules: the infra storage classes the KubeVirt CSI driver provisions guest
//! volumes on (docs/rules.md §S6, §S6, §6). Guest PVCs are hot-plugged into the node VMs; an RWO
//! guest PVC gets the infra class's first claim property set, and if that is not
//! ReadWriteMany the node VM is `DisksNotLiveMigratable` while the volume is attached.

use crate::facts::{ClassFacts, DefaultKind, Facts};
use crate::resources::hostedcluster::StorageDriverType;
use crate::resources::meta::{annotation, display_name};
use crate::resources::{HostedCluster, KUBEVIRT_PLATFORM, VM_JSONPATCH_ANNOTATION};

use super::condition;
use super::report::{Condition, Finding, Report, Verdict};
use super::storage::{DISKS_NOT_LIVE_MIGRATABLE, join_sets};
use super::vm;

const DRIVER: &str = "spec.platform.kubevirt.storageDriver";

/// Predicts whether guest volumes of `hc` will keep its nodes live migratable.
/// `nodepools` are the names of this HostedCluster's NodePools with what each contributes
/// to the condition ([`Report::hostedcluster_contribution`]), when known (docs/rules.md §H2).
pub fn evaluate(hc: &HostedCluster, facts: &Facts, nodepools: &[(String, Verdict)]) -> Report {
    let mut report = Report {
        api_version: "hypershift.openshift.io/v1beta1",
        kind: "HostedCluster",
        namespace: hc.metadata.namespace.clone(),
        name: display_name(&hc.metadata),
        verdict: Verdict::NotApplicable,
        condition: None,
        findings: Vec::new(),
    };
    if hc.spec.platform.type_ != KUBEVIRT_PLATFORM {
        return report;
    }
    let findings = &mut report.findings;
    if let Some(value) = annotation(&hc.metadata, VM_JSONPATCH_ANNOTATION)
        && let Err(e) = vm::parse_patch(value)
    {
        findings.push(Finding::blocking(
            "InvalidKubevirtVMJSONPatch",
            format!("metadata.annotations[{VM_JSONPATCH_ANNOTATION}]"),
            format!("the {VM_JSONPATCH_ANNOTATION} annotation {e}; HyperShift applies it to every NodePool's VMs and cannot build their templates"),
            "fix the JSON patch: an RFC 6902 array of operations",
        ));
    }
    let kubevirt = hc.spec.platform.kubevirt.clone().unwrap_or_default();
    let none = Facts::none();
    let infra = super::infra_facts(hc, facts, &none, "spec.platform.kubevirt.credentials", findings);

    let driver_type = kubevirt
        .storage_driver
        .as_ref()
        .and_then(|d| d.type_)
        .unwrap_or(StorageDriverType::Default);
    match driver_type {
        // §S6: no KubeVirt CSI in the guest, no hot-plugged infra volumes.
        StorageDriverType::None => {}
        StorageDriverType::Default => check_default_class(infra, findings),
        StorageDriverType::Manual => {
            let mappings = kubevirt
                .storage_driver
                .as_ref()
                .and_then(|d| d.manual.as_ref())
                .and_then(|m| m.storage_class_mapping.as_deref())
                .unwrap_or_default();
            for (i, m) in mappings.iter().enumerate() {
                let field = format!("{DRIVER}.manual.storageClassMapping[{i}].infraStorageClassName");
                check_mapping(
                    infra,
                    &m.infra_storage_class_name,
                    &m.guest_storage_class_name,
                    &field,
                    findings,
                );
            }
        }
    }

    report.verdict = Report::verdict_of(findings);
    report.condition = hc_condition(report.verdict, findings, nodepools);
    report
}

/// §S6 `Default`: guest PVCs of `kubevirt-csi-infra-default` land on the infra default
/// class (virt default, then Kubernetes default, §S3).
fn check_default_class(facts: &Facts, findings: &mut Vec<Finding>) {
    let field = format!("{DRIVER}.type");
    if !facts.storage_known() {
        findings.push(no_facts(facts, &field, "the infrastructure default StorageClass"));
        return;
    }
    let Some((class, kind)) = facts.virt_default_class() else {
        findings.push(Finding::blocking(
            "NoInfraDefaultStorageClass",
            field.to_owned(),
            format!(
                "storageDriver Default maps guest volumes to the infrastructure cluster's default class, but no class is annotated {}=true or {}=true; guest PVCs cannot be provisioned",
                DefaultKind::Virt.annotation(),
                DefaultKind::Kubernetes.annotation()
            ),
            default_fix(facts),
        ));
        return;
    };
    let what = format!(
        "the infrastructure default class {} (annotated {}=true)",
        class.name,
        kind.annotation()
    );
    judge_class(
        class,
        &what,
        "kubevirt-csi-infra-default",
        &field,
        &default_fix(facts),
        findings,
    );
}

/// §S6 `Manual`: each mapping's infra class.
fn check_mapping(facts: &Facts, infra: &str, guest: &str, field: &str, findings: &mut Vec<Finding>) {
    if !facts.storage_known() {
        findings.push(no_facts(facts, field, &format!("infra StorageClass {infra}")));
        return;
    }
    let Some(class) = facts.class(infra) else {
        findings.push(Finding::blocking(
            "InfraStorageClassNotFound",
            field.to_owned(),
            format!("guest class {guest} maps to infra StorageClass {infra}, which does not exist on the infrastructure cluster; guest PVCs of {guest} cannot be provisioned (and storageClassMapping is immutable once created)"),
            mapping_fix(facts),
        ));
        return;
    };
    judge_class(
        class,
        &format!("infra StorageClass {infra}"),
        guest,
        field,
        &mapping_fix(facts),
        findings,
    );
}

/// An RWO guest PVC gets the class's first claim property set (§S6, §S3 rule 1).
fn judge_class(
    class: &ClassFacts,
    what: &str,
    guest: &str,
    field: &str,
    fix: &str,
    findings: &mut Vec<Finding>,
) {
    use crate::facts::CapabilitySource as S;
    match class.source {
        S::Unknown => findings.push(Finding::undecided(
            "UnknownProvisioner",
            field.to_owned(),
            format!("{what} uses provisioner {}, which has no StorageProfile claim property sets and is not in CDI's capability table; whether guest volumes get ReadWriteMany is unknown", class.provisioner),
            format!("add spec.claimPropertySets to StorageProfile {}, or {fix}", class.name),
        )),
        S::ProfileEmpty => findings.push(Finding::blocking(
            "NoClaimPropertySets",
            field.to_owned(),
            format!("{what} has a StorageProfile without claimPropertySets (unrecognized provisioner {}); RWO guest PVCs of {guest} fail with \"no accessMode specified in StorageProfile {}\"", class.provisioner, class.name),
            format!("add spec.claimPropertySets to StorageProfile {}, or {fix}", class.name),
        )),
        S::Builtin | S::ProfileSpec | S::ProfileStatus => {
            if class.source == S::Builtin {
                findings.push(Finding::info(
                    "BuiltinStorageCapabilities",
                    field.to_owned(),
                    format!("no CDI StorageProfile for class {}; used CDI's built-in capabilities for provisioner {}: [{}]", class.name, class.provisioner, join_sets(&class.sets)),
                    "none needed; a StorageProfile with claimPropertySets overrides the table",
                ));
            }
            if !class.first_set_rwx {
                findings.push(Finding::error(
                    DISKS_NOT_LIVE_MIGRATABLE,
                    field.to_owned(),
                    format!(
                        "guest PVCs of class {guest} are provisioned on {what}, whose first claim property set is [{}]: an RWO guest volume becomes a non-shared infra PVC, and every node VM it is attached to stops being live migratable",
                        class.sets.first().map(ToString::to_string).unwrap_or_default()
                    ),
                    fix.to_owned(),
                ));
            }
        }
    }
}

fn no_facts(facts: &Facts, field: &str, what: &str) -> Finding {
    let why = facts
        .unavailable_reason()
        .map(|r| format!("the cluster facts are unusable ({r})"))
        .unwrap_or_else(|| "no StorageClasses of the infrastructure cluster are known".to_owned());
    Finding::undecided(
        "StorageFactsMissing",
        field.to_owned(),
        format!("{why}, so whether {what} offers ReadWriteMany cannot be decided"),
        "supply the infrastructure cluster's StorageClasses and StorageProfiles (`--facts`), or run against the cluster",
    )
}

fn rwx_class(facts: &Facts) -> String {
    match facts.rwx_suggestions() {
        None => {
            "a class whose StorageProfile lists ReadWriteMany first (e.g. Ceph RBD, CephFS, NFS)".to_owned()
        }
        Some(classes) => format!("an RWX-capable class such as {classes}"),
    }
}

/// Fix for a `Manual` mapping entry.
fn mapping_fix(facts: &Facts) -> String {
    format!(
        "map to {} instead; storageClassMapping is immutable, so decide before creating the HostedCluster",
        rwx_class(facts)
    )
}

/// Fix for `Default`: map explicitly, or make an RWX class the virt default.
fn default_fix(facts: &Facts) -> String {
    format!(
        "use storageDriver.type Manual mapping to {} (immutable once set), or annotate an RWX-capable infra class {}=true",
        rwx_class(facts),
        DefaultKind::Virt.annotation()
    )
}

/// §H2: `True` unless a NodePool of this cluster is not migratable; we also predict
/// `False` when the storage mapping would make any node with an attached volume so.
fn hc_condition(
    verdict: Verdict,
    findings: &[Finding],
    nodepools: &[(String, Verdict)],
) -> Option<Condition> {
    let mut bad: Vec<&str> = nodepools
        .iter()
        .filter(|(_, v)| *v == Verdict::NotMigratable)
        .map(|(n, _)| n.as_str())
        .collect();
    let storage_errors = findings.iter().any(|f| f.reason == DISKS_NOT_LIVE_MIGRATABLE);
    if storage_errors {
        // NodePools whose VMs never start have no machines to attach volumes to.
        bad = nodepools
            .iter()
            .filter(|(_, v)| *v != Verdict::NotApplicable)
            .map(|(n, _)| n.as_str())
            .collect();
    }
    bad.sort_unstable();
    bad.dedup();
    match verdict {
        Verdict::NotApplicable => None,
        _ if !bad.is_empty() => Some(condition::hostedcluster_not_migratable(&bad.join(", "))),
        Verdict::NotMigratable if storage_errors => Some(condition::hostedcluster_not_migratable(
            "(every NodePool whose nodes attach a guest volume of an affected storage class)",
        )),
        Verdict::Unknown => Some(Condition::unknown(
            findings
                .iter()
                .filter(|f| f.effect == super::report::Effect::Undecided)
                .map(|f| f.message.as_ref())
                .collect::<Vec<_>>()
                .join("; "),
        )),
        Verdict::NotMigratable => None,
        Verdict::Migratable => Some(Condition::all_is_well()),
    }
}
