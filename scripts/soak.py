#!/usr/bin/env python3
"""Soak test (issue: reliability): a release server under mixed valid and invalid traffic at
high concurrency on loopback for DURATION (default 600 s). Passes when the server never
crashes, no valid request fails, invalid requests get 4xx answers (never 5xx or a dropped
connection), and RSS grows less than 10% after the warm-up. Run with scripts/soak.sh.
"""
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OHA = ROOT / ".tools/bin/oha"
BIN = ROOT / "target/release/live-migration-guard"
DURATION = int(os.environ.get("DURATION", "600"))
WARMUP = min(60, DURATION // 5)
PORT, OPS = 18643, 18680

sys.path.insert(0, str(ROOT / "scripts"))
from bench_load import write_bodies, write_facts  # noqa: E402


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def invalid_bodies() -> list:
    create = json.loads((ROOT / "examples/requests/nodepool-create.json").read_text())
    good = json.dumps(create, separators=(",", ":"))
    wrong_types = json.loads(good)
    wrong_types["request"]["object"]["spec"]["replicas"] = "three"
    no_uid = json.loads(good)
    del no_uid["request"]["uid"]
    bad_patch = json.loads(good)
    bad_patch["request"]["object"]["metadata"]["annotations"]["hypershift.openshift.io/kubevirt-vm-jsonpatch"] = "[{op"
    return [
        good[: len(good) // 2],                      # truncated
        "{not json}",                                # invalid
        json.dumps(wrong_types, separators=(",", ":")),  # wrong type: allowed with a warning
        json.dumps(no_uid, separators=(",", ":")),   # missing uid: 400
        json.dumps({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {}}),
        "[" * 5000 + "]" * 5000,                     # nesting
        json.dumps(bad_patch, separators=(",", ":")),  # invalid JSON patch: a finding
    ]


def run_oha(name, args, out):
    cmd = [str(OHA), "-z", f"{DURATION}s", "--no-tui", "--output-format", "json", "-m", "POST", "-w"] + args
    res = subprocess.run(cmd, capture_output=True, text=True)
    out[name] = json.loads(res.stdout) if res.returncode == 0 else {"failed": res.stderr}


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="lmg-soak-"))
    facts = tmp / "facts.yaml"
    write_facts(facts)
    reqs = ROOT / "examples/requests"
    valid = tmp / "valid.txt"
    write_bodies(valid)
    invalid = tmp / "invalid.txt"
    invalid.write_text("\n".join(invalid_bodies()) + "\n")
    side = tmp / "side.txt"
    side.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        json.loads((reqs / "nodepool-create.json").read_text())["request"]["object"]]}) + "\n")
    ca = tmp / "ca.crt"
    server = subprocess.Popen([str(BIN), "serve", f"--listen=127.0.0.1:{PORT}", f"--ops-listen=127.0.0.1:{OPS}",
                               f"--facts={facts}", f"--ca-bundle-out={ca}", "--log-format=json"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{OPS}/readyz", timeout=1).status == 200:
                break
        except OSError:
            time.sleep(0.1)
    url = f"https://localhost:{PORT}"
    common = ["--cacert", str(ca), "-T", "application/json"]
    loads = {
        "valid admission, keep-alive, 48 connections": ["-c", "48", "-Z", str(valid)] + common + [f"{url}/validate/nodepools"],
        "valid admission, new connection per request, 4": ["-c", "4", "--disable-keepalive", "-Z", str(valid)] + common
        + [f"{url}/validate/nodepools"],
        "invalid admission bodies, 16 connections": ["-c", "16", "-Z", str(invalid)] + common + [f"{url}/validate/hostedclusters"],
        "side endpoint, 8 connections": ["-c", "8", "-Z", str(side)] + common + [f"{url}/v1/evaluate"],
    }
    results = {}
    threads = [threading.Thread(target=run_oha, args=(n, a, results)) for n, a in loads.items()]
    for t in threads:
        t.start()
    samples = []
    started = time.time()
    while any(t.is_alive() for t in threads):
        if server.poll() is not None:
            break
        samples.append((time.time() - started, rss_mib(server.pid)))
        time.sleep(5)
    for t in threads:
        t.join()
    alive = server.poll() is None
    healthy = alive and urllib.request.urlopen(f"http://127.0.0.1:{OPS}/healthz", timeout=2).status == 200
    warm = [r for t, r in samples if t >= WARMUP]
    growth = (warm[-1] - warm[0]) / warm[0] * 100 if len(warm) >= 2 else 0.0
    server.terminate()
    server.wait(timeout=60)

    ok = alive and healthy and growth < 10
    lines = [f"Soak: {DURATION} s, 4 concurrent loads (76 connections), server with 1,000 StorageClasses + profiles.", "",
             "| load | requests | req/s | status codes | connection errors | p99 ms |", "|---|---:|---:|---|---:|---:|"]
    for name, r in results.items():
        if "failed" in r:
            lines.append(f"| {name} | oha failed: {r['failed'][:80]} | | | | |")
            ok = False
            continue
        codes = r.get("statusCodeDistribution", {})
        errors = sum(r.get("errorDistribution", {}).values())
        total = sum(codes.values())
        if name.startswith("valid") or name.startswith("side"):
            ok &= set(codes) == {"200"} and errors == 0
        else:
            ok &= all(c in ("200", "400") for c in codes) and errors == 0
        lines.append(f"| {name} | {total} | {r['summary']['requestsPerSec']:.0f} | {codes} | {errors} "
                     f"| {r['latencyPercentiles']['p99'] * 1000:.2f} |")
    lines += ["", f"RSS after warm-up ({WARMUP} s): {warm[0]:.1f} MiB → end: {warm[-1]:.1f} MiB ({growth:+.1f}%); "
                  f"peak sample {max(r for _, r in samples):.1f} MiB. Server alive: {alive}, healthz: {healthy}.",
              f"Result: {'PASS' if ok else 'FAIL'}"]
    text = "\n".join(lines)
    print(text)
    out = ROOT / "target/bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "soak.md").write_text(text + "\n")
    (out / "soak-rss.json").write_text(json.dumps(samples))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
