#!/usr/bin/env python3
"""End-to-end load benchmark: live-migration-guard against the hand-written kube-rs baseline.

Both servers run from release builds of this repository behind the same TLS setup, pinned to
one core while the load generator (oha) runs on the other. The load is realistic NodePool
AdmissionReviews (examples/requests: CREATE ~3.7 KB and UPDATE with oldObject ~6.4 KB, sent
alternately) over HTTP/1.1 keep-alive at 1, 2 and 64 connections, plus a run that opens a new
TLS connection per request. Our server runs in warn mode with 1,000 StorageClasses and
StorageProfiles loaded, so every request is fully evaluated (the NodePool is RWO: warnings).

Run with scripts/bench-load.sh. DURATION (default 10s) sets each run's length.
"""
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OHA = ROOT / ".tools/bin/oha"
BIN = ROOT / "target/release/live-migration-guard"
BASELINE = ROOT / "target/release/examples/baseline"
DURATION = os.environ.get("DURATION", "10s")
SERVER_CPU, LOAD_CPU = "1", "0"
TICKS = os.sysconf("SC_CLK_TCK")
SCENARIOS = [
    ("1 connection", 1, True),
    ("2 connections", 2, True),
    ("64 connections", 64, True),
    ("new TLS connection per request (8 at a time)", 8, False),
]


def write_facts(path: Path, n: int = 1000) -> None:
    docs = []
    for i in range(n):
        name, prov = (f"ceph-{i}", "openshift-storage.rbd.csi.ceph.com") if i % 2 else (f"ebs-{i}", "ebs.csi.aws.com")
        if i == 0:
            name = "gp3-csi"
        sets = ('[{accessModes: [ReadWriteMany], volumeMode: Block}, {accessModes: [ReadWriteOnce], volumeMode: Filesystem}]'
                if i % 2 else '[{accessModes: [ReadWriteOnce], volumeMode: Block}]')
        ann = '\n  annotations: {storageclass.kubernetes.io/is-default-class: "true"}' if i == 0 else ""
        docs.append(f"apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata:\n  name: {name}{ann}\nprovisioner: {prov}\n"
                    f"parameters: {{type: gp3, clusterID: openshift-storage}}")
        docs.append(f"apiVersion: cdi.kubevirt.io/v1beta1\nkind: StorageProfile\nmetadata:\n  name: {name}\n"
                    f"status:\n  provisioner: {prov}\n  storageClass: {name}\n  claimPropertySets: {sets}")
    path.write_text("\n---\n".join(docs) + "\n")


def write_bodies(path: Path) -> None:
    """The CREATE and UPDATE reviews, one per line (oha -Z sends them in turn)."""
    reqs = ROOT / "examples/requests"
    path.write_text((reqs / "nodepool-create.json").read_text().strip() + "\n"
                    + (reqs / "nodepool-update.json").read_text().strip() + "\n")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_until(url: str, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"not ready: {url}")


def oha(port: int, ca: Path, bodies: Path, conns: int, keepalive: bool, duration: str) -> dict:
    cmd = ["taskset", "-c", LOAD_CPU, str(OHA), "-z", duration, "-c", str(conns), "--no-tui", "--output-format", "json",
           "-m", "POST", "-T", "application/json", "-Z", str(bodies), "--cacert", str(ca), "--http-version", "1.1",
           "-w", f"https://localhost:{port}/validate/nodepools"]
    if not keepalive:
        cmd.insert(-1, "--disable-keepalive")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def wait_tls(port: int, ca: Path, bodies: Path, timeout: float = 30) -> None:
    """Ready when a request succeeds (the baseline has no ops port)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if ca.exists():
            try:
                if oha(port, ca, bodies, 1, True, "200ms").get("statusCodeDistribution", {}).get("200"):
                    return
            except subprocess.CalledProcessError:
                pass
        time.sleep(0.1)
    raise SystemExit(f"not ready: port {port}")


def measure(name: str, cmd: list, ready, port: int, ca: Path, bodies: Path) -> dict:
    proc = subprocess.Popen(["taskset", "-c", SERVER_CPU] + cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ready()
        oha(port, ca, bodies, 8, True, "2s")  # warm-up
        results = {}
        for label, conns, keepalive in SCENARIOS:
            before = cpu_seconds(proc.pid)
            r = oha(port, ca, bodies, conns, keepalive, DURATION)
            cpu = cpu_seconds(proc.pid) - before
            codes = r.get("statusCodeDistribution", {})
            total = sum(codes.values())
            errors = sum(v for k, v in codes.items() if k != "200") + sum(r.get("errorDistribution", {}).values())
            p = r["latencyPercentiles"]
            results[label] = {
                "rps": r["summary"]["requestsPerSec"],
                "p50_ms": p["p50"] * 1000, "p99_ms": p["p99"] * 1000, "p99.9_ms": p["p99.9"] * 1000,
                "requests": total, "errors": errors,
                "cpu_us_per_request": cpu / max(total, 1) * 1e6,
            }
            print(f"  {name:>9} | {label:<45} | {results[label]['rps']:8.0f} req/s | p99 {results[label]['p99_ms']:.3f} ms "
                  f"| errors {errors}", file=sys.stderr)
        results["peak_rss_mib"] = peak_rss_mib(proc.pid)
        return results
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="lmg-bench-"))
    facts = tmp / "facts.yaml"
    write_facts(facts)
    bodies = tmp / "bodies.txt"
    write_bodies(bodies)
    ours_ca, base_ca = tmp / "ours-ca.crt", tmp / "baseline-ca.crt"
    ours = measure("ours", [str(BIN), "serve", "--listen=127.0.0.1:18443", "--ops-listen=127.0.0.1:18080",
                           f"--facts={facts}", f"--ca-bundle-out={ours_ca}", "--shutdown-delay=0s"],
                   lambda: wait_until("http://127.0.0.1:18080/readyz"), 18443, ours_ca, bodies)
    base = measure("baseline", [str(BASELINE), "127.0.0.1:19443", str(base_ca)],
                   lambda: wait_tls(19443, base_ca, bodies), 19443, base_ca, bodies)
    report(ours, base)


def report(ours: dict, base: dict) -> None:
    cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True,
                         text=True).stdout.strip()
    lines = [
        f"Machine: {os.cpu_count()} cores ({cpu}); server pinned to CPU {SERVER_CPU}, oha to CPU {LOAD_CPU}; "
        f"{DURATION} per run; HTTP/1.1 over TLS; CREATE and UPDATE NodePool AdmissionReviews alternating.",
        "",
        "| load | ours req/s | baseline req/s | ratio | ours p50 / p99 / p99.9 ms | baseline p50 / p99 / p99.9 ms "
        "| errors ours/base | CPU µs/req ours/base |",
        "|---|---:|---:|---:|---|---|---|---|",
    ]
    for label, _, _ in SCENARIOS:
        o, b = ours[label], base[label]
        lines.append(
            f"| {label} | {o['rps']:.0f} | {b['rps']:.0f} | {o['rps'] / b['rps']:.2f}× "
            f"| {o['p50_ms']:.3f} / {o['p99_ms']:.3f} / {o['p99.9_ms']:.3f} "
            f"| {b['p50_ms']:.3f} / {b['p99_ms']:.3f} / {b['p99.9_ms']:.3f} "
            f"| {o['errors']}/{b['errors']} | {o['cpu_us_per_request']:.0f}/{b['cpu_us_per_request']:.0f} |")
    lines.append("")
    lines.append(f"Peak RSS: ours {ours['peak_rss_mib']:.1f} MiB (1,000 StorageClasses + StorageProfiles loaded), "
                 f"baseline {base['peak_rss_mib']:.1f} MiB.")
    text = "\n".join(lines)
    print(text)
    out = ROOT / "target/bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "load.json").write_text(json.dumps({"ours": ours, "baseline": base, "duration": DURATION}, indent=1))
    (out / "load.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
