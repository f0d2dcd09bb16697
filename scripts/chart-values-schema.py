#!/usr/bin/env python3
"""Generates charts/live-migration-guard/values.schema.json from values.yaml.

Helm validates the values of every install, upgrade, template and lint against this schema, so a
typo (`webhok.failurePolicy`) or a wrong type (`replicaCount=two`) fails with a message naming the
value instead of being silently ignored. The structure comes from values.yaml:

- a mapping with keys is an object that accepts exactly those keys (additionalProperties false);
- an empty mapping (`annotations: {}`), and the Kubernetes objects in FREE_FORM, accept any keys;
- scalars get the type of their default; lists are arrays;
- the `# --` comment above a key becomes its description;
- OVERRIDES give what the default cannot tell: enums, ranges, values that take several types.

    scripts/chart-values-schema.py          rewrite values.schema.json
    scripts/chart-values-schema.py --check  exit 1 if values.schema.json is not current

Needs PyYAML (the chart test venv: .tools/venv/bin/python scripts/chart-values-schema.py).
"""

import importlib.util
import json
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
CHART = HERE.parent / "charts" / "live-migration-guard"
SCHEMA = CHART / "values.schema.json"

# Kubernetes objects passed through to the pod spec as they are.
FREE_FORM = {
    "podSecurityContext",
    "securityContext",
    "resources",
    "nodeSelector",
    "affinity",
}

DURATION = {"type": "string", "pattern": r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"}

OVERRIDES = {
    "replicaCount": {"type": "integer", "minimum": 1},
    "mode": {"enum": ["warn", "deny", "off"]},
    "image.pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
    "auditInterval": DURATION,
    "factsMaxStaleness": DURATION,
    "logging.format": {"enum": ["json", "text"]},
    "shutdown.terminationGracePeriodSeconds": {
        "anyOf": [{"type": "integer", "minimum": 1}, {"const": ""}]
    },
    "webhook.failurePolicy": {"enum": ["Ignore", "Fail"]},
    "webhook.timeoutSeconds": {"type": "integer", "minimum": 1, "maximum": 30},
    "tls.mode": {"enum": ["openshift-service-ca", "cert-manager", "provided", "self-signed"]},
    "tls.selfSigned.validityDays": {"type": "integer", "minimum": 1},
    "tls.selfSigned.renewBeforeDays": {"type": "integer", "minimum": 0},
    "openshift.enabled": {"enum": ["auto", True, False, "true", "false"]},
    "podDisruptionBudget.minAvailable": {
        "anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "pattern": "^[0-9]+%$"}]
    },
    "podDisruptionBudget.maxUnavailable": {
        "anyOf": [
            {"type": "integer", "minimum": 0},
            {"type": "string", "pattern": "^([0-9]+%)?$"},
        ]
    },
    "networkPolicy.preset": {"enum": ["auto", "openshift", "none"]},
    "sideEndpoints.auth": {"enum": ["kubernetes", "token", "none"]},
    "sideEndpoints.port": {"type": "integer", "minimum": 1, "maximum": 65535},
    "sideEndpoints.cache.ttl": DURATION,
    "sideEndpoints.cache.negativeTtl": DURATION,
    "sideEndpoints.cache.size": {"type": "integer", "minimum": 1},
    "metricsAuth": {"enum": ["kubernetes", "none"]},
    "networkPolicy.egress.apiServerPorts": {
        "type": "array",
        "items": {"type": "integer", "minimum": 1, "maximum": 65535},
    },
    "prometheusRule.rejectedRatio": {"type": "number", "minimum": 0, "maximum": 1},
    "prometheusRule.latencyThresholdSeconds": {"type": "number", "exclusiveMinimum": 0},
}


def descriptions(text):
    """{dotted key: description} from the `# --` comments (the values table's parser)."""
    spec = importlib.util.spec_from_file_location("values_table", HERE / "chart-values-table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {key: description for key, description, _ in module.documented(text)}


def node(value, path, docs):
    dotted = ".".join(path)
    if dotted in OVERRIDES:
        schema = dict(OVERRIDES[dotted])
    elif isinstance(value, dict) and value and dotted not in FREE_FORM:
        schema = {
            "type": "object",
            "additionalProperties": False,
            "properties": {k: node(v, path + [k], docs) for k, v in value.items()},
        }
    elif isinstance(value, dict):
        schema = {"type": "object"}
    elif isinstance(value, list):
        schema = {"type": "array"}
    elif isinstance(value, bool):
        schema = {"type": "boolean"}
    elif isinstance(value, int):
        schema = {"type": "integer"}
    elif isinstance(value, float):
        schema = {"type": "number"}
    elif isinstance(value, str):
        schema = {"type": "string"}
    else:
        schema = {}
    if dotted in docs:
        schema = {"description": docs[dotted], **schema}
    return schema


def generate():
    text = (CHART / "values.yaml").read_text()
    values = yaml.safe_load(text)
    unknown = sorted(k for k in OVERRIDES if not has(values, k))
    if unknown:
        sys.exit(f"OVERRIDES name values that values.yaml does not have: {unknown}")
    schema = node(values, [], descriptions(text))
    # Helm passes `global` to every chart (parent charts set it).
    schema["properties"]["global"] = {"type": "object"}
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "live-migration-guard chart values",
        **schema,
    }
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def has(values, dotted):
    for part in dotted.split("."):
        if not isinstance(values, dict) or part not in values:
            return False
        values = values[part]
    return True


def main(argv):
    generated = generate()
    if argv[1:] == ["--check"]:
        if SCHEMA.exists() and SCHEMA.read_text() == generated:
            return 0
        print(f"{SCHEMA} is not current: run scripts/chart-values-schema.py", file=sys.stderr)
        return 1
    SCHEMA.write_text(generated)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
