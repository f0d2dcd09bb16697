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
