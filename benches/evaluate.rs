//! Evaluator cost with 1,000 StorageClasses and StorageProfiles in the facts.
//! `cargo bench --bench evaluate`; target ≤ 5 µs per object (issue 11). Also prints the
//! allocations per evaluation (counting allocator).
//!
//! Measured in the benchmark thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), not wall time: on a
//! shared 2-core machine wall time counts the time other processes ran, which made the same
//! binary read 1.8 µs on a quiet machine and 8 µs beside two compilers.

use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{Criterion, Throughput, criterion_group};
use live_migration_guard::evaluate::{evaluate_hostedcluster, evaluate_nodepool};
use live_migration_guard::facts::Facts;
use live_migration_guard::facts::load::{Object, parse_bytes};
use std::hint::black_box;

#[path = "support/counting.rs"]
mod counting;

#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting;

fn facts_with_classes(n: usize) -> Facts {
    let mut b = Facts::builder();
    let mut text = String::new();
    for i in 0..n {
        let (prov, set) = if i % 2 == 0 {
            (
                "openshift-storage.rbd.csi.ceph.com",
                "[{accessModes: [ReadWriteMany], volumeMode: Block}, {accessModes: [ReadWriteOnce], volumeMode: Filesystem}]",
            )
        } else {
            (
                "ebs.csi.aws.com",
                "[{accessModes: [ReadWriteOnce], volumeMode: Block}]",
            )
        };
        let default = if i == n / 2 {
            "\n  annotations: {storageclass.kubevirt.io/is-default-virt-class: \"true\"}"
        } else {
            ""
        };
        text.push_str(&format!(
            "---\napiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata:\n  name: class-{i}{default}\nprovisioner: {prov}\n---\napiVersion: cdi.kubevirt.io/v1beta1\nkind: StorageProfile\nmetadata:\n  name: class-{i}\nstatus:\n  provisioner: {prov}\n  claimPropertySets: {set}\n"
        ));
    }
    for l in parse_bytes(text.as_bytes(), "bench").expect("bench facts") {
        match l.object {
            Object::StorageClass(sc) => b.add_storage_class(&sc),
            Object::StorageProfile(sp) => b.add_storage_profile(&sp),
            _ => unreachable!(),
        }
    }
    b.build()
}

fn object(yaml: &str) -> Object {
    parse_bytes(yaml.as_bytes(), "bench")
        .expect("bench object")
        .remove(0)
        .object
}

const NODEPOOL_DEFAULT: &str = include_str!("../tests/fixtures/nodepool-kubevirt-minimal.yaml");
const NODEPOOL_RWO: &str = include_str!("../tests/fixtures/nodepool-kubevirt-rwo-root-volume.yaml");
const HOSTEDCLUSTER: &str =
    include_str!("../tests/fixtures/hostedcluster-kubevirt-manual-storage-mapping.yaml");

/// The calling thread's CPU time.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec it is given.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

struct ThreadCpuTime;

impl Measurement for ThreadCpuTime {
    type Intermediate = Duration;
    type Value = Duration;
    fn start(&self) -> Duration {
        thread_cpu()
    }
    fn end(&self, started: Duration) -> Duration {
        thread_cpu().saturating_sub(started)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

/// Nanoseconds shown as ns/µs/ms of CPU time.
struct CpuFormatter;

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = if typical < 1e3 {
            (1.0, "ns cpu")
        } else if typical < 1e6 {
            (1e-3, "µs cpu")
        } else {
            (1e-6, "ms cpu")
        };
        values.iter_mut().for_each(|v| *v *= factor);
        unit
    }
    fn scale_throughputs(&self, _typical: f64, throughput: &Throughput, values: &mut [f64]) -> &'static str {
        let per_call = match throughput {
            Throughput::Elements(n) => *n as f64,
            _ => 1.0,
        };
        values.iter_mut().for_each(|v| *v = per_call * 1e9 / *v);
        "objects/s cpu"
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

/// The benchmarked cases: a name and one evaluation (a NodePool, a HostedCluster, or a batch
/// of three objects).
struct Cases {
    facts: Facts,
    default: live_migration_guard::resources::NodePool,
    rwo: live_migration_guard::resources::NodePool,
    hc: live_migration_guard::resources::HostedCluster,
    batch: Vec<live_migration_guard::facts::load::Loaded>,
}

const CASES: [(&str, &str, u64); 4] = [
    ("nodepool/default-class-migratable", "object", 1),
    ("nodepool/rwo-not-migratable", "object", 1),
    ("hostedcluster/manual-mapping", "object", 1),
    // §H3: a HostedCluster with two sibling NodePools: pairing, the shared condition over
    // both NodePools' machines, the HostedCluster's condition.
    ("batch/hostedcluster-with-2-sibling-nodepools", "batch of 3", 3),
];

impl Cases {
    fn new() -> Self {
        let Object::NodePool(default) = object(&NODEPOOL_DEFAULT.replace("replicas: 0", "replicas: 3"))
        else {
            unreachable!()
        };
        let Object::NodePool(rwo) =
            object(&NODEPOOL_RWO.replace("storageClass: gp3-csi", "storageClass: class-1"))
        else {
            unreachable!()
        };
        let Object::HostedCluster(hc) = object(HOSTEDCLUSTER) else {
            unreachable!()
        };
        let siblings = format!(
            "{HOSTEDCLUSTER}\n---\n{}\n---\n{}\n",
            NODEPOOL_RWO.replace("storageClass: gp3-csi", "storageClass: class-1"),
            NODEPOOL_DEFAULT
                .replace("replicas: 0", "replicas: 3")
                .replace("name: example", "name: workers")
                .replace("clusterName: example", "clusterName: test1")
        );
        let batch = parse_bytes(siblings.as_bytes(), "bench").expect("bench batch");
        Self {
            facts: facts_with_classes(1000),
            default: *default,
            rwo: *rwo,
            hc: *hc,
            batch,
        }
    }

    /// Runs case `name` once.
    fn run(&self, name: &str) {
        let f = &self.facts;
        match name {
            "nodepool/default-class-migratable" => {
                drop(black_box(evaluate_nodepool(black_box(&self.default), f)))
            }
            "nodepool/rwo-not-migratable" => drop(black_box(evaluate_nodepool(black_box(&self.rwo), f))),
            "hostedcluster/manual-mapping" => {
                drop(black_box(evaluate_hostedcluster(black_box(&self.hc), f, &[])))
            }
            "batch/hostedcluster-with-2-sibling-nodepools" => drop(black_box(
                live_migration_guard::batch::evaluate_all(black_box(&self.batch), f),
            )),
            other => panic!("unknown case {other}"),
        }
    }
}

fn bench(c: &mut Criterion<ThreadCpuTime>) {
    let cases = Cases::new();
    for (name, unit, _) in CASES {
        counting::count(name, unit, 2000, || cases.run(name));
    }
    for (name, _, objects) in CASES {
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Elements(objects));
        group.bench_function("evaluate", |b| b.iter(|| cases.run(name)));
        group.finish();
    }
}

/// `EVALUATE_LOOP=CASE:N` runs one case N times and exits, for instruction counts that do
/// not depend on the machine's load (scripts/bench-instructions.sh: callgrind at two N).
fn loop_mode(spec: &str) {
    let (name, n) = spec.rsplit_once(':').unwrap_or((spec, "1000"));
    let n: u64 = n.parse().expect("EVALUATE_LOOP=CASE:N");
    let cases = Cases::new();
    for _ in 0..n {
        cases.run(name);
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = bench
}

fn main() {
    if let Ok(spec) = std::env::var("EVALUATE_LOOP") {
        return loop_mode(&spec);
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
