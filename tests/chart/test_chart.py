"""Tests of charts/live-migration-guard: `helm lint --strict`, strict validation of every rendered
manifest against the Kubernetes schemas (offline), and the properties the webhook relies on."""

import base64
import datetime
import re

import kubernetes_validate
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import CHART, KUBE_VERSION, NAMESPACE, RELEASE, values_table

FULLNAME = f"{RELEASE}-live-migration-guard"
TLS_SECRET = f"{FULLNAME}-tls"
DNS_NAMES = [
    FULLNAME,
    f"{FULLNAME}.{NAMESPACE}",
    f"{FULLNAME}.{NAMESPACE}.svc",
    f"{FULLNAME}.{NAMESPACE}.svc.cluster.local",
]
TLS_DIR = "/etc/live-migration-guard/tls"
CLIENT_CA = "/etc/live-migration-guard/client-ca/ca.crt"


def make_ca_bundle():
    """A self-signed CA certificate, base64-encoded PEM as tls.caBundle expects."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return base64.b64encode(cert.public_bytes(serialization.Encoding.PEM)).decode()


PROVIDED_CA_BUNDLE = make_ca_bundle()
PROVIDED_SECRET = "guard-serving-cert"

TLS_MODES = {
    "openshift-service-ca": {"tls": {"mode": "openshift-service-ca"}},
    "cert-manager": {"tls": {"mode": "cert-manager"}},
    "provided": {
        "tls": {"mode": "provided", "secretName": PROVIDED_SECRET, "caBundle": PROVIDED_CA_BUNDLE}
    },
    "self-signed": {"tls": {"mode": "self-signed"}},
}

VARIANTS = {
    "default": {},
    **{f"tls-{mode}": values for mode, values in TLS_MODES.items()},
    "tls-cert-manager-issuer-ref": {
        "tls": {
            "mode": "cert-manager",
            "certManager": {"issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"}},
        }
    },
    "deny": {
        "mode": "deny",
        "denyUnknown": True,
        "allowObjectOverride": True,
        "webhook": {"failurePolicy": "Fail", "timeoutSeconds": 3},
        "priorityClassName": "system-cluster-critical",
    },
    "infra-credentials": {"infraCredentials": {"enabled": True, "clusterWide": True}},
    "infra-credentials-namespaced": {
        "infraCredentials": {"enabled": True, "namespaces": ["clusters", "clusters-2"]}
    },
    "observability": {
        "networkPolicy": {
            "enabled": True,
            "opsFrom": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "openshift-monitoring"}
                    }
                }
            ],
        },
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
        "prometheusRule": {"enabled": True},
    },
    "production-openshift": {
        "mode": "deny",
        "webhook": {
            "failurePolicy": "Fail",
            "objectSelector": {"matchLabels": {"example.com/guarded": "true"}},
            "extraMatchConditions": [{"name": "not-paused", "expression": "true"}],
        },
        "commonLabels": {"example.com/team": "virt"},
        "commonAnnotations": {"example.com/owner": "virt"},
        "extraEnv": [{"name": "EXAMPLE", "value": "1"}],
        "extraVolumes": [{"name": "extra", "emptyDir": {}}],
        "extraVolumeMounts": [{"name": "extra", "mountPath": "/extra"}],
        "podDisruptionBudget": {"maxUnavailable": 1},
        "networkPolicy": {"enabled": True, "egress": {"enabled": True}},
        "podMonitor": {"enabled": True, "scrapeTimeout": "10s", "honorLabels": True},
        "prometheusRule": {
            "enabled": True,
            "apiServer": {"enabled": True},
            "kubeStateMetrics": {"enabled": True},
        },
    },
    "mtls-configmap": {
        "clientAuth": {
            "enabled": True,
            "caConfigMap": "apiserver-client-ca",
            "allowedNames": ["kube-apiserver", "system:kube-apiserver"],
        }
    },
    "mtls-secret": {
        "clientAuth": {"enabled": True, "caSecret": "apiserver-client-ca", "caKey": "ca.pem"}
    },
    "side-token": {
        "sideEndpoints": {"auth": "token", "tokenSecret": "evaluate-token", "tokenSecretKey": "t"},
        "helmTest": {"enabled": False},
    },
    "side-on-webhook-port": {"sideEndpoints": {"separatePort": False, "auth": "none"}},
    "auth-extras": {
        "metricsAuth": "kubernetes",
        "serviceMonitor": {"enabled": True},
        "sideEndpoints": {"audiences": ["live-migration-guard"], "port": 9443},
        "networkPolicy": {"enabled": True, "sideFrom": [{"namespaceSelector": {"matchLabels": {"ci": "true"}}}]},
        "rbac": {
            "access": {
                "evaluators": [{"kind": "ServiceAccount", "name": "pipeline", "namespace": "ci"}],
                "reportReaders": [{"kind": "Group", "name": "sre", "apiGroup": "rbac.authorization.k8s.io"}],
                "namespaceReportReaders": {
                    "clusters-team-a": [{"kind": "Group", "name": "team-a", "apiGroup": "rbac.authorization.k8s.io"}]
                },
                "metricsReaders": [
                    {"kind": "ServiceAccount", "name": "prometheus-k8s", "namespace": "openshift-monitoring"}
                ],
            }
        },
    },
    "overrides": {
        "image": {"digest": "sha256:" + "ab" * 32},
        "imagePullSecrets": [{"name": "pull-secret"}],
        "podAnnotations": {"example.com/team": "virt"},
        "podLabels": {"example.com/tier": "control"},
        "extraArgs": ["--example-flag=1"],
        "nodeSelector": {"node-role.kubernetes.io/infra": ""},
        "tolerations": [{"key": "node-role.kubernetes.io/infra", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}
                            ]
                        }
                    ]
                }
            }
        },
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": {"app.kubernetes.io/instance": RELEASE}},
            }
        ],
        "shutdown": {"preStopSleepSeconds": 0, "terminationGracePeriodSeconds": 60},
        "service": {"annotations": {"example.com/owner": "virt"}},
        "serviceAccount": {"annotations": {"example.com/owner": "virt"}},
        "webhook": {
            "excludeNamespaces": ["clusters-sandbox"],
            "namespaceSelectorExpressions": [
                {"key": "example.com/env", "operator": "In", "values": ["prod"]}
            ],
            "annotations": {"example.com/owner": "virt"},
        },
    },
}

# Custom resources kubernetes-validate has no schema for; check_custom_resource checks them.
CUSTOM_RESOURCES = {
    "ServiceMonitor": "monitoring.coreos.com/v1",
    "PodMonitor": "monitoring.coreos.com/v1",
    "PrometheusRule": "monitoring.coreos.com/v1",
    "Issuer": "cert-manager.io/v1",
    "Certificate": "cert-manager.io/v1",
}
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "ValidatingWebhookConfiguration"}

LIST_WATCH = {
    ("", "namespaces"),
    ("storage.k8s.io", "storageclasses"),
    ("cdi.kubevirt.io", "storageprofiles"),
    ("kubevirt.io", "kubevirts"),
    ("hypershift.openshift.io", "hostedclusters"),
    ("hypershift.openshift.io", "nodepools"),
}
FACT_GRANTS = {
    (group, resource, verb) for group, resource in LIST_WATCH for verb in ("list", "watch")
}
SECRET_GRANT = ("", "secrets", "get")


def pod_spec(manifests):
    return manifests.one("Deployment")["spec"]["template"]["spec"]


def container(manifests):
    (webhook,) = pod_spec(manifests)["containers"]
    return webhook


def container_port(manifests, name):
    (port,) = [p for p in container(manifests)["ports"] if p["name"] == name]
    return port["containerPort"]


def webhooks(manifests):
    return manifests.one("ValidatingWebhookConfiguration")["webhooks"]


def grants(role):
    """The (apiGroup, resource, verb) triples a Role or ClusterRole grants."""
    for rule in role["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, f"unexpected rule fields: {rule}"
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def seconds(arg_value):
    match = re.fullmatch(r"(\d+)s", arg_value)
    assert match, f"expected a duration in seconds, got {arg_value}"
    return int(match[1])


def args_by_flag(manifests):
    args = container(manifests)["args"]
    return dict(arg.split("=", 1) for arg in args if "=" in arg)


def check_custom_resource(manifest):
    kind, spec = manifest["kind"], manifest["spec"]
    assert manifest["apiVersion"] == CUSTOM_RESOURCES[kind]
    assert manifest["metadata"]["name"]
    if kind == "ServiceMonitor":
        assert spec["selector"]["matchLabels"]
        assert all(endpoint["port"] for endpoint in spec["endpoints"])
    elif kind == "PodMonitor":
        assert spec["selector"]["matchLabels"]
        assert all(endpoint["port"] for endpoint in spec["podMetricsEndpoints"])
    elif kind == "PrometheusRule":
        for group in spec["groups"]:
            assert group["name"] and group["rules"]
            for rule in group["rules"]:
                assert rule["alert"] and rule["expr"] and rule["labels"]["severity"]
    elif kind == "Issuer":
        assert list(spec) in (["selfSigned"], ["ca"])
        assert "ca" not in spec or spec["ca"]["secretName"]
    elif kind == "Certificate":
        assert spec["secretName"] and spec["issuerRef"]["name"]
        assert spec.get("dnsNames") or spec.get("commonName")


# --- lint and schemas ------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_helm_lint_strict(lint, variant):
    result = lint(VARIANTS[variant])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("variant", VARIANTS)
def test_manifests_are_valid_kubernetes_objects(render, variant):
    errors = []
    for manifest in render(VARIANTS[variant]):
        if manifest["kind"] in CUSTOM_RESOURCES:
            check_custom_resource(manifest)
            continue
        try:
            kubernetes_validate.validate(manifest, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(p) for p in error.path)
            errors.append(
                f"{manifest['kind']}/{manifest['metadata']['name']}: {path}: {error.message}"
            )
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("variant", VARIANTS)
def test_resources_are_labelled_and_namespaced(render, variant):
    for manifest in render(VARIANTS[variant]):
        metadata = manifest["metadata"]
        labels = metadata["labels"]
        if metadata.get("annotations", {}).get("helm.sh/hook") == "test":
            # The helm test objects: a name label of their own, so that no selector of the chart
            # (Service, PodDisruptionBudget, NetworkPolicy) picks up the test Pod.
            assert labels["app.kubernetes.io/name"] == "live-migration-guard-test"
            assert labels["app.kubernetes.io/component"] == "helm-test"
        else:
            assert labels["app.kubernetes.io/name"] == "live-migration-guard"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        if manifest["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in metadata
        elif manifest["kind"] not in ("Role", "RoleBinding"):
            assert metadata["namespace"] == NAMESPACE, f"{manifest['kind']} {metadata['name']}"


def test_notes_render(helm):
    result = helm.run(
        "install",
        RELEASE,
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--dry-run=client",
        values={"tls": {"mode": "cert-manager"}},
    )
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    assert f"rollout status deployment/{FULLNAME}" in notes
    assert "--dry-run=server" in notes
    assert f"--clusterrole={FULLNAME}-evaluate" in notes
    assert f"helm test {RELEASE} -n {NAMESPACE}" in notes


# --- webhook configuration -------------------------------------------------------------------


def test_webhooks_validate_nodepools_and_hostedclusters(render):
    by_name = {webhook["name"]: webhook for webhook in webhooks(render())}
    assert set(by_name) == {
        "nodepools.live-migration-guard.io",
        "hostedclusters.live-migration-guard.io",
    }
    for resource in ("nodepools", "hostedclusters"):
        webhook = by_name[f"{resource}.live-migration-guard.io"]
        assert webhook["clientConfig"]["service"]["path"] == f"/validate/{resource}"
        assert webhook["rules"] == [
            {
                "apiGroups": ["hypershift.openshift.io"],
                "apiVersions": ["v1beta1"],
                "operations": ["CREATE", "UPDATE"],
                "resources": [resource],
                "scope": "Namespaced",
            }
        ]
        assert webhook["admissionReviewVersions"] == ["v1"]
        assert webhook["sideEffects"] == "None"
        assert webhook["timeoutSeconds"] == 5
        assert webhook["failurePolicy"] == "Ignore"


def test_failure_policy_and_timeout_are_settable(render):
    for webhook in webhooks(render(VARIANTS["deny"])):
        assert webhook["failurePolicy"] == "Fail"
        assert webhook["timeoutSeconds"] == 3


def test_only_kubevirt_objects_and_spec_changes_are_sent(render):
    for webhook in webhooks(render()):
        conditions = {
            c["name"]: " ".join(c["expression"].split()) for c in webhook["matchConditions"]
        }
        assert set(conditions) == {"kubevirt-platform", "spec-or-vm-jsonpatch-changed"}
        kubevirt = conditions["kubevirt-platform"]
        assert kubevirt.endswith("object.spec.platform.type == 'KubeVirt'")
        # Every field is guarded, so objects without them do not make the expression fail.
        for field in ("object.spec", "object.spec.platform", "object.spec.platform.type"):
            assert f"has({field})" in kubevirt
        # Spec changes, and changes of the annotation that patches the VMs; absent == empty.
        annotation = "'hypershift.openshift.io/kubevirt-vm-jsonpatch'"
        patch = lambda o: (  # noqa: E731
            f"(has({o}.metadata.annotations) && {annotation} in {o}.metadata.annotations ? "
            f"{o}.metadata.annotations[{annotation}] : '')"
        )
        assert conditions["spec-or-vm-jsonpatch-changed"] == (
            "request.operation != 'UPDATE' || !has(oldObject.spec) || object.spec != oldObject.spec"
            f" || {patch('object')} != {patch('oldObject')}"
        )


def test_namespace_selector_excludes_ignored_and_own_namespaces(render):
    for webhook in webhooks(render()):
        assert webhook["namespaceSelector"]["matchExpressions"] == [
            {"key": "live-migration-guard.io/ignore", "operator": "NotIn", "values": ["true"]},
            {"key": "live-migration-guard.io/mode", "operator": "NotIn", "values": ["off"]},
            {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": [NAMESPACE]},
        ]
    for webhook in webhooks(render(VARIANTS["overrides"])):
        assert webhook["namespaceSelector"]["matchExpressions"][2:] == [
            {
                "key": "kubernetes.io/metadata.name",
                "operator": "NotIn",
                "values": [NAMESPACE, "clusters-sandbox"],
            },
            {"key": "example.com/env", "operator": "In", "values": ["prod"]},
        ]


def test_webhook_calls_the_rendered_service_on_the_https_container_port(render):
    manifests = render()
    service = manifests.one("Service")
    ports = {port["name"]: port for port in service["spec"]["ports"]}
    for webhook in webhooks(manifests):
        target = webhook["clientConfig"]["service"]
        assert target["name"] == service["metadata"]["name"] == FULLNAME
        assert target["namespace"] == service["metadata"]["namespace"] == NAMESPACE
        assert target["port"] == ports["https"]["port"] == 443
    assert ports["https"]["targetPort"] == "https"
    assert container_port(manifests, "https") == 8443
    assert ports["http-ops"]["targetPort"] == "http-ops"
    assert container_port(manifests, "http-ops") == 8080
    pod_labels = manifests.one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


# --- TLS modes -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", TLS_MODES)
def test_tls_secret_is_mounted_as_a_directory(render, mode):
    manifests = render(TLS_MODES[mode])
    (mount,) = [m for m in container(manifests)["volumeMounts"] if m["mountPath"] == TLS_DIR]
    # subPath mounts never see the kubelet's ..data symlink swap, so renewals would not arrive.
    assert "subPath" not in mount and "subPathExpr" not in mount
    assert mount["readOnly"] is True
    (volume,) = [v for v in pod_spec(manifests)["volumes"] if v["name"] == mount["name"]]
    expected = PROVIDED_SECRET if mode == "provided" else TLS_SECRET
    assert volume["secret"]["secretName"] == expected
    assert "items" not in volume["secret"]
    flags = args_by_flag(manifests)
    assert flags["--tls-cert"] == f"{TLS_DIR}/tls.crt"
    assert flags["--tls-key"] == f"{TLS_DIR}/tls.key"


def test_tls_openshift_service_ca(render):
    manifests = render(TLS_MODES["openshift-service-ca"])
    annotations = manifests.one("Service")["metadata"]["annotations"]
    assert annotations["service.beta.openshift.io/serving-cert-secret-name"] == TLS_SECRET
    vwc = manifests.one("ValidatingWebhookConfiguration")
    assert vwc["metadata"]["annotations"]["service.beta.openshift.io/inject-cabundle"] == "true"
    assert all("caBundle" not in w["clientConfig"] for w in vwc["webhooks"])
    assert not manifests.of_kind("Secret") and not manifests.of_kind("Certificate")


def test_tls_cert_manager_ca_chain(render):
    manifests = render(TLS_MODES["cert-manager"])
    selfsigned = manifests.one("Issuer", f"{FULLNAME}-selfsigned")
    assert selfsigned["spec"] == {"selfSigned": {}}
    ca = manifests.one("Certificate", f"{FULLNAME}-ca")
    assert ca["spec"]["isCA"] is True
    assert ca["spec"]["issuerRef"]["name"] == selfsigned["metadata"]["name"]
    ca_issuer = manifests.one("Issuer", f"{FULLNAME}-ca")
    assert ca_issuer["spec"]["ca"]["secretName"] == ca["spec"]["secretName"]

    serving = manifests.one("Certificate", f"{FULLNAME}-tls")
    assert serving["spec"]["issuerRef"]["name"] == ca_issuer["metadata"]["name"]
    assert serving["spec"]["issuerRef"]["kind"] == "Issuer"
    assert serving["spec"]["secretName"] == TLS_SECRET
    assert sorted(serving["spec"]["dnsNames"]) == sorted(DNS_NAMES)
    assert "server auth" in serving["spec"]["usages"]

    vwc = manifests.one("ValidatingWebhookConfiguration")
    assert vwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == (
        f"{NAMESPACE}/{serving['metadata']['name']}"
    )
    assert all("caBundle" not in w["clientConfig"] for w in vwc["webhooks"])
    assert "service.beta.openshift.io/serving-cert-secret-name" not in (
        manifests.one("Service")["metadata"].get("annotations", {})
    )


def test_tls_cert_manager_existing_issuer(render):
    manifests = render(VARIANTS["tls-cert-manager-issuer-ref"])
    assert not manifests.of_kind("Issuer")
    serving = manifests.one("Certificate")
    assert serving["spec"]["issuerRef"] == {"name": "corp-ca", "kind": "ClusterIssuer"}
    assert sorted(serving["spec"]["dnsNames"]) == sorted(DNS_NAMES)


def test_tls_provided(render):
    manifests = render(TLS_MODES["provided"])
    for webhook in webhooks(manifests):
        assert webhook["clientConfig"]["caBundle"] == PROVIDED_CA_BUNDLE
    vwc_annotations = manifests.one("ValidatingWebhookConfiguration")["metadata"].get(
        "annotations", {}
    )
    assert not vwc_annotations
    assert not manifests.of_kind("Secret") and not manifests.of_kind("Certificate")


@pytest.mark.parametrize(
    ("tls", "message"),
    [
        ({"secretName": PROVIDED_SECRET}, "tls.mode=provided needs tls.caBundle"),
        ({"caBundle": PROVIDED_CA_BUNDLE}, "tls.mode=provided needs tls.secretName"),
        (
            {"secretName": PROVIDED_SECRET, "caBundle": base64.b64encode(b"not a pem").decode()},
            "tls.caBundle must be base64-encoded PEM",
        ),
    ],
    ids=["no-ca-bundle", "no-secret-name", "not-pem"],
)
def test_tls_provided_requires_secret_and_ca_bundle(render_error, tls, message):
    assert message in render_error({"tls": {"mode": "provided", **tls}})


def test_tls_self_signed(render):
    manifests = render(TLS_MODES["self-signed"])
    secret = manifests.one("Secret", TLS_SECRET)
    assert secret["type"] == "kubernetes.io/tls"
    data = {key: base64.b64decode(value) for key, value in secret["data"].items()}
    ca = x509.load_pem_x509_certificate(data["ca.crt"])
    cert = x509.load_pem_x509_certificate(data["tls.crt"])
    key = serialization.load_pem_private_key(data["tls.key"], password=None)

    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(sans.get_values_for_type(x509.DNSName)) == sorted(DNS_NAMES)
    cert.verify_directly_issued_by(ca)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()
    for webhook in webhooks(manifests):
        assert webhook["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]


# --- RBAC ------------------------------------------------------------------------------------


def test_rbac_is_list_watch_on_the_facts_only(render):
    manifests = render()
    assert grants(manifests.one("ClusterRole", FULLNAME)) == FACT_GRANTS
    assert not manifests.of_kind("Role") and not manifests.of_kind("RoleBinding")
    binding = manifests.one("ClusterRoleBinding", FULLNAME)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": FULLNAME,
    }
    service_account = manifests.one("ServiceAccount", FULLNAME)["metadata"]["name"]
    assert pod_spec(manifests)["serviceAccountName"] == service_account
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": service_account, "namespace": NAMESPACE}
    ]


def test_rbac_infra_credentials_cluster_wide(render):
    manifests = render(VARIANTS["infra-credentials"])
    assert grants(manifests.one("ClusterRole", FULLNAME)) == FACT_GRANTS | {SECRET_GRANT}
    assert args_by_flag(manifests)["--infra-credentials"] == "read"


def test_rbac_infra_credentials_per_namespace(render):
    manifests = render(VARIANTS["infra-credentials-namespaced"])
    assert grants(manifests.one("ClusterRole", FULLNAME)) == FACT_GRANTS
    roles = manifests.of_kind("Role")
    assert sorted(role["metadata"]["namespace"] for role in roles) == ["clusters", "clusters-2"]
    for role in roles:
        assert grants(role) == {SECRET_GRANT}
    for binding in manifests.of_kind("RoleBinding"):
        assert binding["roleRef"]["name"] == roles[0]["metadata"]["name"]
        assert binding["subjects"][0]["namespace"] == NAMESPACE


# --- Deployment ------------------------------------------------------------------------------


def test_default_server_arguments(render):
    manifests = render()
    assert container(manifests)["args"] == [
        "serve",
        "--listen=0.0.0.0:8443",
        "--ops-listen=0.0.0.0:8080",
        f"--tls-cert={TLS_DIR}/tls.crt",
        f"--tls-key={TLS_DIR}/tls.key",
        "--mode=warn",
        "--log-format=json",
        "--cluster=on",
        "--infra-credentials=off",
        "--audit-interval=5m",
        "--facts-max-staleness=10m",
        "--shutdown-delay=5s",
        "--shutdown-timeout=20s",
        "--request-timeout=4s",
        "--evaluate-listen=0.0.0.0:8444",
        "--evaluate-auth=kubernetes",
        "--auth-cache-ttl=10s",
        "--auth-cache-negative-ttl=5s",
        "--auth-cache-size=4096",
    ]
    assert container(manifests)["env"] == [{"name": "RUST_LOG", "value": "info"}]


def test_deny_mode_arguments(render):
    args = container(render(VARIANTS["deny"]))["args"]
    assert "--mode=deny" in args
    assert "--deny-unknown" in args
    assert "--allow-object-override" in args
    assert "--mode=warn" not in args


def test_off_mode_is_passed_to_the_server(render):
    # the server accepts --mode off (allow unevaluated); the chart agrees
    args = container(render({"mode": "off"}))["args"]
    assert "--mode=off" in args


def test_extra_args_come_last(render):
    assert container(render(VARIANTS["overrides"]))["args"][-1] == "--example-flag=1"


@pytest.mark.parametrize(
    ("variant", "ca_source", "key"),
    [
        ("mtls-configmap", {"configMap": {"name": "apiserver-client-ca"}}, "ca.crt"),
        ("mtls-secret", {"secret": {"secretName": "apiserver-client-ca"}}, "ca.pem"),
    ],
)
def test_client_certificate_verification(render, variant, ca_source, key):
    manifests = render(VARIANTS[variant])
    args = container(manifests)["args"]
    assert f"--client-ca={CLIENT_CA}" in args
    names = VARIANTS[variant]["clientAuth"].get("allowedNames", [])
    assert [a for a in args if a.startswith("--client-name=")] == [
        f"--client-name={n}" for n in names
    ]
    (mount,) = [m for m in container(manifests)["volumeMounts"] if m["name"] == "client-ca"]
    assert mount["mountPath"] + "/ca.crt" == CLIENT_CA and "subPath" not in mount
    (volume,) = [v for v in pod_spec(manifests)["volumes"] if v["name"] == "client-ca"]
    (source_type,) = ca_source
    assert volume[source_type].items() >= ca_source[source_type].items()
    assert volume[source_type]["items"] == [{"key": key, "path": "ca.crt"}]
    assert "--client-ca" not in " ".join(container(render())["args"])


def test_probes_use_the_ops_port(render):
    manifests = render()
    webhook = container(manifests)
    for probe, path in (
        # /healthz: a slow first sync must leave the pod unready, not restart it.
        ("startupProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
        ("livenessProbe", "/healthz"),
    ):
        http_get = webhook[probe]["httpGet"]
        assert http_get["path"] == path
        assert container_port(manifests, http_get["port"]) == 8080


@pytest.mark.parametrize(
    "shutdown",
    [{}, {"preStopSleepSeconds": 10, "delaySeconds": 15, "timeoutSeconds": 30}],
    ids=["default", "custom"],
)
def test_grace_period_covers_prestop_and_server_shutdown(render, shutdown):
    manifests = render({"shutdown": shutdown})
    flags = args_by_flag(manifests)
    pre_stop = container(manifests)["lifecycle"]["preStop"]
    assert list(pre_stop) == ["sleep"], "the image has no shell: use the native sleep action"
    needed = (
        pre_stop["sleep"]["seconds"]
        + seconds(flags["--shutdown-delay"])
        + seconds(flags["--shutdown-timeout"])
    )
    assert pod_spec(manifests)["terminationGracePeriodSeconds"] > needed
    if shutdown:
        assert pre_stop["sleep"]["seconds"] == shutdown["preStopSleepSeconds"]


def test_grace_period_explicit(render, render_error):
    manifests = render(VARIANTS["overrides"])
    assert pod_spec(manifests)["terminationGracePeriodSeconds"] == 60
    assert "lifecycle" not in container(manifests)
    error = render_error({"shutdown": {"terminationGracePeriodSeconds": 30}})
    assert "shutdown.terminationGracePeriodSeconds (30) must be larger than" in error


def test_security_context(render):
    manifests = render()
    pod = pod_spec(manifests)["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    context = container(manifests)["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    resources = container(manifests)["resources"]
    assert resources["requests"]["cpu"] and resources["requests"]["memory"]
    assert resources["limits"]["memory"]


def test_high_availability_defaults(render):
    manifests = render()
    deployment = manifests.one("Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    pdb = manifests.one("PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == selector

    spec = pod_spec(manifests)
    (term,) = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == selector
    (spread,) = spec["topologySpreadConstraints"]
    assert spread["whenUnsatisfiable"] == "ScheduleAnyway"
    assert spread["labelSelector"]["matchLabels"] == selector
    assert "priorityClassName" not in spec
    assert (
        render(VARIANTS["deny"]).one("Deployment")["spec"]["template"]["spec"]["priorityClassName"]
        == "system-cluster-critical"
    )


def test_scheduling_and_image_overrides(render):
    values = VARIANTS["overrides"]
    manifests = render(values)
    spec = pod_spec(manifests)
    assert spec["affinity"] == values["affinity"]
    assert spec["topologySpreadConstraints"] == values["topologySpreadConstraints"]
    # Helm merges maps: the default kubernetes.io/os selector stays unless set to null.
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux", **values["nodeSelector"]}
    assert spec["tolerations"] == values["tolerations"]
    assert spec["imagePullSecrets"] == values["imagePullSecrets"]
    assert container(manifests)["image"] == (
        f"ghcr.io/live-migration-guard/live-migration-guard@{values['image']['digest']}"
    )
    template = manifests.one("Deployment")["spec"]["template"]["metadata"]
    # The default tls.mode (openshift-service-ca) implies OpenShift: required-scc is added.
    assert template["annotations"] == {
        **values["podAnnotations"],
        "openshift.io/required-scc": "restricted-v2",
    }
    assert template["labels"]["example.com/tier"] == "control"


@pytest.mark.parametrize(
    "values", [{"replicaCount": 1}, {"podDisruptionBudget": {"enabled": False}}], ids=str
)
def test_fail_closed_requires_high_availability(render_error, values):
    error = render_error({"webhook": {"failurePolicy": "Fail"}, **values})
    assert (
        "webhook.failurePolicy=Fail needs replicaCount >= 2 and podDisruptionBudget.enabled"
        in error
    )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"mode": "block"}, "at '/mode': value must be one of 'warn', 'deny', 'off'"),
        ({"tls": {"mode": "vault"}}, "at '/tls/mode': value must be one of"),
        ({"webhook": {"failurePolicy": "Deny"}}, "at '/webhook/failurePolicy': value must be one of 'Ignore', 'Fail'"),
        ({"webhook": {"timeoutSeconds": 31}}, "at '/webhook/timeoutSeconds': maximum: got 31, want 30"),
        ({"logging": {"format": "xml"}}, "at '/logging/format': value must be one of 'json', 'text'"),
        (
            {"replicaCount": 1},
            "podDisruptionBudget.minAvailable (1) must be below replicaCount (1)",
        ),
        ({"clientAuth": {"enabled": True}}, "clientAuth.enabled needs exactly one of"),
        (
            {
                "tls": {
                    "mode": "cert-manager",
                    "certManager": {"issuerRef": {"kind": "ClusterIssuer"}},
                }
            },
            "tls.certManager.issuerRef needs a name",
        ),
    ],
    ids=[
        "mode",
        "tls-mode",
        "failure-policy",
        "timeout",
        "log-format",
        "pdb",
        "client-ca",
        "issuer-ref",
    ],
)
def test_invalid_values_fail_with_a_message(render_error, values, message):
    assert message in render_error(values)


# --- optional resources ----------------------------------------------------------------------


def test_optional_resources_are_off_by_default(render):
    manifests = render()
    for kind in ("NetworkPolicy", "ServiceMonitor", "PrometheusRule"):
        assert not manifests.of_kind(kind)


def test_network_policy_admits_only_the_webhook_and_ops_ports(render):
    manifests = render(VARIANTS["observability"])
    policy = manifests.one("NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    assert policy["podSelector"]["matchLabels"] == (
        manifests.one("Deployment")["spec"]["selector"]["matchLabels"]
    )
    webhook_rule, side_rule, ops_rule = policy["ingress"]
    assert [container_port(manifests, p["port"]) for p in webhook_rule["ports"]] == [8443]
    assert [container_port(manifests, p["port"]) for p in side_rule["ports"]] == [8444]
    assert "from" not in side_rule, "authenticated callers from anywhere by default"
    assert [container_port(manifests, p["port"]) for p in ops_rule["ports"]] == [8080]
    # OpenShift preset (the default tls.mode implies OpenShift) plus the given peers.
    host_network = {"policy-group.network.openshift.io/host-network": ""}
    assert webhook_rule["from"] == [{"namespaceSelector": {"matchLabels": host_network}}]
    monitoring = {"namespaceSelector": {"matchLabels": {"network.openshift.io/policy-group": "monitoring"}}}
    assert ops_rule["from"] == [monitoring, *VARIANTS["observability"]["networkPolicy"]["opsFrom"]]


def test_service_monitor_scrapes_the_ops_port(render):
    manifests = render(VARIANTS["observability"])
    monitor = manifests.one("ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    service = manifests.one("Service")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "http-ops" and endpoint["path"] == "/metrics"
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}


def test_prometheus_rule_alerts(render):
    manifests = render(VARIANTS["observability"])
    (group,) = manifests.one("PrometheusRule")["spec"]["groups"]
    exprs = {rule["alert"]: " ".join(rule["expr"].split()) for rule in group["rules"]}
    job = f'job="{FULLNAME}", namespace="{NAMESPACE}"'
    admission = 'exported_endpoint=~"/validate/.+"'
    expected = {
        "LiveMigrationGuardDown": [
            "absent(up{" + job + "})",
            "or max by (namespace, job) (up{" + job + "}) == 0",
        ],
        "LiveMigrationGuardAdmissionErrors": [
            'live_migration_guard_admission_requests_total{decision="error", '
            + admission
            + ", "
            + job
            + "}",
            "rate(",
        ],
        "LiveMigrationGuardRequestsRejected": [
            'live_migration_guard_rejected_total{result=~"timeout|overload", ' + job + "}",
            "> 0.01",
        ],
        "LiveMigrationGuardHighLatency": [
            "histogram_quantile(0.99,",
            "live_migration_guard_admission_duration_seconds_bucket{" + admission + ", " + job + "}",
            "> 0.5",
        ],
        "LiveMigrationGuardNotMigratableObject": [
            'live_migration_guard_objects{verdict="NotMigratable", ' + job + "}",
        ],
        "LiveMigrationGuardCertificateExpiring": [
            "live_migration_guard_certificate_expiry_timestamp_seconds{" + job + "} - time()",
            "< 7 * 24 * 3600",
        ],
        "LiveMigrationGuardFactsStale": [
            "live_migration_guard_facts_stale_seconds{" + job + "} > 600",
        ],
    }
    assert set(exprs) == set(expected)
    for alert, fragments in expected.items():
        for fragment in fragments:
            assert fragment in exprs[alert], f"{alert}: {fragment!r} not in {exprs[alert]!r}"


# --- documentation ---------------------------------------------------------------------------


def documented_values():
    """Dotted paths of the values.yaml keys that carry a `# --` description comment."""
    documented, parents, described = set(), [], False
    for line in (CHART / "values.yaml").read_text().splitlines():
        if line.lstrip().startswith("# --"):
            described = True
        match = re.match(r"( *)([A-Za-z]\w*):", line)
        if match:
            depth = len(match[1]) // 2
            parents[depth:] = [match[2]]
            if described:
                documented.add(".".join(parents))
            described = False
    return documented


def leaf_values(values, prefix=""):
    for key, value in values.items():
        if isinstance(value, dict) and value:
            yield from leaf_values(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def test_every_value_is_documented_in_values_yaml_and_readme():
    documented = documented_values()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for leaf in leaf_values(values):
        prefixes = {".".join(leaf.split(".")[:n]) for n in range(1, leaf.count(".") + 2)}
        assert prefixes & documented, f"values.yaml: {leaf} has no '# --' description"
    readme = (CHART / "README.md").read_text()
    values_section = readme.split("\n## Values\n", 1)[1]
    table = set(re.findall(r"^\| `([\w.]+)` \|", values_section, re.MULTILINE))
    assert table == documented
    # The table is generated from values.yaml: regenerate it with scripts/chart-values-table.py.
    assert readme == values_table.render_readme(readme, values_table.table()), (
        "README values table is stale: run .tools/venv/bin/python scripts/chart-values-table.py"
    )
