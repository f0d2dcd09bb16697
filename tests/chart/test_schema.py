"""values.schema.json: generated from values.yaml, and what Helm makes of it for a user."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_schema_is_generated_from_values_yaml():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts/chart-values-schema.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "values, message",
    [
        # A typo is an error, not a silently ignored value.
        ({"webhok": {"failurePolicy": "Fail"}}, "at '': additional properties 'webhok' not allowed"),
        ({"webhook": {"failurPolicy": "Fail"}}, "at '/webhook': additional properties 'failurPolicy' not allowed"),
        ({"replicaCount": "two"}, "at '/replicaCount': got string, want integer"),
        ({"tls": {"mode": "selfsigned"}}, "at '/tls/mode': value must be one of 'openshift-service-ca', 'cert-manager', 'provided', 'self-signed'"),
        ({"webhook": {"timeoutSeconds": 45}}, "at '/webhook/timeoutSeconds': maximum: got 45, want 30"),
        ({"auditInterval": "five minutes"}, "at '/auditInterval'"),
    ],
)
def test_helm_rejects_typos_and_wrong_types_naming_the_value(render_error, values, message):
    error = render_error(values)
    assert "values don't meet the specifications of the schema" in error
    assert message in error, error


@pytest.mark.parametrize(
    "values",
    [
        {"openshift": {"enabled": True}},
        {"openshift": {"enabled": "false"}},
        {"podDisruptionBudget": {"maxUnavailable": "100%"}},
        {"podDisruptionBudget": {"maxUnavailable": 1}},
        {"shutdown": {"terminationGracePeriodSeconds": 60}},
        {"global": {"imageRegistry": "registry.example.com"}},
        {"resources": {"limits": {"cpu": "1"}}, "nodeSelector": {"node-role.kubernetes.io/infra": ""}},
        {"podAnnotations": {"example.com/anything": "goes"}},
    ],
)
def test_values_of_several_types_and_free_form_objects_are_accepted(render, values):
    render(values)


def test_chart_readme_shows_the_real_schema_error(render_error):
    readme = (ROOT / "charts/live-migration-guard/README.md").read_text()
    block = readme.split("$ helm install lmg charts/live-migration-guard --set webhok.failurePolicy=Fail\n")[1]
    shown = block.split("```")[0].strip()
    assert shown == render_error({"webhok": {"failurePolicy": "Fail"}}).strip()
