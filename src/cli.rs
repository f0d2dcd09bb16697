//! Command-line interface: `evaluate` (offline, on YAML/JSON files), `serve` and `certs`.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::batch::{self, Skipped};
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
    #[command(after_help = EVALUATE_EXIT_CODES)]
    Evaluate(EvaluateArgs),
    /// Run the admission webhook (HTTPS) and the ops endpoints (HTTP).
    Serve(Box<ServeArgs>),
    /// Certificate tooling.
    #[command(subcommand)]
    Certs(CertsCommand),
}

#[derive(Subcommand, Debug)]
pub enum CertsCommand {
    /// Write ca.crt, tls.crt and tls.key for a Service (SANs NAME, NAME.NS, NAME.NS.svc,
    /// NAME.NS.svc.cluster.local), for the chart's `provided` TLS mode.
    Generate(CertsGenerateArgs),
}

#[derive(Args, Debug, Clone)]
pub struct CertsGenerateArgs {
    /// Name of the webhook's Service (an RFC 1123 DNS label: lowercase letters, digits and
    /// `-`, at most 63 characters).
    #[arg(long, value_name = "NAME", value_parser = parse_dns_label)]
    pub service: String,
    /// Namespace of the Service (an RFC 1123 DNS label).
    #[arg(long, value_name = "NS", value_parser = parse_dns_label)]
    pub namespace: String,
    /// Output directory (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Validity of the serving certificate in days, at least 1 (the CA gets 10 years).
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..))]
    pub days: u32,
    /// Overwrite ca.crt, tls.crt and tls.key if they already exist in --out.
    #[arg(long)]
    pub force: bool,
}

/// Accepts an RFC 1123 DNS label (what Kubernetes requires of Service and Namespace names).
pub fn parse_dns_label(s: &str) -> Result<String, String> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > 63 {
        return Err(format!(
            "{s:?} is {} characters; a DNS label has at most 63",
            s.len()
        ));
    }
    if let Some(c) = s.chars().find(|&c| !ok_char(c)) {
        return Err(format!(
            "{s:?} contains {c:?}; a DNS label (RFC 1123) has only lowercase letters, digits and '-'"
        ));
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err(format!(
            "{s:?} must start and end with a letter or digit (RFC 1123)"
        ));
    }
    Ok(s.to_owned())
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Whether `serve` reads facts from a cluster.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterMode {
    /// On when running in a pod or when --kubeconfig is given, and no --facts files are.
    Auto,
    /// Always watch a cluster (in-cluster config, --kubeconfig, KUBECONFIG or ~/.kube/config).
    On,
    /// Never: facts come only from --facts files.
    Off,
}

/// Who may call the side endpoints.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvaluateAuth {
    /// Anyone who reaches the listener.
    None,
    /// One static bearer token (--evaluate-token-file), for callers outside the cluster.
    Token,
    /// Kubernetes tokens: TokenReview, then SubjectAccessReview (create on the non-resource URL
    /// /v1/evaluate; /v1/report shows what the caller may list). Needs the cluster connection.
    Kubernetes,
}

/// Who may scrape `/metrics`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricsAuth {
    /// Anyone who reaches the ops port.
    None,
    /// Kubernetes tokens allowed to `get` the non-resource URL /metrics.
    Kubernetes,
}

/// A flag combination `serve` refuses, or a file it cannot read.
#[derive(Debug, thiserror::Error)]
pub enum FlagError {
    #[error("--evaluate-token-file {0}")]
    TokenFile(#[from] crate::server::auth::TokenFileError),
    #[error("{0}")]
    Conflict(String),
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum InfraCredentials {
    /// Do not read infra kubeconfig Secrets: external infrastructure is judged Unknown.
    Off,
    /// Read them (needs `get secrets`) and watch the external infrastructure clusters.
    Read,
}

/// The default address of a listener on `port`: every interface in a pod (detected by
/// `KUBERNETES_SERVICE_HOST`), loopback elsewhere, so a developer's unauthenticated
/// `/v1/evaluate` and `/metrics` are not exposed to the network.
pub fn default_listen(port: u16) -> std::net::SocketAddr {
    let ip = if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        std::net::Ipv4Addr::UNSPECIFIED
    } else {
        std::net::Ipv4Addr::LOCALHOST
    };
    std::net::SocketAddr::from((ip, port))
}

/// Exit codes, as listed in `evaluate --help`.
pub const EVALUATE_EXIT_CODES: &str = "\
Exit codes:
  0  nothing is NotMigratable (Unknown too, unless --fail-on unknown)
  1  something is NotMigratable (or Unknown with --fail-on unknown)
  2  usage or input errors (each named on stderr with its file and document)

Files in a directory that are not Kubernetes objects (values.yaml, ...) are skipped with a
note; objects of other kinds are listed on stderr. A closed output pipe ends quietly (exit 0).";

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// HTTPS listener for admission, /v1/evaluate and /v1/report. The default is loopback
    /// (127.0.0.1:8443) outside a pod and 0.0.0.0:8443 in one (KUBERNETES_SERVICE_HOST set).
    #[arg(long, value_name = "ADDR", default_value_t = default_listen(8443), env = "LMG_LISTEN")]
    pub listen: std::net::SocketAddr,
    /// Plain-HTTP listener for /healthz, /readyz and /metrics (unauthenticated). Loopback
    /// (127.0.0.1:8080) outside a pod, 0.0.0.0:8080 in one.
    #[arg(long, value_name = "ADDR", default_value_t = default_listen(8080), env = "LMG_OPS_LISTEN")]
    pub ops_listen: std::net::SocketAddr,
    /// Serving certificate (PEM chain, leaf first), re-read every --tls-reload-interval.
    /// Without it a CA and certificate are generated at start.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// How often the certificate files are re-read (rotation without restart).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub tls_reload_interval: std::time::Duration,
    /// Lowest TLS version accepted.
    #[arg(long, value_enum, default_value = "1.2")]
    pub tls_min_version: crate::server::tls::MinTls,
    /// Extra DNS names for the generated certificate (localhost and 127.0.0.1 are always in).
    #[arg(long = "dns-name")]
    pub dns_names: Vec<String>,
    /// Where the generated CA bundle is written, once the listeners are bound (default:
    /// $TMPDIR/live-migration-guard/<--listen port>/ca.crt, one per instance; the path is logged).
    #[arg(long, value_name = "FILE")]
    pub ca_bundle_out: Option<PathBuf>,
    /// Require client certificates signed by this CA (kube-apiserver's webhook client cert).
    #[arg(long)]
    pub client_ca: Option<PathBuf>,
    /// Accepted client certificate CN or DNS SAN (repeatable; default: any the CA signed).
    #[arg(long = "client-name", requires = "client_ca")]
    pub client_names: Vec<String>,
    /// Serve /v1/evaluate and /v1/report on this separate HTTPS listener instead of the
    /// admission listener (needed for --evaluate-auth).
    #[arg(long, value_name = "ADDR")]
    pub evaluate_listen: Option<std::net::SocketAddr>,
    /// Who may call /v1/evaluate and /v1/report on --evaluate-listen. Default: token when
    /// --evaluate-token-file is given, else none.
    #[arg(long, value_enum, requires = "evaluate_listen")]
    pub evaluate_auth: Option<EvaluateAuth>,
    /// Require `Authorization: Bearer <token>` with the token in this file on the
    /// --evaluate-listen listener (--evaluate-auth token). The file is re-read when it changes
    /// (checked at most once a second), so a rotated Secret needs no restart.
    #[arg(long, value_name = "FILE", requires = "evaluate_listen")]
    pub evaluate_token_file: Option<PathBuf>,
    /// With kubernetes auth: the audience the callers' tokens must be valid for (repeatable;
    /// TokenReview spec.audiences). Default: the API server's own audiences.
    #[arg(long = "evaluate-auth-audience", value_name = "AUDIENCE")]
    pub evaluate_auth_audiences: Vec<String>,
    /// Who may scrape /metrics on the ops port (its gauges name every audited object):
    /// kubernetes needs a token allowed to `get` the non-resource URL /metrics. /healthz and
    /// /readyz stay open for the kubelet.
    #[arg(long, value_enum, default_value = "none")]
    pub metrics_auth: MetricsAuth,
    /// How long kubernetes auth reuses an authenticated token and an allowed access review
    /// (a revoked grant takes effect within this). 0s disables caching.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub auth_cache_ttl: std::time::Duration,
    /// How long a rejected token and a denied access review are reused (a new grant takes
    /// effect within this).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub auth_cache_negative_ttl: std::time::Duration,
    /// Entries in each of the two kubernetes auth caches (tokens, access reviews), at least 1.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    pub auth_cache_size: u32,
    /// Require client certificates signed by this CA on the --evaluate-listen listener.
    #[arg(long, requires = "evaluate_listen")]
    pub evaluate_client_ca: Option<PathBuf>,
    /// Accepted client CN or DNS SAN on the --evaluate-listen listener (repeatable).
    #[arg(long = "evaluate-client-name", requires = "evaluate_client_ca")]
    pub evaluate_client_names: Vec<String>,
    /// Global policy: warn (allow with warnings), deny (reject error findings) or off (allow
    /// without evaluating admission requests; /v1/evaluate still answers).
    #[arg(long, value_enum, default_value = "warn", env = "LMG_MODE")]
    pub mode: crate::admission::Mode,
    /// Deny Unknown verdicts too (deny mode only).
    #[arg(long)]
    pub deny_unknown: bool,
    /// Honour live-migration-guard.io/mode: warn|off + live-migration-guard.io/reason on objects.
    #[arg(long)]
    pub allow_object_override: bool,
    /// Facts files (StorageClass, StorageProfile, KubeVirt, HostedCluster) instead of a cluster.
    #[arg(long = "facts")]
    pub facts: Vec<PathBuf>,
    /// Read facts from a Kubernetes cluster (watches) or only from --facts files.
    #[arg(long, value_enum, default_value = "auto")]
    pub cluster: ClusterMode,
    /// Kubeconfig for the cluster (default: in-cluster config, then KUBECONFIG, then ~/.kube/config).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Read HostedClusters' infra kubeconfig Secrets and cache facts of external infra clusters.
    #[arg(long, value_enum, default_value = "off")]
    pub infra_credentials: InfraCredentials,
    /// How often existing NodePools and HostedClusters are re-evaluated (0 disables).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub audit_interval: std::time::Duration,
    /// Past this without a healthy watch, rules that need facts answer Unknown.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub facts_max_staleness: std::time::Duration,
    /// After SIGTERM or Ctrl-C: readiness false, keep serving this long (a second Ctrl-C
    /// exits at once).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub shutdown_delay: std::time::Duration,
    /// Then: time for in-flight requests to finish.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub shutdown_timeout: std::time::Duration,
    /// Request body limit in bytes (controller-runtime uses 7 MiB).
    #[arg(long, default_value_t = 7 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Per-request deadline; keep it below the webhook's timeoutSeconds.
    #[arg(long, default_value = "4s", value_parser = parse_duration)]
    pub request_timeout: std::time::Duration,
    /// Open connections on each TLS listener; more are closed at once.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// Open connections from one IP address (so one client cannot lock out the others).
    #[arg(long, default_value_t = 512)]
    pub max_connections_per_peer: usize,
    /// Requests being evaluated at once; more get 503 at once.
    #[arg(long, default_value_t = 512)]
    pub max_in_flight: usize,
    /// A connection with no request in flight is closed after this (above the 90 s
    /// kube-apiserver's client keeps idle connections, so the client closes first).
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub idle_timeout: std::time::Duration,
    /// A client that reads nothing of our response for this long is disconnected.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub write_timeout: std::time::Duration,
    /// The request body must arrive within this after its headers (else 408).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub body_timeout: std::time::Duration,
    /// `/v1/evaluate` body limit in bytes.
    #[arg(long, default_value_t = 2 * 1024 * 1024)]
    pub max_evaluate_body_bytes: usize,
    /// Objects (documents and List items) in one `/v1/evaluate` body.
    #[arg(long, default_value_t = live_migration_guard_max_objects())]
    pub max_evaluate_objects: usize,
    /// Log format (logs go to stderr; RUST_LOG sets the level, default info).
    #[arg(long, value_enum, default_value = "text", env = "LMG_LOG_FORMAT")]
    pub log_format: LogFormat,
}

/// The default CA bundle path of an instance listening on `listen`:
/// `$TMPDIR/live-migration-guard/<port>/ca.crt` (two servers cannot hold one port, so they
/// never overwrite each other's bundle; with port 0 the process id stands in).
pub fn default_ca_bundle(listen: std::net::SocketAddr) -> PathBuf {
    let instance = match listen.port() {
        0 => format!("pid-{}", std::process::id()),
        port => port.to_string(),
    };
    std::env::temp_dir()
        .join("live-migration-guard")
        .join(instance)
        .join("ca.crt")
}

const fn live_migration_guard_max_objects() -> usize {
    crate::facts::load::MAX_REQUEST_OBJECTS
}

/// Parses `500ms`, `10s`, `5m`, `1h`, `1h30m` (jiff's friendly format) or ISO 8601.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let d: k8s_openapi::jiff::SignedDuration = s
        .parse()
        .map_err(|e| format!("{s:?} is not a duration like 500ms, 10s, 5m: {e}"))?;
    std::time::Duration::try_from(d).map_err(|_| format!("{s:?} must not be negative"))
}

impl ServeArgs {
    /// The side endpoints' authorization in effect (`--evaluate-auth`, defaulted).
    pub fn evaluate_auth(&self) -> EvaluateAuth {
        self.evaluate_auth
            .unwrap_or(if self.evaluate_token_file.is_some() {
                EvaluateAuth::Token
            } else {
                EvaluateAuth::None
            })
    }

    /// Whether `kubernetes` authorization is on for the side endpoints or `/metrics`.
    pub fn uses_kube_auth(&self) -> bool {
        self.evaluate_auth() == EvaluateAuth::Kubernetes || self.metrics_auth == MetricsAuth::Kubernetes
    }

    /// Refuses contradictory authorization flags, each error naming the flags and the fix.
    pub fn check_auth_flags(&self) -> Result<(), FlagError> {
        let conflict = |m: &str| Err(FlagError::Conflict(m.to_owned()));
        match (self.evaluate_auth(), self.evaluate_token_file.is_some()) {
            (EvaluateAuth::Token, false) => {
                return conflict(
                    "--evaluate-auth token needs --evaluate-token-file FILE (the file holding the token)",
                );
            }
            (EvaluateAuth::Kubernetes, true) => {
                return conflict(
                    "--evaluate-token-file is for --evaluate-auth token; with --evaluate-auth kubernetes callers present their own Kubernetes tokens: drop one of the two",
                );
            }
            (EvaluateAuth::None, true) => {
                return conflict("--evaluate-auth none ignores --evaluate-token-file: drop one of the two");
            }
            _ => {}
        }
        if !self.evaluate_auth_audiences.is_empty() && !self.uses_kube_auth() {
            return conflict(
                "--evaluate-auth-audience applies to Kubernetes tokens only: add --evaluate-auth kubernetes (or --metrics-auth kubernetes)",
            );
        }
        if self.uses_kube_auth() && !self.uses_cluster() {
            let flag = if self.evaluate_auth() == EvaluateAuth::Kubernetes {
                "--evaluate-auth kubernetes"
            } else {
                "--metrics-auth kubernetes"
            };
            return Err(FlagError::Conflict(format!(
                "{flag} sends TokenReviews and SubjectAccessReviews to the Kubernetes API server, but this server has no cluster connection: run it with --cluster on (in a pod, or with --kubeconfig FILE), or use --evaluate-auth token outside a cluster"
            )));
        }
        Ok(())
    }

    /// The cache settings of `kubernetes` authorization.
    pub fn kube_auth_settings(&self) -> crate::server::auth::KubeAuthSettings {
        crate::server::auth::KubeAuthSettings {
            audiences: self.evaluate_auth_audiences.clone(),
            ttl: self.auth_cache_ttl,
            negative_ttl: self.auth_cache_negative_ttl,
            cache_size: self.auth_cache_size as usize,
        }
    }

    /// The server configuration these flags describe (reads `--evaluate-token-file`); `kube`
    /// is the `kubernetes` authorizer, built by the caller from the cluster connection when
    /// [`Self::uses_kube_auth`].
    pub fn server_config(
        &self,
        metrics: &Arc<crate::server::metrics::Metrics>,
        kube: Option<Arc<crate::server::auth::KubeAuth>>,
    ) -> Result<crate::server::Config, FlagError> {
        use crate::server::auth::{SideAuth, StaticToken};
        use crate::server::{Config, Limits, SideListener, TlsSource, tls::ClientAuth};
        self.check_auth_flags()?;
        let missing_client =
            || FlagError::Conflict("kubernetes auth is on but no Kubernetes client was built (a bug)".into());
        let side = match self.evaluate_listen {
            None => None,
            Some(listen) => {
                let auth = match (self.evaluate_auth(), &self.evaluate_token_file) {
                    (EvaluateAuth::Token, Some(path)) => SideAuth::Token(Arc::new(StaticToken::from_file(
                        path.clone(),
                        crate::server::auth::TOKEN_FILE_CHECK_INTERVAL,
                        metrics.clone(),
                    )?)),
                    (EvaluateAuth::Kubernetes, _) => {
                        SideAuth::Kubernetes(kube.clone().ok_or_else(missing_client)?)
                    }
                    _ => SideAuth::None,
                };
                let client_auth = ClientAuth {
                    ca: self.evaluate_client_ca.clone(),
                    names: self.evaluate_client_names.clone(),
                };
                Some(SideListener {
                    listen,
                    auth,
                    client_auth,
                })
            }
        };
        let metrics_auth = match self.metrics_auth {
            MetricsAuth::None => None,
            MetricsAuth::Kubernetes => Some(kube.ok_or_else(missing_client)?),
        };
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => TlsSource::Files {
                cert: cert.clone(),
                key: key.clone(),
                reload_interval: self.tls_reload_interval,
            },
            _ => {
                let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
                names.extend(self.dns_names.iter().cloned());
                let ca_out = self
                    .ca_bundle_out
                    .clone()
                    .unwrap_or_else(|| default_ca_bundle(self.listen));
                TlsSource::Generated { names, ca_out }
            }
        };
        Ok(Config {
            listen: self.listen,
            side,
            ops_listen: self.ops_listen,
            metrics_auth,
            tls,
            min_tls: self.tls_min_version,
            client_auth: ClientAuth {
                ca: self.client_ca.clone(),
                names: self.client_names.clone(),
            },
            policy: crate::admission::Policy {
                mode: self.mode,
                deny_unknown: self.deny_unknown,
                allow_object_override: self.allow_object_override,
            },
            limits: Limits {
                body_bytes: self.max_body_bytes,
                evaluate_body_bytes: self.max_evaluate_body_bytes,
                evaluate_max_objects: self.max_evaluate_objects,
                body_timeout: self.body_timeout,
                request_timeout: self.request_timeout,
                idle_timeout: self.idle_timeout,
                write_timeout: self.write_timeout,
                max_connections: self.max_connections,
                max_connections_per_peer: self.max_connections_per_peer,
                max_in_flight: self.max_in_flight,
                ..Limits::default()
            },
            shutdown_delay: self.shutdown_delay,
            shutdown_timeout: self.shutdown_timeout,
        })
    }

    /// Whether facts come from a cluster, resolving `auto`.
    pub fn uses_cluster(&self) -> bool {
        match self.cluster {
            ClusterMode::On => true,
            ClusterMode::Off => false,
            ClusterMode::Auto => {
                self.facts.is_empty()
                    && (self.kubeconfig.is_some() || std::env::var_os("KUBERNETES_SERVICE_HOST").is_some())
            }
        }
    }
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
    /// One block per object with each finding's field and fix.
    Text,
    /// The report contract (the same JSON as /v1/evaluate).
    Json,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailOn {
    /// Exit 1 only when something is NotMigratable.
    NotMigratable,
    /// Exit 1 when something is NotMigratable or Unknown.
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
    let mut not_objects: Vec<(String, String)> = Vec::new();
    let mut load_all = |paths: &mut dyn Iterator<Item = &str>, stdin: &mut dyn Read| -> Vec<Loaded> {
        let mut all = Vec::new();
        for p in paths {
            if p == "-" {
                let mut buf = Vec::new();
                let res = match stdin.read_to_end(&mut buf) {
                    Ok(_) => load::parse_bytes(&buf, "<stdin>"),
                    Err(e) => Err(LoadError::Io {
                        path: "<stdin>".into(),
                        source: e,
                    }),
                };
                match res {
                    Ok(v) => all.extend(v),
                    Err(e) => errors.push(e),
                }
            } else {
                let found = load::load_path_lenient(std::path::Path::new(p));
                all.extend(found.loaded);
                not_objects.extend(found.not_objects);
                errors.extend(found.errors);
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
    for (path, why) in &not_objects {
        let _ = writeln!(err, "note: {path}: skipped: {why}");
    }
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
    let written = written.and_then(|()| out.flush());
    match written {
        // `evaluate … | head`: the reader has what it wanted.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return EXIT_OK,
        Err(e) => {
            let _ = writeln!(err, "error: writing the report: {e}");
            return EXIT_USAGE;
        }
        Ok(()) => {}
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
