"""The chart's side endpoints (/v1/evaluate, /v1/report) and their authorization: the port, the
server flags, the system:auth-delegator binding, the access ClusterRoles and bindings, and the
`helm test` hook that calls /v1/evaluate with its own ServiceAccount token. What the server does
with them is tested against the real API server in tests/e2e_auth.rs."""

import pytest

from conftest import NAMESPACE, RELEASE
from test_chart import FULLNAME, TLS_MODES, VARIANTS, args_by_flag, container, pod_spec

TEST = f"{FULLNAME}-test"
RBAC = "rbac.authorization.k8s.io"


def rules(role):
    return role["rules"]


def hook_objects(manifests):
    return [m for m in manifests if m["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"]


def test_side_endpoints_have_their_own_port_with_kubernetes_auth_by_default(render):
    manifests = render()
    flags = args_by_flag(manifests)
    assert flags["--evaluate-listen"] == "0.0.0.0:8444"
    assert flags["--evaluate-auth"] == "kubernetes"
    assert "--metrics-auth" not in flags
    assert {"name": "https-side", "containerPort": 8444, "protocol": "TCP"} in container(manifests)["ports"]
    ports = {p["name"]: p for p in manifests.one("Service")["spec"]["ports"]}
    assert ports["https-side"] == {"name": "https-side", "port": 8444, "targetPort": "https-side", "protocol": "TCP"}
    # The webhook port stays what the API server calls.
    assert ports["https"]["port"] == 443


def test_the_service_account_is_an_auth_delegator_only_with_kubernetes_auth(render):
    binding = render().one("ClusterRoleBinding", f"{FULLNAME}-auth-delegator")
    assert binding["roleRef"] == {"apiGroup": RBAC, "kind": "ClusterRole", "name": "system:auth-delegator"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}]
    for values in (VARIANTS["side-token"], VARIANTS["side-on-webhook-port"], {"sideEndpoints": {"auth": "none"}}):
        names = [b["metadata"]["name"] for b in render(values).of_kind("ClusterRoleBinding")]
        assert f"{FULLNAME}-auth-delegator" not in names, values
    # /metrics behind kubernetes auth needs it too.
    values = {**VARIANTS["side-token"], "metricsAuth": "kubernetes"}
    render(values).one("ClusterRoleBinding", f"{FULLNAME}-auth-delegator")
    assert not [b for b in render({"rbac": {"create": False}}).of_kind("ClusterRoleBinding") if b["metadata"]["name"].startswith(FULLNAME + "-auth")]


def test_access_cluster_roles_grant_exactly_the_documented_permissions(render):
    manifests = render()
    assert rules(manifests.one("ClusterRole", f"{FULLNAME}-evaluate")) == [
        {"nonResourceURLs": ["/v1/evaluate"], "verbs": ["post"]}
    ]
    assert rules(manifests.one("ClusterRole", f"{FULLNAME}-report-reader")) == [
        {"apiGroups": ["hypershift.openshift.io"], "resources": ["nodepools", "hostedclusters"], "verbs": ["list"]}
    ]
    assert rules(manifests.one("ClusterRole", f"{FULLNAME}-metrics-reader")) == [
        {"nonResourceURLs": ["/metrics"], "verbs": ["get"]}
    ]
    # Bound to nobody by default.
    assert {b["metadata"]["name"] for b in manifests.of_kind("ClusterRoleBinding")} == {
        FULLNAME,
        f"{FULLNAME}-auth-delegator",
        TEST,
    }
    names = {r["metadata"]["name"] for r in render({"rbac": {"access": {"createRoles": False}}}).of_kind("ClusterRole")}
    assert names == {FULLNAME, TEST}


def test_access_bindings_from_values(render):
    manifests = render(VARIANTS["auth-extras"])
    access = VARIANTS["auth-extras"]["rbac"]["access"]
    for role, subjects in (
        ("evaluate", access["evaluators"]),
        ("report-reader", access["reportReaders"]),
        ("metrics-reader", access["metricsReaders"]),
    ):
        binding = manifests.one("ClusterRoleBinding", f"{FULLNAME}-{role}")
        assert binding["roleRef"] == {"apiGroup": RBAC, "kind": "ClusterRole", "name": f"{FULLNAME}-{role}"}
        assert binding["subjects"] == subjects
    (namespaced,) = manifests.of_kind("RoleBinding")
    assert namespaced["metadata"]["namespace"] == "clusters-team-a"
    assert namespaced["roleRef"] == {"apiGroup": RBAC, "kind": "ClusterRole", "name": f"{FULLNAME}-report-reader"}
    assert namespaced["subjects"] == access["namespaceReportReaders"]["clusters-team-a"]


def test_auth_flags_follow_the_values(render):
    flags = container(render(VARIANTS["auth-extras"]))["args"]
    assert "--metrics-auth=kubernetes" in flags
    assert "--evaluate-auth-audience=live-migration-guard" in flags
    manifests = render({"sideEndpoints": {"cache": {"ttl": "30s", "negativeTtl": "2s", "size": 100}}})
    flags = args_by_flag(manifests)
    assert (flags["--auth-cache-ttl"], flags["--auth-cache-negative-ttl"], flags["--auth-cache-size"]) == ("30s", "2s", "100")
    port = {p["name"]: p["port"] for p in render(VARIANTS["auth-extras"]).one("Service")["spec"]["ports"]}
    assert port["https-side"] == 9443


def test_static_token_mode_mounts_the_secret_as_a_directory(render):
    manifests = render(VARIANTS["side-token"])
    flags = args_by_flag(manifests)
    assert flags["--evaluate-auth"] == "token"
    assert flags["--evaluate-token-file"] == "/etc/live-migration-guard/evaluate-token/token"
    assert "--auth-cache-ttl" not in flags, "no Kubernetes reviews, no cache flags"
    (mount,) = [m for m in container(manifests)["volumeMounts"] if m["name"] == "evaluate-token"]
    assert mount["mountPath"] == "/etc/live-migration-guard/evaluate-token" and "subPath" not in mount
    (volume,) = [v for v in pod_spec(manifests)["volumes"] if v["name"] == "evaluate-token"]
    assert volume["secret"] == {"secretName": "evaluate-token", "items": [{"key": "t", "path": "token"}]}


def test_side_endpoints_on_the_webhook_port_are_unauthenticated_and_need_no_extra_port(render):
    manifests = render(VARIANTS["side-on-webhook-port"])
    flags = args_by_flag(manifests)
    assert "--evaluate-listen" not in flags and "--evaluate-auth" not in flags
    assert "https-side" not in {p["name"] for p in manifests.one("Service")["spec"]["ports"]}
    env = {e["name"]: e["value"] for e in manifests.one("Pod")["spec"]["containers"][0]["env"]}
    assert env["LMG_URL"] == f"https://{FULLNAME}.{NAMESPACE}.svc:443/v1/evaluate"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"sideEndpoints": {"auth": "oidc"}}, "at '/sideEndpoints/auth': value must be one of 'kubernetes', 'token', 'none'"),
        (
            {"sideEndpoints": {"separatePort": False}},
            "sideEndpoints.auth=kubernetes needs sideEndpoints.separatePort=true",
        ),
        ({"sideEndpoints": {"auth": "token"}, "helmTest": {"enabled": False}}, "sideEndpoints.auth=token needs sideEndpoints.tokenSecret"),
        (
            {"sideEndpoints": {"auth": "token", "tokenSecret": "t"}},
            "helmTest.enabled with sideEndpoints.auth=token",
        ),
        ({"metricsAuth": "basic"}, "at '/metricsAuth': value must be one of 'kubernetes', 'none'"),
        ({"sideEndpoints": {"cache": {"ttl": "ten seconds"}}}, "at '/sideEndpoints/cache/ttl'"),
        ({"metricsAuth": "kubernetes", "podMonitor": {"enabled": True}}, "metricsAuth=kubernetes with podMonitor.enabled"),
        (
            {"rbac": {"access": {"createRoles": False, "evaluators": [{"kind": "User", "name": "x"}]}}},
            "they need rbac.access.createRoles=true",
        ),
    ],
    ids=["auth", "separate-port", "token-secret", "token-helm-test", "metrics-auth", "cache-ttl", "pod-monitor", "bindings"],
)
def test_invalid_auth_values_fail_with_a_message(render_error, values, message):
    assert message in render_error(values)


def test_the_service_monitor_sends_a_token_when_metrics_need_one(render):
    (endpoint,) = render(VARIANTS["auth-extras"]).one("ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["bearerTokenFile"] == "/var/run/secrets/kubernetes.io/serviceaccount/token"
    (endpoint,) = render(VARIANTS["observability"]).one("ServiceMonitor")["spec"]["endpoints"]
    assert "bearerTokenFile" not in endpoint


# --- helm test ---------------------------------------------------------------------------------


def test_helm_test_hook_calls_evaluate_with_its_own_service_account_and_grant(render):
    manifests = render()
    hooks = hook_objects(manifests)
    assert sorted((m["kind"], m["metadata"]["name"]) for m in hooks) == [
        ("ClusterRole", TEST),
        ("ClusterRoleBinding", TEST),
        ("ConfigMap", TEST),
        ("Pod", f"{TEST}-evaluate"),
        ("ServiceAccount", TEST),
    ]
    # Grants and the ServiceAccount exist before the Pod (weight -1), are removed after a pass.
    for m in hooks:
        annotations = m["metadata"]["annotations"]
        if m["kind"] == "Pod":
            assert "helm.sh/hook-weight" not in annotations
            assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation"
        else:
            assert annotations["helm.sh/hook-weight"] == "-1"
            assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    role = manifests.one("ClusterRole", TEST)
    assert rules(role) == [{"nonResourceURLs": ["/v1/evaluate"], "verbs": ["post"]}], "exactly what it needs"
    binding = manifests.one("ClusterRoleBinding", TEST)
    assert binding["roleRef"] == {"apiGroup": RBAC, "kind": "ClusterRole", "name": TEST}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": TEST, "namespace": NAMESPACE}]
    pod = manifests.one("Pod")["spec"]
    assert pod["serviceAccountName"] == TEST
    assert pod["automountServiceAccountToken"] is False
    assert pod["restartPolicy"] == "Never"
    (test,) = pod["containers"]
    env = {e["name"]: e["value"] for e in test["env"]}
    assert env["LMG_URL"] == f"https://{FULLNAME}.{NAMESPACE}.svc:8444/v1/evaluate"
    assert test["command"] == ["sh", "-c"]
    script = test["args"][0]
    assert '--header "Authorization: Bearer $(cat "$LMG_TOKEN_FILE")"' in script
    assert '--cacert "$LMG_CA_FILE"' in script and "--fail-with-body" in script
    assert test["securityContext"]["readOnlyRootFilesystem"] is True
    (credentials,) = [v for v in pod["volumes"] if v["name"] == "credentials"]
    token, ca = credentials["projected"]["sources"]
    assert token == {"serviceAccountToken": {"path": "token", "expirationSeconds": 600}}
    # Default tls.mode openshift-service-ca: the service CA is injected into the ConfigMap.
    assert ca == {"configMap": {"name": TEST, "items": [{"key": "service-ca.crt", "path": "ca.crt"}]}}
    assert manifests.one("ConfigMap", TEST)["metadata"]["annotations"]["service.beta.openshift.io/inject-cabundle"] == "true"
    assert "kind: NodePool" in manifests.one("ConfigMap", TEST)["data"]["nodepool.yaml"]


@pytest.mark.parametrize(
    ("mode", "source"),
    [
        ("cert-manager", {"secret": {"name": f"{FULLNAME}-tls", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}),
        ("self-signed", {"secret": {"name": f"{FULLNAME}-tls", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}),
        ("provided", {"configMap": {"name": TEST, "items": [{"key": "ca.crt", "path": "ca.crt"}]}}),
    ],
)
def test_helm_test_trusts_the_ca_of_each_tls_mode(render, mode, source):
    manifests = render(TLS_MODES[mode])
    (credentials,) = [v for v in manifests.one("Pod")["spec"]["volumes"] if v["name"] == "credentials"]
    assert credentials["projected"]["sources"][1] == source
    if mode == "provided":
        assert manifests.one("ConfigMap", TEST)["data"]["ca.crt"].startswith("-----BEGIN CERTIFICATE-----")


def test_helm_test_token_has_the_configured_audience(render):
    (credentials,) = [v for v in render(VARIANTS["auth-extras"]).one("Pod")["spec"]["volumes"] if v["name"] == "credentials"]
    assert credentials["projected"]["sources"][0]["serviceAccountToken"]["audience"] == "live-migration-guard"


def test_helm_test_is_off_when_disabled(render):
    assert not hook_objects(render({"helmTest": {"enabled": False}}))


def test_no_chart_selector_picks_up_the_test_pod(render):
    manifests = render(VARIANTS["auth-extras"])
    labels = manifests.one("Pod")["metadata"]["labels"]
    selectors = [
        manifests.one("Service")["spec"]["selector"],
        manifests.one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
        manifests.one("NetworkPolicy")["spec"]["podSelector"]["matchLabels"],
        manifests.one("Deployment")["spec"]["selector"]["matchLabels"],
    ]
    for selector in selectors:
        assert not selector.items() <= labels.items(), selector
    # With sideFrom peers the test Pod is admitted to the side port.
    _, side_rule, _ = manifests.one("NetworkPolicy")["spec"]["ingress"]
    test_peer = {"podSelector": {"matchLabels": {"app.kubernetes.io/instance": RELEASE, "app.kubernetes.io/component": "helm-test"}}}
    assert side_rule["from"] == [*VARIANTS["auth-extras"]["networkPolicy"]["sideFrom"], test_peer]
    assert test_peer["podSelector"]["matchLabels"].items() <= labels.items()
