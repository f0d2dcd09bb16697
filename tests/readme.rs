//! The README's examples are what the binary really prints.

mod common;

use std::process::Command;

use common::server::TestServer;
use live_migration_guard::admission::Policy;

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

/// The lines of the fenced block that follows `marker`.
fn block_after(text: &str, marker: &str) -> String {
    let start = text
        .find(marker)
        .unwrap_or_else(|| panic!("README lacks {marker:?}"))
        + marker.len();
    let rest = text[start..].trim_start_matches('\n');
    rest[..rest.find("```").expect("block ends")].to_owned()
}

#[test]
fn evaluate_example_output() {
    let out = Command::new(env!("CARGO_BIN_EXE_live-migration-guard"))
        .args([
            "evaluate",
            "--facts",
            "examples/facts",
            "examples/nodepool-rwo.yaml",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let shown = block_after(
        &readme(),
        "$ live-migration-guard evaluate --facts examples/facts examples/nodepool-rwo.yaml",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), shown);
}

#[tokio::test]
async fn admission_round_trip_output() {
    let root = env!("CARGO_MANIFEST_DIR");
    let loaded =
        live_migration_guard::facts::load::load_path(&std::path::Path::new(root).join("examples/facts"))
            .unwrap();
    let facts = live_migration_guard::facts::builder_from(&loaded).0.build();
    let s = TestServer::start(Policy::default(), facts).await;
    let body = std::fs::read_to_string(format!("{root}/examples/requests/nodepool-create.json")).unwrap();
    let resp = s
        .client(false)
        .post(s.url("/validate/nodepools"))
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let shown = block_after(&readme(), "The second answers (real output):\n\n```json");
    assert_eq!(resp, shown.trim_end());
    // The README's `kubectl` warning example is checked against the real kube-apiserver and
    // kubectl in tests/e2e_admission.rs (warn_mode_apply_of_an_rwo_nodepool_warns_and_stores).
    s.stop().await;
}

/// The README's quick start runs as written: the same shell lines, with two honest
/// substitutions — free ports for 8443 and 8080 (other tests and servers may hold those:
/// the server gets them through `LMG_LISTEN`/`LMG_OPS_LISTEN`, the lines that name the ports
/// are rewritten), and the built binary on `PATH` instead of `cargo install --path .` (which
/// would rebuild the crate in release mode inside a test).
#[test]
fn quick_start_runs_as_written() {
    if Command::new("curl").arg("--version").output().is_err() {
        panic!("the quick start uses curl; install it to run this test");
    }
    let text = readme();
    let block = block_after(
        &text,
        "## Quick start\n\nFrom a checkout (Rust 1.89 or later), on your machine — no cluster needed:\n\n```sh",
    );
    assert!(
        block
            .lines()
            .next()
            .unwrap()
            .starts_with("cargo install --path ."),
        "the quick start begins with getting the binary on PATH: {block}"
    );
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
            .to_string()
    };
    let (port, ops) = (free(), free());
    assert!(block.contains("8443") && block.contains("8080"));
    let script: String = block
        .lines()
        .skip(1)
        .map(|l| l.replace("8443", &port).replace("8080", &ops) + "\n")
        .collect();
    // the `serve` line must be the one the user can type: no flags for ports or the bundle
    assert!(
        script.contains("live-migration-guard serve --facts examples/facts &"),
        "{script}"
    );
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_live-migration-guard"))
        .parent()
        .unwrap()
        .to_owned();
    let tmp = tempfile::tempdir().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("timeout")
        .args(["60", "bash", "-c"])
        .arg(&script)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("PATH", path)
        .env("TMPDIR", tmp.path())
        .env("NO_COLOR", "1")
        // the server reads its listen addresses from these when no flag is given
        .env("LMG_LISTEN", format!("127.0.0.1:{port}"))
        .env("LMG_OPS_LISTEN", format!("127.0.0.1:{ops}"))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    // as in a terminal, a failing line does not stop the rest (`evaluate` exits 1, as its
    // comment says), so the script is judged by what each line printed
    let shown = block_after(
        &text,
        "$ live-migration-guard evaluate --facts examples/facts examples/nodepool-rwo.yaml",
    );
    assert!(stdout.starts_with(&shown), "evaluate output\n{stdout}\n{stderr}");
    let rest = &stdout[shown.len()..];
    let evaluated: serde_json::Value = {
        let start = rest
            .find("{\"reports\"")
            .unwrap_or_else(|| panic!("no /v1/evaluate answer: {rest}\n{stderr}"));
        let mut de = serde_json::Deserializer::from_str(&rest[start..]).into_iter::<serde_json::Value>();
        de.next().unwrap().unwrap()
    };
    assert_eq!(evaluated["reports"][0]["verdict"], "NotMigratable", "{rest}");
    let review = block_after(&text, "The second answers (real output):\n\n```json");
    assert!(
        rest.trim_end().ends_with(review.trim_end()),
        "admission answer\n{rest}\n{stderr}"
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&format!("listen=127.0.0.1:{port}")),
        "the server listens on loopback: {stderr}"
    );
}

// ---- issue 13: the CLI's new blocks ----

/// The README's `sh` blocks, each as (first line, whole block).
fn sh_blocks(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("```sh\n") {
        let body = &rest[i + "```sh\n".len()..];
        let end = body.find("```").expect("block ends");
        let block = body[..end].to_owned();
        out.push((block.lines().next().unwrap_or_default().to_owned(), block));
        rest = &body[end..];
    }
    out
}

/// The block whose first line starts with `first`.
fn sh_block(text: &str, first: &str) -> String {
    sh_blocks(text)
        .into_iter()
        .find(|(line, _)| line.starts_with(first))
        .unwrap_or_else(|| panic!("README has no sh block starting with {first:?}"))
        .1
}

fn bin_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_BIN_EXE_live-migration-guard"))
        .parent()
        .unwrap()
        .to_owned()
}

/// `bash -c script` with the built binary first on `PATH`, in `dir`, `HOME` set to `home`.
fn run_script(script: &str, dir: &std::path::Path, home: &std::path::Path) -> std::process::Output {
    let path = format!(
        "{}:{}",
        bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new("timeout")
        .args(["60", "bash", "-c"])
        .arg(script)
        .current_dir(dir)
        .env("PATH", path)
        .env("HOME", home)
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap()
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// Every `sh` block a user would copy is run by a test. The exceptions say why.
#[test]
fn every_sh_block_is_run_by_a_test() {
    let tested = [
        // tests/readme.rs
        "cargo install --path .    # puts live-migration-guard",
        "cargo install --path .    # or use the image's",
        "mkdir -p ~/.local/share/bash-completion/completions",
        // tests/e2e_cli.rs
        "live-migration-guard audit -A ",
        "cargo install --path .\nmkdir -p ~/.local/bin",
        // tests/e2e_auth.rs (the access grants, run as written against the real API server)
        "kubectl create clusterrole lmg-evaluate --non-resource-url=/v1/evaluate --verb=post",
    ];
    let untested = [
        // the set-up commands themselves: `scripts/test.sh` is the test run
        "cargo run --release -- serve",
        // the test cluster, started by every real-API-server test through tests/common/kube.rs
        ".tools/bin/kube-test-cluster --dir /tmp/kc",
        // building the image: the project's machines have no container engine
        "podman build -t registry.example.com/lmg/live-migration-guard:dev",
    ];
    for (first, block) in sh_blocks(&readme()) {
        let known = tested
            .iter()
            .chain(&untested)
            .any(|t| block.starts_with(t) || first.starts_with(t));
        assert!(known, "no test runs this README block:\n{block}");
    }
}

/// "From clone to a CI-ready JUnit file" runs as written (in a copy of `examples/`, so the
/// checkout gets no junit.xml), and the file is the one the README shows.
#[test]
fn junit_block_runs_as_written() {
    let text = readme();
    let block = sh_block(&text, "cargo install --path .    # or use the image's");
    let script: String = block.lines().skip(1).map(|l| format!("{l}\n")).collect();
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples"),
        &tmp.path().join("examples"),
    );
    let out = run_script(&script, tmp.path(), tmp.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.trim_end(),
        "exit 1",
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let junit = std::fs::read_to_string(tmp.path().join("junit.xml")).unwrap();
    assert_eq!(junit, block_after(&text, "<!-- junit-example -->\n```xml"));
    // well-formed, and what CI servers count
    let mut reader = quick_xml::Reader::from_str(&junit);
    let mut elements = Vec::new();
    loop {
        match reader.read_event().expect("well-formed JUnit XML") {
            quick_xml::events::Event::Eof => break,
            quick_xml::events::Event::Start(e) | quick_xml::events::Event::Empty(e) => {
                elements.push(e.name().into_inner().to_owned())
            }
            _ => {}
        }
    }
    assert_eq!(
        elements,
        ["testsuites", "testsuite", "testcase", "failure"],
        "{junit}"
    );
}

/// The `evaluate --admission` example is what the command prints (stdout and stderr in one
/// stream, as in a terminal), and it exits 1 (denied).
#[test]
fn admission_example_output() {
    let text = readme();
    let marker = "<!-- admission-example -->\n```console\n$ ";
    let block = block_after(&text, marker);
    let (command, shown) = block.split_once('\n').unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = run_script(
        &format!("{command} 2>&1; echo \"exit $?\""),
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")),
        tmp.path(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout, format!("{}\nexit 1\n", shown.trim_end()));
}

/// The completions block runs as written (`HOME` a scratch folder) and bash completes the
/// subcommands and flags from the file it wrote.
#[test]
fn completions_block_runs_as_written() {
    let block = sh_block(&readme(), "mkdir -p ~/.local/share/bash-completion/completions");
    let home = tempfile::tempdir().unwrap();
    let out = run_script(&block, home.path(), home.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let bash = home
        .path()
        .join(".local/share/bash-completion/completions/live-migration-guard");
    let zsh = std::fs::read_to_string(home.path().join(".zfunc/_live-migration-guard")).unwrap();
    assert!(zsh.starts_with("#compdef live-migration-guard"), "{zsh}");
    let fish = std::fs::read_to_string(
        home.path()
            .join(".config/fish/completions/live-migration-guard.fish"),
    )
    .unwrap();
    assert!(
        fish.contains("complete -c live-migration-guard") && fish.contains("audit"),
        "{fish}"
    );
    let complete = |words: &str| {
        let script = format!(
            "source '{}'; COMP_WORDS=({words}); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 )); COMP_LINE=\"${{COMP_WORDS[*]}}\"; COMP_POINT=${{#COMP_LINE}}; fn=$(complete -p live-migration-guard | sed -E 's/.*-F ([^ ]+).*/\\1/'); \"$fn\" live-migration-guard \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            bash.display()
        );
        let out = run_script(&script, home.path(), home.path());
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{script}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let subcommands = complete("live-migration-guard a");
    assert_eq!(subcommands.trim(), "audit", "{subcommands}");
    let flags = complete("live-migration-guard audit --all");
    assert_eq!(flags.trim(), "--all-namespaces", "{flags}");
    let values = complete("live-migration-guard audit -o ''");
    assert!(
        values.lines().any(|l| l == "junit") && values.lines().any(|l| l == "wide"),
        "{values}"
    );
}
