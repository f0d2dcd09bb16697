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
    let warning = serde_json::from_str::<serde_json::Value>(&resp).unwrap()["response"]["warnings"][0]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        readme().contains(&format!("Warning: {warning}")),
        "the kubectl warning shown is the real one"
    );
    s.stop().await;
}
