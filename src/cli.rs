//! Command-line interface: `evaluate` (offline, on YAML/JSON files), `serve` and `certs`.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::evaluate::batch::{self, Skipped};
use crate::evaluate::{Report, Reports, Severity, Verdict};
use crate::facts::load::{self, LoadError, Loaded};
use crate::facts::{self, InfraFacts};

#[derive(Parser, Debug)]
#[command(
    name = "live-migration-guard",
    version,
    about = "Predicts live-migratability of HyperShift KubeVirt NodePools and HostedClusters"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Evaluate NodePools and HostedClusters from YAML/JSON files (offline).
    Evaluate(EvaluateArgs),
}

#[derive(Args, Debug, Clone)]
pub struct EvaluateArgs {
    /// Facts about the infrastructure cluster: StorageClass, StorageProfile, KubeVirt and
    /// HostedCluster objects (files or directories; repeatable).
    #[arg(long = "facts", value_name = "PATH")]
    pub facts: Vec<PathBuf>,
    /// Facts for the external infrastructure cluster of HostedCluster NAMESPACE/NAME
    /// (one with spec.platform.kubevirt.credentials; repeatable).
    #[arg(long = "infra-facts", value_name = "NAMESPACE/NAME=PATH", value_parser = parse_infra_facts)]
    pub infra_facts: Vec<InfraFactsArg>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Also exit 1 when a verdict is Unknown.
    #[arg(long = "fail-on", value_enum, default_value_t = FailOn::NotMigratable)]
    pub fail_on: FailOn,
    /// YAML (multi-document) or JSON files, directories (recursive), or `-` for stdin.
    #[arg(required = true, value_name = "PATH")]
    pub inputs: Vec<String>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailOn {
    NotMigratable,
    Unknown,
}

#[derive(Clone, Debug)]
pub struct InfraFactsArg {
    pub namespace: String,
    pub name: String,
    pub path: PathBuf,
}

fn parse_infra_facts(s: &str) -> Result<InfraFactsArg, String> {
    let (cluster, path) = s.split_once('=').ok_or("expected NAMESPACE/NAME=PATH")?;
    let (namespace, name) = cluster.split_once('/').ok_or("expected NAMESPACE/NAME=PATH")?;
    if namespace.is_empty() || name.is_empty() || path.is_empty() {
        return Err("expected NAMESPACE/NAME=PATH".into());
    }
    Ok(InfraFactsArg {
        namespace: namespace.into(),
        name: name.into(),
        path: path.into(),
    })
}

/// Exit codes of `evaluate`.
pub const EXIT_OK: u8 = 0;
pub const EXIT_NOT_MIGRATABLE: u8 = 1;
pub const EXIT_USAGE: u8 = 2;

/// Runs `evaluate`; returns the process exit code. Reports go to `out`, notes and errors to `err`.
pub fn run_evaluate(
    args: &EvaluateArgs,
    stdin: &mut dyn Read,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let mut errors: Vec<LoadError> = Vec::new();
    let mut load_all = |paths: &mut dyn Iterator<Item = &str>, stdin: &mut dyn Read| -> Vec<Loaded> {
        let mut all = Vec::new();
        for p in paths {
            let res = if p == "-" {
                let mut buf = Vec::new();
                match stdin.read_to_end(&mut buf) {
                    Ok(_) => load::parse_bytes(&buf, "<stdin>"),
                    Err(e) => Err(LoadError::Io {
                        path: "<stdin>".into(),
                        source: e,
                    }),
                }
            } else {
                load::load_path(std::path::Path::new(p))
            };
            match res {
                Ok(v) => all.extend(v),
                Err(e) => errors.push(e),
            }
        }
        all
    };
    let facts_loaded = load_all(&mut args.facts.iter().filter_map(|p| p.to_str()), stdin);
    let infra_loaded: Vec<(InfraFactsArg, Vec<Loaded>)> = args
        .infra_facts
        .iter()
        .map(|a| {
            (
                a.clone(),
                load_all(&mut std::iter::once(a.path.to_str().unwrap_or_default()), stdin),
            )
        })
        .collect();
    let inputs = load_all(&mut args.inputs.iter().map(String::as_str), stdin);
    if !errors.is_empty() {
        for e in &errors {
            let _ = writeln!(err, "error: {e}");
        }
        return EXIT_USAGE;
    }

    let (mut builder, unused) = facts::builder_from(&facts_loaded);
    for (source, kind) in unused {
        let _ = writeln!(
            err,
            "note: {source}: {kind} is not a fact (StorageClass, StorageProfile, KubeVirt, HostedCluster); not used"
        );
    }
    for (arg, loaded) in infra_loaded {
        let (b, unused) = facts::builder_from(&loaded);
        for (source, kind) in unused {
            let _ = writeln!(err, "note: {source}: {kind} is not a fact; not used");
        }
        builder.add_infra(&arg.namespace, &arg.name, InfraFacts::Ready(Arc::new(b.build())));
    }
    let facts = builder.build();

    let (reports, skipped) = batch::evaluate_all(&inputs, &facts);
    for s in &skipped {
        let _ = writeln!(err, "note: {}: {} skipped: {}", s.source, s.kind, s.reason);
    }
    if reports.reports.is_empty() {
        let _ = writeln!(err, "error: no NodePool or HostedCluster found in the inputs");
        return EXIT_USAGE;
    }
    let written = match args.output {
        OutputFormat::Json => serde_json::to_writer_pretty(&mut *out, &reports)
            .map_err(std::io::Error::from)
            .and_then(|_| writeln!(out)),
        OutputFormat::Text => out.write_all(render_text(&reports, &skipped).as_bytes()),
    };
    if let Err(e) = written {
        let _ = writeln!(err, "error: writing the report: {e}");
        return EXIT_USAGE;
    }
    exit_code(&reports, args.fail_on)
}

fn exit_code(reports: &Reports, fail_on: FailOn) -> u8 {
    let failing = |r: &Report| match r.verdict {
        Verdict::NotMigratable => true,
        Verdict::Unknown => fail_on == FailOn::Unknown,
        _ => false,
    };
    if reports.reports.iter().any(failing) {
        EXIT_NOT_MIGRATABLE
    } else {
        EXIT_OK
    }
}

/// Human-readable report: one block per object, each finding with its field and fix.
pub fn render_text(reports: &Reports, skipped: &[Skipped]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    for r in &reports.reports {
        let ns = r
            .namespace
            .as_deref()
            .map(|n| format!("{n}/"))
            .unwrap_or_default();
        let _ = writeln!(s, "{} {ns}{}: {}", r.kind, r.name, r.verdict.as_str());
        for f in &r.findings {
            let _ = writeln!(s, "  {:<7} {}  ({})", f.severity.as_str(), f.reason, f.field);
            let _ = writeln!(s, "          {}", f.message);
            if f.severity != Severity::Info {
                let _ = writeln!(s, "          fix: {}", f.fix);
            }
        }
        if let Some(c) = &r.condition {
            let _ = writeln!(
                s,
                "  predicted condition {}={} reason={}",
                c.type_, c.status, c.reason
            );
            for line in c.message.lines() {
                let _ = writeln!(s, "    {line}");
            }
        }
        s.push('\n');
    }
    let count = |v: Verdict| reports.reports.iter().filter(|r| r.verdict == v).count();
    let _ = writeln!(
        s,
        "{} object(s): {} not migratable, {} unknown, {} migratable, {} not applicable{}",
        reports.reports.len(),
        count(Verdict::NotMigratable),
        count(Verdict::Unknown),
        count(Verdict::Migratable),
        count(Verdict::NotApplicable),
        if skipped.is_empty() {
            String::new()
        } else {
            format!("; {} skipped (see stderr)", skipped.len())
        },
    );
    s
}
