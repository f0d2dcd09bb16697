//! The facts snapshot: an immutable, pre-indexed view of everything the rules read about
//! the cluster that runs the VMs. Built once per change (from files or reflector caches),
//! shared behind an `Arc`, read by every evaluation without locks or copies.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::jiff::Timestamp;

use crate::cdi::{self, Capability};
use crate::resources::{ClaimPropertySet, HostedCluster, KubeVirt, StorageProfile};

/// `storageclass.kubevirt.io/is-default-virt-class` (docs/rules.md §S3).
pub const ANN_DEFAULT_VIRT_CLASS: &str = "storageclass.kubevirt.io/is-default-virt-class";
/// `storageclass.kubernetes.io/is-default-class` (docs/rules.md §S3).
pub const ANN_DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";

/// Where a class's claim property sets come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CapabilitySource {
    /// The StorageProfile's `status.claimPropertySets` (what CDI uses, docs/rules.md §S1).
    ProfileStatus,
    /// The StorageProfile's `spec.claimPropertySets`, not yet copied to status (§S1 item 1).
    ProfileSpec,
    /// The StorageProfile exists but has no claimPropertySets: CDI does not know the
    /// provisioner (§S1 item 4). DataVolumes that request nothing cannot be rendered.
    ProfileEmpty,
    /// No StorageProfile: CDI's built-in table for the provisioner (§S1 item 2).
    Builtin,
    /// No StorageProfile and CDI's table does not know the provisioner.
    Unknown,
}

/// What the rules know about one StorageClass.
#[derive(Clone, Debug)]
pub struct ClassFacts {
    pub name: String,
    pub provisioner: String,
    pub source: CapabilitySource,
    /// Claim property sets in CDI's order (first = what a DataVolume gets by default).
    pub sets: Vec<ClaimPropertySet>,
    /// Whether `sets[0]` contains ReadWriteMany (what an RWO guest PVC or a root volume
    /// that requests nothing ends up with, docs/rules.md §S3).
    pub first_set_rwx: bool,
    /// What the storage driver itself provisions: CDI's built-in entry for the class's
    /// provisioner and parameters, whatever the StorageProfile says (docs/rules.md §S4);
    /// `None` when CDI's table does not describe the driver.
    pub driver: Option<&'static [Capability]>,
}

impl ClassFacts {
    /// True when the sets are known (profile or built-in table) and non-empty.
    pub fn sets_known(&self) -> bool {
        !self.sets.is_empty()
    }
}

/// Facts about an external infrastructure cluster (HostedCluster `credentials`, docs/rules.md §S6).
#[derive(Clone, Debug)]
pub enum InfraFacts {
    Ready(Arc<Facts>),
    /// Why there are no facts (Secret missing, RBAC forbids, not synced yet…).
    Unavailable(String),
}

/// Parsed `status.observedKubeVirtVersion` of the infra KubeVirt CR (docs/rules.md §K1).
///
/// Rules compare against the first upstream tag that carries a behaviour (an
/// `X.Y.0-alpha.N`/`-beta.N`/`-rc.N` pre-release or a release), with semver precedence.
/// A `git describe` suffix (`v1.6.0-12-gabc`), build metadata (`+...`) or any other
/// suffix is dropped: such a build has at least the behaviour of the tag it names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum KubeVirtVersion {
    #[default]
    Unknown,
    Known(semver::Version),
    /// Present but not a version we can parse (kept for the message).
    Unparsable(String),
}

impl KubeVirtVersion {
    pub fn parse(raw: &str) -> Self {
        let trimmed = raw.trim().trim_start_matches('v');
        let Ok(mut v) = semver::Version::parse(trimmed) else {
            return Self::Unparsable(raw.to_owned());
        };
        v.build = semver::BuildMetadata::EMPTY;
        v.pre = upstream_pre_release(v.pre.as_str());
        Self::Known(v)
    }

    /// `Some(true)` if known and at least the upstream tag `tag` (e.g. `"1.8.0-rc.0"`),
    /// `None` when unknown.
    pub fn since(&self, tag: &str) -> Option<bool> {
        // The tag is parsed only for a known version (rules ask this many times per object).
        let Self::Known(v) = self else { return None };
        semver::Version::parse(tag).ok().map(|t| *v >= t)
    }

    /// `Some(true)` if known and `>= major.minor.0` (the release, not its pre-releases).
    pub fn at_least(&self, major: u64, minor: u64) -> Option<bool> {
        match self {
            Self::Known(v) => Some(*v >= semver::Version::new(major, minor, 0)),
            _ => None,
        }
    }
}

/// Keeps `alpha.N`, `beta.N`, `rc.N` (KubeVirt's pre-release tags), drops the rest.
fn upstream_pre_release(pre: &str) -> semver::Prerelease {
    let mut parts = pre.splitn(2, '.');
    let (kind, rest) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let number: String = rest.chars().take_while(char::is_ascii_digit).collect();
    if matches!(kind, "alpha" | "beta" | "rc") && !number.is_empty() {
        semver::Prerelease::new(&format!("{kind}.{number}")).unwrap_or(semver::Prerelease::EMPTY)
    } else {
        semver::Prerelease::EMPTY
    }
}

/// What the rules read from the infra KubeVirt CR's `spec.configuration` (§K1, §N1).
#[derive(Clone, Debug, Default)]
pub struct KubeVirtConfig {
    pub feature_gates: Vec<String>,
    pub disabled_feature_gates: Vec<String>,
    /// Network binding plugins, with whether each declares a migration method.
    pub binding_plugins: BTreeMap<String, bool>,
    pub default_architecture: Option<String>,
}

/// Everything the evaluator may read about the cluster. Cheap to share (`Arc<Facts>`).
#[derive(Clone, Debug, Default)]
pub struct Facts {
    classes: HashMap<String, ClassFacts>,
    virt_default: Option<String>,
    k8s_default: Option<String>,
    storage_known: bool,
    profiles_known: bool,
    kubevirt_version: KubeVirtVersion,
    kubevirt_config: Option<KubeVirtConfig>,
    hosted_clusters: HashMap<(String, String), Arc<HostedCluster>>,
    infra: HashMap<(String, String), InfraFacts>,
    /// `a or b or c`, empty without any.
    rwx_suggestions: String,
    unavailable: Option<String>,
}

impl Facts {
    /// No facts at all: every rule that needs the cluster answers `Unknown`.
    pub fn none() -> Self {
        Self::default()
    }

    pub fn builder() -> FactsBuilder {
        FactsBuilder::default()
    }

    /// Whether StorageClasses are known (given as files or synced from the cluster)
    /// and fresh enough to decide on.
    pub fn storage_known(&self) -> bool {
        self.storage_known && self.unavailable.is_none()
    }

    /// Whether CDI StorageProfiles were part of the facts (CDI installed).
    pub fn profiles_known(&self) -> bool {
        self.profiles_known
    }

    /// Why the facts cannot be used (e.g. stale past the bound), if so.
    pub fn unavailable_reason(&self) -> Option<&str> {
        self.unavailable.as_deref()
    }

    pub fn class(&self, name: &str) -> Option<&ClassFacts> {
        self.classes.get(name)
    }

    pub fn class_count(&self) -> usize {
        self.classes.len()
    }

    /// The class CDI picks for a VM disk without `storageClassName`: the newest virt-default
    /// class, else the newest Kubernetes default class (docs/rules.md §S3).
    pub fn virt_default_class(&self) -> Option<(&ClassFacts, DefaultKind)> {
        if let Some(c) = self.virt_default.as_deref().and_then(|n| self.classes.get(n)) {
            return Some((c, DefaultKind::Virt));
        }
        self.k8s_default_class().map(|c| (c, DefaultKind::Kubernetes))
    }

    /// The Kubernetes default class (what a plain PVC without a class gets).
    pub fn k8s_default_class(&self) -> Option<&ClassFacts> {
        self.k8s_default.as_deref().and_then(|n| self.classes.get(n))
    }

    pub fn kubevirt_version(&self) -> &KubeVirtVersion {
        &self.kubevirt_version
    }

    /// The infra KubeVirt CR's configuration, when the CR is among the facts.
    pub fn kubevirt_config(&self) -> Option<&KubeVirtConfig> {
        self.kubevirt_config.as_ref()
    }

    pub fn hosted_cluster(&self, namespace: &str, name: &str) -> Option<&HostedCluster> {
        self.hosted_clusters
            .get(&(namespace.to_owned(), name.to_owned()))
            .map(Arc::as_ref)
    }

    pub fn hosted_clusters(&self) -> impl Iterator<Item = &HostedCluster> {
        self.hosted_clusters.values().map(Arc::as_ref)
    }

    /// Facts of the external infra cluster of HostedCluster `namespace/name`, if any were supplied.
    pub fn infra(&self, namespace: &str, name: &str) -> Option<&InfraFacts> {
        self.infra.get(&(namespace.to_owned(), name.to_owned()))
    }

    /// Up to three classes whose first claim property set has ReadWriteMany (what a volume
    /// that requests nothing gets), for fix suggestions: sorted by name, joined with ` or `
    /// (built once with the facts, used by every fix).
    pub fn rwx_suggestions(&self) -> Option<&str> {
        Some(self.rwx_suggestions.as_str()).filter(|s| !s.is_empty())
    }

    /// A copy marked unusable: rules that need facts answer `Unknown` with `reason`
    /// (used when the cached facts are older than the staleness bound).
    pub fn mark_unavailable(&self, reason: String) -> Self {
        Self {
            unavailable: Some(reason),
            ..self.clone()
        }
    }
}

/// How the class of a volume without `storageClassName` was chosen (docs/rules.md §S3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefaultKind {
    Virt,
    Kubernetes,
}

impl DefaultKind {
    pub fn annotation(self) -> &'static str {
        match self {
            Self::Virt => ANN_DEFAULT_VIRT_CLASS,
            Self::Kubernetes => ANN_DEFAULT_CLASS,
        }
    }
}

#[derive(Clone, Debug)]
struct RawClass {
    provisioner: String,
    /// CDI's built-in capabilities for the provisioner and parameters.
    driver: Option<&'static [Capability]>,
    created: Option<Timestamp>,
    virt_default: bool,
    k8s_default: bool,
}

/// Collects objects, then indexes them into a [`Facts`].
#[derive(Default, Debug)]
pub struct FactsBuilder {
    classes: BTreeMap<String, RawClass>,
    profiles: BTreeMap<String, ProfileSets>,
    storage_known: bool,
    profiles_known: bool,
    kubevirt_versions: Vec<String>,
    kubevirt_config: Option<KubeVirtConfig>,
    hosted_clusters: HashMap<(String, String), Arc<HostedCluster>>,
    infra: HashMap<(String, String), InfraFacts>,
}

impl FactsBuilder {
    /// Declares the StorageClass list known even if it is empty (a synced cache).
    pub fn storage_classes_known(mut self) -> Self {
        self.storage_known = true;
        self
    }

    /// Declares the StorageProfile list known even if it is empty (CDI installed).
    pub fn storage_profiles_known(mut self) -> Self {
        self.profiles_known = true;
        self
    }

    pub fn storage_class(mut self, sc: &StorageClass) -> Self {
        self.add_storage_class(sc);
        self
    }

    pub fn add_storage_class(&mut self, sc: &StorageClass) {
        let Some(name) = sc.metadata.name.clone() else {
            return;
        };
        let is_true = |key: &str| {
            sc.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(key))
                .is_some_and(|v| v == "true")
        };
        self.storage_known = true;
        let empty = BTreeMap::new();
        let params = sc.parameters.as_ref().unwrap_or(&empty);
        self.classes.insert(
            name,
            RawClass {
                provisioner: sc.provisioner.clone(),
                driver: cdi::class_capabilities(&sc.provisioner, params),
                created: sc.metadata.creation_timestamp.as_ref().map(|t| t.0),
                virt_default: is_true(ANN_DEFAULT_VIRT_CLASS),
                k8s_default: is_true(ANN_DEFAULT_CLASS),
            },
        );
    }

    pub fn storage_profile(mut self, sp: &StorageProfile) -> Self {
        self.add_storage_profile(sp);
        self
    }

    pub fn add_storage_profile(&mut self, sp: &StorageProfile) {
        let Some(name) = sp.metadata.name.clone() else {
            return;
        };
        self.profiles_known = true;
        let sets = |v: Option<&Vec<ClaimPropertySet>>| v.cloned().unwrap_or_default();
        self.profiles.insert(
            name,
            ProfileSets {
                status: sets(sp.status.as_ref().and_then(|s| s.claim_property_sets.as_ref())),
                spec: sets(sp.spec.as_ref().and_then(|s| s.claim_property_sets.as_ref())),
                reconciled: sp
                    .status
                    .as_ref()
                    .is_some_and(|s| s.provisioner.is_some() || s.storage_class.is_some()),
            },
        );
    }

    pub fn kubevirt(mut self, kv: &KubeVirt) -> Self {
        self.add_kubevirt(kv);
        self
    }

    pub fn add_kubevirt(&mut self, kv: &KubeVirt) {
        if let Some(spec) = kv.spec.as_ref() {
            let c = &spec.configuration;
            self.kubevirt_config = Some(KubeVirtConfig {
                feature_gates: c.developer_configuration.feature_gates.clone(),
                disabled_feature_gates: c.developer_configuration.disabled_feature_gates.clone(),
                binding_plugins: c
                    .network
                    .binding
                    .iter()
                    .map(|(n, b)| (n.clone(), b.migration.is_some()))
                    .collect(),
                default_architecture: c.architecture_configuration.default_architecture.clone(),
            });
        } else if self.kubevirt_config.is_none() {
            self.kubevirt_config = Some(KubeVirtConfig::default());
        }
        if let Some(v) = kv
            .status
            .as_ref()
            .and_then(|s| s.observed_kube_virt_version.clone())
        {
            self.kubevirt_versions.push(v);
        }
    }

    pub fn hosted_cluster(mut self, hc: HostedCluster) -> Self {
        self.add_hosted_cluster(hc);
        self
    }

    pub fn add_hosted_cluster(&mut self, hc: HostedCluster) {
        let (ns, name) = hc.key();
        let key = (ns.to_owned(), name.to_owned());
        self.hosted_clusters.insert(key, Arc::new(hc));
    }

    pub fn infra(mut self, namespace: &str, name: &str, facts: InfraFacts) -> Self {
        self.add_infra(namespace, name, facts);
        self
    }

    pub fn add_infra(&mut self, namespace: &str, name: &str, facts: InfraFacts) {
        self.infra.insert((namespace.to_owned(), name.to_owned()), facts);
    }

    pub fn build(self) -> Facts {
        let mut classes = HashMap::with_capacity(self.classes.len());
        for (name, raw) in &self.classes {
            let (source, sets) = capabilities_of(raw, self.profiles.get(name));
            let first_set_rwx = sets.first().is_some_and(ClaimPropertySet::has_rwx);
            classes.insert(
                name.clone(),
                ClassFacts {
                    name: name.clone(),
                    provisioner: raw.provisioner.clone(),
                    source,
                    sets,
                    first_set_rwx,
                    driver: raw.driver,
                },
            );
        }
        // Several defaults: newest creationTimestamp wins, ties by name ascending (§S3).
        let newest = |pick: fn(&RawClass) -> bool| {
            self.classes
                .iter()
                .filter(|(_, c)| pick(c))
                .max_by(|(an, a), (bn, b)| a.created.cmp(&b.created).then_with(|| bn.cmp(an)))
                .map(|(n, _)| n.clone())
        };
        let mut rwx_suggestions: Vec<String> = classes
            .values()
            .filter(|c| c.first_set_rwx)
            .map(|c| c.name.clone())
            .collect();
        rwx_suggestions.sort();
        rwx_suggestions.truncate(3);
        let rwx_suggestions = rwx_suggestions.join(" or ");
        // Several KubeVirt CRs should not happen; take the lowest version (the conservative one).
        let kubevirt_version = self
            .kubevirt_versions
            .iter()
            .map(|v| KubeVirtVersion::parse(v))
            .min_by(|a, b| match (a, b) {
                (KubeVirtVersion::Known(a), KubeVirtVersion::Known(b)) => a.cmp(b),
                (KubeVirtVersion::Known(_), _) => std::cmp::Ordering::Greater,
                (_, KubeVirtVersion::Known(_)) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Equal,
            })
            .unwrap_or_default();
        Facts {
            virt_default: newest(|c| c.virt_default),
            k8s_default: newest(|c| c.k8s_default),
            classes,
            storage_known: self.storage_known,
            profiles_known: self.profiles_known,
            kubevirt_version,
            kubevirt_config: self.kubevirt_config,
            hosted_clusters: self.hosted_clusters,
            infra: self.infra,
            rwx_suggestions,
            unavailable: None,
        }
    }
}

/// What the rules need of a StorageProfile.
#[derive(Clone, Debug)]
struct ProfileSets {
    status: Vec<ClaimPropertySet>,
    spec: Vec<ClaimPropertySet>,
    /// CDI reconciled it (status names the provisioner or class).
    reconciled: bool,
}

/// Claim property sets of one class, the way CDI would have them (docs/rules.md §S1).
fn capabilities_of(
    raw: &RawClass,
    profile: Option<&ProfileSets>,
) -> (CapabilitySource, Vec<ClaimPropertySet>) {
    if let Some(p) = profile {
        if !p.status.is_empty() {
            return (CapabilitySource::ProfileStatus, p.status.clone());
        }
        if !p.spec.is_empty() {
            return (CapabilitySource::ProfileSpec, p.spec.clone());
        }
        // Reconciled but no sets: CDI does not know the provisioner.
        if p.reconciled {
            return (CapabilitySource::ProfileEmpty, Vec::new());
        }
        // A profile without status has not been reconciled yet: fall through to the table.
    }
    match raw.driver {
        Some(caps) => (CapabilitySource::Builtin, caps.iter().map(to_set).collect()),
        None => (CapabilitySource::Unknown, Vec::new()),
    }
}

fn to_set(&(access, volume): &Capability) -> ClaimPropertySet {
    ClaimPropertySet {
        access_modes: vec![access],
        volume_mode: Some(volume),
    }
}
