//! The Helm chart and the server agree: the chart's container args are flags the binary
//! accepts, webhook paths and ports are the server's, RBAC grants exactly the watches the
//! facts module starts, probes hit endpoints that answer, and the certificate names match
//! `certs generate`. Renders with the pinned helm from `scripts/install-tools.sh`.

mod common;

use std::path::PathBuf;
use std::process::Command;

use clap::Parser;
use common::server::TestServer;
use live_migration_guard::admission::Policy;
use live_migration_guard::cli::{Cli, Command as Sub};
use live_migration_guard::facts::Facts;
use live_migration_guard::facts::cluster::WATCHED;
use live_migration_guard::facts::load::split_documents;
use live_migration_guard::server::handlers::{HOSTEDCLUSTERS_PATH, NODEPOOLS_PATH};
use serde_json::Value;

fn render(sets: &[&str]) -> Vec<Value> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let helm = root.join(".tools/bin/helm");
    assert!(
        helm.exists(),
        "{} is missing: run scripts/install-tools.sh (scripts/test.sh does)",
        helm.display()
    );
    let mut cmd = Command::new(&helm);
    cmd.args([
        "template",
        "lmg",
        "charts/live-migration-guard",
        "--namespace",
        "hcp-guard",
    ]);
    for s in sets {
        cmd.args(["--set", s]);
    }
    for (var, dir) in [
        ("HELM_CACHE_HOME", "cache"),
        ("HELM_CONFIG_HOME", "config"),
        ("HELM_DATA_HOME", "data"),
    ] {
        cmd.env(var, root.join(".tools/helm").join(dir));
    }
    let out = cmd.current_dir(&root).output().expect("helm runs");
    assert!(
        out.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    split_documents(&out.stdout, "helm template").expect("rendered YAML parses")
}

fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} rendered"))
}

fn container(docs: &[Value]) -> &Value {
    &find(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
}

fn args(docs: &[Value]) -> Vec<String> {
    container(docs)["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn container_args_are_flags_the_server_accepts() {
    for sets in [
        vec![],
        vec![
            "mode=deny",
            "denyUnknown=true",
            "allowObjectOverride=true",
            "infraCredentials.enabled=true",
            "infraCredentials.clusterWide=true",
            "webhook.timeoutSeconds=2",
        ],
        vec![
            "clientAuth.enabled=true",
            "clientAuth.caConfigMap=apiserver-client-ca",
            "clientAuth.allowedNames={kube-apiserver}",
        ],
    ] {
        let docs = render(&sets);
        let a = args(&docs);
        let cli = Cli::try_parse_from(std::iter::once("live-migration-guard".to_owned()).chain(a.clone()))
            .unwrap_or_else(|e| panic!("{sets:?}: the server rejects the chart's args {a:?}: {e}"));
        let Sub::Serve(serve) = cli.command else {
            panic!("not serve")
        };
        assert!(serve.uses_cluster(), "the chart runs against the cluster");
        let ports = container(&docs)["ports"].as_array().unwrap();
        let port = |name: &str| {
            ports
                .iter()
                .find(|p| p["name"] == name)
                .map(|p| p["containerPort"].as_u64().unwrap())
        };
        assert_eq!(port("https"), Some(u64::from(serve.listen.port())), "{sets:?}");
        assert_eq!(
            port("http-ops"),
            Some(u64::from(serve.ops_listen.port())),
            "{sets:?}"
        );
        // The server's deadline ends before the API server stops waiting for the webhook.
        let webhook_timeout = find(&docs, "ValidatingWebhookConfiguration")["webhooks"][0]["timeoutSeconds"]
            .as_u64()
            .unwrap();
        assert!(
            serve.request_timeout < std::time::Duration::from_secs(webhook_timeout),
            "{sets:?}: --request-timeout {:?} is not below timeoutSeconds {webhook_timeout}",
            serve.request_timeout
        );
        if sets.contains(&"mode=deny") {
            assert_eq!(serve.mode, live_migration_guard::admission::Mode::Deny);
            assert!(serve.deny_unknown && serve.allow_object_override);
        }
    }
}

#[test]
fn webhook_paths_and_service_match_the_server() {
    let docs = render(&[]);
    let vwc = find(&docs, "ValidatingWebhookConfiguration");
    let service = find(&docs, "Service");
    for hook in vwc["webhooks"].as_array().unwrap() {
        let resources = &hook["rules"][0]["resources"];
        let want = if resources[0] == "nodepools" {
            NODEPOOLS_PATH
        } else {
            HOSTEDCLUSTERS_PATH
        };
        assert_eq!(hook["clientConfig"]["service"]["path"], want);
        assert_eq!(
            hook["clientConfig"]["service"]["name"],
            service["metadata"]["name"]
        );
        assert_eq!(hook["clientConfig"]["service"]["namespace"], "hcp-guard");
        let port = hook["clientConfig"]["service"]["port"].as_u64().unwrap();
        let sp = service["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["port"].as_u64() == Some(port))
            .unwrap();
        assert_eq!(sp["targetPort"], "https");
    }
}

#[test]
fn rbac_grants_exactly_what_the_facts_module_watches() {
    let mut watched: Vec<(String, String)> = WATCHED
        .iter()
        .map(|(g, r)| ((*g).to_owned(), (*r).to_owned()))
        .collect();
    watched.sort();
    for (sets, secrets) in [
        (vec![], false),
        (
            vec![
                "infraCredentials.enabled=true",
                "infraCredentials.clusterWide=true",
            ],
            true,
        ),
    ] {
        let docs = render(&sets);
        let role = find(&docs, "ClusterRole");
        let mut listed = Vec::new();
        let mut others = Vec::new();
        for rule in role["rules"].as_array().unwrap() {
            let verbs: Vec<&str> = rule["verbs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            for g in rule["apiGroups"].as_array().unwrap() {
                for r in rule["resources"].as_array().unwrap() {
                    let key = (g.as_str().unwrap().to_owned(), r.as_str().unwrap().to_owned());
                    if verbs == ["list", "watch"] {
                        listed.push(key);
                    } else {
                        others.push((key, verbs.clone()));
                    }
                }
            }
        }
        listed.sort();
        assert_eq!(listed, watched, "{sets:?}");
        let want_others = if secrets {
            vec![((String::new(), "secrets".to_owned()), vec!["get"])]
        } else {
            vec![]
        };
        assert_eq!(
            others, want_others,
            "{sets:?}: only infra credentials add `get secrets`"
        );
    }
}

#[tokio::test]
async fn probes_point_at_endpoints_that_answer() {
    let docs = render(&[]);
    let c = container(&docs).clone();
    let s = TestServer::start(Policy::default(), Facts::none()).await;
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["port"], "http-ops", "{probe}");
        let (code, _) = s.ops_get(get["path"].as_str().unwrap()).await;
        assert_eq!(code, 200, "{probe} {}", get["path"]);
    }
    s.stop().await;
}

#[test]
fn certificate_names_match_certs_generate() {
    let docs = render(&["tls.mode=cert-manager"]);
    let service = find(&docs, "Service")["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let cert = docs
        .iter()
        .find(|d| d["kind"] == "Certificate" && d["spec"]["dnsNames"].is_array())
        .expect("serving Certificate");
    let dns: Vec<String> = cert["spec"]["dnsNames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        dns,
        live_migration_guard::certs::service_names(&service, "hcp-guard")
    );
}

/// Metric names the server exports, as they appear in PromQL (counters with `_total`,
/// histograms with `_bucket`, `_sum`, `_count`), from the `# TYPE` lines of `/metrics`.
fn exported_series() -> (
    std::collections::BTreeSet<String>,
    std::collections::BTreeSet<String>,
) {
    use live_migration_guard::server::metrics::{
        EndpointLabels, Metrics, ObjectLabels, RequestLabels, ResultLabels,
    };
    // A family without any labelled child is not exported at all: one child each.
    let m = Metrics::default();
    m.requests
        .get_or_create(&RequestLabels {
            endpoint: "/validate/nodepools",
            kind: "NodePool",
            operation: "CREATE",
            verdict: "NotMigratable",
            decision: "warn",
            dry_run: false,
        })
        .inc();
    m.duration
        .get_or_create(&EndpointLabels {
            endpoint: "/validate/nodepools",
        })
        .observe(0.001);
    m.rejected
        .get_or_create(&ResultLabels { result: "overload" })
        .inc();
    m.cert_reloads
        .get_or_create(&ResultLabels { result: "reloaded" })
        .inc();
    m.objects
        .get_or_create(&ObjectLabels {
            kind: "NodePool",
            namespace: "clusters".into(),
            name: "np".into(),
            verdict: "NotMigratable",
        })
        .set(1);
    use live_migration_guard::server::metrics::{AuthApiLabels, AuthCacheLabels, AuthDecisionLabels};
    m.auth_cache
        .get_or_create(&AuthCacheLabels {
            cache: "token",
            result: "hit",
        })
        .inc();
    m.auth_api
        .get_or_create(&AuthApiLabels {
            api: "tokenreviews",
            result: "ok",
        })
        .inc();
    m.auth_api_duration
        .get_or_create(&AuthApiLabels {
            api: "tokenreviews",
            result: "ok",
        })
        .observe(0.002);
    m.auth_decisions
        .get_or_create(&AuthDecisionLabels {
            endpoint: "/v1/evaluate",
            result: "allowed",
        })
        .inc();
    m.auth_token_reloads
        .get_or_create(&ResultLabels { result: "reloaded" })
        .inc();
    let text = m.encode();
    let mut families = std::collections::BTreeSet::new();
    let mut series = std::collections::BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
        families.insert(name.to_owned());
        match kind {
            "counter" => {
                series.insert(format!("{name}_total"));
            }
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    series.insert(format!("{name}{suffix}"));
                }
            }
            _ => {
                series.insert(name.to_owned());
            }
        }
    }
    (families, series)
}

/// The metric names a PromQL expression reads.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("live_migration_guard_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// The opt-in Grafana dashboard: a ConfigMap with the sidecar's label, a dashboard JSON whose
/// every query reads series the server really exports, covering every metric family, and whose
/// every expression is valid PromQL (checked by the pinned promtool).
#[test]
fn grafana_dashboard_reads_what_the_server_exports() {
    let docs = render(&[
        "grafanaDashboard.enabled=true",
        "grafanaDashboard.annotations.grafana_folder=Webhooks",
    ]);
    let cm = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "lmg-live-migration-guard-dashboard")
        .expect("dashboard ConfigMap");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(cm["metadata"]["annotations"]["grafana_folder"], "Webhooks");
    let dashboard: Value = serde_json::from_str(
        cm["data"]["live-migration-guard.json"]
            .as_str()
            .expect("dashboard JSON"),
    )
    .expect("the dashboard is JSON");
    assert_eq!(dashboard["uid"], "live-migration-guard");
    let mut exprs: Vec<String> = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            exprs.push(target["expr"].as_str().expect("expr").to_owned());
        }
    }
    for var in dashboard["templating"]["list"].as_array().expect("variables") {
        if let Some(q) = var["query"]["query"].as_str() {
            exprs.push(q.to_owned());
        }
    }
    let (families, series) = exported_series();
    let mut read = std::collections::BTreeSet::new();
    for expr in &exprs {
        for name in metric_names(expr) {
            assert!(
                series.contains(&name),
                "the dashboard reads {name}, which the server does not export ({series:?}): {expr}"
            );
            read.insert(name);
        }
    }
    for family in &families {
        assert!(
            read.iter().any(|n| n.starts_with(family.as_str())),
            "no dashboard panel shows {family}"
        );
    }
    // PromQL syntax, by promtool: every panel query as a recording rule, with Grafana's
    // variables replaced by what Grafana would put there.
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let promtool = root.join(".tools/bin/promtool");
    let rules: Vec<Value> = exprs
        .iter()
        .filter(|e| !e.starts_with("label_values("))
        .enumerate()
        .map(|(i, e)| {
            let e = e
                .replace("$__rate_interval", "5m")
                .replace("$namespace", ".*")
                .replace("$job", ".*");
            serde_json::json!({ "record": format!("dashboard:query{i}"), "expr": e })
        })
        .collect();
    let file = std::env::temp_dir().join(format!("lmg-dashboard-rules-{}.json", std::process::id()));
    std::fs::write(
        &file,
        serde_json::json!({ "groups": [{ "name": "dashboard", "rules": rules }] }).to_string(),
    )
    .unwrap();
    let out = Command::new(&promtool)
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("promtool runs (scripts/install-tools.sh installs it)");
    let _ = std::fs::remove_file(&file);
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
