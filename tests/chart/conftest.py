"""Fixtures for the Helm chart tests: the pinned helm binary and chart rendering.

Run from the repository root after scripts/install-tools.sh:
    PATH=$PWD/.tools/bin:$PATH .tools/venv/bin/python -m pytest -q tests/chart
"""

import importlib.util
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "live-migration-guard"
TOOLS = REPO / ".tools"
RELEASE = "guard"
NAMESPACE = "lmg-system"
# The Kubernetes version the manifests are rendered for and validated against.
KUBE_VERSION = "1.33.0"
CHART_ARGS = (str(CHART), "--namespace", NAMESPACE, "--kube-version", KUBE_VERSION)


def _load_values_table():
    """scripts/chart-values-table.py, the README values table generator, as a module."""
    spec = importlib.util.spec_from_file_location(
        "values_table", REPO / "scripts" / "chart-values-table.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


values_table = _load_values_table()


@dataclass(frozen=True)
class Helm:
    binary: Path
    env: dict

    def run(self, *args, values=None):
        """Runs helm with `values` (a dict) as the values file on stdin."""
        return subprocess.run(
            [str(self.binary), *args, "--values", "-"],
            input=json.dumps(values or {}),
            capture_output=True,
            text=True,
            env=self.env,
            check=False,
        )


class Manifests(list):
    """The documents of one `helm template` run."""

    def of_kind(self, kind):
        return [m for m in self if m["kind"] == kind]

    def one(self, kind, name=None):
        found = [m for m in self.of_kind(kind) if name is None or m["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
        return found[0]


@pytest.fixture(scope="session")
def helm():
    binary = TOOLS / "bin" / "helm"
    if not os.access(binary, os.X_OK):
        pytest.fail(f"{binary} is missing: run scripts/install-tools.sh", pytrace=False)
    helm_home = TOOLS / "helm"
    env = {
        **os.environ,
        # Keep helm offline and away from the user's helm configuration.
        "HELM_CACHE_HOME": str(helm_home / "cache"),
        "HELM_CONFIG_HOME": str(helm_home / "config"),
        "HELM_DATA_HOME": str(helm_home / "data"),
    }
    return Helm(binary, env)


@pytest.fixture(scope="session")
def render(helm):
    """render(values) -> Manifests; fails the test with helm's error if rendering fails."""

    def render(values=None):
        result = _template(helm, values)
        assert result.returncode == 0, f"helm template failed:\n{result.stderr}"
        return Manifests(doc for doc in yaml.safe_load_all(result.stdout) if doc)

    return render


@pytest.fixture(scope="session")
def render_error(helm):
    """render_error(values) -> helm's error output; fails the test if rendering succeeds."""

    def render_error(values):
        result = _template(helm, values)
        assert result.returncode != 0, f"helm template unexpectedly succeeded for {values}"
        return result.stderr

    return render_error


@pytest.fixture(scope="session")
def lint(helm):
    """lint(values) -> the CompletedProcess of `helm lint --strict`."""

    def lint(values=None):
        return helm.run("lint", "--strict", *CHART_ARGS, values=values)

    return lint


def _template(helm, values):
    return helm.run("template", RELEASE, *CHART_ARGS, values=values)


class Cluster:
    """Renders the chart against a fake API server (helm template --dry-run=server): lookup and
    .Capabilities see its objects and API groups, as during helm install/upgrade."""

    def __init__(self, helm, kubeconfig_path, server):
        self.helm, self.kubeconfig, self.server = helm, kubeconfig_path, server

    def _run(self, values):
        self.kubeconfig.write_text(self.server.kubeconfig())
        return self.helm.run(
            "template",
            RELEASE,
            *CHART_ARGS,
            "--dry-run=server",
            "--disable-openapi-validation",
            "--kubeconfig",
            str(self.kubeconfig),
            values=values,
        )

    def render(self, values=None):
        result = self._run(values)
        assert result.returncode == 0, f"helm template --dry-run=server failed:\n{result.stderr}"
        return Manifests(doc for doc in yaml.safe_load_all(result.stdout) if doc)

    def render_error(self, values=None):
        result = self._run(values)
        assert result.returncode != 0, f"helm template unexpectedly succeeded for {values}"
        return result.stderr


@pytest.fixture
def cluster(helm, tmp_path):
    """cluster(objects=(), openshift=False) -> Cluster, rendering against a fake API server."""
    from fake_apiserver import FakeAPIServer

    servers = []

    def make(objects=(), openshift=False):
        server = FakeAPIServer(objects, openshift=openshift)
        servers.append(server)
        return Cluster(helm, tmp_path / f"kubeconfig-{len(servers)}", server)

    yield make
    for server in servers:
        server.close()
