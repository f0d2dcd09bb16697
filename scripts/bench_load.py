#!/usr/bin/env python3
"""End-to-end load benchmark: live-migration-guard against two baselines, same run (issue 12).

- **strong** (examples/baseline_strong.rs): axum-server with rustls (ring), TCP_NODELAY, the
  body as `Bytes`, `serde_json::from_slice::<AdmissionReview<DynamicObject>>`,
  `AdmissionResponse::from(&req)`, `serde_json::to_vec`: the plainest fast admission server.
- **json** (examples/baseline.rs): axum's `Json` extractor, behind our own accept loop.

All three are release builds of this repository, started together, each pinned to CPU 1
while the load generator (oha, pinned, installed by scripts/install-bench-tools.sh) runs on
CPU 0. Ours runs `serve` as shipped: default logging (info: one line per request that gets a
warning, written by the non-blocking writer to stderr, here /dev/null), warn mode, 1,000
StorageClasses and StorageProfiles loaded, so every request is fully evaluated (the NodePool's
root volume is RWO: warnings). The bodies are realistic NodePool reviews from
scripts/bench_bodies.py (20 labels, ~1.5 KB last-applied-configuration, managedFields; the
UPDATE carries oldObject and status with conditions).

Runs are interleaved: every round measures each server once per (body, connections) cell,
in rotating order, so drifting load from other processes on this shared machine hits all
three alike; each cell reports the median of the rounds. HTTP/1.1 keep-alive (what
kube-apiserver uses for webhooks) at 1 and 64 connections.

Environment: DURATION (default 10s) per run, ROUNDS (default 3), BODIES (create,mixed),
CONNECTIONS (1,64), QUIET_STEAL_PCT (5: see below);
BEFORE=PATH adds a fourth server, another build of ours (e.g. the commit before a change),
run the same way, so a change's effect is measured in the same run too. FLOOR=1 adds the
strong baseline's `/floor` route (reads the body, answers a constant: what the TLS, HTTP and
loopback stack costs per request before any server does anything with it).
After the table: the host's steal time during the runs (/proc/stat; a VM whose host is busy
loses its CPUs for milliseconds at a time, which shows in every latency), the same cells
over only the runs with steal ≤ QUIET_STEAL_PCT on both CPUs, and ours' own histogram of
the time inside its admission handler, over the whole run, from its /metrics (how much of
the latency oha sees is evaluation, how much waiting).
Run with scripts/bench-load.sh; the table also goes to target/bench/load.md.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_bodies  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OHA = ROOT / ".tools/bin/oha"
RELEASE = ROOT / "target/release"
DURATION = os.environ.get("DURATION", "10s")
ROUNDS = int(os.environ.get("ROUNDS", "3"))
BODY_SETS = [b for b in os.environ.get("BODIES", "create,mixed").split(",") if b]
SERVER_CPU, LOAD_CPU = "1", "0"
# A run with more host steal than this on either CPU is reported, but left out of the
# "runs the host left alone" summary.
QUIET_STEAL_PCT = float(os.environ.get("QUIET_STEAL_PCT", "5"))
OURS_OPS_PORT = 18080
TICKS = os.sysconf("SC_CLK_TCK")
CONNECTIONS = [int(c) for c in os.environ.get("CONNECTIONS", "1,64").split(",") if c]
MAIN = ["ours", "strong", "json"]
SERVERS = MAIN + (["before"] if os.environ.get("BEFORE") else []) + (["floor"] if os.environ.get("FLOOR") else [])
PATHS = {"floor": "/floor"}
BODY_LABELS = {
    "create": "CREATE only",
    "mixed": "CREATE and UPDATE alternating",
}


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


def write_bodies(tmp: Path) -> dict:
    """Body set → file of one body per line (oha -Z sends them in turn)."""
    generated = bench_bodies.bodies()
    for name, text in generated.items():
        committed = ROOT / "examples/requests" / name
        if committed.read_text().strip() != text:
            raise SystemExit(f"{committed} is stale: run python3 scripts/bench_bodies.py")
    create, update = generated["nodepool-realistic-create.json"], generated["nodepool-realistic-update.json"]
    files = {}
    for key, lines in {"create": [create], "mixed": [create, update]}.items():
        files[key] = tmp / f"bodies-{key}.txt"
        files[key].write_text("\n".join(lines) + "\n")
    print(f"bodies: CREATE {len(create)} bytes, UPDATE {len(update)} bytes", file=sys.stderr)
    return files


def cpu_seconds(pid: int) -> float:
    """User + system time of the whole process (all its threads: workers, log writer, ops)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def cpu_ticks(cpu: str) -> tuple:
    """(steal, total) clock ticks of one CPU so far, from /proc/stat. Steal is time the
    hypervisor gave this vCPU's physical CPU to someone else while the vCPU had work: on a
    shared host it moves latency and throughput more than any change measured here."""
    for line in Path("/proc/stat").read_text().splitlines():
        fields = line.split()
        if fields[0] == f"cpu{cpu}":
            ticks = [int(x) for x in fields[1:9]]
            return (ticks[7] if len(ticks) > 7 else 0), sum(ticks)
    return 0, 0


def steal_pct(before: tuple, after: tuple) -> float:
    total = after[1] - before[1]
    return 100.0 * (after[0] - before[0]) / total if total > 0 else 0.0


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def oha(port: int, ca: Path, bodies: Path, conns: int, duration: str, path: str = "/validate/nodepools") -> dict:
    cmd = ["taskset", "-c", LOAD_CPU, str(OHA), "-z", duration, "-c", str(conns), "--no-tui", "--output-format", "json",
           "-m", "POST", "-T", "application/json", "-Z", str(bodies), "--cacert", str(ca), "--http-version", "1.1",
           "-w", f"https://localhost:{port}{path}"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def wait_ready(port: int, ca: Path, bodies: Path, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if ca.exists():
            try:
                if oha(port, ca, bodies, 1, "200ms").get("statusCodeDistribution", {}).get("200"):
                    return
            except subprocess.CalledProcessError:
                pass
        time.sleep(0.2)
    raise SystemExit(f"not ready: port {port}")


class Server:
    def __init__(self, name: str, cmd: list, port: int, ca: Path, env: dict):
        self.name, self.port, self.ca = name, port, ca
        self.proc = subprocess.Popen(["taskset", "-c", SERVER_CPU] + cmd, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, env=env)
        self.runs: dict = {}
        self.path = PATHS.get(name, "/validate/nodepools")

    def run(self, key: tuple, bodies: Path, conns: int) -> None:
        before = cpu_seconds(self.proc.pid)
        ticks = cpu_ticks(SERVER_CPU), cpu_ticks(LOAD_CPU)
        r = oha(self.port, self.ca, bodies, conns, DURATION, self.path)
        cpu = cpu_seconds(self.proc.pid) - before
        steal = steal_pct(ticks[0], cpu_ticks(SERVER_CPU)), steal_pct(ticks[1], cpu_ticks(LOAD_CPU))
        codes = r.get("statusCodeDistribution", {})
        total = sum(codes.values())
        errors = sum(v for k, v in codes.items() if k != "200") + sum(r.get("errorDistribution", {}).values())
        p = r["latencyPercentiles"]
        run = {"rps": r["summary"]["requestsPerSec"], "p50_ms": p["p50"] * 1000, "p99_ms": p["p99"] * 1000,
               "requests": total, "errors": errors, "cpu_s": cpu, "steal_pct": steal}
        self.runs.setdefault(key, []).append(run)
        print(f"  {self.name:>6} | {key[0]:>6} | {conns:>2} conn | {run['rps']:8.0f} req/s | p50 {run['p50_ms']:.3f} "
              f"p99 {run['p99_ms']:.3f} ms | {cpu / max(total, 1) * 1e6:5.1f} µs CPU/req | errors {errors} "
              f"| steal {steal[0]:.1f}% / {steal[1]:.1f}% | load {load_average()}", file=sys.stderr)

    def cell(self, key: tuple) -> dict:
        runs = self.runs[key]
        return {
            "rps": statistics.median(r["rps"] for r in runs),
            "rps_runs": [round(r["rps"]) for r in runs],
            "p50_ms": statistics.median(r["p50_ms"] for r in runs),
            "p99_ms": statistics.median(r["p99_ms"] for r in runs),
            "errors": sum(r["errors"] for r in runs),
            "cpu_us_per_request": sum(r["cpu_s"] for r in runs) / max(sum(r["requests"] for r in runs), 1) * 1e6,
            "steal_pct_runs": [[round(x, 1) for x in r["steal_pct"]] for r in runs],
        }

    def stop(self) -> float:
        rss = peak_rss_mib(self.proc.pid)
        self.proc.terminate()
        self.proc.wait(timeout=60)
        return rss


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="lmg-bench-"))
    facts = tmp / "facts.yaml"
    write_facts(facts)
    bodies = write_bodies(tmp)
    env = {k: v for k, v in os.environ.items() if k not in ("RUST_LOG", "LMG_LOG_FORMAT")}
    specs = {
        "ours": ([str(RELEASE / "live-migration-guard"), "serve", "--listen=127.0.0.1:18443",
                  f"--ops-listen=127.0.0.1:{OURS_OPS_PORT}", f"--facts={facts}", f"--ca-bundle-out={tmp / 'ours-ca.crt'}",
                  "--shutdown-delay=0s"], 18443, tmp / "ours-ca.crt"),
        "strong": ([str(RELEASE / "examples/baseline_strong"), "127.0.0.1:19444", str(tmp / "strong-ca.crt")], 19444,
                   tmp / "strong-ca.crt"),
        "json": ([str(RELEASE / "examples/baseline"), "127.0.0.1:19443", str(tmp / "json-ca.crt")], 19443,
                 tmp / "json-ca.crt"),
    }
    if os.environ.get("BEFORE"):
        specs["before"] = ([os.environ["BEFORE"], "serve", "--listen=127.0.0.1:18444", "--ops-listen=127.0.0.1:18081",
                            f"--facts={facts}", f"--ca-bundle-out={tmp / 'before-ca.crt'}", "--shutdown-delay=0s"],
                           18444, tmp / "before-ca.crt")
    if os.environ.get("FLOOR"):
        specs["floor"] = ([str(RELEASE / "examples/baseline_strong"), "127.0.0.1:19445", str(tmp / "floor-ca.crt")], 19445,
                          tmp / "floor-ca.crt")
    load_start = load_average()
    servers = {name: Server(name, cmd, port, ca, env) for name, (cmd, port, ca) in specs.items()}
    rss = {}
    try:
        for s in servers.values():
            wait_ready(s.port, s.ca, bodies["create"])
            oha(s.port, s.ca, bodies["mixed"], 8, "2s", s.path)  # warm-up
        for rnd in range(ROUNDS):
            for body in BODY_SETS:
                for conns in CONNECTIONS:
                    k = len(SERVERS)
                    order = [SERVERS[(i + rnd) % k] for i in range(k)]
                    for name in order:
                        servers[name].run((body, conns), bodies[body], conns)
        handler = handler_time(OURS_OPS_PORT)
    finally:
        for name, s in servers.items():
            rss[name] = s.stop()
    report(servers, rss, load_start, load_average(), handler)


def handler_time(ops_port: int) -> dict:
    """Ours' own histogram of the time inside the admission handler (body in memory → response
    built: parse, evaluate, render, log), over all runs, from /metrics on the ops port. Set
    against the end-to-end latency oha sees, it says how much of a request's time is the
    evaluation and how much is waiting (socket buffers, TLS, HTTP, the run queue)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{ops_port}/metrics", timeout=10).read().decode()
    name = "live_migration_guard_admission_duration_seconds"
    endpoint = 'endpoint="/validate/nodepools"'
    buckets, total, count = {}, 0.0, 0
    for line in text.splitlines():
        if endpoint not in line:
            continue
        metric, value = line.rsplit(" ", 1)
        if metric.startswith(name + "_bucket"):
            le = metric.split('le="', 1)[1].split('"', 1)[0]
            buckets[le] = int(float(value))
        elif metric.startswith(name + "_sum"):
            total = float(value)
        elif metric.startswith(name + "_count"):
            count = int(float(value))
    if not count:
        raise SystemExit(f"no {name} samples on the ops port: is ours serving /validate/nodepools?")
    return {"count": count, "mean_us": total / count * 1e6,
            "share_within": {le: n / count for le, n in buckets.items()}}


def report(servers: dict, rss: dict, load_start: str, load_end: str, handler: dict) -> None:
    cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True,
                         text=True).stdout.strip()
    lines = [
        f"Machine: {os.cpu_count()} cores ({cpu}); servers pinned to CPU {SERVER_CPU}, oha to CPU {LOAD_CPU}; "
        f"HTTP/1.1 keep-alive over TLS; median of {ROUNDS} interleaved runs of {DURATION} per cell; "
        f"load average (1/5/15 min) {load_start} at the start, {load_end} at the end.",
        "",
        "| body | conns | ours req/s | strong req/s | json req/s | ours/strong | ours/json "
        "| p50 / p99 ms ours · strong · json | errors | CPU µs/req ours · strong · json |"
        + (" before req/s (ours/before) |" if "before" in SERVERS else ""),
        "|---|---:|---:|---:|---:|---:|---:|---|---|---|" + ("---:|" if "before" in SERVERS else ""),
    ]
    data = {}
    for body in BODY_SETS:
        for conns in CONNECTIONS:
            key = (body, conns)
            c = {name: servers[name].cell(key) for name in SERVERS}
            data[f"{body}/{conns}"] = c
            o, s, j = c["ours"], c["strong"], c["json"]
            lat = " · ".join(f"{c[n]['p50_ms']:.2f} / {c[n]['p99_ms']:.2f}" for n in MAIN)
            errs = "/".join(str(c[n]["errors"]) for n in MAIN)
            cpu_us = " · ".join(f"{c[n]['cpu_us_per_request']:.1f}" for n in MAIN)
            before = f" | {c['before']['rps']:.0f} ({o['rps'] / c['before']['rps']:.2f}×)" if "before" in c else ""
            lines.append(f"| {BODY_LABELS[body]} | {conns} | {o['rps']:.0f} | {s['rps']:.0f} | {j['rps']:.0f} "
                         f"| **{o['rps'] / s['rps']:.2f}×** | {o['rps'] / j['rps']:.2f}× | {lat} | {errs} | {cpu_us}{before} |")
    if "floor" in SERVERS:
        lines.append("")
        for body in BODY_SETS:
            for conns in CONNECTIONS:
                f = data[f"{body}/{conns}"]["floor"]
                lines.append(f"Floor ({BODY_LABELS[body]}, {conns} conns): {f['rps']:.0f} req/s, "
                             f"{f['cpu_us_per_request']:.1f} µs CPU per request, p50 / p99 "
                             f"{f['p50_ms']:.2f} / {f['p99_ms']:.2f} ms.")
    lines.append("")
    steals = [r["steal_pct"] for srv in servers.values() for runs in srv.runs.values() for r in runs]
    if steals:
        server_steal, load_steal = sorted(x[0] for x in steals), sorted(x[1] for x in steals)
        noisy = sum(1 for a, b in steals if max(a, b) > QUIET_STEAL_PCT)
        lines.append(f"Host steal (time the hypervisor took from this VM's CPUs while they had work, /proc/stat) "
                     f"on CPU {SERVER_CPU} (servers) · CPU {LOAD_CPU} (oha): median "
                     f"{statistics.median(server_steal):.1f}% · {statistics.median(load_steal):.1f}%, worst run "
                     f"{server_steal[-1]:.1f}% · {load_steal[-1]:.1f}%; {noisy} of {len(steals)} runs over {QUIET_STEAL_PCT:g}% "
                     "(their latencies say more about the host than about the servers; per run in load.json).")
        lines.append("")
        lines.append(f"Only the runs the host left alone (steal ≤ {QUIET_STEAL_PCT:g}% on both CPUs), median req/s and p99 "
                     "(runs kept of all):")
        lines.append("")
        for body in BODY_SETS:
            for conns in CONNECTIONS:
                parts = []
                for name in SERVERS:
                    runs = servers[name].runs[(body, conns)]
                    quiet = [r for r in runs if max(r["steal_pct"]) <= QUIET_STEAL_PCT]
                    if quiet:
                        parts.append(f"{name} {statistics.median(r['rps'] for r in quiet):.0f} req/s, p99 "
                                     f"{statistics.median(r['p99_ms'] for r in quiet):.2f} ms ({len(quiet)}/{len(runs)})")
                    else:
                        parts.append(f"{name} — (0/{len(runs)})")
                lines.append(f"- {BODY_LABELS[body]}, {conns} conns: " + " · ".join(parts))
        lines.append("")
    within = handler["share_within"]
    slowest = next((float(le) for le, share in within.items() if le != "+Inf" and share >= 1.0), None)
    tail = f"all within {slowest * 1000:g} ms" if slowest is not None else "some beyond the histogram's last bucket"
    lines.append(f"Ours, inside the handler (parse, evaluate, render, log; its /metrics histogram over all runs, "
                 f"{handler['count']} requests): mean {handler['mean_us']:.0f} µs, "
                 f"{within.get('0.0001', 0) * 100:.2f}% within 100 µs, {within.get('0.00025', 0) * 100:.3f}% within "
                 f"250 µs, {tail}.")
    lines.append("")
    lines.append(f"Peak RSS: ours {rss['ours']:.1f} MiB (1,000 StorageClasses + StorageProfiles loaded), "
                 f"strong {rss['strong']:.1f} MiB, json {rss['json']:.1f} MiB"
                 + (f", before {rss['before']:.1f} MiB." if "before" in rss else "."))
    text = "\n".join(lines)
    print(text)
    out = ROOT / "target/bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "load.json").write_text(json.dumps({"cells": data, "rss_mib": rss, "handler": handler, "duration": DURATION, "rounds": ROUNDS,
                                               "load_average": [load_start, load_end]}, indent=1))
    (out / "load.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
