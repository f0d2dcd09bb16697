//! Storage: which class a DataVolume lands on, which access and volume modes CDI renders
//! for it, whether the storage driver provisions that, and whether the resulting PVC is
//! shared (docs/rules.md §S1–§S6).

use crate::facts::{CapabilitySource, ClassFacts, DefaultKind, Facts};
use crate::resources::{AccessMode, ClaimPropertySet, VolumeMode};

use super::report::Finding;
use super::vm::StorageRequest;

/// KubeVirt's disk reason (docs/rules.md §K2).
pub const DISKS_NOT_LIVE_MIGRATABLE: &str = "DisksNotLiveMigratable";

/// Which DataVolume API the request uses (docs/rules.md §R2: HyperShift uses `storage`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    Storage,
    Pvc,
}

/// The field paths a user edits for each part of a storage request, and the words to
/// name the volume in messages.
#[derive(Clone, Debug)]
pub struct RequestFields {
    /// How messages name the volume, e.g. "the root volume".
    pub volume: Text,
    /// The DataVolume template name; CAPK names each machine's PVC `<machine>-<dv_name>`.
    pub dv_name: Text,
    pub access_modes: Text,
    pub storage_class: Text,
    pub volume_mode: Text,
}

pub use super::report::Text;

/// What the judge concluded about one disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskOutcome {
    /// The PVC will be ReadWriteMany.
    Shared,
    /// The PVC will exist but is not ReadWriteMany: `DisksNotLiveMigratable`.
    NotShared,
    /// The PVC cannot be created or provisioned.
    Blocked,
    /// The facts do not decide.
    Undecided,
}

/// How the class was chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chosen {
    Explicit,
    Default(DefaultKind),
}

/// Judges one DataVolume request against the facts, appending findings
/// (docs/rules.md §S2–§S5).
pub fn judge_request(
    req: &StorageRequest,
    api: Api,
    facts: &Facts,
    fields: &RequestFields,
    findings: &mut Vec<Finding>,
) -> DiskOutcome {
    if let Some(blocked) = invalid_request(req, api, fields, findings) {
        return blocked;
    }
    let explicit = !req.access_modes.is_empty();
    // Without facts, an explicit request without ReadWriteMany is already decided (§S4).
    if explicit && !req.access_modes.contains(&AccessMode::ReadWriteMany) && !facts.storage_known() {
        findings.push(explicit_not_shared(req, fields, facts));
        return DiskOutcome::NotShared;
    }
    let (class, chosen) = match resolve_class(req, api, facts, fields, findings) {
        Ok(found) => found,
        Err(o) => return o,
    };
    let via = match chosen {
        Chosen::Explicit => format!("StorageClass {}", class.name),
        Chosen::Default(kind) => format!(
            "default StorageClass {} (annotated {}=true)",
            class.name,
            kind.annotation()
        ),
    };
    if class.source == CapabilitySource::Builtin {
        findings.push(builtin_note(class, facts, fields));
    }
    let rendered = if api == Api::Pvc || explicit {
        Rendered {
            access_modes: req.access_modes.clone(),
            volume_mode: req
                .volume_mode
                .unwrap_or_else(|| cdi_volume_mode(&class.sets, &req.access_modes)),
        }
    } else {
        match render_from_profile(req, class, &via, fields, facts, findings) {
            Ok(r) => r,
            Err(o) => return o,
        }
    };
    if let Some(o) = check_driver(req, &rendered, class, &via, fields, facts, findings) {
        return o;
    }
    if rendered.access_modes.contains(&AccessMode::ReadWriteMany) {
        return DiskOutcome::Shared;
    }
    findings.push(if explicit {
        explicit_not_shared(req, fields, facts)
    } else {
        rendered_not_shared(&rendered, &via, fields, facts)
    });
    DiskOutcome::NotShared
}

/// The access and volume mode the PVC gets.
struct Rendered {
    access_modes: Vec<AccessMode>,
    volume_mode: VolumeMode,
}

/// Requests Kubernetes or CDI refuse whatever the class (§S2).
fn invalid_request(
    req: &StorageRequest,
    api: Api,
    fields: &RequestFields,
    findings: &mut Vec<Finding>,
) -> Option<DiskOutcome> {
    let vol = &fields.volume;
    // `ReadOnly` passes the NodePool CRD but is not a Kubernetes access mode, so the PVC
    // (and the VM) is never created.
    if req.access_modes.contains(&AccessMode::ReadOnly) {
        findings.push(Finding::blocking(
            "InvalidAccessMode",
            fields.access_modes.clone(),
            format!("{vol} requests access mode ReadOnly, which the NodePool API accepts but Kubernetes does not (it has ReadOnlyMany); the PVC would be rejected and no VM created"),
            format!("set {} to [ReadWriteMany]", in_fix(&fields.access_modes, "accessModes")),
        ));
        return Some(DiskOutcome::Blocked);
    }
    if api == Api::Pvc && req.access_modes.is_empty() {
        findings.push(Finding::blocking(
            "MissingAccessModes",
            fields.access_modes.clone(),
            format!("{vol} uses the DataVolume `pvc` API without accessModes; the PVC is invalid"),
            format!(
                "set {} to [ReadWriteMany]",
                in_fix(&fields.access_modes, "accessModes")
            ),
        ));
        return Some(DiskOutcome::Blocked);
    }
    None
}

/// CDI `getDefaultVolumeMode`: the volume mode of the first claim property set that
/// contains any requested access mode; none matches ⇒ no volume mode, i.e. Filesystem.
/// The profile only picks the volume mode, it never refuses explicit access modes (§S4).
pub fn cdi_volume_mode(sets: &[ClaimPropertySet], requested: &[AccessMode]) -> VolumeMode {
    sets.iter()
        .find(|s| s.access_modes.iter().any(|m| requested.contains(m)))
        .and_then(|s| s.volume_mode)
        .unwrap_or(VolumeMode::Filesystem)
}

/// CDI rules for a request without access modes (§S3): the first claim property set, or
/// with only a volume mode the access modes of the first set with that volume mode.
fn render_from_profile(
    req: &StorageRequest,
    class: &ClassFacts,
    via: &str,
    fields: &RequestFields,
    facts: &Facts,
    findings: &mut Vec<Finding>,
) -> Result<Rendered, DiskOutcome> {
    let sets = &class.sets;
    let found = match req.volume_mode {
        Some(mode) => sets
            .iter()
            .find(|s| s.volume_mode == Some(mode) && !s.access_modes.is_empty())
            .map(|s| (s.access_modes.clone(), mode)),
        None => sets.first().filter(|s| !s.access_modes.is_empty()).map(|s| {
            (
                s.access_modes.clone(),
                s.volume_mode.unwrap_or(VolumeMode::Filesystem),
            )
        }),
    };
    if let Some((access_modes, volume_mode)) = found {
        return Ok(Rendered {
            access_modes,
            volume_mode,
        });
    }
    findings.push(
        match (class.source == CapabilitySource::Unknown, req.volume_mode) {
            (true, _) => unknown_capabilities(class, via, fields, facts),
            (false, Some(mode)) => no_matching_access_mode(class, via, mode, fields),
            (false, None) => no_claim_property_sets(class, fields, facts),
        },
    );
    Err(if class.source == CapabilitySource::Unknown {
        DiskOutcome::Undecided
    } else {
        DiskOutcome::Blocked
    })
}

/// Whether the storage driver provisions the PVC (§S4): judged by CDI's built-in entry
/// for the provisioner, never by an admin-narrowed StorageProfile. `ReadWriteOncePod` is
/// judged like `ReadWriteOnce` (CDI's table has no such entries).
fn check_driver(
    req: &StorageRequest,
    rendered: &Rendered,
    class: &ClassFacts,
    via: &str,
    fields: &RequestFields,
    facts: &Facts,
    findings: &mut Vec<Finding>,
) -> Option<DiskOutcome> {
    let vm = rendered.volume_mode;
    let Some(caps) = class.driver else {
        // Unknown driver: only a ReadWriteMany request leaves the question open.
        let rwx = rendered.access_modes.contains(&AccessMode::ReadWriteMany);
        if rwx && !req.access_modes.is_empty() {
            findings.push(unknown_capabilities(class, via, fields, facts));
            return Some(DiskOutcome::Undecided);
        }
        return None;
    };
    let supported = |m: &AccessMode| {
        let m = if *m == AccessMode::ReadWriteOncePod {
            AccessMode::ReadWriteOnce
        } else {
            *m
        };
        caps.contains(&(m, vm))
    };
    let refused: Vec<AccessMode> = rendered
        .access_modes
        .iter()
        .copied()
        .filter(|m| !supported(m))
        .collect();
    if refused.is_empty() {
        return None;
    }
    let offers: Vec<String> = caps.iter().map(|(a, v)| format!("{a} {v}")).collect();
    findings.push(Finding::blocking(
        "AccessModesNotSupported",
        fields.access_modes.clone(),
        format!(
            "{} gets a [{}] {vm} PVC on {via}, but its storage driver {} does not provision [{}] {vm} (CDI's capabilities for it: [{}]); the PVC stays Pending and no VM starts",
            fields.volume,
            join(&rendered.access_modes),
            class.provisioner,
            join(&refused),
            offers.join("; "),
        ),
        rwx_fix(fields, facts),
    ));
    Some(DiskOutcome::Blocked)
}

fn builtin_note(class: &ClassFacts, facts: &Facts, fields: &RequestFields) -> Finding {
    Finding::info(
        "BuiltinStorageCapabilities",
        fields.storage_class.clone(),
        format!(
            "no CDI StorageProfile for class {}{}; used CDI's built-in capabilities for provisioner {}: [{}]",
            class.name,
            if facts.profiles_known() {
                " (not reconciled yet?)"
            } else {
                " (StorageProfiles were not among the facts)"
            },
            class.provisioner,
            join_sets(&class.sets),
        ),
        "none needed; a StorageProfile with claimPropertySets overrides the table",
    )
}

fn explicit_not_shared(req: &StorageRequest, fields: &RequestFields, facts: &Facts) -> Finding {
    not_shared(
        fields,
        facts,
        format!(
            "{} requests access modes [{}]; KubeVirt live migrates a VM only when every PVC is ReadWriteMany, so each machine's PVC <machine>-{} will report \"is not shared\"",
            fields.volume,
            join(&req.access_modes),
            fields.dv_name,
        ),
        &fields.access_modes,
    )
}

fn rendered_not_shared(rendered: &Rendered, via: &str, fields: &RequestFields, facts: &Facts) -> Finding {
    not_shared(
        fields,
        facts,
        format!(
            "{} lands on {via} (CDI renders [{}] {} from the class's claim property sets): its PVC will be [{}], not ReadWriteMany, so KubeVirt reports each machine's PVC <machine>-{} as not shared",
            fields.volume,
            join(&rendered.access_modes),
            rendered.volume_mode,
            join(&rendered.access_modes),
            fields.dv_name,
        ),
        &fields.storage_class,
    )
}

fn no_matching_access_mode(
    class: &ClassFacts,
    via: &str,
    mode: VolumeMode,
    fields: &RequestFields,
) -> Finding {
    Finding::blocking(
        "NoMatchingAccessMode",
        fields.volume_mode.clone(),
        format!(
            "{} requests volumeMode {mode} without accessModes, and the StorageProfile of {via} has no claim property set with volumeMode {mode} (CDI: \"no matching accessMode specified in StorageProfile {}\")",
            fields.volume, class.name
        ),
        format!(
            "remove {} or pick a class that offers {mode}; for live migration use a class with ReadWriteMany",
            in_fix(&fields.volume_mode, "volumeMode")
        ),
    )
}

fn no_claim_property_sets(class: &ClassFacts, fields: &RequestFields, facts: &Facts) -> Finding {
    Finding::blocking(
        "NoClaimPropertySets",
        fields.storage_class.clone(),
        format!(
            "{} requests no access modes and the StorageProfile {} has no claimPropertySets (unrecognized provisioner {}); CDI fails with \"no accessMode specified in StorageProfile {}\" and the disk is never created",
            fields.volume, class.name, class.provisioner, class.name
        ),
        format!(
            "add spec.claimPropertySets (e.g. [{{accessModes: [ReadWriteMany], volumeMode: Block}}] if the storage supports it) to StorageProfile {}, or {}",
            class.name,
            rwx_fix(fields, facts)
        ),
    )
}

/// §S3: explicit class, else the virt default, else the Kubernetes default (the `pvc`
/// API only gets the Kubernetes default).
fn resolve_class<'f>(
    req: &StorageRequest,
    api: Api,
    facts: &'f Facts,
    fields: &RequestFields,
    findings: &mut Vec<Finding>,
) -> Result<(&'f ClassFacts, Chosen), DiskOutcome> {
    if let Some(name) = req.storage_class_name.as_deref() {
        return explicit_class(name, facts, fields, findings);
    }
    default_class(req, api, facts, fields, findings)
}

/// §S2, §S3: a named class must exist (and `""` cannot be provisioned).
fn explicit_class<'f>(
    name: &str,
    facts: &'f Facts,
    fields: &RequestFields,
    findings: &mut Vec<Finding>,
) -> Result<(&'f ClassFacts, Chosen), DiskOutcome> {
    let vol = &fields.volume;
    if name.is_empty() {
        // §S3: "" only matches pre-existing PVs; invalid for dynamic provisioning.
        findings.push(Finding::blocking(
            "EmptyStorageClassName",
            fields.storage_class.clone(),
            format!("{vol} sets an empty storage class name, which only binds pre-existing PersistentVolumes; CDI cannot provision the disk"),
            format!("remove {} to use the default class, or set it to an RWX-capable class", in_fix(&fields.storage_class, "storageClassName")),
        ));
        return Err(DiskOutcome::Blocked);
    }
    if !facts.storage_known() {
        findings.push(no_facts(
            facts,
            fields,
            format!("whether StorageClass {name} offers ReadWriteMany"),
        ));
        return Err(DiskOutcome::Undecided);
    }
    match facts.class(name) {
        Some(c) => Ok((c, Chosen::Explicit)),
        None => {
            findings.push(Finding::blocking(
                "StorageClassNotFound",
                fields.storage_class.clone(),
                format!("{vol} uses StorageClass {name}, which does not exist on the infrastructure cluster; the disk cannot be provisioned"),
                rwx_fix(fields, facts),
            ));
            Err(DiskOutcome::Blocked)
        }
    }
}

/// §S3: without a class, the newest virt default (the `pvc` API: the Kubernetes default);
/// none at all blocks, unless explicit access modes might bind a pre-existing PV.
fn default_class<'f>(
    req: &StorageRequest,
    api: Api,
    facts: &'f Facts,
    fields: &RequestFields,
    findings: &mut Vec<Finding>,
) -> Result<(&'f ClassFacts, Chosen), DiskOutcome> {
    let vol = &fields.volume;
    if !facts.storage_known() {
        findings.push(no_facts(
            facts,
            fields,
            "which default StorageClass the disk lands on".into(),
        ));
        return Err(DiskOutcome::Undecided);
    }
    let default = match api {
        Api::Storage => facts.virt_default_class(),
        Api::Pvc => facts.k8s_default_class().map(|c| (c, DefaultKind::Kubernetes)),
    };
    match default {
        Some((c, kind)) => Ok((c, Chosen::Default(kind))),
        None if !req.access_modes.is_empty() => {
            // §S3 rule 5: only a matching pre-existing PV could bind.
            findings.push(Finding::undecided(
                "NoDefaultStorageClass",
                fields.storage_class.clone(),
                format!("{vol} names no storage class and the infrastructure cluster has no default class; only a matching pre-existing PersistentVolume could bind"),
                rwx_fix(fields, facts),
            ));
            Err(DiskOutcome::Undecided)
        }
        None => {
            findings.push(Finding::blocking(
                "NoDefaultStorageClass",
                fields.storage_class.clone(),
                format!(
                    "{vol} names no storage class and no class is annotated {}=true or {}=true; CDI fails with ErrStorageClassNotFound and the disk is never created",
                    DefaultKind::Virt.annotation(),
                    DefaultKind::Kubernetes.annotation()
                ),
                rwx_fix(fields, facts),
            ));
            Err(DiskOutcome::Blocked)
        }
    }
}

fn not_shared(fields: &RequestFields, facts: &Facts, message: String, field: &Text) -> Finding {
    Finding::error(
        DISKS_NOT_LIVE_MIGRATABLE,
        field.clone(),
        message,
        rwx_fix(fields, facts),
    )
}

fn unknown_capabilities(class: &ClassFacts, via: &str, fields: &RequestFields, facts: &Facts) -> Finding {
    Finding::undecided(
        "UnknownProvisioner",
        fields.storage_class.clone(),
        format!(
            "{} lands on {via} with provisioner {}, which has no StorageProfile claim property sets and is not in CDI's capability table; whether it offers ReadWriteMany is unknown",
            fields.volume, class.provisioner
        ),
        format!(
            "add spec.claimPropertySets listing the modes the storage supports to StorageProfile {}, or {}",
            class.name,
            rwx_fix(fields, facts)
        ),
    )
}

fn no_facts(facts: &Facts, fields: &RequestFields, question: String) -> Finding {
    let why = facts
        .unavailable_reason()
        .map(|r| format!("the cluster facts are unusable ({r})"))
        .unwrap_or_else(|| "no StorageClasses of the infrastructure cluster are known".to_owned());
    Finding::undecided(
        "StorageFactsMissing",
        fields.storage_class.clone(),
        format!("{why}, so {question} cannot be decided for {}", fields.volume),
        "supply the infrastructure cluster's StorageClasses and StorageProfiles (`--facts`), or run against the cluster",
    )
}

/// A fix that names an RWX-capable class from the facts when one exists.
pub fn rwx_fix(fields: &RequestFields, facts: &Facts) -> String {
    let mut fix = String::with_capacity(160);
    fix.push_str("set ");
    push_in_fix(&mut fix, &fields.storage_class, "storageClassName");
    match facts.rwx_suggestions() {
        None => fix.push_str(" to an RWX-capable class (e.g. Ceph RBD, CephFS, NFS)"),
        Some(classes) => {
            fix.push_str(" to an RWX-capable class such as ");
            fix.push_str(classes);
        }
    }
    fix.push_str(" and drop ");
    push_in_fix(&mut fix, &fields.access_modes, "accessModes");
    fix.push_str(" (or set [ReadWriteMany])");
    fix
}

/// How a fix names a field: relative to `spec.platform.kubevirt` for NodePool fields (the
/// finding's `field` has the full path), or the patch's own field for JSON-patched ones.
pub fn in_fix(field: &str, patched_leaf: &str) -> String {
    let mut out = String::new();
    push_in_fix(&mut out, field, patched_leaf);
    out
}

/// [`in_fix`], appended to `out`.
fn push_in_fix(out: &mut String, field: &str, patched_leaf: &str) {
    match field.strip_prefix("spec.platform.kubevirt.") {
        Some(rel) => out.push_str(rel),
        None => {
            out.push_str(patched_leaf);
            out.push_str(" in the JSON patch");
        }
    }
}

pub fn join(modes: &[AccessMode]) -> String {
    let mut out = String::new();
    for (i, m) in modes.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(m.as_str());
    }
    out
}

pub fn join_sets(sets: &[ClaimPropertySet]) -> String {
    sets.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
