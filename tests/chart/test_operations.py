"""Chart behaviour for running it in production (issue 15): OpenShift conventions, network policy
presets, install-time checks against a (fake) cluster, certificate rotation, safe defaults and
the extension knobs."""

import base64
import copy
import datetime

import pytest
import yaml
from cryptography import x509

from conftest import CHART, CHART_ARGS, NAMESPACE, RELEASE
from fake_apiserver import node
from test_chart import TLS_SECRET, args_by_flag, container, pod_spec, webhooks

HOST_NETWORK = {
    "namespaceSelector": {"matchLabels": {"policy-group.network.openshift.io/host-network": ""}}
}
MONITORING = {
    "namespaceSelector": {"matchLabels": {"network.openshift.io/policy-group": "monitoring"}}
}
CERT_MANAGER = {"tls": {"mode": "cert-manager"}}


# --- 6. operand conventions ----------------------------------------------------------------


def test_priority_class_follows_the_failure_policy(render):
    fail = {"webhook": {"failurePolicy": "Fail"}}
    assert "priorityClassName" not in pod_spec(render())
    assert pod_spec(render(fail))["priorityClassName"] == "system-cluster-critical"
    overridden = pod_spec(render({**fail, "priorityClassName": "platform-critical"}))
    assert overridden["priorityClassName"] == "platform-critical"


def test_openshift_pods_require_restricted_v2(render):
    def annotations(values):
        return render(values).one("Deployment")["spec"]["template"]["metadata"].get(
            "annotations", {}
        )

    # The default tls.mode is the OpenShift service CA: OpenShift conventions apply.
    assert annotations({})["openshift.io/required-scc"] == "restricted-v2"
    assert "openshift.io/required-scc" not in annotations(CERT_MANAGER)
    forced = annotations({**CERT_MANAGER, "openshift": {"enabled": True}})
    assert forced["openshift.io/required-scc"] == "restricted-v2"
    assert "openshift.io/required-scc" not in annotations({"openshift": {"enabled": False}})
    assert "openshift.io/required-scc" not in annotations({"openshift": {"requiredSCC": ""}})


def test_openshift_is_detected_from_the_api_groups(helm):
    result = helm.run(
        "template", RELEASE, *CHART_ARGS, "--api-versions", "security.openshift.io/v1",
        values=CERT_MANAGER,
    )
    assert result.returncode == 0, result.stderr
    deployment = next(d for d in yaml.safe_load_all(result.stdout) if d and d["kind"] == "Deployment")
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["openshift.io/required-scc"] == "restricted-v2"


def test_pods_select_linux_nodes_and_get_no_service_links(render):
    spec = pod_spec(render())
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert spec["enableServiceLinks"] is False


# --- 8. the server's deadline is below the API server's --------------------------------------


@pytest.mark.parametrize(("timeout", "expected"), [(5, "4s"), (10, "9s"), (2, "1s"), (1, "1s")])
def test_request_timeout_is_one_second_below_the_webhook_timeout(render, timeout, expected):
    manifests = render({"webhook": {"timeoutSeconds": timeout}})
    assert args_by_flag(manifests)["--request-timeout"] == expected
    assert all(w["timeoutSeconds"] == timeout for w in webhooks(manifests))


# --- 9. cluster-wide Secret access must be explicit ----------------------------------------


def test_cluster_wide_infra_credentials_need_an_explicit_switch(render, render_error):
    error = render_error({"infraCredentials": {"enabled": True}})
    assert "infraCredentials.enabled without infraCredentials.namespaces" in error
    assert "infraCredentials.clusterWide=true" in error
    render({"infraCredentials": {"enabled": True, "clusterWide": True}})
    render({"infraCredentials": {"enabled": True, "namespaces": ["clusters"]}})


# --- 12. startup probe --------------------------------------------------------------------------


def test_slow_first_sync_leaves_the_pod_unready_instead_of_restarting_it(render):
    webhook = container(render())
    assert webhook["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert webhook["readinessProbe"]["httpGet"]["path"] == "/readyz"


# --- 5. network policy presets ---------------------------------------------------------------


def policy(render, values):
    return render({"networkPolicy": {"enabled": True, **values}}).one("NetworkPolicy")["spec"]


def test_openshift_network_policy_admits_the_api_server_and_monitoring_only(render):
    spec = policy(render, {})  # auto -> openshift with the default tls.mode
    assert spec["policyTypes"] == ["Ingress"]
    webhook_rule, side_rule, ops_rule = spec["ingress"]
    assert webhook_rule["from"] == [HOST_NETWORK]
    # The side endpoints authenticate their callers: any source unless sideFrom names peers.
    assert "from" not in side_rule
    assert ops_rule["from"] == [MONITORING]
    # The natural, wrong peer stays an addition to the host-network group, never a replacement.
    extra = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "openshift-kube-apiserver"}}}
    webhook_rule, _, _ = policy(render, {"webhookFrom": [extra]})["ingress"]
    assert webhook_rule["from"] == [HOST_NETWORK, extra]


def test_network_policy_preset_none_uses_only_the_given_peers(render):
    spec = policy(render, {"preset": "none"})
    assert all("from" not in rule for rule in spec["ingress"])
    peers = [{"ipBlock": {"cidr": "10.0.0.0/24"}}]
    webhook_rule, _, _ = policy(render, {"preset": "none", "webhookFrom": peers})["ingress"]
    assert webhook_rule["from"] == peers
    # Not on OpenShift (cert-manager mode): auto means none.
    spec = render({**CERT_MANAGER, "networkPolicy": {"enabled": True}}).one("NetworkPolicy")
    assert all("from" not in rule for rule in spec["spec"]["ingress"])


@pytest.mark.parametrize(
    ("values", "dns_namespace", "dns_port"),
    [({}, "openshift-dns", 5353), ({"preset": "none"}, "kube-system", 53)],
    ids=["openshift", "none"],
)
def test_network_policy_egress_allows_the_api_server_and_dns(render, values, dns_namespace, dns_port):
    spec = policy(render, {**values, "egress": {"enabled": True}})
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    api, dns = spec["egress"]
    assert [p["port"] for p in api["ports"]] == [6443, 443]
    assert "to" not in api  # any address, API ports only
    assert {(p["port"], p["protocol"]) for p in dns["ports"]} == {(dns_port, "UDP"), (dns_port, "TCP")}
    assert dns["to"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": dns_namespace}}}]


def test_network_policy_egress_peers_and_extra_rules(render):
    masters = [{"ipBlock": {"cidr": "192.168.10.0/28"}}]
    extra = {"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}], "ports": [{"port": 6443, "protocol": "TCP"}]}
    spec = policy(render, {"egress": {"enabled": True, "apiServerTo": masters, "extraRules": [extra]}})
    api, _, added = spec["egress"]
    assert api["to"] == masters
    assert added == extra


def test_invalid_network_policy_preset(render_error):
    assert "at '/networkPolicy/preset': value must be one of 'auto', 'openshift', 'none'" in render_error(
        {"networkPolicy": {"preset": "ovn"}}
    )


# --- 7. the default TLS mode needs OpenShift's service CA --------------------------------------
# The refusal on a plain cluster and the install on one serving config.openshift.io/v1 are
# checked against the real kube-apiserver (tests/e2e_chart.rs), as are a single-node refusal and
# the self-signed reuse and renewal on upgrade. The fake API server here varies the cluster's
# state more cheaply (node counts, aged or deleted Secrets).


def test_service_ca_check_can_be_skipped_and_other_modes_are_not_checked(cluster):
    vanilla = cluster()
    vanilla.render({"tls": {"serviceCACheck": False}})
    vanilla.render(CERT_MANAGER)


def test_offline_renders_are_not_checked(render, lint):
    # helm template / lint (and Argo CD) cannot see the cluster: nothing to check against.
    render()
    assert lint().returncode == 0


# --- 13. single-node clusters --------------------------------------------------------------------


def test_single_node_cluster_with_a_blocking_pdb_fails_with_the_fix(cluster):
    single = cluster([node("sno-0")], openshift=True)
    error = single.render_error()
    assert "this cluster has a single node" in error
    assert "podDisruptionBudget.maxUnavailable=100%" in error
    pdb = single.render({"podDisruptionBudget": {"maxUnavailable": "100%"}}).one("PodDisruptionBudget")
    assert pdb["spec"] == {**pdb["spec"], "maxUnavailable": "100%"} and "minAvailable" not in pdb["spec"]
    single.render({"podDisruptionBudget": {"maxUnavailable": 2}})
    single.render({"podDisruptionBudget": {"enabled": False}})
    # Three nodes: the default budget is fine.
    cluster([node("a"), node("b"), node("c")], openshift=True).render()


# --- 10. self-signed rotation keeps the old CA trusted -------------------------------------------


def pems(b64_bundle):
    """The certificates of a base64-encoded PEM bundle, in order."""
    text = base64.b64decode(b64_bundle).decode()
    return [
        x509.load_pem_x509_certificate(("-----BEGIN CERTIFICATE-----" + part).encode())
        for part in text.split("-----BEGIN CERTIFICATE-----")[1:]
    ]


SELF_SIGNED = {"tls": {"mode": "self-signed"}}


def installed(manifests):
    """The Secret and webhook configuration as the cluster would store them."""
    secret = copy.deepcopy(manifests.one("Secret", TLS_SECRET))
    vwc = copy.deepcopy(manifests.one("ValidatingWebhookConfiguration"))
    for obj in (secret, vwc):
        # Helm's ownership marks, without which it refuses to adopt existing objects.
        obj["metadata"].setdefault("annotations", {}).update(
            {"meta.helm.sh/release-name": RELEASE, "meta.helm.sh/release-namespace": NAMESPACE}
        )
    return secret, vwc


def with_not_after(secret, days_from_now):
    secret = copy.deepcopy(secret)
    when = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=days_from_now)
    secret["metadata"]["annotations"]["live-migration-guard.io/not-after"] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    return secret


def ca_of(secret):
    return x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["ca.crt"]))


def test_self_signed_first_install_has_one_ca_and_an_expiry(cluster):
    manifests = cluster().render(SELF_SIGNED)
    secret = manifests.one("Secret", TLS_SECRET)
    (ca,) = pems(webhooks(manifests)[0]["clientConfig"]["caBundle"])
    assert ca == ca_of(secret)
    not_after = datetime.datetime.strptime(
        secret["metadata"]["annotations"]["live-migration-guard.io/not-after"], "%Y-%m-%dT%H:%M:%SZ"
    ).replace(tzinfo=datetime.timezone.utc)
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    assert abs((cert.not_valid_after_utc - not_after).total_seconds()) < 3600


def webhooks_bundle(vwc):
    return vwc["webhooks"][0]["clientConfig"]["caBundle"]


@pytest.mark.parametrize(
    "how", ["expiring", "reuse-disabled", "secret-deleted"],
)
def test_self_signed_renewal_trusts_old_and_new_ca(cluster, how):
    old_secret, old_vwc = installed(cluster().render(SELF_SIGNED))
    old_ca = ca_of(old_secret)
    values = SELF_SIGNED
    objects = [with_not_after(old_secret, 200), old_vwc]
    if how == "expiring":
        objects[0] = with_not_after(old_secret, 10)  # within renewBeforeDays (30)
    elif how == "reuse-disabled":
        values = {"tls": {"mode": "self-signed", "selfSigned": {"reuseExisting": False}}}
    else:
        objects = [old_vwc]
    renewed = cluster(objects).render(values)
    secret = renewed.one("Secret", TLS_SECRET)
    new_ca = ca_of(secret)
    assert new_ca != old_ca
    x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"])).verify_directly_issued_by(new_ca)
    for webhook in webhooks(renewed):
        # Pods still serving the old certificate stay trusted until the kubelet updates them.
        assert pems(webhook["clientConfig"]["caBundle"]) == [new_ca, old_ca]
    # The next upgrade keeps both (the bundle is stored with the Secret) ...
    renewed_secret, renewed_vwc = installed(renewed)
    later = cluster([with_not_after(renewed_secret, 300), renewed_vwc]).render(SELF_SIGNED)
    assert pems(webhooks(later)[0]["clientConfig"]["caBundle"]) == [new_ca, old_ca]
    # ... and the one after the next renewal drops the oldest CA.
    newest = cluster([with_not_after(renewed_secret, 5), renewed_vwc]).render(SELF_SIGNED)
    newest_cas = pems(webhooks(newest)[0]["clientConfig"]["caBundle"])
    assert len(newest_cas) == 2 and newest_cas[1] == new_ca and old_ca not in newest_cas


def test_self_signed_without_renewal_window(cluster):
    secret, vwc = installed(cluster().render(SELF_SIGNED))
    values = {"tls": {"mode": "self-signed", "selfSigned": {"renewBeforeDays": 0}}}
    again = cluster([with_not_after(secret, 1), vwc]).render(values)
    assert again.one("Secret", TLS_SECRET)["data"] == secret["data"]


# --- 11. cert-manager Secrets left after uninstall ------------------------------------------------


def test_cert_manager_secrets_are_labelled_for_cleanup(render):
    manifests = render(CERT_MANAGER)
    for certificate in manifests.of_kind("Certificate"):
        labels = certificate["spec"]["secretTemplate"]["labels"]
        assert labels["app.kubernetes.io/instance"] == "guard"
        assert labels["app.kubernetes.io/name"] == "live-migration-guard"
    readme = (CHART / "README.md").read_text()
    assert f"kubectl -n {'<namespace>'} delete secret -l app.kubernetes.io/instance=<release>" in readme


# --- 14. knobs ------------------------------------------------------------------------------


def test_extra_env_volumes_and_mounts(render):
    values = {
        "extraEnv": [{"name": "SSL_CERT_DIR", "value": "/etc/pki/extra"}],
        "extraVolumes": [{"name": "trusted-ca", "configMap": {"name": "trusted-ca"}}],
        "extraVolumeMounts": [{"name": "trusted-ca", "mountPath": "/etc/pki/extra", "readOnly": True}],
    }
    manifests = render(values)
    webhook = container(manifests)
    assert webhook["env"][-1] == values["extraEnv"][0]
    assert webhook["env"][0]["name"] == "RUST_LOG"
    assert webhook["volumeMounts"][-1] == values["extraVolumeMounts"][0]
    assert pod_spec(manifests)["volumes"][-1] == values["extraVolumes"][0]


def test_common_labels_and_annotations_reach_every_resource(render):
    values = {
        "commonLabels": {"example.com/team": "virt"},
        "commonAnnotations": {"example.com/owner": "virt-oncall"},
        "serviceMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True},
        "networkPolicy": {"enabled": True},
        "service": {"annotations": {"example.com/owner": "service-owner"}},
    }
    manifests = render(values)
    for manifest in manifests:
        metadata = manifest["metadata"]
        assert metadata["labels"]["example.com/team"] == "virt", manifest["kind"]
        expected = "service-owner" if manifest["kind"] == "Service" else "virt-oncall"
        assert metadata["annotations"]["example.com/owner"] == expected, manifest["kind"]
    deployment = manifests.one("Deployment")
    assert "example.com/team" not in deployment["spec"]["selector"]["matchLabels"]
    assert deployment["spec"]["template"]["metadata"]["labels"]["example.com/team"] == "virt"
    # The webhook's own annotation survives the merge.
    vwc = manifests.one("ValidatingWebhookConfiguration")["metadata"]["annotations"]
    assert vwc["service.beta.openshift.io/inject-cabundle"] == "true"


def test_webhook_object_selector_and_extra_match_conditions(render):
    condition = {"name": "not-paused", "expression": "!has(object.spec.pausedUntil)"}
    selector = {"matchExpressions": [{"key": "example.com/skip-guard", "operator": "DoesNotExist"}]}
    manifests = render({"webhook": {"objectSelector": selector, "extraMatchConditions": [condition]}})
    for webhook in webhooks(manifests):
        assert webhook["objectSelector"] == selector
        names = [c["name"] for c in webhook["matchConditions"]]
        assert names == ["kubevirt-platform", "spec-or-vm-jsonpatch-changed", "not-paused"]
        assert webhook["matchConditions"][-1] == condition
    assert all("objectSelector" not in w for w in webhooks(render()))


def test_scrape_knobs_on_service_monitor_and_pod_monitor(render, render_error):
    knobs = {
        "scrapeTimeout": "10s",
        "honorLabels": True,
        "relabelings": [{"targetLabel": "cluster", "replacement": "infra-1"}],
        "metricRelabelings": [{"sourceLabels": ["__name__"], "regex": "go_.*", "action": "drop"}],
    }
    (endpoint,) = render({"serviceMonitor": {"enabled": True, **knobs}}).one("ServiceMonitor")["spec"]["endpoints"]
    assert endpoint == {"port": "http-ops", "path": "/metrics", "scheme": "http", "interval": "30s", **knobs}
    monitor = render({"podMonitor": {"enabled": True, **knobs}}).one("PodMonitor")
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint == {"port": "http-ops", "path": "/metrics", "scheme": "http", "interval": "30s", **knobs}
    assert monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"] == "guard"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    error = render_error({"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}})
    assert "enable serviceMonitor or podMonitor, not both" in error


def test_pdb_max_unavailable_replaces_min_available(render):
    pdb = render({"podDisruptionBudget": {"maxUnavailable": 1}}).one("PodDisruptionBudget")["spec"]
    assert pdb["maxUnavailable"] == 1 and "minAvailable" not in pdb
    # maxUnavailable takes the minAvailable < replicaCount check out of play.
    render({"replicaCount": 1, "podDisruptionBudget": {"maxUnavailable": 1}})


# --- 15. packaging ----------------------------------------------------------------------------


def test_chart_metadata_for_artifact_hub_and_openshift_certification():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    for field in ("icon", "home", "sources", "maintainers", "annotations"):
        assert chart.get(field), f"Chart.yaml has no {field}"
    annotations = chart["annotations"]
    assert annotations["charts.openshift.io/name"]
    assert annotations["artifacthub.io/license"] == "Apache-2.0"
    assert yaml.safe_load(annotations["artifacthub.io/links"])
    assert yaml.safe_load(annotations["artifacthub.io/images"])[0]["image"].startswith("ghcr.io/")
    assert all(m.get("name") for m in chart["maintainers"])


def test_readme_has_an_operating_section():
    readme = (CHART / "README.md").read_text()
    operating = readme.split("\n## Operating it\n", 1)[1].split("\n## ", 1)[0]
    for topic in ("### Alerts and runbooks", "### Network policy presets", "### Certificate rotation", "### Uninstalling"):
        assert topic in operating, topic
