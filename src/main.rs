//! The binary: parse flags, set up logging, run a command. Errors end here (anyhow).

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{CommandFactory as _, FromArgMatches as _};
use live_migration_guard::cli::{
    self, CertsCommand, Cli, Command, EvaluateAuth, InfraCredentials, LogFormat, MetricsAuth, ServeArgs,
    run_evaluate,
};
use live_migration_guard::facts::{self, Snapshot, load};
use live_migration_guard::server::auth::KubeAuth;
use live_migration_guard::server::{self, Server, metrics::Metrics};
use tokio::sync::watch;

fn main() -> ExitCode {
    // As a kubectl plugin (`kubectl-live_migration_guard`), help and usage say
    // `kubectl live-migration-guard`.
    let mut command = Cli::command();
    if let Some(name) = cli::plugin_name(std::env::args_os().next().as_deref()) {
        command = command.bin_name(name);
    }
    let cli = match Cli::from_arg_matches(&command.get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match cli.command {
        Command::Audit(args) => ExitCode::from(cli::run_audit(
            &args,
            &mut std::io::stdout().lock(),
            &mut std::io::stderr().lock(),
        )),
        Command::Completions(args) => ExitCode::from(cli::run_completions(
            &args,
            &mut std::io::stdout().lock(),
            &mut std::io::stderr().lock(),
        )),
        Command::Evaluate(args) => {
            let code = run_evaluate(
                &args,
                &mut std::io::stdin().lock(),
                &mut std::io::stdout().lock(),
                &mut std::io::stderr().lock(),
            );
            ExitCode::from(code)
        }
        Command::Serve(args) => {
            let metrics = Arc::new(Metrics::default());
            // flushes the log on every return below
            let _log = init_logging(args.log_format, &metrics);
            let result = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the tokio runtime")
                .and_then(|rt| rt.block_on(serve(*args, metrics)));
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = one_line(&e), "cannot serve");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Certs(CertsCommand::Generate(args)) => {
            let names = live_migration_guard::certs::service_names(&args.service, &args.namespace);
            let result = live_migration_guard::certs::generate(&names, args.days)
                .and_then(|g| live_migration_guard::certs::write(&args.out, &g, args.force));
            match result {
                Ok(()) => {
                    println!(
                        "wrote ca.crt, tls.crt, tls.key to {} for {}",
                        args.out.display(),
                        names.join(", ")
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!(
                        "error: --out {}: {}",
                        args.out.display(),
                        one_line(&anyhow::Error::new(e))
                    );
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// An error and its causes on one line, each cause once: our errors often print their
/// source already (`path: No such file or directory (os error 2)`), and `{:#}` would
/// repeat it.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// Names the flag behind a listener that could not be bound.
fn name_bind_flag(e: server::ServerError, args: &ServeArgs) -> anyhow::Error {
    if let server::ServerError::Bind { addr, source } = &e {
        let flag = if *addr == args.listen {
            "--listen"
        } else if *addr == args.ops_listen {
            "--ops-listen"
        } else {
            "--evaluate-listen"
        };
        return anyhow::anyhow!("{flag} {addr}: cannot listen: {source}");
    }
    e.into()
}

/// Lines the log writer buffers before it drops (and counts) new ones.
const LOG_BUFFER_LINES: usize = 16_384;

/// Logs go to stderr through a non-blocking writer: a request never waits for a write, and
/// lines are written in batches (`logwriter`: at most 5 ms late); when
/// the writer falls behind, lines are dropped and counted
/// (`live_migration_guard_log_lines_dropped`). Text logs have ANSI colours only on a
/// terminal, and never with `NO_COLOR` set.
fn init_logging(format: LogFormat, metrics: &Metrics) -> tracing_appender::non_blocking::WorkerGuard {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(LOG_BUFFER_LINES)
        .lossy(true)
        .thread_name("log-writer")
        .finish(live_migration_guard::logwriter::BatchedWriter::new(
            std::io::stderr(),
        ));
    metrics.count_log_drops(writer.error_counter());
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).init(),
        LogFormat::Text => builder.init(),
    }
    guard
}

async fn serve(args: ServeArgs, metrics: Arc<Metrics>) -> anyhow::Result<()> {
    args.check_auth_flags()?;
    let (audit_tx, audit_rx) = watch::channel(None);
    let mut kube_auth = None;
    // `_cluster` keeps the watches alive for the life of the server.
    let (snapshot_rx, _cluster) = if args.uses_cluster() {
        let client = facts::cluster::client(args.kubeconfig.as_deref())
            .await
            .map_err(|e| anyhow::anyhow!("connecting to the cluster: {e}"))?;
        if args.uses_kube_auth() {
            kube_auth = Some(Arc::new(KubeAuth::new(
                client.clone(),
                args.kube_auth_settings(),
                metrics.clone(),
            )));
        }
        let live = facts::cluster::start(
            client,
            facts::cluster::Options {
                infra_credentials: args.infra_credentials == InfraCredentials::Read,
                max_staleness: args.facts_max_staleness,
                ..Default::default()
            },
        );
        tracing::info!(
            "watching StorageClasses, StorageProfiles, KubeVirt, HostedClusters, NodePools and labelled Namespaces"
        );
        if !args.audit_interval.is_zero() {
            tokio::spawn(live_migration_guard::audit::run(
                live.snapshot.clone(),
                live.nodepools.clone(),
                args.audit_interval,
                audit_tx,
                metrics.clone(),
            ));
        }
        (live.snapshot.clone(), Some(live))
    } else {
        drop(audit_tx);
        // As lenient as `evaluate --facts`: a directory's values.yaml is skipped, said once.
        let mut loaded = Vec::new();
        for path in &args.facts {
            let found = load::load_path_lenient(path);
            if let Some(e) = found.errors.first() {
                match found.errors.len() - 1 {
                    0 => anyhow::bail!("--facts {e}"),
                    more => anyhow::bail!("--facts {e} (and {more} more broken file(s))"),
                }
            }
            for (file, why) in found.not_objects {
                tracing::warn!(%file, "--facts: skipped: {why}");
            }
            loaded.extend(found.loaded);
        }
        let (builder, unused) = facts::builder_from(&loaded);
        for (source, kind) in unused {
            tracing::warn!(%source, kind, "not a fact (StorageClass, StorageProfile, KubeVirt, HostedCluster); ignored");
        }
        let facts = builder.build();
        if args.facts.is_empty() {
            tracing::warn!(
                "no --facts and no cluster: storage verdicts will be Unknown (pass --facts DIR with StorageClasses and StorageProfiles, or run with --cluster=on)"
            );
        }
        tracing::info!(
            storage_classes = facts.class_count(),
            files = args.facts.len(),
            "facts from files; no cluster connected (namespace mode labels do not apply)"
        );
        let (_tx, rx) = watch::channel(Arc::new(Snapshot::fixed(facts)));
        (rx, None)
    };
    let config = args.server_config(&metrics, kube_auth)?;
    let server = Server::bind(config, snapshot_rx, audit_rx, metrics)
        .await
        .map_err(|e| name_bind_flag(e, &args))?;
    if let Some(ca) = &server.ca_bundle {
        tracing::info!(ca_bundle = %ca.display(), "generated a CA and serving certificate; clients can trust the CA bundle at this path");
    }
    if let Some(side) = server.side_addr() {
        tracing::info!(listen = %side?, auth = ?args.evaluate_auth(), "serving /v1/evaluate and /v1/report on a separate listener");
    }
    let side_addr = args.evaluate_listen.unwrap_or(args.listen);
    if args.evaluate_auth() == EvaluateAuth::None && !side_addr.ip().is_loopback() {
        tracing::warn!(
            listen = %side_addr,
            "/v1/evaluate and /v1/report are unauthenticated on a non-loopback address: anyone who reaches it can read every audited object; use --evaluate-listen with --evaluate-auth kubernetes (or token)"
        );
    }
    if args.metrics_auth == MetricsAuth::Kubernetes {
        tracing::info!("/metrics needs a Kubernetes token allowed to get the non-resource URL /metrics");
    }
    tracing::info!(
        listen = %server.local_addr()?,
        ops = %server.ops_addr()?,
        mode = %args.mode,
        "serving admission on /validate/nodepools and /validate/hostedclusters, evaluation on /v1/evaluate"
    );
    let shutdown = async {
        let first = server::shutdown_signal().await;
        // A second signal does not wait for the drain (the first one's handler stays
        // installed, so without this a second Ctrl-C would do nothing).
        tokio::spawn(async move {
            let second = server::shutdown_signal().await;
            tracing::warn!(signal = ?second, after = ?first, "second signal: exiting at once without draining");
            std::process::exit(i32::from(second.exit_code()));
        });
    };
    server.run(shutdown).await?;
    Ok(())
}
