//! The CLI on a live cluster: `audit` and `evaluate --cluster` read the facts once, with the
//! server's own lister ([`crate::facts::cluster::list_once`]), and report progress and errors
//! on stderr in one line each.

use std::cell::RefCell;
use std::io::Write;
use std::path::Path;

use crate::facts::cluster::{self, ListOptions, Listed, Progress};

/// Where progress lines go: stderr, when it is a terminal or with `-v`.
pub struct ProgressSink<'a> {
    err: RefCell<&'a mut dyn Write>,
    enabled: bool,
}

impl<'a> ProgressSink<'a> {
    pub fn new(err: &'a mut dyn Write, enabled: bool) -> Self {
        Self {
            err: RefCell::new(err),
            enabled,
        }
    }

    fn report(&self, p: Progress) {
        if !self.enabled {
            return;
        }
        let mut err = self.err.borrow_mut();
        let more = if p.done { "" } else { "…" };
        let _ = writeln!(err, "listed {} {}{more}", p.listed, p.what);
    }

    /// Writes one line to stderr (whether progress is enabled or not).
    pub fn line(&self, text: &str) {
        let _ = writeln!(self.err.borrow_mut(), "{text}");
    }
}

/// What was read, and from where.
pub struct Read {
    pub listed: Listed,
    /// The API server's URL.
    pub server: String,
    /// The kubeconfig context's namespace.
    pub default_namespace: String,
}

/// Connects (`--kubeconfig`, `--context`) and lists once; `options` may depend on the
/// context's default namespace. Errors are one line, naming the flag, resource or server.
pub fn read(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
    options: impl FnOnce(&str) -> ListOptions,
    progress: &ProgressSink<'_>,
) -> Result<Read, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the async runtime: {e}"))?;
    rt.block_on(async {
        let connected = cluster::connect(kubeconfig, context)
            .await
            .map_err(|e| e.to_string())?;
        let opts = options(&connected.default_namespace);
        let listed = cluster::list_once(&connected.client, &connected.server, &opts, &|p| {
            progress.report(p)
        })
        .await
        .map_err(|e| e.to_string())?;
        Ok(Read {
            listed,
            server: connected.server,
            default_namespace: connected.default_namespace,
        })
    })
}

/// Whether progress shows by default: stderr is a terminal.
pub fn stderr_is_terminal() -> bool {
    use std::io::IsTerminal as _;
    std::io::stderr().is_terminal()
}
