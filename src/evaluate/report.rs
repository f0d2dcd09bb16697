//! The evaluator's output contract, shared by the CLI (`--output json`), the side endpoint
//! and the audit report: `{"reports":[{apiVersion, kind, namespace, name, verdict,
//! condition, findings}]}`.

/// Field paths, messages and fixes: usually constants, built only when they vary.
pub type Text = std::borrow::Cow<'static, str>;

use serde::Serialize;

/// The overall prediction for one object.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    Migratable,
    NotMigratable,
    Unknown,
    NotApplicable,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Migratable => "Migratable",
            Self::NotMigratable => "NotMigratable",
            Self::Unknown => "Unknown",
            Self::NotApplicable => "NotApplicable",
        }
    }
}

#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Blocks live migration, or stops the VM's disk from being provisioned at all.
    Error,
    Warning,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warning => "warning",
            Self::Info => "info",
        }
    }
}

/// What a finding does to the verdict (not serialized; the verdict carries it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// KubeVirt would report the VMI not live migratable with this finding's reason.
    NotMigratable,
    /// The VM (or a guest volume) cannot be created or provisioned at all.
    BlocksProvisioning,
    /// The facts do not decide the question: the verdict becomes `Unknown`.
    Undecided,
    /// Informational only.
    None,
}

#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// KubeVirt's exact reason where KubeVirt would report one, else our own CamelCase name.
    pub reason: &'static str,
    pub severity: Severity,
    /// The field the user must edit.
    pub field: Text,
    pub message: Text,
    /// A concrete change that resolves the finding.
    pub fix: Text,
    #[serde(skip)]
    pub effect: Effect,
}

impl Finding {
    pub fn error(
        reason: &'static str,
        field: impl Into<Text>,
        message: impl Into<Text>,
        fix: impl Into<Text>,
    ) -> Self {
        Self {
            reason,
            severity: Severity::Error,
            field: field.into(),
            message: message.into(),
            fix: fix.into(),
            effect: Effect::NotMigratable,
        }
    }
    pub fn blocking(
        reason: &'static str,
        field: impl Into<Text>,
        message: impl Into<Text>,
        fix: impl Into<Text>,
    ) -> Self {
        Self {
            effect: Effect::BlocksProvisioning,
            ..Self::error(reason, field, message, fix)
        }
    }
    pub fn undecided(
        reason: &'static str,
        field: impl Into<Text>,
        message: impl Into<Text>,
        fix: impl Into<Text>,
    ) -> Self {
        Self {
            reason,
            severity: Severity::Warning,
            field: field.into(),
            message: message.into(),
            fix: fix.into(),
            effect: Effect::Undecided,
        }
    }
    pub fn warning(
        reason: &'static str,
        field: impl Into<Text>,
        message: impl Into<Text>,
        fix: impl Into<Text>,
    ) -> Self {
        Self {
            effect: Effect::None,
            ..Self::undecided(reason, field, message, fix)
        }
    }
    pub fn info(
        reason: &'static str,
        field: impl Into<Text>,
        message: impl Into<Text>,
        fix: impl Into<Text>,
    ) -> Self {
        Self {
            reason,
            severity: Severity::Info,
            field: field.into(),
            message: message.into(),
            fix: fix.into(),
            effect: Effect::None,
        }
    }
}

/// The `KubeVirtNodesLiveMigratable` condition HyperShift would report (docs/rules.md §H1, §H2).
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: &'static str,
    pub status: &'static str,
    pub reason: String,
    pub message: String,
}

pub const CONDITION_TYPE: &str = "KubeVirtNodesLiveMigratable";

impl Condition {
    /// `True` / `AsExpected` / `All is well` (docs/rules.md §H1 item 4, §H2).
    pub fn all_is_well() -> Self {
        Self {
            type_: CONDITION_TYPE,
            status: "True",
            reason: "AsExpected".into(),
            message: "All is well".into(),
        }
    }
    pub fn unknown(message: String) -> Self {
        Self {
            type_: CONDITION_TYPE,
            status: "Unknown",
            reason: "InsufficientFacts".into(),
            message,
        }
    }
}

/// The prediction for one NodePool or HostedCluster.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub namespace: Option<String>,
    pub name: String,
    pub verdict: Verdict,
    /// `None` when HyperShift would not set the condition (no machines, VMs cannot be
    /// created, or not a KubeVirt object).
    pub condition: Option<Condition>,
    pub findings: Vec<Finding>,
}

impl Report {
    /// The verdict the findings add up to: any error → `NotMigratable`, else any
    /// undecided question → `Unknown`, else `Migratable`.
    pub fn verdict_of(findings: &[Finding]) -> Verdict {
        if findings
            .iter()
            .any(|f| matches!(f.effect, Effect::NotMigratable | Effect::BlocksProvisioning))
        {
            Verdict::NotMigratable
        } else if findings.iter().any(|f| f.effect == Effect::Undecided) {
            Verdict::Unknown
        } else {
            Verdict::Migratable
        }
    }

    /// What a NodePool contributes to its HostedCluster's condition (docs/rules.md §H2):
    /// `NotMigratable` only when its own predicted condition is `False`. A NodePool whose
    /// VMs never start has no machine reporting `VMLiveMigratable=False`, so it counts as
    /// `NotApplicable` there.
    pub fn hostedcluster_contribution(&self) -> Verdict {
        match (&self.condition, self.verdict) {
            (Some(c), _) if c.status == "False" => Verdict::NotMigratable,
            (None, Verdict::NotMigratable) => Verdict::NotApplicable,
            (_, Verdict::NotMigratable) => Verdict::Unknown,
            (_, v) => v,
        }
    }

    pub fn errors(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.severity == Severity::Error)
    }
}

/// The JSON document: `{"reports": [...]}`.
#[derive(Serialize, Clone, Debug, Default)]
pub struct Reports {
    pub reports: Vec<Report>,
}
