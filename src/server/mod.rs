//! The webhook server: a TLS listener for admission and the side endpoints, a plain-HTTP
//! ops listener, certificate reloading, and a graceful drain on shutdown.
//!
//! Built from a [`Config`] with [`Server::bind`] (which binds both ports, so tests can
//! use port 0), then driven by [`Server::run`] until the shutdown future completes.

pub mod auth;
pub mod body;
pub mod conn;
pub mod handlers;
pub mod listener;
pub mod metrics;
pub mod ops;
pub mod state;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::admission::Policy;
use crate::evaluate::Reports;
use crate::facts::Snapshot;

use metrics::{Metrics, ResultLabels};
use state::{AppState, Health};
use tls::{CertStore, ClientAuth, MinTls, Reload};

/// Request and connection limits (README: "Limits"). Every limit answers with a clear
/// status (413, 408, 503) or closes a connection that does nothing useful; none queues.
#[derive(Clone, Debug)]
pub struct Limits {
    /// AdmissionReview body limit; controller-runtime's is 7 MiB (object + oldObject).
    pub body_bytes: usize,
    /// `/v1/evaluate` body limit: its answer grows with the objects sent, so it is smaller.
    pub evaluate_body_bytes: usize,
    /// Objects (documents and `List` items) in one `/v1/evaluate` body.
    pub evaluate_max_objects: usize,
    /// `/v1/evaluate` requests evaluated at once (off the async workers); more get 503.
    pub evaluate_in_flight: usize,
    /// Request bodies being received, all connections together; past it, 503.
    pub body_budget_bytes: usize,
    /// The whole body must arrive within this after the headers (else 408).
    pub body_timeout: Duration,
    /// Per-request deadline, below the webhook's `timeoutSeconds`; it bounds evaluation
    /// too (`/v1/evaluate` stops between objects).
    pub request_timeout: Duration,
    /// Slow clients must send their headers within this; a new connection its first
    /// request's headers.
    pub header_read_timeout: Duration,
    pub handshake_timeout: Duration,
    /// A connection with no request in flight is closed after this.
    pub idle_timeout: Duration,
    /// A peer that does not read what we write is dropped after this.
    pub write_timeout: Duration,
    /// Open connections; more are closed at once.
    pub max_connections: usize,
    /// Open connections from one IP address.
    pub max_connections_per_peer: usize,
    /// Requests being served; more get 503 at once instead of queueing.
    pub max_in_flight: usize,
    pub h2_max_streams: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            body_bytes: 7 * 1024 * 1024,
            evaluate_body_bytes: 2 * 1024 * 1024,
            evaluate_max_objects: crate::facts::load::MAX_REQUEST_OBJECTS,
            evaluate_in_flight: 2,
            body_budget_bytes: 64 * 1024 * 1024,
            body_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(4),
            header_read_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            write_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_connections_per_peer: 512,
            max_in_flight: 512,
            h2_max_streams: 128,
        }
    }
}

impl Limits {
    /// The ops listener's: few connections, same deadlines.
    fn ops(&self) -> Self {
        Self {
            max_connections: 64,
            max_connections_per_peer: 32,
            ..self.clone()
        }
    }
}

/// Where the serving certificate comes from.
#[derive(Clone, Debug)]
pub enum TlsSource {
    /// PEM files, re-read every `reload_interval`.
    Files {
        cert: PathBuf,
        key: PathBuf,
        reload_interval: Duration,
    },
    /// Generated at start for `names`; the CA bundle is written to `ca_out`, by default to
    /// [`default_ca_bundle`] of the port the admission listener bound.
    Generated {
        names: Vec<String>,
        ca_out: Option<PathBuf>,
    },
}

/// The default CA bundle path of an instance whose admission listener holds `port`:
/// `$TMPDIR/live-migration-guard/<port>/ca.crt`. Two servers cannot hold one port, so they
/// never overwrite each other's bundle; with `--listen …:0` it is the port the kernel picked.
pub fn default_ca_bundle(port: u16) -> PathBuf {
    std::env::temp_dir()
        .join("live-migration-guard")
        .join(port.to_string())
        .join("ca.crt")
}

/// An optional separate listener for `/v1/evaluate` and `/v1/report`, so they can be
/// reached (and protected) apart from the admission endpoints.
#[derive(Clone, Debug)]
pub struct SideListener {
    pub listen: SocketAddr,
    /// Who may call the side endpoints (`--evaluate-auth`).
    pub auth: auth::SideAuth,
    /// Client certificates required on this listener, if any.
    pub client_auth: ClientAuth,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub side: Option<SideListener>,
    pub ops_listen: SocketAddr,
    /// `--metrics-auth kubernetes`: `/metrics` on the ops port needs a token allowed to `get`
    /// the non-resource URL `/metrics`.
    pub metrics_auth: Option<Arc<auth::KubeAuth>>,
    pub tls: TlsSource,
    pub min_tls: MinTls,
    pub client_auth: ClientAuth,
    pub policy: Policy,
    pub limits: Limits,
    /// Readiness turns false at SIGTERM; we keep serving this long so endpoints converge.
    pub shutdown_delay: Duration,
    /// Then in-flight requests get this long to finish before connections are closed.
    pub shutdown_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Certs(#[from] crate::certs::CertError),
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("ops listener: {0}")]
    Ops(std::io::Error),
}

/// One bound TLS listener and what it serves.
struct Bound {
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    routes: handlers::Routes,
    allowed_clients: Arc<[String]>,
}

/// A bound, not yet running, server.
pub struct Server {
    config: Config,
    listeners: Vec<Bound>,
    ops_listener: TcpListener,
    certs: Arc<CertStore>,
    state: AppState,
    /// Where the generated CA bundle was written, if any.
    pub ca_bundle: Option<PathBuf>,
}

impl Server {
    /// Loads (or generates) the certificate and binds both listeners. `snapshot` feeds the
    /// facts; `audit` the `/v1/report` endpoint.
    pub async fn bind(
        config: Config,
        snapshot: watch::Receiver<Arc<Snapshot>>,
        audit: watch::Receiver<Option<Arc<Reports>>>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ServerError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        // The CA bundle is written only once every listener is bound: a second instance that
        // cannot bind must not replace the bundle the first one's clients trust.
        let (certs, ca_pending) = match &config.tls {
            TlsSource::Files { cert, key, .. } => (CertStore::from_files(cert, key, provider.clone())?, None),
            TlsSource::Generated { names, ca_out } => {
                let generated = crate::certs::generate(names, 365)?;
                let store = CertStore::from_pem(
                    generated.tls_crt.as_bytes(),
                    generated.tls_key.as_bytes(),
                    provider.clone(),
                )?;
                (store, Some((ca_out.clone(), generated.ca_crt)))
            }
        };
        let certs = Arc::new(certs);
        metrics.cert_expiry.set(certs.not_after() as f64);
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::Bind { addr, source })
        };
        let tls_for = |auth: &ClientAuth| -> Result<Arc<rustls::ServerConfig>, ServerError> {
            Ok(Arc::new(tls::server_config(
                certs.clone(),
                config.min_tls,
                auth,
                provider.clone(),
            )?))
        };
        let mut listeners = vec![Bound {
            listener: bind(config.listen).await?,
            tls: tls_for(&config.client_auth)?,
            routes: if config.side.is_some() {
                handlers::Routes::Admission
            } else {
                handlers::Routes::All
            },
            allowed_clients: config.client_auth.names.clone().into(),
        }];
        if let Some(side) = &config.side {
            listeners.push(Bound {
                listener: bind(side.listen).await?,
                tls: tls_for(&side.client_auth)?,
                routes: handlers::Routes::Side {
                    auth: side.auth.clone(),
                },
                allowed_clients: side.client_auth.names.clone().into(),
            });
        }
        let ops_listener = bind(config.ops_listen).await?;
        let ca_bundle = match ca_pending {
            Some((path, pem)) => {
                let path = match path {
                    Some(path) => path,
                    None => default_ca_bundle(
                        listeners[0]
                            .listener
                            .local_addr()
                            .map_err(|source| ServerError::Bind {
                                addr: config.listen,
                                source,
                            })?
                            .port(),
                    ),
                };
                write_ca_bundle(&path, &pem)?;
                Some(path)
            }
            None => None,
        };
        let state = AppState::new(state::Shared {
            policy: Arc::new(config.policy.clone()),
            snapshot,
            metrics,
            health: Arc::new(Health::default()),
            audit,
        });
        Ok(Self {
            config,
            listeners,
            ops_listener,
            certs,
            state,
            ca_bundle,
        })
    }

    /// The admission listener's address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listeners[0].listener.local_addr()
    }

    /// The side listener's address, when configured.
    pub fn side_addr(&self) -> Option<std::io::Result<SocketAddr>> {
        self.listeners.get(1).map(|b| b.listener.local_addr())
    }

    pub fn ops_addr(&self) -> std::io::Result<SocketAddr> {
        self.ops_listener.local_addr()
    }

    /// Shutdown progress, for observers (tests, a future admin endpoint).
    pub fn health(&self) -> Arc<Health> {
        self.state.health.clone()
    }

    /// Serves until `shutdown` completes, then drains: readiness false → keep serving for
    /// the shutdown delay → stop accepting → finish in-flight requests (bounded by the
    /// shutdown timeout) with keep-alive connections closed cleanly.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) -> Result<(), ServerError> {
        let Self {
            config,
            listeners,
            ops_listener,
            certs,
            state,
            ..
        } = self;
        let draining = CancellationToken::new();
        let stop_accepting = CancellationToken::new();
        let stop_ops = CancellationToken::new();

        let reloader = match &config.tls {
            TlsSource::Files { reload_interval, .. } => Some(tokio::spawn(reload_loop(
                certs.clone(),
                state.metrics.clone(),
                *reload_interval,
            ))),
            TlsSource::Generated { .. } => None,
        };
        let ops = spawn_ops(
            ops_listener,
            ops::router(
                state.clone(),
                certs.clone(),
                config
                    .metrics_auth
                    .clone()
                    .map(|a| (a, config.limits.request_timeout)),
            ),
            config.limits.ops(),
            state.metrics.clone(),
            stop_ops.clone(),
        )?;
        let accepts: Vec<_> = listeners
            .into_iter()
            .map(|b| {
                let tls = listener::Tls {
                    acceptor: tokio_rustls::TlsAcceptor::from(b.tls),
                    allowed_clients: b.allowed_clients,
                };
                let app = handlers::router(state.clone(), &config.limits, b.routes);
                let (limits, metrics) = (config.limits.clone(), state.metrics.clone());
                let (draining, stop) = (draining.clone(), stop_accepting.clone());
                tokio::spawn(async move {
                    listener::serve(b.listener, Some(tls), app, &limits, metrics, draining, stop).await
                })
            })
            .collect();

        shutdown.await;
        state.health.start_draining();
        if config.shutdown_delay.is_zero() {
            // No delay: idle connections go straight to the grace after the listener closes;
            // none may be closed as "idle during the delay" in between.
            stop_accepting.cancel();
        }
        draining.cancel();
        tracing::info!(delay = ?config.shutdown_delay, "shutdown requested: readiness is false; still serving while endpoints converge (idle connections are closed, responses say Connection: close); press Ctrl-C again to exit at once, or pass --shutdown-delay=0s to skip the delay");
        tokio::time::sleep(config.shutdown_delay).await;
        stop_accepting.cancel();
        let mut drains = Vec::new();
        for accept in accepts {
            match accept.await {
                Ok(drain) => drains.push(drain),
                Err(e) => tracing::warn!(error = %e, "listener task failed"),
            }
        }
        if let Some(closed_at) = drains.iter().map(|d| d.closed_at).max() {
            state.health.mark_stopped_accepting(closed_at);
        }
        let open: usize = drains.iter().map(listener::Drain::count).sum();
        tracing::info!(open_connections = open, timeout = ?config.shutdown_timeout, "stopped accepting; draining connections");
        let all = futures::future::join_all(drains.into_iter().map(listener::Drain::shutdown));
        if tokio::time::timeout(config.shutdown_timeout, all).await.is_err() {
            tracing::warn!("shutdown timeout reached; closing the remaining connections");
        }
        if let Some(r) = reloader {
            r.abort();
        }
        stop_ops.cancel();
        if ops.await.is_err() {
            tracing::warn!("ops listener thread ended abnormally");
        }
        tracing::info!("shut down cleanly");
        Ok(())
    }
}

/// Writes the bundle beside its final path and renames it into place, so a client never
/// reads half a file.
fn write_ca_bundle(path: &std::path::Path, pem: &str) -> Result<(), crate::certs::CertError> {
    let err = |p: &std::path::Path| {
        let path = p.display().to_string();
        move |source| crate::certs::CertError::Write { path, source }
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err(dir))?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, pem).map_err(err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(path)(e)
    })
}

/// Serves the ops endpoints on their own thread and runtime, so probes and scrapes answer
/// even while every worker of the main runtime is busy evaluating.
fn spawn_ops(
    listener: TcpListener,
    app: axum::Router,
    limits: Limits,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> Result<tokio::sync::oneshot::Receiver<()>, ServerError> {
    let listener = listener.into_std().map_err(ServerError::Ops)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ServerError::Ops)?;
    let (done_tx, done) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("ops".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => return tracing::error!(error = %e, "ops listener"),
                };
                let never = CancellationToken::new();
                let drain = listener::serve(listener, None, app, &limits, metrics, never, stop).await;
                drain.shutdown().await;
            });
            let _ = done_tx.send(());
        })
        .map_err(ServerError::Ops)?;
    Ok(done)
}

async fn reload_loop(certs: Arc<CertStore>, metrics: Arc<Metrics>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        match certs.reload() {
            Ok(Reload::Unchanged) => {}
            Ok(Reload::Reloaded { not_after }) => {
                metrics
                    .cert_reloads
                    .get_or_create(&ResultLabels { result: "reloaded" })
                    .inc();
                metrics.cert_expiry.set(not_after as f64);
                tracing::info!(not_after, "serving certificate reloaded");
            }
            Err(e) => {
                metrics
                    .cert_reloads
                    .get_or_create(&ResultLabels { result: "failed" })
                    .inc();
                tracing::error!(error = %e, "certificate reload failed; still serving the previous certificate");
            }
        }
    }
}

/// The signal that asked for shutdown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// Ctrl-C.
    Interrupt,
    Terminate,
}

impl Signal {
    /// The shell's exit code for a process ended by this signal (128 + its number).
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Interrupt => 130,
            Self::Terminate => 143,
        }
    }
}

/// Completes on SIGTERM or Ctrl-C, saying which. Awaited again after the first signal it
/// completes on the next one (the caller decides whether that one exits at once).
pub async fn shutdown_signal() -> Signal {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => Signal::Interrupt,
        _ = term => Signal::Terminate,
    }
}
