"""The chart's alerts under promtool: every rule of the rendered PrometheusRules passes
`promtool check rules`, and `promtool test rules` shows each alert firing (and staying quiet)
on series shaped like a real scrape — the labels the Prometheus Operator adds for the chart's
ServiceMonitor, kube-state-metrics' and the API server's own series.

promtool comes from scripts/install-tools.sh (.tools/bin) or PATH. Without it these tests skip,
except in CI (CI=true), where a missing promtool fails them.
"""

import os
import shutil
import subprocess

import pytest
import yaml

from conftest import CHART, NAMESPACE, RELEASE, TOOLS

FULLNAME = f"{RELEASE}-live-migration-guard"
JOB = FULLNAME
RUNBOOK = (
    "https://github.com/live-migration-guard/live-migration-guard/blob/main/"
    "charts/live-migration-guard/README.md"
)
# Histogram buckets of live_migration_guard_admission_duration_seconds (src/server/metrics.rs).
BUCKETS = [
    "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1",
    "0.25", "0.5", "1.0", "2.5", "5.0", "+Inf",
]

ALL_RULES = {
    "serviceMonitor": {"enabled": True},
    "prometheusRule": {
        "enabled": True,
        "apiServer": {"enabled": True},
        "kubeStateMetrics": {"enabled": True},
    },
}


def locate_promtool(local, environ, which=shutil.which):
    """The promtool to use: `local` (.tools/bin) or PATH's. Missing: skip, but fail in CI."""
    if os.access(local, os.X_OK):
        return str(local)
    found = which("promtool", path=environ.get("PATH"))
    if found:
        return found
    message = "promtool is missing: run scripts/install-tools.sh"
    if environ.get("CI") == "true":
        pytest.fail(message + " (required in CI, CI=true)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def promtool():
    return locate_promtool(TOOLS / "bin" / "promtool", os.environ)


def test_missing_promtool_skips_locally_but_fails_in_ci(tmp_path):
    missing = tmp_path / "promtool"
    with pytest.raises(pytest.skip.Exception):
        locate_promtool(missing, {"PATH": str(tmp_path)})
    with pytest.raises(pytest.fail.Exception, match="required in CI"):
        locate_promtool(missing, {"PATH": str(tmp_path), "CI": "true"})
    missing.write_text("#!/bin/sh\n")
    missing.chmod(0o755)
    assert locate_promtool(missing, {"CI": "true"}) == str(missing)


def labels(**pairs):
    return "{" + ", ".join(f'{k}="{v}"' for k, v in pairs.items()) + "}"


def pod(metric, which="a", **extra):
    """A series of one webhook pod as the ServiceMonitor scrapes it."""
    target = {
        "container": "webhook",
        "endpoint": "http-ops",
        "instance": {"a": "10.128.2.15:8080", "b": "10.131.0.22:8080"}[which],
        "job": JOB,
        "namespace": NAMESPACE,
        "pod": f"{FULLNAME}-7d9c8b5f6-{which * 5}",
        "service": FULLNAME,
    }
    return metric + labels(**extra, **target)


def pod_labels(which="a", **extra):
    """The labels an alert on one pod's series carries (without alertname/severity)."""
    series = pod("x", which, **extra)
    return dict(pair.split("=", 1) for pair in series[2:-1].replace('"', "").split(", "))


def ksm(metric, **extra):
    """A kube-state-metrics series (scraped with honorLabels: namespace is the object's)."""
    return metric + labels(
        container="kube-rbac-proxy-main",
        deployment=FULLNAME,
        endpoint="https-main",
        instance="10.128.0.20:8443",
        job="kube-state-metrics",
        namespace=NAMESPACE,
        pod="kube-state-metrics-6c5d9b8f7-xk2lp",
        service="kube-state-metrics",
        **extra,
    )


def apiserver(metric, instance="10.0.0.11:6443", **extra):
    """An API server series as OpenShift's platform Prometheus scrapes it."""
    return metric + labels(
        apiserver="kube-apiserver",
        endpoint="https",
        instance=instance,
        job="apiserver",
        namespace="default",
        service="kubernetes",
        type="validating",
        **extra,
    )


def histogram(path, which, per_minute_by_le):
    """Bucket series of one pod and path; per_minute_by_le: cumulative count/min per `le`."""
    series = []
    for le in BUCKETS:
        rate = per_minute_by_le(float(le.replace("+Inf", "inf")))
        series.append(
            {
                "series": pod(
                    "live_migration_guard_admission_duration_seconds_bucket",
                    which,
                    exported_endpoint=path,
                    le=le,
                ),
                "values": f"0+{rate}x30",
            }
        )
    return series


def rules_of(manifests):
    groups = []
    for rule in manifests.of_kind("PrometheusRule"):
        groups.extend(rule["spec"]["groups"])
    return {"groups": groups}


def strip_annotations(rules, keep):
    """Keeps only the `keep` annotations, so exp_alerts can leave out the prose."""
    if keep is None:
        return rules
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule["annotations"] = {k: v for k, v in rule["annotations"].items() if k in keep}
    return rules


def run_promtool(promtool, tmp_path, manifests, tests, keep_annotations=("runbook_url",)):
    rules = rules_of(manifests)
    assert rules["groups"], "no PrometheusRule rendered"
    (tmp_path / "rendered.yaml").write_text(yaml.safe_dump(rules, sort_keys=False))
    check = subprocess.run(
        [promtool, "check", "rules", "rendered.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    stripped = strip_annotations(rules, keep_annotations)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(stripped, sort_keys=False))
    (tmp_path / "tests.yaml").write_text(
        yaml.safe_dump(
            {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests},
            sort_keys=False,
        )
    )
    result = subprocess.run(
        [promtool, "test", "rules", "tests.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def alert(alert_name, severity, **extra):
    return {
        "exp_labels": {"severity": severity, **extra},
        "exp_annotations": {"runbook_url": f"{RUNBOOK}#{alert_name.lower()}"},
    }


def case(series, alertname, at, expected, interval="1m"):
    return {
        "interval": interval,
        "input_series": series,
        "alert_rule_test": [{"eval_time": at, "alertname": alertname, "exp_alerts": expected}],
    }


# A series of another job, so that cases without any webhook series still have input.
UNRELATED = [{"series": 'up{job="node-exporter", namespace="openshift-monitoring"}', "values": "1x30"}]


# --- 4. Down: keeps namespace/job, critical under Fail -----------------------------------


def test_rules_pass_promtool_check(promtool, render, tmp_path):
    run_promtool(promtool, tmp_path, render(ALL_RULES), [])


def test_down_when_no_target_is_scraped_or_all_are_down(promtool, render, tmp_path):
    down = {"job": JOB, "namespace": NAMESPACE}
    tests = [
        # No target at all (e.g. the ServiceMonitor is not picked up): absent() keeps the labels.
        case(UNRELATED, "LiveMigrationGuardDown", "4m", []),
        case(UNRELATED, "LiveMigrationGuardDown", "6m", [alert("LiveMigrationGuardDown", "warning", **down)]),
        # Both pods scraped but down.
        case(
            [{"series": pod("up", "a"), "values": "0x30"}, {"series": pod("up", "b"), "values": "0x30"}],
            "LiveMigrationGuardDown",
            "10m",
            [alert("LiveMigrationGuardDown", "warning", **down)],
        ),
        # One pod up is enough.
        case(
            [{"series": pod("up", "a"), "values": "1x30"}, {"series": pod("up", "b"), "values": "0x30"}],
            "LiveMigrationGuardDown",
            "10m",
            [],
        ),
    ]
    run_promtool(promtool, tmp_path, render(ALL_RULES), tests)


def test_down_is_critical_under_fail_closed_with_full_annotations(promtool, render, tmp_path):
    values = {**ALL_RULES, "webhook": {"failurePolicy": "Fail"}}
    expected = {
        "exp_labels": {"severity": "critical", "job": JOB, "namespace": NAMESPACE},
        "exp_annotations": {
            "summary": "No live-migration-guard pod is up.",
            "description": (
                f"No target of {NAMESPACE}/{JOB} has been up for 5 minutes. While the webhook is "
                "down the API server rejects every KubeVirt NodePool and HostedCluster create and "
                "spec update (failurePolicy Fail)."
            ),
            "runbook_url": f"{RUNBOOK}#livemigrationguarddown",
        },
    }
    tests = [case(UNRELATED, "LiveMigrationGuardDown", "6m", [expected])]
    run_promtool(promtool, tmp_path, render(values), tests, keep_annotations=None)


# --- admission errors: admission paths only -----------------------------------------------


def requests(which, path, decision, per_minute):
    return {
        "series": pod(
            "live_migration_guard_admission_requests_total",
            which,
            decision=decision,
            dry_run="false",
            exported_endpoint=path,
            kind={"/v1/evaluate": "NodePool"}.get(path, "NodePool"),
            operation="CREATE",
            verdict="Unknown",
        ),
        "values": f"0+{per_minute}x30",
    }


def test_admission_errors_count_admission_paths_only(promtool, render, tmp_path):
    errors = {"job": JOB, "namespace": NAMESPACE}
    tests = [
        case(
            [requests("a", "/validate/nodepools", "error", 2)],
            "LiveMigrationGuardAdmissionErrors",
            "15m",
            [alert("LiveMigrationGuardAdmissionErrors", "warning", **errors)],
        ),
        case(
            [requests("a", "/v1/evaluate", "error", 2)],
            "LiveMigrationGuardAdmissionErrors",
            "15m",
            [],
        ),
    ]
    run_promtool(promtool, tmp_path, render(ALL_RULES), tests)


# --- 2. timeouts and overload -------------------------------------------------------------


def rejected(which, result, per_minute):
    return {
        "series": pod("live_migration_guard_rejected_total", which, result=result),
        "values": f"0+{per_minute}x30",
    }


def test_timeouts_and_overload_alert(promtool, render, tmp_path):
    firing = [alert("LiveMigrationGuardRequestsRejected", "warning", job=JOB, namespace=NAMESPACE)]
    ok = [requests("a", "/validate/nodepools", "allow", 10), requests("b", "/validate/nodepools", "allow", 10)]
    tests = [
        # 1 timeout/min against 20 answered requests/min: ~5 % > 1 %.
        case([*ok, rejected("a", "timeout", 1)], "LiveMigrationGuardRequestsRejected", "4m", []),
        case([*ok, rejected("a", "timeout", 1)], "LiveMigrationGuardRequestsRejected", "10m", firing),
        case([*ok, rejected("b", "overload", 1)], "LiveMigrationGuardRequestsRejected", "10m", firing),
        # Only overload, no answered request at all: the ratio is 1.
        case([rejected("a", "overload", 3)], "LiveMigrationGuardRequestsRejected", "10m", firing),
        # Connection-limit refusals are not request timeouts or overload.
        case([*ok, rejected("a", "connections", 5)], "LiveMigrationGuardRequestsRejected", "10m", []),
        # Below the threshold: 1 timeout in 30 minutes.
        case(
            [*ok, {"series": pod("live_migration_guard_rejected_total", "a", result="timeout"), "values": "0x10 1x20"}],
            "LiveMigrationGuardRequestsRejected",
            "20m",
            [],
        ),
    ]
    run_promtool(promtool, tmp_path, render(ALL_RULES), tests)


def test_timeouts_are_critical_under_fail_closed(promtool, render, tmp_path):
    values = {**ALL_RULES, "webhook": {"failurePolicy": "Fail"}}
    firing = [alert("LiveMigrationGuardRequestsRejected", "critical", job=JOB, namespace=NAMESPACE)]
    tests = [case([rejected("a", "timeout", 3)], "LiveMigrationGuardRequestsRejected", "10m", firing)]
    run_promtool(promtool, tmp_path, render(values), tests)


# --- 3. latency: admission paths only, exported_endpoint after the scrape ------------------


def slow(le):
    return 0 if le < 1.0 else 10  # every request between 0.5 s and 1 s


def fast(le):
    return 0 if le < 0.005 else 10  # every request below 5 ms


def test_latency_alert_selects_admission_paths(promtool, render, tmp_path):
    firing = [alert("LiveMigrationGuardHighLatency", "warning", job=JOB, namespace=NAMESPACE)]
    tests = [
        case(histogram("/validate/nodepools", "a", slow), "LiveMigrationGuardHighLatency", "8m", []),
        case(histogram("/validate/nodepools", "a", slow), "LiveMigrationGuardHighLatency", "15m", firing),
        # A slow side endpoint must not page for admission.
        case(
            histogram("/v1/evaluate", "a", slow) + histogram("/validate/hostedclusters", "b", fast),
            "LiveMigrationGuardHighLatency",
            "15m",
            [],
        ),
    ]
    run_promtool(promtool, tmp_path, render(ALL_RULES), tests)


def test_latency_alert_with_honor_labels_uses_endpoint(promtool, render, tmp_path):
    values = {**ALL_RULES, "serviceMonitor": {"enabled": True, "honorLabels": True}}
    series = [
        {**s, "series": s["series"].replace('exported_endpoint="', 'endpoint="').replace(', endpoint="http-ops"', "")}
        for s in histogram("/validate/nodepools", "a", slow)
    ]
    firing = [alert("LiveMigrationGuardHighLatency", "warning", job=JOB, namespace=NAMESPACE)]
    run_promtool(
        promtool,
        tmp_path,
        render(values),
        [case(series, "LiveMigrationGuardHighLatency", "15m", firing)],
    )


# --- audit, certificate, facts --------------------------------------------------------------


def test_not_migratable_object_alerts_once_per_object(promtool, render, tmp_path):
    obj = {"exported_namespace": "clusters", "kind": "NodePool", "name": "np-rwo", "verdict": "NotMigratable"}
    series = [
        {"series": pod("live_migration_guard_objects", n, **obj), "values": "1x30"} for n in ("a", "b")
    ]
    expected = pod_labels("a", **obj)
    for per_pod in ("instance", "pod"):
        expected.pop(per_pod)
    tests = [
        case(series, "LiveMigrationGuardNotMigratableObject", "10m", []),
        case(series, "LiveMigrationGuardNotMigratableObject", "20m", [alert("LiveMigrationGuardNotMigratableObject", "info", **expected)]),
    ]
    run_promtool(promtool, tmp_path, render(ALL_RULES), tests)


def test_certificate_expiry_and_stale_facts(promtool, render, tmp_path):
    day = 24 * 3600
    tests = [
        case(
            [
                {"series": pod("live_migration_guard_certificate_expiry_timestamp_seconds", "a"), "values": f"{3 * day}x30"},
                {"series": pod("live_migration_guard_certificate_expiry_timestamp_seconds", "b"), "values": f"{30 * day}x30"},
            ],
            "LiveMigrationGuardCertificateExpiring",
            "15m",
            [alert("LiveMigrationGuardCertificateExpiring", "warning", **pod_labels("a"))],
        ),
        case(
            [
                {"series": pod("live_migration_guard_facts_stale_seconds", "a"), "values": "900+60x30"},
                {"series": pod("live_migration_guard_facts_stale_seconds", "b"), "values": "0x30"},
            ],
            "LiveMigrationGuardFactsStale",
            "10m",
            [alert("LiveMigrationGuardFactsStale", "warning", **pod_labels("a"))],
        ),
    ]
    run_promtool(promtool, tmp_path, render(ALL_RULES), tests)


# --- 1. kube-state-metrics: no available replica --------------------------------------------


def test_no_available_replicas_from_kube_state_metrics(promtool, render, tmp_path):
    def deployment(available, wanted):
        return [
            {"series": ksm("kube_deployment_status_replicas_available"), "values": f"{available}x30"},
            {"series": ksm("kube_deployment_spec_replicas"), "values": f"{wanted}x30"},
        ]

    firing = alert(
        "LiveMigrationGuardNoAvailableReplicas",
        "warning",
        **dict(p.split("=", 1) for p in ksm("")[1:-1].replace('"', "").split(", ")),
    )
    tests = [
        case(deployment(0, 2), "LiveMigrationGuardNoAvailableReplicas", "1m", []),
        case(deployment(0, 2), "LiveMigrationGuardNoAvailableReplicas", "5m", [firing]),
        case(deployment(1, 2), "LiveMigrationGuardNoAvailableReplicas", "5m", []),
        # Scaled to zero on purpose.
        case(deployment(0, 0), "LiveMigrationGuardNoAvailableReplicas", "5m", []),
    ]
    run_promtool(promtool, tmp_path, render(ALL_RULES), tests)


# --- 1. the API server's view: fail-open and calling errors ---------------------------------


def test_api_server_fail_open_alert(promtool, render, tmp_path):
    fail_open = "apiserver_admission_webhook_fail_open_count"
    ours = {"name": "nodepools.live-migration-guard.io"}
    firing = [alert("LiveMigrationGuardWebhookFailingOpen", "warning", **ours)]
    tests = [
        # The counter appears with its first failure (value 1): caught at once.
        case(
            [*UNRELATED, {"series": apiserver(fail_open, **ours), "values": "_x10 1x20"}],
            "LiveMigrationGuardWebhookFailingOpen",
            "9m",
            [],
        ),
        case(
            [*UNRELATED, {"series": apiserver(fail_open, **ours), "values": "_x10 1x20"}],
            "LiveMigrationGuardWebhookFailingOpen",
            "11m",
            firing,
        ),
        # An old counter that increases on one of three API servers.
        case(
            [
                {"series": apiserver(fail_open, **ours), "values": "4x20 5x10"},
                {"series": apiserver(fail_open, instance="10.0.0.12:6443", **ours), "values": "7x30"},
            ],
            "LiveMigrationGuardWebhookFailingOpen",
            "25m",
            firing,
        ),
        # No increase for 15 minutes: resolved.
        case(
            [{"series": apiserver(fail_open, **ours), "values": "4x5 5x25"}],
            "LiveMigrationGuardWebhookFailingOpen",
            "25m",
            [],
        ),
        # Another webhook failing open is not ours.
        case(
            [{"series": apiserver(fail_open, name="validate.kyverno.svc-fail"), "values": "_x10 1+1x20"}],
            "LiveMigrationGuardWebhookFailingOpen",
            "25m",
            [],
        ),
    ]
    run_promtool(promtool, tmp_path, render(ALL_RULES), tests)


def test_api_server_calling_errors_alert(promtool, render, tmp_path):
    rejection = "apiserver_admission_webhook_rejection_count"
    ours = {"name": "hostedclusters.live-migration-guard.io"}
    common = {"operation": "UPDATE", "rejection_code": "500"}
    firing = [alert("LiveMigrationGuardWebhookCallsRejected", "critical", **ours)]
    tests = [
        case(
            [{"series": apiserver(rejection, error_type="calling_webhook_error", **common, **ours), "values": "0+1x30"}],
            "LiveMigrationGuardWebhookCallsRejected",
            "20m",
            firing,
        ),
        # Our own denials (error_type no_error, code 422) are not calling errors.
        case(
            [{"series": apiserver(rejection, error_type="no_error", operation="CREATE", rejection_code="422", **ours), "values": "0+1x30"}],
            "LiveMigrationGuardWebhookCallsRejected",
            "20m",
            [],
        ),
    ]
    run_promtool(promtool, tmp_path, render(ALL_RULES), tests)


# --- rendering of the rules (no promtool) --------------------------------------------------


def test_rules_need_a_scrape_target(render, render_error):
    error = render_error({"prometheusRule": {"enabled": True}})
    assert "prometheusRule.enabled needs serviceMonitor.enabled or podMonitor.enabled" in error
    own = render({"prometheusRule": {"enabled": True, "selector": 'job="lmg"'}})
    (group,) = own.one("PrometheusRule")["spec"]["groups"]
    down = next(r for r in group["rules"] if r["alert"] == "LiveMigrationGuardDown")
    assert 'absent(up{job="lmg"})' in down["expr"]
    latency = next(r for r in group["rules"] if r["alert"] == "LiveMigrationGuardHighLatency")
    # Own scrape configuration: no operator `endpoint` target label, the path stays `endpoint`.
    assert 'endpoint=~"/validate/.+"' in latency["expr"] and "exported_" not in latency["expr"]


def test_rules_follow_the_pod_monitor_job(render):
    manifests = render({"podMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}})
    (group,) = manifests.one("PrometheusRule")["spec"]["groups"]
    down = next(r for r in group["rules"] if r["alert"] == "LiveMigrationGuardDown")
    assert f'up{{job="{NAMESPACE}/{FULLNAME}", namespace="{NAMESPACE}"}}' in down["expr"]


def test_api_server_rules_are_a_separate_opt_in_rule(render):
    manifests = render(
        {
            "prometheusRule": {
                "apiServer": {
                    "enabled": True,
                    "namespace": "openshift-monitoring-rules",
                    "labels": {"openshift.io/prometheus-rule-evaluation-scope": "leaf-prometheus"},
                    "selector": 'job="apiserver"',
                }
            }
        }
    )
    (rule,) = manifests.of_kind("PrometheusRule")
    assert rule["metadata"]["name"] == f"{FULLNAME}-apiserver"
    assert rule["metadata"]["namespace"] == "openshift-monitoring-rules"
    assert rule["metadata"]["labels"]["openshift.io/prometheus-rule-evaluation-scope"]
    for r in rule["spec"]["groups"][0]["rules"]:
        assert 'job="apiserver"' in r["expr"]
    assert not render(ALL_RULES | {"prometheusRule": {"enabled": True}}).of_kind(
        "PrometheusRule"
    )[0]["spec"]["groups"][1:], "kube-state-metrics group must be opt-in"


def test_every_alert_has_a_runbook_section_in_the_readme(render):
    readme = (CHART / "README.md").read_text()
    headings = {
        line[5:].strip().lower() for line in readme.splitlines() if line.startswith("#### ")
    }
    for rule in rules_of(render(ALL_RULES))["groups"]:
        for r in rule["rules"]:
            anchor = r["annotations"]["runbook_url"].split("#", 1)[1]
            assert anchor == r["alert"].lower()
            assert anchor in headings, f"README has no '#### {r['alert']}' runbook section"
