//! A real kube-apiserver + embedded etcd on loopback (`.tools/bin/kube-test-cluster`, built by
//! `scripts/install-tools.sh` from `tests/kube-test-cluster/`), and the matching
//! `.tools/bin/kubectl`.
//!
//! Tests get the cluster with [`shared`] (one per test binary, started on first use) or own one
//! with [`Cluster::start`]. Without the binaries they skip with one line, unless
//! `LMG_REQUIRE_KUBE=1` (set by `.ci/run`) makes that a failure.
//!
//! Nothing is left running: the cluster process gets `--stop-on-stdin-eof` and its standard
//! input is a pipe this process holds, so it stops as on SIGTERM when the test process exits,
//! however it exits (the shared cluster is a static and is never dropped). An owned [`Cluster`]
//! is stopped by `Drop` (SIGTERM, SIGKILL after 20 s).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long the cluster may take to answer `/readyz`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a stopping cluster may take before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(20);

pub const SKIP_LINE: &str =
    "skipping: real kube-apiserver not built (run scripts/install-tools.sh with Go installed)";

/// A token user of the test cluster: one line of kube-apiserver's token file.
#[derive(Clone, Debug)]
pub struct Token {
    pub token: String,
    pub user: String,
    pub uid: String,
    pub groups: Vec<String>,
}

impl Token {
    pub fn user(token: &str, user: &str, groups: &[&str]) -> Self {
        Self {
            token: token.to_owned(),
            user: user.to_owned(),
            uid: user.to_owned(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        }
    }

    /// A ServiceAccount as the API server authenticates it.
    pub fn service_account(token: &str, namespace: &str, name: &str) -> Self {
        Self::user(
            token,
            &format!("system:serviceaccount:{namespace}:{name}"),
            &[
                "system:serviceaccounts",
                &format!("system:serviceaccounts:{namespace}"),
            ],
        )
    }

    /// The `--token` argument: `TOKEN,USER,UID,"GROUP1,GROUP2"`.
    pub fn line(&self) -> String {
        format!(
            "{},{},{},\"{}\"",
            self.token,
            self.user,
            self.uid,
            self.groups.join(",")
        )
    }
}

/// An unprivileged user without any RBAC binding (of the shared cluster).
pub fn alice() -> Token {
    Token::user("alice-token", "alice", &["developers"])
}

/// A ServiceAccount `smoke/reader`, bound by the RBAC smoke test (of the shared cluster).
pub fn smoke_reader() -> Token {
    Token::service_account("smoke-reader-token", "smoke", "reader")
}

/// The chart's ServiceAccount in the release namespace `live-migration-guard` (of the shared
/// cluster).
pub fn chart_service_account() -> Token {
    Token::service_account("lmg-sa-token", "live-migration-guard", "live-migration-guard")
}

/// A ServiceAccount in the release namespace without RBAC until a test binds it (of the shared
/// cluster).
pub fn unbound_service_account() -> Token {
    Token::service_account("lmg-unbound-token", "live-migration-guard", "unbound")
}

/// A ServiceAccount in the release namespace given a deliberately incomplete ClusterRole by the
/// readiness test (of the shared cluster).
pub fn partial_service_account() -> Token {
    Token::service_account("lmg-partial-token", "live-migration-guard", "partial")
}

/// What a kubectl run printed.
#[derive(Debug)]
pub struct Out {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn ok(&self) -> bool {
        self.status.success()
    }

    /// Panics with everything kubectl printed unless it exited 0.
    #[track_caller]
    pub fn expect_ok(&self, what: &str) -> &Self {
        assert!(
            self.ok(),
            "{what}: kubectl failed ({})\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }
}

pub struct Cluster {
    dir: PathBuf,
    /// The API server's URL, `https://127.0.0.1:PORT`.
    pub server: String,
    child: Mutex<Child>,
    /// Held open: the cluster stops when it closes.
    stdin: Mutex<Option<ChildStdin>>,
    _tmp: Option<tempfile::TempDir>,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn cluster_binary() -> PathBuf {
    root().join(".tools/bin/kube-test-cluster")
}

pub fn kubectl_binary() -> PathBuf {
    root().join(".tools/bin/kubectl")
}

fn required() -> bool {
    std::env::var("LMG_REQUIRE_KUBE").is_ok_and(|v| v == "1")
}

/// `true` when the binaries exist; otherwise prints the skip line (once) or, with
/// `LMG_REQUIRE_KUBE=1`, panics.
pub fn available() -> bool {
    let missing: Vec<PathBuf> = [cluster_binary(), kubectl_binary()]
        .into_iter()
        .filter(|p| !p.is_file())
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        !required(),
        "LMG_REQUIRE_KUBE=1 but {} missing: run scripts/install-tools.sh with Go installed",
        missing
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" and ")
    );
    // Once per test binary, and past the test harness's output capture (which would hide it
    // for passing tests).
    static SKIPPED: std::sync::Once = std::sync::Once::new();
    SKIPPED.call_once(|| {
        let _ = writeln!(std::io::stderr(), "{SKIP_LINE}");
    });
    false
}

/// The tokens of the shared cluster.
pub fn shared_tokens() -> Vec<Token> {
    vec![
        alice(),
        smoke_reader(),
        chart_service_account(),
        unbound_service_account(),
        partial_service_account(),
    ]
}

/// The cluster shared by all tests of this test binary (tokens: [`shared_tokens`]), started on
/// first use; `None` (after one skip line) when the binaries are not built.
pub fn shared() -> Option<&'static Cluster> {
    static SHARED: OnceLock<Result<Cluster, String>> = OnceLock::new();
    if !available() {
        return None;
    }
    match SHARED.get_or_init(|| Cluster::try_start(&shared_tokens())) {
        Ok(c) => Some(c),
        Err(e) => panic!("{e}"),
    }
}

/// Removes work folders of earlier runs whose process is gone (a shared cluster's folder outlives
/// its test process, which never drops statics).
fn collect_stale(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let pid = name.split('-').nth(1).and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid
            && pid != std::process::id()
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

impl Cluster {
    /// An owned cluster with extra token users; `None` when the binaries are not built.
    pub fn start(tokens: &[Token]) -> Option<Self> {
        if !available() {
            return None;
        }
        Some(Self::try_start(tokens).unwrap_or_else(|e| panic!("{e}")))
    }

    fn try_start(tokens: &[Token]) -> Result<Self, String> {
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kube-test-cluster");
        std::fs::create_dir_all(&base).map_err(|e| format!("{}: {e}", base.display()))?;
        collect_stale(&base);
        let tmp = tempfile::Builder::new()
            .prefix(&format!("run-{}-", std::process::id()))
            .tempdir_in(&base)
            .map_err(|e| format!("temp dir: {e}"))?;
        let dir = tmp.path().to_path_buf();
        let log_path = dir.join("kube-test-cluster.log");
        let log = File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
        let mut cmd = Command::new(cluster_binary());
        cmd.arg("--dir").arg(&dir).arg("--stop-on-stdin-eof");
        for t in tokens {
            cmd.arg("--token").arg(t.line());
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("{}: {e}", cluster_binary().display()))?;
        let stdin = child.stdin.take();
        let started = Instant::now();
        let ready = dir.join("ready");
        loop {
            if let Ok(server) = std::fs::read_to_string(&ready) {
                let c = Cluster {
                    dir,
                    server: server.trim().to_owned(),
                    child: Mutex::new(child),
                    stdin: Mutex::new(stdin),
                    _tmp: Some(tmp),
                };
                eprintln!(
                    "kube-test-cluster ready at {} in {:.1}s ({})",
                    c.server,
                    started.elapsed().as_secs_f64(),
                    c.dir.display()
                );
                return Ok(c);
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "kube-test-cluster exited ({status}) before it was ready; last output:\n{}",
                    tail(&log_path, 40)
                ));
            }
            if started.elapsed() > READY_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "kube-test-cluster not ready within {READY_TIMEOUT:?}; last output:\n{}",
                    tail(&log_path, 40)
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The admin kubeconfig (user `admin` in `system:masters`, current context).
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// The API server's serving CA (PEM file).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("certs/apiserver.crt")
    }

    /// Writes (once) and returns a kubeconfig that authenticates as `token`.
    pub fn kubeconfig_for(&self, token: &Token) -> PathBuf {
        let path = self.dir.join(format!("kubeconfig-{}", token.token));
        if !path.exists() {
            let text = format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: {user}\n  user:\n    token: {}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: {user}\n    namespace: default\ncurrent-context: test\n",
                self.server,
                self.ca_file().display(),
                token.token,
                user = token.user.replace(':', "-"),
            );
            // A name per thread: tests of one binary may write it concurrently.
            let tmp = self
                .dir
                .join(format!("kubeconfig.{:?}.tmp", std::thread::current().id()));
            std::fs::write(&tmp, text).expect("write kubeconfig");
            std::fs::rename(&tmp, &path).expect("rename kubeconfig");
        }
        path
    }

    /// Runs `.tools/bin/kubectl --kubeconfig <admin> ARGS` with `stdin` (if any).
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Out {
        self.kubectl_with(&self.kubeconfig(), args, stdin)
    }

    /// Runs kubectl as the token user.
    pub fn kubectl_as(&self, token: &Token, args: &[&str], stdin: Option<&str>) -> Out {
        self.kubectl_with(&self.kubeconfig_for(token), args, stdin)
    }

    fn kubectl_with(&self, kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Out {
        let mut child = Command::new(kubectl_binary())
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        if let Some(text) = stdin {
            // A thread, so a large input cannot dead-lock against kubectl's output.
            let mut pipe = child.stdin.take().expect("stdin piped");
            let text = text.to_owned();
            std::thread::spawn(move || {
                let _ = pipe.write_all(text.as_bytes());
            });
        }
        let out = child.wait_with_output().expect("kubectl output");
        Out {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Polls `kubectl ARGS` until `pred` holds for its output, up to `timeout`.
    pub fn kubectl_until(
        &self,
        args: &[&str],
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Out) -> bool,
    ) -> Out {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.kubectl(args, None);
            if pred(&out) {
                return out;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; last `kubectl {}`: {}\nstdout:\n{}\nstderr:\n{}",
                args.join(" "),
                out.status,
                out.stdout,
                out.stderr
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Applies the CRDs of `tests/fixtures/crds/` (server-side: the HostedCluster CRD is too
    /// large for the client-side last-applied annotation) and waits until they are Established.
    pub fn install_crds(&self) {
        let dir = root().join("tests/fixtures/crds");
        self.kubectl(
            &[
                "apply",
                "--server-side",
                "--field-manager=tests",
                "-f",
                &dir.display().to_string(),
            ],
            None,
        )
        .expect_ok("apply CRDs");
        // `kubectl wait` fails at once (".status.conditions accessor error: <nil> is of the type
        // <nil>") while a just-created CRD has no conditions yet: retried until a deadline.
        self.kubectl_until(
            &[
                "wait",
                "--for=condition=Established",
                "--timeout=10s",
                "crd/nodepools.hypershift.openshift.io",
                "crd/hostedclusters.hypershift.openshift.io",
                "crd/storageprofiles.cdi.kubevirt.io",
            ],
            Duration::from_secs(60),
            "CRDs established",
            Out::ok,
        );
    }

    /// SIGTERM, then waits; SIGKILL after [`STOP_TIMEOUT`]. Returns how it exited.
    pub fn stop(&self) -> Option<ExitStatus> {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("kube-test-cluster did not stop within {STOP_TIMEOUT:?}: killing it");
        let _ = child.kill();
        child.wait().ok()
    }

    /// Closes the cluster's standard input (as when this process exits) and waits for it to
    /// stop; SIGKILL after [`STOP_TIMEOUT`].
    pub fn close_stdin_and_wait(&self) -> Option<ExitStatus> {
        drop(self.stdin.lock().unwrap_or_else(|p| p.into_inner()).take());
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("kube-test-cluster did not stop within {STOP_TIMEOUT:?} of stdin EOF: killing it");
        let _ = child.kill();
        child.wait().ok()
    }

    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap_or_else(|p| p.into_inner()).id()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
        drop(self.stdin.lock().unwrap_or_else(|p| p.into_inner()).take());
    }
}

/// The last `lines` lines of a file.
pub fn tail(path: &Path, lines: usize) -> String {
    let mut text = String::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    let mut last: VecDeque<&str> = VecDeque::with_capacity(lines);
    for l in text.lines() {
        if last.len() == lines {
            last.pop_front();
        }
        last.push_back(l);
    }
    last.into_iter().collect::<Vec<_>>().join("\n")
}
