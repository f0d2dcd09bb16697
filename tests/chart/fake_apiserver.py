"""A minimal read-only Kubernetes API for `helm template --dry-run=server`: discovery (which
becomes .Capabilities.APIVersions) and GET/list of a fixed set of objects (which `lookup` sees).

Enough for the chart's install-time checks; not a Kubernetes API server: no writes, no watches,
no selectors, no auth.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# group/version -> [(resource, kind, namespaced)]: what the chart renders or looks up.
BUILTIN = {
    "v1": [
        ("namespaces", "Namespace", False),
        ("nodes", "Node", False),
        ("secrets", "Secret", True),
        ("configmaps", "ConfigMap", True),
        ("services", "Service", True),
        ("serviceaccounts", "ServiceAccount", True),
    ],
    "apps/v1": [("deployments", "Deployment", True)],
    "policy/v1": [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    "rbac.authorization.k8s.io/v1": [
        ("clusterroles", "ClusterRole", False),
        ("clusterrolebindings", "ClusterRoleBinding", False),
        ("roles", "Role", True),
        ("rolebindings", "RoleBinding", True),
    ],
    "admissionregistration.k8s.io/v1": [
        ("validatingwebhookconfigurations", "ValidatingWebhookConfiguration", False)
    ],
    "networking.k8s.io/v1": [("networkpolicies", "NetworkPolicy", True)],
    "monitoring.coreos.com/v1": [
        ("servicemonitors", "ServiceMonitor", True),
        ("podmonitors", "PodMonitor", True),
        ("prometheusrules", "PrometheusRule", True),
    ],
    "cert-manager.io/v1": [("issuers", "Issuer", True), ("certificates", "Certificate", True)],
}
OPENSHIFT = {
    "config.openshift.io/v1": [("clusterversions", "ClusterVersion", False)],
    "operator.openshift.io/v1": [("servicecas", "ServiceCA", False)],
    "security.openshift.io/v1": [("securitycontextconstraints", "SecurityContextConstraints", False)],
}


def node(name):
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}


def namespace(name):
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


class FakeAPIServer:
    def __init__(self, objects=(), openshift=False):
        self.groups = {**BUILTIN, **(OPENSHIFT if openshift else {})}
        self.objects = [namespace("kube-system"), *objects]
        self.requests = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self):
        self._server.shutdown()
        self._server.server_close()

    def kubeconfig(self):
        return json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
                "users": [{"name": "fake", "user": {}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
                "current-context": "fake",
            }
        )

    def _resource(self, obj):
        for resource, kind, namespaced in self.groups.get(obj["apiVersion"], []):
            if kind == obj["kind"]:
                return resource, namespaced
        raise KeyError(f"fake API server does not serve {obj['apiVersion']} {obj['kind']}")

    def _path(self, obj, with_name=True):
        group_version = obj["apiVersion"]
        base = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
        resource, namespaced = self._resource(obj)
        if namespaced:
            base += f"/namespaces/{obj['metadata']['namespace']}"
        path = f"{base}/{resource}"
        return f"{path}/{obj['metadata']['name']}" if with_name else path

    def _answer(self, path):
        if path == "/version":
            return 200, {"major": "1", "minor": "33", "gitVersion": "v1.33.0"}
        if path == "/api":
            return 200, {"kind": "APIVersions", "versions": ["v1"]}
        if path == "/apis":
            groups = []
            for group_version in self.groups:
                if "/" in group_version:
                    group, version = group_version.split("/")
                    entry = {"groupVersion": group_version, "version": version}
                    groups.append(
                        {"name": group, "versions": [entry], "preferredVersion": entry}
                    )
            return 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
        for group_version, resources in self.groups.items():
            if path == ("/api/v1" if group_version == "v1" else f"/apis/{group_version}"):
                return 200, {
                    "kind": "APIResourceList",
                    "apiVersion": "v1",
                    "groupVersion": group_version,
                    "resources": [
                        {"name": r, "singularName": "", "namespaced": ns, "kind": k, "verbs": ["get", "list"]}
                        for r, k, ns in resources
                    ],
                }
        for obj in self.objects:
            if self._path(obj) == path:
                return 200, obj
        items = [obj for obj in self.objects if self._path(obj, with_name=False) == path]
        if items or self._is_collection(path):
            return 200, {"kind": "List", "apiVersion": "v1", "metadata": {}, "items": items}
        return 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}

    def _is_collection(self, path):
        resources = {r for entries in self.groups.values() for r, _, _ in entries}
        return path.rsplit("/", 1)[-1] in resources

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                path = self.path.split("?", 1)[0]
                fake.requests.append(path)
                code, body = fake._answer(path)
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        return Handler
