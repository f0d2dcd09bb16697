//! Smoke tests of the real kube-apiserver test cluster (`tests/common/kube.rs`): what a user of
//! it sees through the real kubectl. They skip with one line when the cluster is not built.

mod common;

use std::net::TcpStream;
use std::time::Duration;

use common::kube::{self, Cluster};
use serde_json::{Value, json};

fn json_of(out: &kube::Out) -> Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

#[test]
fn admin_lists_namespaces() {
    let Some(k) = kube::shared() else { return };
    let out = k.kubectl(&["get", "namespaces"], None);
    out.expect_ok("get namespaces");
    for ns in ["default", "kube-system", "kube-public"] {
        assert!(
            out.stdout.lines().any(|l| l.starts_with(&format!("{ns} "))),
            "{ns} missing:\n{}",
            out.stdout
        );
    }
    let who = k.kubectl(&["auth", "whoami", "-o", "json"], None);
    let who = json_of(who.expect_ok("whoami"));
    assert_eq!(who["status"]["userInfo"]["username"], "admin");
    assert!(
        who["status"]["userInfo"]["groups"]
            .as_array()
            .unwrap()
            .contains(&json!("system:masters")),
        "{who}"
    );
}

#[test]
fn user_without_rbac_is_forbidden() {
    let Some(k) = kube::shared() else { return };
    let out = k.kubectl_as(&kube::alice(), &["get", "namespaces"], None);
    assert!(!out.ok(), "alice listed namespaces:\n{}", out.stdout);
    assert!(
        out.stderr.contains(
            "Error from server (Forbidden): namespaces is forbidden: User \"alice\" cannot list \
             resource \"namespaces\" in API group \"\" at the cluster scope"
        ),
        "{}",
        out.stderr
    );
}

#[test]
fn service_account_token_is_allowed_after_a_cluster_role_binding() {
    let Some(k) = kube::shared() else { return };
    let sa = kube::smoke_reader();
    let who = k.kubectl_as(&sa, &["auth", "whoami", "-o", "json"], None);
    let who = json_of(who.expect_ok("whoami"));
    assert_eq!(
        who["status"]["userInfo"]["username"],
        "system:serviceaccount:smoke:reader"
    );
    assert_eq!(
        who["status"]["userInfo"]["groups"],
        json!([
            "system:serviceaccounts",
            "system:serviceaccounts:smoke",
            "system:authenticated"
        ])
    );

    let denied = k.kubectl_as(&sa, &["get", "storageclasses"], None);
    assert!(!denied.ok(), "listed before the binding:\n{}", denied.stdout);
    assert!(
        denied.stderr.contains(
            "User \"system:serviceaccount:smoke:reader\" cannot list resource \"storageclasses\" in API group \"storage.k8s.io\" at the cluster scope"
        ),
        "{}",
        denied.stderr
    );

    k.kubectl(
        &[
            "create",
            "clusterrolebinding",
            "smoke-reader-view",
            "--clusterrole=system:aggregate-to-view",
            "--serviceaccount=smoke:reader",
        ],
        None,
    )
    .expect_ok("create clusterrolebinding");
    k.kubectl(
        &[
            "create",
            "clusterrole",
            "smoke-storageclass-reader",
            "--verb=list,watch",
            "--resource=storageclasses.storage.k8s.io",
        ],
        None,
    )
    .expect_ok("create clusterrole");
    k.kubectl(
        &[
            "create",
            "clusterrolebinding",
            "smoke-storageclass-reader",
            "--clusterrole=smoke-storageclass-reader",
            "--serviceaccount=smoke:reader",
        ],
        None,
    )
    .expect_ok("create clusterrolebinding");

    // The RBAC authorizer reads bindings through an informer: poll.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let out = k.kubectl_as(&sa, &["get", "storageclasses"], None);
        if out.ok() {
            assert!(out.stderr.contains("No resources found"), "{}", out.stderr);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still denied: {}",
            out.stderr
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Still least privilege: no write.
    let write = k.kubectl_as(&sa, &["delete", "storageclass", "nothing-here"], None);
    assert!(write.stderr.contains("(Forbidden)"), "{}", write.stderr);
}

#[test]
fn hypershift_crds_are_established_and_a_nodepool_is_stored_with_defaults() {
    let Some(k) = kube::shared() else { return };
    k.install_crds();
    let crds = k.kubectl(&["get", "crd", "-o", "name"], None);
    for crd in [
        "customresourcedefinition.apiextensions.k8s.io/nodepools.hypershift.openshift.io",
        "customresourcedefinition.apiextensions.k8s.io/hostedclusters.hypershift.openshift.io",
    ] {
        assert!(crds.stdout.lines().any(|l| l == crd), "{crd}:\n{}", crds.stdout);
    }

    k.kubectl(&["create", "namespace", "smoke-crds"], None)
        .expect_ok("create namespace");
    let np = json!({
        "apiVersion": "hypershift.openshift.io/v1beta1",
        "kind": "NodePool",
        "metadata": { "name": "defaults", "namespace": "smoke-crds" },
        "spec": {
            "clusterName": "example",
            "management": { "upgradeType": "Replace" },
            "platform": { "type": "KubeVirt", "kubevirt": {} },
            "release": { "image": "quay.io/openshift-release-dev/ocp-release:4.17.0-x86_64" },
            "replicas": 1,
        },
    });
    let applied = k.kubectl(&["apply", "-f", "-"], Some(&np.to_string()));
    applied.expect_ok("apply NodePool");
    assert_eq!(
        applied.stdout.trim(),
        "nodepool.hypershift.openshift.io/defaults created"
    );

    let stored = k.kubectl(&["-n", "smoke-crds", "get", "np", "defaults", "-o", "json"], None);
    let stored = json_of(stored.expect_ok("get NodePool"));
    let spec = &stored["spec"];
    assert_eq!(spec["arch"], "amd64");
    assert_eq!(spec["management"]["autoRepair"], false);
    let kv = &spec["platform"]["kubevirt"];
    assert_eq!(kv["attachDefaultNetwork"], true);
    assert_eq!(kv["networkInterfaceMultiqueue"], "Enable");
    assert_eq!(
        kv["compute"],
        json!({ "cores": 2, "memory": "8Gi", "qosClass": "Burstable" })
    );
    assert_eq!(
        kv["rootVolume"],
        json!({ "type": "Persistent", "persistent": { "size": "32Gi" } })
    );

    // The schema is enforced: an unknown platform type is rejected with the field.
    let bad = np.clone();
    let mut bad = bad;
    bad["metadata"]["name"] = json!("bad");
    bad["spec"]["platform"]["type"] = json!("Nowhere");
    let out = k.kubectl(&["apply", "-f", "-"], Some(&bad.to_string()));
    assert!(!out.ok(), "stored an invalid NodePool");
    assert!(
        out.stderr
            .contains("spec.platform.type: Unsupported value: \"Nowhere\""),
        "{}",
        out.stderr
    );
}

/// An owned cluster stops cleanly on SIGTERM and when its standard input closes (what happens
/// to the shared cluster when a test process exits): exit 0, nothing listening any more.
#[test]
fn cluster_stops_on_sigterm_and_on_stdin_eof() {
    if !kube::available() {
        return;
    }
    for how in ["sigterm", "stdin-eof"] {
        let c = Cluster::start(&[]).expect("binaries present");
        let port: u16 = c
            .server
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port in server URL");
        c.kubectl(&["get", "--raw", "/readyz"], None).expect_ok("readyz");
        let status = match how {
            "sigterm" => c.stop().expect("exit status"),
            _ => c.close_stdin_and_wait().expect("exit status"),
        };
        assert!(status.success(), "{how}: kube-test-cluster exited with {status}");
        assert!(
            TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)).is_err(),
            "{how}: something still listens on 127.0.0.1:{port}"
        );
    }
}
