//! Command-line interface: `evaluate` (YAML/JSON files; `--cluster`, `--admission`), `audit`
//! (a live cluster), `serve`, `certs` and `completions`.

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::batch::{self, Skipped};
use crate::evaluate::Verdict;
use crate::facts::cluster::{ListOptions, Scope};
use crate::facts::load::{self, LoadError, Loaded};
use crate::facts::{self, InfraFacts};
use crate::render::{self, Sourced};

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
    /// Evaluate NodePools and HostedClusters from YAML/JSON files (offline, or against a
    /// cluster's facts with --cluster); simulate the webhook's answer with --admission.
    #[command(after_help = EVALUATE_EXIT_CODES)]
    Evaluate(EvaluateArgs),
    /// Audit a live cluster: every KubeVirt NodePool and HostedCluster with its verdict, first
    /// reason and fix (read-only; nothing to install).
    #[command(after_help = AUDIT_AFTER_HELP)]
    Audit(AuditArgs),
    /// Run the admission webhook (HTTPS) and the ops endpoints (HTTP).
    Serve(Box<ServeArgs>),
    /// Certificate tooling.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Print a shell completion script (bash, zsh, fish).
    Completions(CompletionsArgs),
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
  0  nothing is NotMigratable (Unknown too, unless --fail-on unknown); --admission: all allowed
  1  something is NotMigratable (or Unknown with --fail-on unknown); --admission: one is denied
  2  usage or input errors (each named on stderr with its file and document); --cluster: the
     API server cannot be read (unreachable, forbidden: one line naming the resource)

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
    /// $TMPDIR/live-migration-guard/<port>/ca.crt with the port --listen bound, one per instance;
    /// the path is logged).
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
                TlsSource::Generated {
                    names,
                    ca_out: self.ca_bundle_out.clone(),
                }
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
    /// Output format (with --admission: text or json).
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Also exit 1 when a verdict is Unknown (and, in JUnit, fail its testcase).
    #[arg(long = "fail-on", value_enum, default_value_t = FailOn::NotMigratable)]
    pub fail_on: FailOn,
    /// Print only problems: NotMigratable and Unknown objects (with --admission: warnings and
    /// denials) and errors; no notes, no counts.
    #[arg(short, long)]
    pub quiet: bool,
    /// Read the facts from a live cluster instead of --facts files: one list of the
    /// resources `serve` watches, as `audit` reads them (RBAC: see `audit --help`).
    #[arg(long, conflicts_with_all = ["facts", "infra_facts"], help_heading = "Facts from a cluster")]
    pub cluster: bool,
    /// Kubeconfig of --cluster (default: KUBECONFIG, then ~/.kube/config, then the pod's
    /// service account).
    #[arg(
        long,
        value_name = "PATH",
        requires = "cluster",
        help_heading = "Facts from a cluster"
    )]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context of --cluster (default: the current context).
    #[arg(
        long,
        value_name = "NAME",
        requires = "cluster",
        help_heading = "Facts from a cluster"
    )]
    pub context: Option<String>,
    /// With --cluster: read HostedClusters' infra kubeconfig Secrets and list the external
    /// infrastructure clusters' facts, as `serve --infra-credentials=read` does.
    #[arg(
        long,
        value_enum,
        default_value = "off",
        help_heading = "Facts from a cluster"
    )]
    pub infra_credentials: InfraCredentials,
    /// Print progress on stderr while listing ("listed 120 NodePools"); on by default when
    /// stderr is a terminal (unless --quiet).
    #[arg(short, long, help_heading = "Facts from a cluster")]
    pub verbose: bool,
    /// Print what the webhook would answer for each object, as kubectl shows it: `Warning:`
    /// lines and the denial on stderr. Exit 1 when an object is denied.
    #[arg(long, help_heading = "Admission simulation")]
    pub admission: bool,
    /// The server's --mode for --admission.
    #[arg(
        long,
        value_enum,
        default_value = "warn",
        requires = "admission",
        help_heading = "Admission simulation"
    )]
    pub mode: crate::admission::Mode,
    /// The stored objects (files or directories): each input with the same kind, namespace
    /// and name is admitted as an UPDATE of it (UPDATE denies only new errors).
    #[arg(
        long,
        value_name = "PATH",
        requires = "admission",
        help_heading = "Admission simulation"
    )]
    pub old: Vec<String>,
    /// The live-migration-guard.io/mode label of the objects' namespaces (default: none; with
    /// --cluster, the cluster's labels).
    #[arg(
        long,
        value_enum,
        requires = "admission",
        help_heading = "Admission simulation"
    )]
    pub namespace_mode: Option<crate::admission::Mode>,
    /// The server's --deny-unknown for --admission.
    #[arg(long, requires = "admission", help_heading = "Admission simulation")]
    pub deny_unknown: bool,
    /// The server's --allow-object-override for --admission.
    #[arg(long, requires = "admission", help_heading = "Admission simulation")]
    pub allow_object_override: bool,
    /// YAML (multi-document) or JSON files, directories (recursive), or `-` for stdin.
    #[arg(required = true, value_name = "PATH")]
    pub inputs: Vec<String>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// One block per object with its source, each finding's field and fix.
    Text,
    /// The report contract (the JSON of /v1/evaluate, each report with its `source`).
    Json,
    /// The same document as YAML.
    Yaml,
    /// JUnit XML: one testcase per object, a failure for NotMigratable (Jenkins, GitLab).
    Junit,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailOn {
    /// Exit 1 only when something is NotMigratable.
    NotMigratable,
    /// Exit 1 when something is NotMigratable or Unknown.
    Unknown,
}

/// `audit`: every KubeVirt NodePool and HostedCluster of a live cluster.
#[derive(Args, Debug, Clone)]
pub struct AuditArgs {
    /// Kubeconfig (default: KUBECONFIG, then ~/.kube/config, then the pod's service account).
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (default: the current context).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// Namespace of the NodePools and HostedClusters (default: the context's namespace).
    #[arg(short, long, value_name = "NS", conflicts_with = "all_namespaces")]
    pub namespace: Option<String>,
    /// Every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = AuditOutput::Table)]
    pub output: AuditOutput,
    /// Also exit 1 when a verdict is Unknown (and, in JUnit, fail its testcase).
    #[arg(long = "fail-on", value_enum, default_value_t = FailOn::NotMigratable)]
    pub fail_on: FailOn,
    /// Print only problems (NotMigratable and Unknown objects) and errors.
    #[arg(short, long)]
    pub quiet: bool,
    /// Read HostedClusters' infra kubeconfig Secrets (needs `get secrets`) and list the
    /// external infrastructure clusters' facts, as `serve --infra-credentials=read` does.
    #[arg(long, value_enum, default_value = "off")]
    pub infra_credentials: InfraCredentials,
    /// Print progress on stderr while listing ("listed 120 NodePools"); on by default when
    /// stderr is a terminal (unless --quiet).
    #[arg(short, long)]
    pub verbose: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditOutput {
    /// One row per object: verdict, first reason, fix.
    Table,
    /// The table with the predicted condition and the field.
    Wide,
    /// The report contract, each report with its `source` (the cluster).
    Json,
    /// The same document as YAML.
    Yaml,
    /// JUnit XML: one testcase per object, a failure for NotMigratable.
    Junit,
}

/// After `audit --help`: what it reads, the permissions, the exit codes.
pub const AUDIT_AFTER_HELP: &str = "\
Reads, once, what `serve` watches: StorageClasses, StorageProfiles and KubeVirts (cluster
scope), HostedClusters and NodePools (the namespace, or every one with -A), and judges each
KubeVirt NodePool and HostedCluster as the server's audit does. Nothing is written.

Permissions (RBAC verb list): storageclasses.storage.k8s.io, storageprofiles.cdi.kubevirt.io,
kubevirts.kubevirt.io at the cluster scope; nodepools and hostedclusters.hypershift.openshift.io
in the namespace (cluster-wide with -A); with --infra-credentials=read, get on the HostedClusters'
infra kubeconfig Secrets. A forbidden list is one error line naming the resource (exit 2).

Exit codes:
  0  nothing is NotMigratable (Unknown too, unless --fail-on unknown), or nothing found
  1  something is NotMigratable (or Unknown with --fail-on unknown)
  2  usage errors, or the API server cannot be read (unreachable, forbidden)";

#[derive(Args, Debug, Clone)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: CompletionShell,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompletionShell {
    /// Bash (bash-completion).
    Bash,
    /// Zsh (a `_live-migration-guard` file on fpath).
    Zsh,
    /// Fish.
    Fish,
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

/// Writes `text`; a reader that went away (`… | head`) is not an error.
fn emit(out: &mut dyn Write, err: &mut dyn Write, text: &str) -> Result<(), u8> {
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        // `evaluate … | head`: the reader has what it wanted.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(EXIT_OK),
        Err(e) => {
            let _ = writeln!(err, "error: writing the report: {e}");
            Err(EXIT_USAGE)
        }
    }
}

/// What `evaluate` read from its paths.
#[derive(Default)]
struct Inputs {
    loaded: Vec<Loaded>,
    /// `raw[i]` is `loaded[i]`'s document (only for --admission).
    raw: Vec<serde_json::Value>,
}

/// Loads paths (`-` is stdin), collecting every error and skipped non-object file.
struct Loader<'a> {
    stdin: &'a mut dyn Read,
    errors: Vec<LoadError>,
    not_objects: Vec<(String, String)>,
}

impl Loader<'_> {
    fn load<'p>(&mut self, paths: impl IntoIterator<Item = &'p str>, keep_raw: bool) -> Inputs {
        let mut all = Inputs::default();
        for p in paths {
            if p == "-" {
                let mut buf = Vec::new();
                let res = match self.stdin.read_to_end(&mut buf) {
                    Ok(_) => load::parse_bytes_with_raw(&buf, "<stdin>"),
                    Err(e) => Err(LoadError::Io {
                        path: "<stdin>".into(),
                        source: e,
                    }),
                };
                match res {
                    Ok((loaded, raw)) => {
                        all.loaded.extend(loaded);
                        if keep_raw {
                            all.raw.extend(raw);
                        }
                    }
                    Err(e) => self.errors.push(e),
                }
            } else {
                let path = std::path::Path::new(p);
                let found = if keep_raw {
                    load::load_path_lenient_with_raw(path)
                } else {
                    load::load_path_lenient(path)
                };
                all.loaded.extend(found.loaded);
                all.raw.extend(found.raw);
                self.not_objects.extend(found.not_objects);
                self.errors.extend(found.errors);
            }
        }
        all
    }
}

/// Runs `evaluate`; returns the process exit code. Reports go to `out`, notes and errors to `err`.
pub fn run_evaluate(
    args: &EvaluateArgs,
    stdin: &mut dyn Read,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    if args.admission && matches!(args.output, OutputFormat::Yaml | OutputFormat::Junit) {
        let _ = writeln!(
            err,
            "error: --admission prints what kubectl shows (-o text) or the AdmissionReview answers (-o json), not -o {}; drop --admission for report formats",
            args.output
                .to_possible_value()
                .map(|v| v.get_name().to_owned())
                .unwrap_or_default()
        );
        return EXIT_USAGE;
    }
    if !args.cluster && args.infra_credentials == InfraCredentials::Read {
        let _ = writeln!(
            err,
            "error: --infra-credentials=read reads Secrets of a live cluster: add --cluster"
        );
        return EXIT_USAGE;
    }
    let note = |err: &mut dyn Write, line: String| {
        if !args.quiet {
            let _ = writeln!(err, "note: {line}");
        }
    };
    let mut loader = Loader {
        stdin,
        errors: Vec::new(),
        not_objects: Vec::new(),
    };
    let facts_loaded = loader.load(args.facts.iter().filter_map(|p| p.to_str()), false);
    let infra_loaded: Vec<(InfraFactsArg, Inputs)> = args
        .infra_facts
        .iter()
        .map(|a| {
            let path = a.path.to_str().unwrap_or_default();
            (a.clone(), loader.load([path], false))
        })
        .collect();
    let inputs = loader.load(args.inputs.iter().map(String::as_str), args.admission);
    let olds = loader.load(args.old.iter().map(String::as_str), true);
    for (path, why) in &loader.not_objects {
        note(err, format!("{path}: skipped: {why}"));
    }
    if !loader.errors.is_empty() {
        for e in &loader.errors {
            let _ = writeln!(err, "error: {e}");
        }
        return EXIT_USAGE;
    }

    let (facts, namespace_modes): (Arc<facts::Facts>, Option<Arc<HashMap<String, String>>>) = if args.cluster
    {
        let namespaces: BTreeSet<String> = inputs
            .loaded
            .iter()
            .filter_map(|l| match &l.object {
                load::Object::NodePool(np) => np.metadata.namespace.clone(),
                _ => None,
            })
            .collect();
        let infra_for: Vec<Arc<crate::resources::HostedCluster>> = inputs
            .loaded
            .iter()
            .filter_map(|l| match &l.object {
                load::Object::HostedCluster(hc) => Some(Arc::new(hc.as_ref().clone())),
                _ => None,
            })
            .collect();
        let progress = crate::live::ProgressSink::new(
            err,
            args.verbose || (!args.quiet && crate::live::stderr_is_terminal()),
        );
        let read = crate::live::read(
            args.kubeconfig.as_deref(),
            args.context.as_deref(),
            |_| ListOptions {
                nodepools: None,
                hosted_clusters: Scope::Namespaces(namespaces.into_iter().collect()),
                namespace_modes: args.admission && args.namespace_mode.is_none(),
                infra_credentials: args.infra_credentials == InfraCredentials::Read,
                infra_for,
                ..ListOptions::default()
            },
            &progress,
        );
        match read {
            Ok(read) => {
                for api in &read.listed.absent {
                    if !args.quiet {
                        progress.line(&format!(
                            "note: {} does not serve {api}: the CRD is not installed",
                            read.server
                        ));
                    }
                }
                (
                    read.listed.snapshot.facts.clone(),
                    read.listed.snapshot.namespace_modes.clone(),
                )
            }
            Err(e) => {
                progress.line(&format!("error: {e}"));
                return EXIT_USAGE;
            }
        }
    } else {
        let (mut builder, unused) = facts::builder_from(&facts_loaded.loaded);
        for (source, kind) in unused {
            note(
                err,
                format!(
                    "{source}: {kind} is not a fact (StorageClass, StorageProfile, KubeVirt, HostedCluster); not used"
                ),
            );
        }
        for (arg, loaded) in infra_loaded {
            let (b, unused) = facts::builder_from(&loaded.loaded);
            for (source, kind) in unused {
                note(err, format!("{source}: {kind} is not a fact; not used"));
            }
            builder.add_infra(&arg.namespace, &arg.name, InfraFacts::Ready(Arc::new(b.build())));
        }
        (Arc::new(builder.build()), None)
    };

    if args.admission {
        return run_admission(args, &inputs, &olds, &facts, namespace_modes.as_deref(), out, err);
    }

    let (indexed, skipped) = batch::evaluate_indexed(&inputs.loaded, &facts);
    for s in &skipped {
        note(err, format!("{}: {} skipped: {}", s.source, s.kind, s.reason));
    }
    if indexed.is_empty() {
        let _ = writeln!(err, "error: no NodePool or HostedCluster found in the inputs");
        return EXIT_USAGE;
    }
    let reports: Vec<Sourced> = indexed
        .into_iter()
        .map(|(i, report)| Sourced {
            report,
            source: (&inputs.loaded[i].source).into(),
        })
        .collect();
    let code = exit_code(reports.iter().map(|s| s.report.verdict), args.fail_on);
    let text = match render_reports(
        &reports,
        &skipped,
        args.output.into(),
        args.quiet,
        args.fail_on,
        "live-migration-guard evaluate",
    ) {
        Ok(text) => text,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            return EXIT_USAGE;
        }
    };
    match emit(out, err, &text) {
        Ok(()) => code,
        Err(code) => code,
    }
}

/// The report formats `evaluate` and `audit` share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReportFormat {
    Text,
    Table { wide: bool, namespaces: bool },
    Json,
    Yaml,
    Junit,
}

impl From<OutputFormat> for ReportFormat {
    fn from(o: OutputFormat) -> Self {
        match o {
            OutputFormat::Text => Self::Text,
            OutputFormat::Json => Self::Json,
            OutputFormat::Yaml => Self::Yaml,
            OutputFormat::Junit => Self::Junit,
        }
    }
}

fn render_reports(
    reports: &[Sourced],
    skipped: &[Skipped],
    format: ReportFormat,
    quiet: bool,
    fail_on: FailOn,
    suite: &str,
) -> Result<String, String> {
    let shown: Vec<Sourced> = reports
        .iter()
        .filter(|s| !quiet || render::is_problem(s.report.verdict))
        .cloned()
        .collect();
    let doc = render::Document {
        reports: &shown,
        skipped: if quiet { &[] } else { skipped },
    };
    Ok(match format {
        ReportFormat::Text => render::text(reports, skipped, quiet),
        ReportFormat::Table { .. } if shown.is_empty() => String::new(),
        ReportFormat::Table { wide, namespaces } => render::table(&shown, wide, namespaces),
        ReportFormat::Json => render::json(&doc),
        ReportFormat::Yaml => render::yaml(&doc)?,
        ReportFormat::Junit => render::junit(suite, &shown, fail_on == FailOn::Unknown),
    })
}

/// `--admission`: each NodePool and HostedCluster through the webhook's review, printed as
/// kubectl prints the answer (or, with `-o json`, the answers themselves).
fn run_admission(
    args: &EvaluateArgs,
    inputs: &Inputs,
    olds: &Inputs,
    facts: &facts::Facts,
    cluster_modes: Option<&HashMap<String, String>>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    use crate::admission::{Context, Endpoint, Policy};
    use crate::simulate::{self, Request};

    let policy = Policy {
        mode: args.mode,
        deny_unknown: args.deny_unknown,
        allow_object_override: args.allow_object_override,
    };
    let key = |l: &Loaded| -> Option<(&'static str, String, String)> {
        let (kind, meta) = match &l.object {
            load::Object::NodePool(np) => ("NodePool", &np.metadata),
            load::Object::HostedCluster(hc) => ("HostedCluster", &hc.metadata),
            _ => return None,
        };
        Some((
            kind,
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
        ))
    };
    let old_of: HashMap<(&'static str, String, String), &serde_json::Value> = olds
        .loaded
        .iter()
        .zip(&olds.raw)
        .filter_map(|(l, raw)| Some((key(l)?, raw)))
        .collect();

    #[derive(serde::Serialize)]
    struct Answer<'a> {
        source: render::Source,
        operation: &'static str,
        review: &'a crate::admission::review::AdmissionReviewResponse,
    }
    #[derive(serde::Serialize)]
    struct Answers<'a> {
        reviews: Vec<Answer<'a>>,
    }
    let mut outcomes = Vec::new();
    let mut problems = 0;
    for (i, (l, raw)) in inputs.loaded.iter().zip(&inputs.raw).enumerate() {
        let endpoint = match &l.object {
            load::Object::NodePool(_) => Endpoint::NodePools,
            load::Object::HostedCluster(_) => Endpoint::HostedClusters,
            other => {
                if !args.quiet {
                    let _ = writeln!(
                        err,
                        "note: {}: {} skipped: not sent to this webhook (only hypershift.openshift.io/v1beta1 NodePools and HostedClusters are)",
                        l.source,
                        other.kind()
                    );
                }
                continue;
            }
        };
        let Some(k) = key(l) else { continue };
        let old = old_of.get(&k).copied();
        if !args.old.is_empty() && old.is_none() {
            let _ = writeln!(
                err,
                "error: {}: --old has no {} {}/{} to update; pass the stored object, or drop --old to admit a CREATE",
                l.source, k.0, k.1, k.2
            );
            problems += 1;
            continue;
        }
        // kubectl sends a namespaced object without one to the context's namespace
        let namespace = if k.1.is_empty() {
            "default".to_owned()
        } else {
            k.1.clone()
        };
        let modes: Option<HashMap<String, String>> = args
            .namespace_mode
            .map(|m| HashMap::from([(namespace.clone(), m.as_str().to_owned())]));
        let ctx = Context {
            facts,
            namespace_modes: modes.as_ref().or(cluster_modes),
            policy: &policy,
        };
        let request = Request {
            endpoint,
            object: raw,
            old,
            namespace,
            uid: format!("live-migration-guard-evaluate-{}", i + 1),
        };
        match request.review(&ctx) {
            Ok(outcome) => outcomes.push((l, request, outcome)),
            Err(e) => {
                let _ = writeln!(err, "error: {}: {e}", l.source);
                problems += 1;
            }
        }
    }
    if problems > 0 {
        return EXIT_USAGE;
    }
    if outcomes.is_empty() {
        let _ = writeln!(err, "error: no NodePool or HostedCluster found in the inputs");
        return EXIT_USAGE;
    }
    let denied = outcomes.iter().any(|(_, _, o)| !o.review.response.allowed);
    let code = if denied { EXIT_NOT_MIGRATABLE } else { EXIT_OK };
    if args.output == OutputFormat::Json {
        let answers = Answers {
            reviews: outcomes
                .iter()
                .filter(|(_, _, o)| {
                    !args.quiet || !o.review.response.allowed || !o.review.response.warnings.is_empty()
                })
                .map(|(l, request, o)| Answer {
                    source: (&l.source).into(),
                    operation: request.operation(),
                    review: &o.review,
                })
                .collect(),
        };
        let mut text = serde_json::to_string_pretty(&answers).unwrap_or_default();
        text.push('\n');
        return match emit(out, err, &text) {
            Ok(()) => code,
            Err(code) => code,
        };
    }
    // kubectl prints each distinct warning once per run
    let mut seen = std::collections::HashSet::new();
    for (l, request, outcome) in &outcomes {
        let file = if l.source.origin == "<stdin>" {
            "STDIN"
        } else {
            &l.source.origin
        };
        let printed = simulate::kubectl(request, &outcome.review.response, file);
        for w in &printed.warnings {
            if seen.insert(w.clone()) {
                let _ = writeln!(err, "{w}");
            }
        }
        match &printed.result {
            Ok(line) if !args.quiet => {
                if let Err(code) = emit(out, err, &format!("{line}\n")) {
                    return code;
                }
            }
            Ok(_) => {}
            Err(denial) => {
                let _ = writeln!(err, "{denial}");
            }
        }
        let _ = err.flush();
    }
    code
}

/// Runs `audit`: lists the cluster once and prints every KubeVirt NodePool and HostedCluster
/// with its verdict. Returns the process exit code.
pub fn run_audit(args: &AuditArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let progress = crate::live::ProgressSink::new(
        err,
        args.verbose || (!args.quiet && crate::live::stderr_is_terminal()),
    );
    let mut chosen = String::new();
    let read = crate::live::read(
        args.kubeconfig.as_deref(),
        args.context.as_deref(),
        |default_namespace| {
            let scope = if args.all_namespaces {
                Scope::All
            } else {
                chosen = args
                    .namespace
                    .clone()
                    .unwrap_or_else(|| default_namespace.to_owned());
                Scope::Namespaces(vec![chosen.clone()])
            };
            ListOptions {
                nodepools: Some(scope.clone()),
                hosted_clusters: scope,
                infra_credentials: args.infra_credentials == InfraCredentials::Read,
                ..ListOptions::default()
            }
        },
        &progress,
    );
    let read = match read {
        Ok(read) => read,
        Err(e) => {
            progress.line(&format!("error: {e}"));
            return EXIT_USAGE;
        }
    };
    if !args.quiet {
        for api in &read.listed.absent {
            progress.line(&format!(
                "note: {} does not serve {api}: the CRD is not installed",
                read.server
            ));
        }
    }
    let mut reports: Vec<Sourced> = crate::audit::evaluate_all(&read.listed.snapshot, &read.listed.nodepools)
        .into_iter()
        .map(|report| Sourced {
            report,
            source: render::Source::Cluster {
                cluster: read.server.clone(),
            },
        })
        .collect();
    let before = reports.len();
    reports.retain(|s| s.report.verdict != Verdict::NotApplicable);
    let not_kubevirt = before - reports.len();
    reports.sort_by(|a, b| {
        (&a.report.namespace, a.report.kind, &a.report.name).cmp(&(
            &b.report.namespace,
            b.report.kind,
            &b.report.name,
        ))
    });
    let where_ = if args.all_namespaces {
        "any namespace".to_owned()
    } else {
        format!("namespace {chosen}")
    };
    if !args.quiet {
        if not_kubevirt > 0 {
            progress.line(&format!(
                "note: {not_kubevirt} NodePool(s)/HostedCluster(s) of other platforms not listed"
            ));
        }
        if reports.is_empty() {
            let hint = if args.all_namespaces {
                ""
            } else {
                " (-A lists every namespace)"
            };
            progress.line(&format!(
                "No KubeVirt NodePools or HostedClusters found in {where_}{hint}."
            ));
        }
    }
    let code = exit_code(reports.iter().map(|s| s.report.verdict), args.fail_on);
    let format = match args.output {
        AuditOutput::Table => ReportFormat::Table {
            wide: false,
            namespaces: args.all_namespaces,
        },
        AuditOutput::Wide => ReportFormat::Table {
            wide: true,
            namespaces: args.all_namespaces,
        },
        AuditOutput::Json => ReportFormat::Json,
        AuditOutput::Yaml => ReportFormat::Yaml,
        AuditOutput::Junit => ReportFormat::Junit,
    };
    let suite = format!("live-migration-guard audit {}", read.server);
    let text = match render_reports(&reports, &[], format, args.quiet, args.fail_on, &suite) {
        Ok(text) => text,
        Err(e) => {
            progress.line(&format!("error: {e}"));
            return EXIT_USAGE;
        }
    };
    let written = {
        let mut err = Vec::new();
        let r = emit(out, &mut err, &text);
        if !err.is_empty() {
            progress.line(String::from_utf8_lossy(&err).trim_end());
        }
        r
    };
    if let Err(code) = written {
        return code;
    }
    if matches!(format, ReportFormat::Table { .. }) && !args.quiet && !reports.is_empty() {
        progress.line(&render::summary(&reports, 0));
    }
    code
}

/// The binary's name, as installed (`cargo install`, the image).
pub const BIN_NAME: &str = "live-migration-guard";

/// Prints the completion script for `shell`.
pub fn run_completions(args: &CompletionsArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    use clap::CommandFactory as _;
    use clap_complete::Shell;
    let shell: Shell = match args.shell {
        CompletionShell::Bash => Shell::Bash,
        CompletionShell::Zsh => Shell::Zsh,
        CompletionShell::Fish => Shell::Fish,
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), BIN_NAME, &mut script);
    let mut script = String::from_utf8_lossy(&script).into_owned();
    if shell == Shell::Bash {
        // clap_complete (4.6.12) spells a hyphenated binary's subcommand states one way in its
        // dispatch loop (`live__migration__guard__subcmd__audit`) and another in the case arms
        // (`live__subcmd__migration__subcmd__guard__subcmd__audit`), so no subcommand's flags
        // complete (clap-rs/clap#6421). Spell the arms as the loop does; a no-op once fixed.
        script = script.replace(&BIN_NAME.replace('-', "__subcmd__"), &BIN_NAME.replace('-', "__"));
    }
    match emit(out, err, &script) {
        Ok(()) => EXIT_OK,
        Err(code) => code,
    }
}

/// The name to show in help and usage when run as a kubectl (or oc) plugin: argv[0]
/// `kubectl-live_migration_guard` is invoked as `kubectl live-migration-guard` (kubectl maps
/// `-` in a command to `_` in the file name). `None` otherwise (clap shows argv[0]'s name).
pub fn plugin_name(argv0: Option<&std::ffi::OsStr>) -> Option<String> {
    let file = std::path::Path::new(argv0?).file_name()?.to_str()?;
    let (tool, plugin) = file.split_once('-')?;
    if !matches!(tool, "kubectl" | "oc") || plugin.is_empty() {
        return None;
    }
    Some(format!("{tool} {}", plugin.replace('_', "-")))
}

fn exit_code(verdicts: impl IntoIterator<Item = Verdict>, fail_on: FailOn) -> u8 {
    let failing = |v: Verdict| match v {
        Verdict::NotMigratable => true,
        Verdict::Unknown => fail_on == FailOn::Unknown,
        _ => false,
    };
    if verdicts.into_iter().any(failing) {
        EXIT_NOT_MIGRATABLE
    } else {
        EXIT_OK
    }
}
