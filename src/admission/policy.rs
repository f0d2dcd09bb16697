//! Policy: from a report (and, on UPDATE, the old object's report) to allow, warn or deny.
//!
//! - `warn`: always allowed; one warning line per error/warning finding.
//! - `deny`: denied when the object has an `error` finding — on UPDATE only one the old
//!   object did not have, so scaling or relabelling an already non-migratable NodePool is
//!   never blocked. `Unknown` denies only with `--deny-unknown`.
//! - `off`: not evaluated (namespace label).
//!
//! An owner may downgrade a denial with the object annotations `live-migration-guard.io/mode:
//! warn|off` and `live-migration-guard.io/reason: …` when the server allows object overrides.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::evaluate::{Finding, Report, Severity, Verdict};

use super::review::{AdmissionResponse, Status, StatusCause, StatusDetails};

/// Namespace label and object annotation selecting the mode.
pub const MODE_KEY: &str = "live-migration-guard.io/mode";
/// Object annotation explaining an override (required for it to count).
pub const REASON_KEY: &str = "live-migration-guard.io/reason";
/// Audit annotation recording an honoured override. kube-apiserver stores it as
/// `<webhook name>/override` and rejects keys that already contain a `/`.
pub const OVERRIDE_AUDIT_KEY: &str = "override";
/// Longest audit annotation value we write (the owner's reason is cut to fit).
pub const MAX_AUDIT_VALUE_LEN: usize = 1024;
/// A denial's message and each cause are cut to these lengths, and at most
/// `MAX_CAUSES` causes are listed: a response stays small whatever the object holds.
pub const MAX_DENIAL_MESSAGE_LEN: usize = 2048;
pub const MAX_CAUSE_LEN: usize = 512;
pub const MAX_CAUSES: usize = 32;

/// kube-apiserver limits on warnings (they travel as HTTP headers): per warning and in total.
pub const MAX_WARNING_LEN: usize = 256;
pub const MAX_WARNINGS_TOTAL: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Mode {
    /// Allow, with one admission warning per error or warning finding.
    Warn,
    /// Reject objects with error findings (422 with every field); warn about the rest.
    Deny,
    /// Allow everything without warnings (the webhook stays registered; /v1/evaluate still
    /// answers).
    Off,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Warn => "warn",
            Self::Deny => "deny",
            Self::Off => "off",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "warn" => Ok(Self::Warn),
            "deny" => Ok(Self::Deny),
            "off" => Ok(Self::Off),
            other => Err(format!("{other:?} is not one of warn, deny, off")),
        }
    }
}

/// Server-wide policy settings.
#[derive(Clone, Debug)]
pub struct Policy {
    pub mode: Mode,
    pub deny_unknown: bool,
    pub allow_object_override: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            mode: Mode::Warn,
            deny_unknown: false,
            allow_object_override: false,
        }
    }
}

/// An owner's request to downgrade a denial: the object's `live-migration-guard.io/mode`
/// and `live-migration-guard.io/reason` annotations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Override {
    pub mode: Option<String>,
    pub reason: Option<String>,
}

impl Override {
    pub fn from_annotations(annotations: Option<&BTreeMap<String, String>>) -> Self {
        let get = |k: &str| annotations.and_then(|a| a.get(k)).map(|v| v.trim().to_owned());
        Self {
            mode: get(MODE_KEY),
            reason: get(REASON_KEY).filter(|r| !r.is_empty()),
        }
    }
}

/// What was decided, for the response, the metrics and the log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecisionKind {
    Allow,
    Warn,
    Deny,
}

impl DecisionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Warn => "warn",
            Self::Deny => "deny",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Decision {
    pub response: AdmissionResponse,
    pub kind: DecisionKind,
    /// Set when an object annotation downgraded a denial: the owner's reason.
    pub override_reason: Option<String>,
}

/// Decides for one evaluated object. `mode` is the effective mode (namespace label applied);
/// `requested` is the new object's override request.
pub fn decide(
    policy: &Policy,
    mode: Mode,
    uid: &str,
    new: &Report,
    old: Option<&Report>,
    requested: &Override,
) -> Decision {
    // raw lines: cut to the header limits once, at the end, after any override note
    let mut warnings = warning_candidates(new.findings.iter());
    let introduced = introduced_errors(new, old);
    let unknown_blocks = policy.deny_unknown
        && new.verdict == Verdict::Unknown
        && old.is_none_or(|o| o.verdict != Verdict::Unknown);
    let mut response = AdmissionResponse {
        uid: uid.to_owned(),
        allowed: true,
        status: None,
        warnings: Vec::new(),
        audit_annotations: BTreeMap::new(),
    };
    let allow = |mut response: AdmissionResponse, warnings: Vec<String>, override_reason| {
        let kind = if warnings.is_empty() {
            DecisionKind::Allow
        } else {
            DecisionKind::Warn
        };
        response.warnings = fit_warnings(warnings);
        Decision {
            response,
            kind,
            override_reason,
        }
    };
    if mode != Mode::Deny || (introduced.is_empty() && !unknown_blocks) {
        return allow(response, warnings, None);
    }

    // A denial: can the owner downgrade it?
    match requested.mode.as_deref().map(str::parse::<Mode>) {
        Some(Ok(wanted @ (Mode::Warn | Mode::Off))) => match (policy.allow_object_override, &requested.reason) {
            (true, Some(reason)) => {
                response.audit_annotations.insert(
                    OVERRIDE_AUDIT_KEY.to_owned(),
                    truncate(sanitize(&format!("{wanted}: {reason}")), MAX_AUDIT_VALUE_LEN),
                );
                let warnings = if wanted == Mode::Off { Vec::new() } else { warnings };
                return allow(response, warnings, Some(reason.clone()));
            }
            (true, None) => warnings.insert(
                0,
                format!("live-migration-guard: {MODE_KEY}={wanted} is ignored without a {REASON_KEY} annotation"),
            ),
            (false, _) => warnings.insert(
                0,
                format!("live-migration-guard: {MODE_KEY}={wanted} is ignored: this server does not allow object overrides"),
            ),
        },
        Some(Err(e)) => warnings.insert(
            0,
            sanitize(&format!("live-migration-guard: annotation {MODE_KEY}: {e}")),
        ),
        Some(Ok(Mode::Deny)) | None => {}
    }
    let blocking: Vec<&Finding> = if introduced.is_empty() {
        new.findings
            .iter()
            .filter(|f| f.severity == Severity::Warning)
            .collect()
    } else {
        introduced
    };
    response.allowed = false;
    response.status = Some(denial_status(new, &blocking));
    response.warnings = fit_warnings(warnings);
    Decision {
        response,
        kind: DecisionKind::Deny,
        override_reason: None,
    }
}

/// Whether [`decide`] can answer differently with the old object's report than without it:
/// only in deny mode, for an object with errors (those the old one had do not deny) or,
/// with `--deny-unknown`, an `Unknown` verdict (an old `Unknown` does not deny).
pub fn old_report_matters(policy: &Policy, mode: Mode, new: &Report) -> bool {
    mode == Mode::Deny
        && (new.errors().next().is_some() || (policy.deny_unknown && new.verdict == Verdict::Unknown))
}

/// The new object's errors that the old object did not have. Each old error accounts for
/// one new error: first one with the same reason, field and message (the same volume or
/// device), then one with the same reason and field (the same disk, reworded, e.g. after a
/// class change). So an UPDATE whose patch adds three RWO disks where the old object had
/// one introduces two, although all of them point at the same annotation.
fn introduced_errors<'a>(new: &'a Report, old: Option<&Report>) -> Vec<&'a Finding> {
    let mut unmatched_old: Vec<&Finding> = old.map(|o| o.errors().collect()).unwrap_or_default();
    let mut take = |f: &Finding, same: &dyn Fn(&Finding, &Finding) -> bool| {
        unmatched_old
            .iter()
            .position(|o| same(o, f))
            .map(|i| unmatched_old.swap_remove(i))
            .is_some()
    };
    let exact =
        |a: &Finding, b: &Finding| a.reason == b.reason && a.field == b.field && a.message == b.message;
    let mut rest: Vec<&Finding> = new.errors().filter(|f| !take(f, &exact)).collect();
    let loose = |a: &Finding, b: &Finding| a.reason == b.reason && a.field == b.field;
    rest.retain(|f| !take(f, &loose));
    rest
}

/// A 422 `Invalid` status: a message a person understands, and one cause per field.
fn denial_status(report: &Report, blocking: &[&Finding]) -> Status {
    let ns = report
        .namespace
        .as_deref()
        .map(|n| format!("{n}/"))
        .unwrap_or_default();
    let what = if report.verdict == Verdict::Unknown {
        "cannot be shown to be live migratable (the server denies Unknown verdicts)".to_owned()
    } else {
        "would not be live migratable".to_owned()
    };
    let mut message = format!("live-migration-guard: {} {ns}{} {what}", report.kind, report.name);
    if let Some(first) = blocking.first() {
        message.push_str(&format!(
            ": {} at {}: {} Fix: {}",
            first.reason, first.field, first.message, first.fix
        ));
    }
    let mut message = truncate(sanitize(&message), MAX_DENIAL_MESSAGE_LEN);
    if blocking.len() > 1 {
        message.push_str(&format!(
            " ({} more in status.details.causes)",
            blocking.len() - 1
        ));
    }
    if blocking.len() > MAX_CAUSES {
        message.push_str(&format!(
            "; {} causes listed, run `live-migration-guard evaluate` or POST /v1/evaluate for all",
            MAX_CAUSES
        ));
    }
    Status {
        status: "Failure",
        code: 422,
        reason: "Invalid",
        message,
        details: Some(StatusDetails {
            name: report.name.clone(),
            group: "hypershift.openshift.io",
            kind: report.kind,
            causes: blocking
                .iter()
                .take(MAX_CAUSES)
                .map(|f| StatusCause {
                    reason: "FieldValueInvalid",
                    message: truncate(
                        sanitize(&format!("{}: {} Fix: {}", f.reason, f.message, f.fix)),
                        MAX_CAUSE_LEN,
                    ),
                    field: truncate(sanitize(&f.field), MAX_WARNING_LEN),
                })
                .collect(),
        }),
    }
}

/// One line per error or warning finding: `<reason>: <field>: <fix>`, within the limits.
pub fn warning_lines<'a>(findings: impl Iterator<Item = &'a Finding>) -> Vec<String> {
    fit_warnings(warning_candidates(findings))
}

/// [`warning_lines`] before the limits are applied.
fn warning_candidates<'a>(findings: impl Iterator<Item = &'a Finding>) -> Vec<String> {
    findings
        .filter(|f| f.severity != Severity::Info)
        .map(|f| sanitize(&format!("{}: {}: {}", f.reason, f.field, f.fix)))
        .collect()
}

/// Cuts each warning to 256 characters and the list to 4,096 in total, ending with a line
/// that says how many did not fit and where to see them.
pub fn fit_warnings(lines: Vec<String>) -> Vec<String> {
    const MORE_RESERVE: usize = 120;
    let mut out = Vec::with_capacity(lines.len());
    let mut total = 0;
    let count = lines.len();
    for (i, line) in lines.into_iter().enumerate() {
        let line = truncate(line, MAX_WARNING_LEN);
        let remaining_after = count - i - 1;
        let reserve = if remaining_after > 0 { MORE_RESERVE } else { 0 };
        if total + line.len() + reserve > MAX_WARNINGS_TOTAL {
            out.push(format!(
                "live-migration-guard: {} more finding(s) not shown; run `live-migration-guard evaluate` or POST /v1/evaluate for all",
                count - i
            ));
            break;
        }
        total += line.len();
        out.push(line);
    }
    out
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        // ASCII only after sanitize(), so every index is a char boundary.
        s.truncate(max - 3);
        s.push_str("...");
    }
    s
}

/// Printable ASCII only (warnings travel as HTTP headers).
pub fn sanitize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            ' '..='~' => out.push(c),
            '…' => out.push_str("..."),
            '≥' => out.push_str(">="),
            '→' => out.push_str("->"),
            '\n' | '\t' | '\r' => out.push(' '),
            _ => out.push('?'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_fit_the_apiserver_limits() {
        let lines: Vec<String> = (0..100)
            .map(|i| format!("R{i}: field: {}", "x".repeat(300)))
            .collect();
        let out = fit_warnings(lines);
        assert!(out.iter().all(|l| l.len() <= MAX_WARNING_LEN));
        assert!(out.iter().map(String::len).sum::<usize>() <= MAX_WARNINGS_TOTAL);
        assert!(
            out.last()
                .is_some_and(|l| l.contains("more finding(s) not shown"))
        );
        assert_eq!(sanitize("a…b≥c→d\u{7f}é"), "a...b>=c->d??");
    }

    /// The "N more" count was computed before an override note was prepended: now the
    /// lines are cut once, at the end, and the count is what was really left out.
    #[test]
    fn the_left_out_count_includes_every_line() {
        let findings: Vec<Finding> = (0..40)
            .map(|i| {
                Finding::error(
                    "DisksNotLiveMigratable",
                    format!("spec.disk{i}"),
                    "m",
                    "x".repeat(200),
                )
            })
            .collect();
        let report = Report {
            api_version: "hypershift.openshift.io/v1beta1",
            kind: "NodePool",
            namespace: Some("ns".into()),
            name: "np".into(),
            verdict: Verdict::NotMigratable,
            condition: None,
            findings,
        };
        let policy = Policy {
            mode: Mode::Deny,
            ..Policy::default()
        };
        let asked = Override {
            mode: Some("warn".into()),
            reason: None,
        };
        let d = decide(&policy, Mode::Deny, "uid", &report, None, &asked);
        let w = &d.response.warnings;
        assert!(w[0].contains("is ignored"), "{w:?}");
        let last = w.last().unwrap();
        let shown = w.len() - 1;
        // 41 lines in all: the note and 40 findings
        assert!(
            last.contains(&format!("{} more finding(s) not shown", 41 - shown)),
            "{last}"
        );
    }
}
