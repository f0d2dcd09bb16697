//! Live facts from a cluster: kube-runtime watchers feeding reflector stores, and a task
//! that turns the stores into one immutable [`Snapshot`] whenever they change. Admission
//! only ever reads the latest snapshot — never the API server.
//!
//! - Required APIs (StorageClasses, Namespaces): readiness waits for their first sync.
//! - Optional APIs (CDI StorageProfiles, the KubeVirt CR, HyperShift's HostedClusters and
//!   NodePools): a 404 means "not installed" — logged once, the facts are simply absent
//!   (CDI's built-in table is used, the KubeVirt version is unknown), readiness does not wait.
//! - An API outage keeps the last state; the snapshot reports how long the watches have
//!   been failing, and past `max_staleness` the facts are marked unusable, so rules that
//!   need them answer `Unknown` instead of guessing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use super::snapshot::{ANN_DEFAULT_CLASS, ANN_DEFAULT_VIRT_CLASS};
use super::{Facts, FactsBuilder, InfraFacts, Snapshot};
use crate::resources::{HostedCluster, KubeVirt, NodePool, StorageProfile};

/// Namespace label read for per-namespace modes (only labelled namespaces are watched).
pub const MODE_LABEL: &str = "live-migration-guard.io/mode";

/// The resources watched, as (group, resource) — the chart's RBAC must grant list/watch
/// on exactly these (checked by the chart contract test).
pub const WATCHED: &[(&str, &str)] = &[
    ("storage.k8s.io", "storageclasses"),
    ("", "namespaces"),
    ("cdi.kubevirt.io", "storageprofiles"),
    ("kubevirt.io", "kubevirts"),
    ("hypershift.openshift.io", "hostedclusters"),
    ("hypershift.openshift.io", "nodepools"),
];

#[derive(Clone, Debug)]
pub struct Options {
    /// Read HostedClusters' infra kubeconfig Secrets and watch external infra clusters.
    pub infra_credentials: bool,
    /// Past this without healthy watches, the facts are marked unusable.
    pub max_staleness: Duration,
    /// Coalesce bursts of watch events into one rebuild.
    pub debounce: Duration,
    /// At most this many external infra clusters are watched.
    pub max_infra_clusters: usize,
    /// How often a missing or forbidden infra Secret is looked up again.
    pub infra_retry: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            infra_credentials: false,
            max_staleness: Duration::from_secs(600),
            debounce: Duration::from_millis(100),
            max_infra_clusters: 50,
            infra_retry: Duration::from_secs(30),
        }
    }
}

/// Health of one watch.
#[derive(Debug, Clone)]
struct WatchHealth {
    name: &'static str,
    required: bool,
    synced: bool,
    /// The API returned 404: the CRD is not installed.
    absent: bool,
    failing_since: Option<Instant>,
    last_error: Option<String>,
    /// The last error was a 403: the ServiceAccount's RBAC lacks a verb on this resource.
    forbidden: bool,
}

impl WatchHealth {
    fn recovered(&mut self, name: &str) {
        if self.failing_since.take().is_some() {
            tracing::info!(watch = name, "watch recovered");
        }
        self.last_error = None;
        self.forbidden = false;
    }
}

/// How often a failing watch is probed (see [`probe`]), and how long a probe may take.
const PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// One cheap list (a single item's metadata) and a watch from its resourceVersion that the API
/// server ends after a second: both answer when the API is reachable and RBAC grants `list`
/// and `watch`.
async fn probe<K>(api: &Api<K>) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    use futures::TryStreamExt;
    let list = api
        .list_metadata(&kube::api::ListParams::default().limit(1))
        .await?;
    let version = list.metadata.resource_version.unwrap_or_default();
    let events = api
        .watch_metadata(&kube::api::WatchParams::default().timeout(1), &version)
        .await?;
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.try_next().await? {
        if let kube::api::WatchEvent::Error(status) = event {
            return Err(kube::Error::Api(status));
        }
    }
    Ok(())
}

/// A set of watches with shared health and one change signal.
struct Watches {
    health: Mutex<Vec<WatchHealth>>,
    changed: Notify,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Watches {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            health: Mutex::new(Vec::new()),
            changed: Notify::new(),
            tasks: Mutex::new(Vec::new()),
        })
    }

    fn update(&self, idx: usize, f: impl FnOnce(&mut WatchHealth)) {
        let mut h = self
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(w) = h.get_mut(idx) {
            f(w);
        }
    }

    fn health(&self) -> Vec<WatchHealth> {
        self.health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Starts a reflector for `api`; the store fills as events arrive.
    fn spawn<K>(
        self: &Arc<Self>,
        name: &'static str,
        required: bool,
        api: Api<K>,
        config: watcher::Config,
        strip: fn(&mut K),
    ) -> Store<K>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    {
        let idx = {
            let mut h = self
                .health
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            h.push(WatchHealth {
                name,
                required,
                synced: false,
                absent: false,
                failing_since: None,
                last_error: None,
                forbidden: false,
            });
            h.len() - 1
        };
        let (reader, writer) = reflector::store();
        let probe_api = api.clone();
        let stream = watcher::watcher(api, config)
            .default_backoff()
            .modify(strip)
            .reflect(writer);
        let this = self.clone();
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            // While failing, a probe checks that list and watch work again: a watch that kube's
            // watcher restarts successfully yields no event until an object changes, so in a
            // quiet cluster nothing else would ever say it recovered.
            let mut failing = false;
            loop {
                let item = tokio::select! {
                    item = stream.next() => match item {
                        Some(item) => item,
                        None => break,
                    },
                    () = tokio::time::sleep(PROBE_INTERVAL), if failing => {
                        if matches!(tokio::time::timeout(PROBE_INTERVAL, probe(&probe_api)).await, Ok(Ok(()))) {
                            failing = false;
                            this.update(idx, |w| w.recovered(name));
                            this.changed.notify_one();
                        }
                        continue;
                    }
                };
                match item {
                    // Emitted before each (re-)list, not a sign that the API answered.
                    Ok(Event::Init) => continue,
                    Ok(event) => {
                        failing = false;
                        this.update(idx, |w| {
                            w.recovered(name);
                            w.absent = false;
                            if matches!(event, Event::InitDone) {
                                w.synced = true;
                            }
                        });
                    }
                    Err(e) if not_found(&e) => {
                        failing = false;
                        this.update(idx, |w| {
                            if !w.absent {
                                tracing::info!(
                                    watch = name,
                                    "API not installed (404); continuing without these facts"
                                );
                            }
                            w.absent = true;
                            w.failing_since = None;
                            w.last_error = None;
                            w.forbidden = false;
                        });
                    }
                    Err(e) => {
                        failing = true;
                        this.update(idx, |w| {
                            if w.failing_since.is_none() {
                                tracing::warn!(watch = name, error = %e, "watch failing; serving from the last known state");
                            }
                            w.failing_since.get_or_insert_with(Instant::now);
                            w.forbidden = api_status(&e).is_some_and(|s| s.code == 403);
                            w.last_error =
                                Some(api_status(&e).map_or_else(|| e.to_string(), |s| s.message.clone()));
                        });
                    }
                }
                this.changed.notify_one();
            }
        });
        self.tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(task);
        reader
    }

    /// Ready when every required watch synced and every optional one synced or is absent;
    /// otherwise the reason.
    /// A watch that the API server forbids (403) keeps the server unready even after its first
    /// sync (a ClusterRole with `list` but without `watch` syncs once and then never updates):
    /// the reason quotes the API server, which names the user, verb and resource.
    fn readiness(&self) -> Result<(), String> {
        let health = self.health();
        let forbidden: Vec<String> = health
            .iter()
            .filter(|w| w.forbidden)
            .map(|w| {
                format!(
                    "{}: forbidden by RBAC: {}",
                    w.name,
                    w.last_error.as_deref().unwrap_or_default()
                )
            })
            .collect();
        if !forbidden.is_empty() {
            return Err(forbidden.join("; "));
        }
        let waiting: Vec<&'static str> = health
            .iter()
            .filter(|w| !w.synced && (w.required || !w.absent))
            .map(|w| w.name)
            .collect();
        if waiting.is_empty() {
            Ok(())
        } else {
            Err(format!("waiting for the first sync of {}", waiting.join(", ")))
        }
    }

    /// Seconds the oldest still-failing watch has been failing (0 when all are healthy).
    fn stale_for(&self) -> Option<(Duration, String)> {
        self.health()
            .iter()
            .filter_map(|w| {
                w.failing_since.map(|t| {
                    (
                        t.elapsed(),
                        format!("{}: {}", w.name, w.last_error.clone().unwrap_or_default()),
                    )
                })
            })
            .max_by_key(|(d, _)| *d)
    }

    fn present(&self, name: &str) -> bool {
        self.health()
            .iter()
            .any(|w| w.name == name && w.synced && !w.absent)
    }
}

impl Drop for Watches {
    fn drop(&mut self) {
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .drain(..)
        {
            t.abort();
        }
    }
}

fn not_found(e: &watcher::Error) -> bool {
    api_status(e).is_some_and(|s| s.code == 404)
}

/// The API server's answer inside a watch error, if it gave one.
fn api_status(e: &watcher::Error) -> Option<&kube::core::Status> {
    match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => Some(s),
        watcher::Error::WatchError(s) => Some(s),
        _ => None,
    }
}

/// Keeps only what the rules read of a StorageClass (name, creation time, the two
/// default-class annotations, provisioner, the parameters CDI's capability keys use).
fn strip_storage_class(sc: &mut StorageClass) {
    let meta = &mut sc.metadata;
    meta.managed_fields = None;
    meta.labels = None;
    meta.owner_references = None;
    meta.finalizers = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.retain(|k, _| k == ANN_DEFAULT_CLASS || k == ANN_DEFAULT_VIRT_CLASS);
    }
    if let Some(p) = sc.parameters.as_mut() {
        p.retain(|k, _| crate::cdi::PARAMETER_KEYS.contains(&k.as_str()));
    }
    sc.mount_options = None;
    sc.allowed_topologies = None;
}

fn strip_namespace(ns: &mut Namespace) {
    ns.metadata.managed_fields = None;
    ns.metadata.annotations = None;
    if let Some(l) = ns.metadata.labels.as_mut() {
        l.retain(|k, _| k == MODE_LABEL);
    }
    ns.spec = None;
    ns.status = None;
}

fn keep<K>(_: &mut K) {}

struct Stores {
    classes: Store<StorageClass>,
    profiles: Store<StorageProfile>,
    kubevirts: Store<KubeVirt>,
    hosted_clusters: Store<HostedCluster>,
    namespaces: Store<Namespace>,
}

/// Live facts: the snapshot receiver, the NodePool cache (for the audit) and the tasks.
pub struct ClusterFacts {
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    pub nodepools: Store<NodePool>,
    _watches: Arc<Watches>,
    builder: JoinHandle<()>,
}

impl Drop for ClusterFacts {
    fn drop(&mut self) {
        self.builder.abort();
    }
}

/// Starts the watches and the snapshot builder.
pub fn start(client: Client, opts: Options) -> ClusterFacts {
    let watches = Watches::new();
    let stores = Stores {
        classes: watches.spawn(
            "StorageClasses",
            true,
            Api::all(client.clone()),
            watcher::Config::default(),
            strip_storage_class,
        ),
        namespaces: watches.spawn(
            "Namespaces",
            true,
            Api::all(client.clone()),
            watcher::Config::default().labels(MODE_LABEL),
            strip_namespace,
        ),
        profiles: watches.spawn(
            "StorageProfiles",
            false,
            Api::all(client.clone()),
            watcher::Config::default(),
            keep,
        ),
        kubevirts: watches.spawn(
            "KubeVirt",
            false,
            Api::all(client.clone()),
            watcher::Config::default(),
            keep,
        ),
        hosted_clusters: watches.spawn(
            "HostedClusters",
            false,
            Api::all(client.clone()),
            watcher::Config::default(),
            keep,
        ),
    };
    let nodepools = watches.spawn(
        "NodePools",
        false,
        Api::all(client.clone()),
        watcher::Config::default(),
        keep,
    );
    let (tx, rx) = watch::channel(Arc::new(Snapshot {
        ready: false,
        not_ready_reason: Some("starting".into()),
        ..Snapshot::default()
    }));
    let infra = opts
        .infra_credentials
        .then(|| Arc::new(InfraClusters::new(client, opts.clone(), watches.clone())));
    let builder = tokio::spawn(build_loop(stores, watches.clone(), infra, opts, tx));
    ClusterFacts {
        snapshot: rx,
        nodepools,
        _watches: watches,
        builder,
    }
}

/// Rebuilds the snapshot after changes (debounced) and re-checks staleness every second.
async fn build_loop(
    stores: Stores,
    watches: Arc<Watches>,
    infra: Option<Arc<InfraClusters>>,
    opts: Options,
    tx: watch::Sender<Arc<Snapshot>>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut fresh = Arc::new(build_facts(&stores, &watches, infra.as_deref()));
    let mut marked: Option<Arc<Facts>> = None;
    loop {
        let facts = fresh.clone();
        let stale = watches.stale_for();
        let facts = match &stale {
            Some((age, why)) if *age > opts.max_staleness => marked
                .get_or_insert_with(|| {
                    tracing::warn!(
                        age_secs = age.as_secs(),
                        "cluster facts are stale past the bound; answering Unknown"
                    );
                    Arc::new(facts.mark_unavailable(format!(
                        "the API server has not answered for {}s (last error: {why})",
                        age.as_secs()
                    )))
                })
                .clone(),
            _ => {
                marked = None;
                facts
            }
        };
        let namespace_modes = namespace_modes(&stores.namespaces.state());
        let ready = watches.readiness();
        tx.send_replace(Arc::new(Snapshot {
            facts,
            namespace_modes: Some(Arc::new(namespace_modes)),
            ready: ready.is_ok(),
            not_ready_reason: ready.err(),
            stale_seconds: stale.map(|(d, _)| d.as_secs_f64()).unwrap_or(0.0),
        }));
        let changed = tokio::select! {
            _ = watches.changed.notified() => {
                tokio::time::sleep(opts.debounce).await;
                true
            }
            _ = tick.tick() => false,
        };
        if let Some(infra) = &infra {
            infra.sync(&stores.hosted_clusters.state());
        }
        if changed {
            fresh = Arc::new(build_facts(&stores, &watches, infra.as_deref()));
            marked = None;
        }
    }
}

fn build_facts(stores: &Stores, watches: &Watches, infra: Option<&InfraClusters>) -> Facts {
    let mut b = builder_of(&Parts {
        classes: &stores.classes.state(),
        classes_known: watches.present("StorageClasses"),
        profiles: &stores.profiles.state(),
        profiles_known: watches.present("StorageProfiles"),
        kubevirts: &stores.kubevirts.state(),
        hosted_clusters: &stores.hosted_clusters.state(),
    });
    if let Some(infra) = infra {
        for ((ns, name), facts) in infra.current() {
            b.add_infra(&ns, &name, facts);
        }
    }
    b.build()
}

/// What the facts are made of, from watches' stores or from one-shot lists.
struct Parts<'a> {
    classes: &'a [Arc<StorageClass>],
    /// The StorageClass list is complete (synced or listed).
    classes_known: bool,
    profiles: &'a [Arc<StorageProfile>],
    /// CDI is installed and its StorageProfiles were synced or listed.
    profiles_known: bool,
    kubevirts: &'a [Arc<KubeVirt>],
    hosted_clusters: &'a [Arc<HostedCluster>],
}

/// The one place objects become facts, for the server's watches, its infra clusters and the
/// CLI's one-shot lists alike.
fn builder_of(parts: &Parts<'_>) -> FactsBuilder {
    let mut b = FactsBuilder::default();
    if parts.classes_known {
        b = b.storage_classes_known();
    }
    if parts.profiles_known {
        b = b.storage_profiles_known();
    }
    for sc in parts.classes {
        b.add_storage_class(sc);
    }
    for sp in parts.profiles {
        b.add_storage_profile(sp);
    }
    for kv in parts.kubevirts {
        b.add_kubevirt(kv);
    }
    for hc in parts.hosted_clusters {
        b.add_hosted_cluster(hc.as_ref().clone());
    }
    b
}

/// The `live-migration-guard.io/mode` label of each (labelled) namespace.
fn namespace_modes(namespaces: &[Arc<Namespace>]) -> HashMap<String, String> {
    namespaces
        .iter()
        .filter_map(|ns| {
            let mode = ns.metadata.labels.as_ref()?.get(MODE_LABEL)?;
            Some((ns.metadata.name.clone()?, mode.clone()))
        })
        .collect()
}

/// Fact caches for external infrastructure clusters (HostedCluster `credentials`),
/// created when such a HostedCluster appears, bounded in number.
struct InfraClusters {
    client: Client,
    opts: Options,
    parent: Arc<Watches>,
    clusters: Mutex<HashMap<(String, String), InfraCluster>>,
}

struct InfraCluster {
    secret: (String, String),
    state: Arc<Mutex<InfraFacts>>,
    task: JoinHandle<()>,
}

impl Drop for InfraCluster {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl InfraClusters {
    fn new(client: Client, opts: Options, parent: Arc<Watches>) -> Self {
        Self {
            client,
            opts,
            parent,
            clusters: Mutex::new(HashMap::new()),
        }
    }

    fn current(&self) -> Vec<((String, String), InfraFacts)> {
        let clusters = self
            .clusters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        clusters
            .iter()
            .map(|(k, c)| {
                (
                    k.clone(),
                    c.state
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .clone(),
                )
            })
            .collect()
    }

    /// Starts caches for new HostedClusters with credentials, stops those that went away.
    fn sync(&self, hcs: &[Arc<HostedCluster>]) {
        let mut wanted: HashMap<(String, String), (String, String)> = HashMap::new();
        for hc in hcs {
            let Some(secret) = hc.credentials().and_then(|c| c.infra_kube_config_secret.as_ref()) else {
                continue;
            };
            let (ns, name) = hc.key();
            let (ns, name) = (ns.to_owned(), name.to_owned());
            wanted.insert((ns, name), (secret.name.clone(), secret.key.clone()));
        }
        let mut clusters = self
            .clusters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = clusters.len();
        clusters.retain(|k, c| wanted.get(k) == Some(&c.secret));
        for (key, secret) in wanted {
            if clusters.contains_key(&key) {
                continue;
            }
            let state = Arc::new(Mutex::new(InfraFacts::Unavailable(
                "connecting to the infrastructure cluster".into(),
            )));
            let task = if clusters.len() >= self.opts.max_infra_clusters {
                *state.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                    InfraFacts::Unavailable(format!(
                        "more than {} external infrastructure clusters; raise the limit",
                        self.opts.max_infra_clusters
                    ));
                tokio::spawn(async {})
            } else {
                tokio::spawn(infra_loop(
                    self.client.clone(),
                    key.0.clone(),
                    secret.clone(),
                    state.clone(),
                    self.parent.clone(),
                    self.opts.clone(),
                ))
            };
            clusters.insert(key, InfraCluster { secret, state, task });
        }
        if clusters.len() != before {
            self.parent.changed.notify_one();
        }
    }
}

/// Reads the kubeconfig Secret, then keeps StorageClass/StorageProfile facts of that
/// cluster in `state`. A missing or forbidden Secret is retried (it may be created later,
/// docs/rules.md §5: the Secret can lag the HostedCluster).
async fn infra_loop(
    client: Client,
    namespace: String,
    (secret, key): (String, String),
    state: Arc<Mutex<InfraFacts>>,
    parent: Arc<Watches>,
    opts: Options,
) {
    let set = |s: InfraFacts| {
        *state.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = s;
        parent.changed.notify_one();
    };
    let infra_client = loop {
        let problem = match infra_client_from_secret(&client, &namespace, &secret, &key).await {
            Ok(c) => break c,
            Err(problem) => problem,
        };
        tracing::info!(%problem, "external infrastructure facts unavailable; retrying");
        set(InfraFacts::Unavailable(problem));
        tokio::time::sleep(opts.infra_retry).await;
    };
    let watches = Watches::new();
    let classes: Store<StorageClass> = watches.spawn(
        "StorageClasses",
        true,
        Api::all(infra_client.clone()),
        watcher::Config::default(),
        strip_storage_class,
    );
    let profiles: Store<StorageProfile> = watches.spawn(
        "StorageProfiles",
        false,
        Api::all(infra_client.clone()),
        watcher::Config::default(),
        keep,
    );
    let kubevirts: Store<KubeVirt> = watches.spawn(
        "KubeVirt",
        false,
        Api::all(infra_client),
        watcher::Config::default(),
        keep,
    );
    loop {
        match watches.readiness() {
            Err(why) => set(InfraFacts::Unavailable(format!("infrastructure cluster: {why}"))),
            Ok(()) => {
                let mut facts = builder_of(&Parts {
                    classes: &classes.state(),
                    classes_known: true,
                    profiles: &profiles.state(),
                    profiles_known: watches.present("StorageProfiles"),
                    kubevirts: &kubevirts.state(),
                    hosted_clusters: &[],
                })
                .build();
                if let Some((age, why)) = watches.stale_for().filter(|(age, _)| *age > opts.max_staleness) {
                    facts = facts.mark_unavailable(format!(
                        "the infrastructure cluster has not answered for {}s ({why})",
                        age.as_secs()
                    ));
                }
                set(InfraFacts::Ready(Arc::new(facts)));
            }
        }
        tokio::select! {
            _ = watches.changed.notified() => tokio::time::sleep(opts.debounce).await,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

/// A client for the infrastructure cluster whose kubeconfig is key `key` of Secret
/// `namespace/secret`; else why not, in words.
async fn infra_client_from_secret(
    client: &Client,
    namespace: &str,
    secret: &str,
    key: &str,
) -> Result<Client, String> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    match secrets.get(secret).await {
        Ok(s) => match s.data.as_ref().and_then(|d| d.get(key)) {
            None => Err(format!("Secret {namespace}/{secret} has no key {key}")),
            Some(bytes) => infra_client(&bytes.0).await.map_err(|e| {
                format!("Secret {namespace}/{secret} key {key} is not a usable kubeconfig: {e}")
            }),
        },
        Err(kube::Error::Api(s)) if s.code == 404 => {
            Err(format!("Secret {namespace}/{secret} does not exist (yet)"))
        }
        Err(kube::Error::Api(s)) if s.code == 403 => Err(format!(
            "reading Secret {namespace}/{secret} is forbidden (RBAC): {}",
            s.message
        )),
        Err(e) => Err(format!("reading Secret {namespace}/{secret}: {e}")),
    }
}

async fn infra_client(kubeconfig: &[u8]) -> Result<Client, String> {
    let text = std::str::from_utf8(kubeconfig).map_err(|e| e.to_string())?;
    let kubeconfig = kube::config::Kubeconfig::from_yaml(text).map_err(|e| e.to_string())?;
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|e| e.to_string())?;
    Client::try_from(config).map_err(|e| e.to_string())
}

/// A client for `--kubeconfig`, or kube's standard inference (in-cluster, `KUBECONFIG`,
/// `~/.kube/config`).
pub async fn client(kubeconfig: Option<&std::path::Path>) -> Result<Client, String> {
    let config = match kubeconfig {
        Some(path) => {
            let kc =
                kube::config::Kubeconfig::read_from(path).map_err(|e| format!("{}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => kube::Config::infer().await.map_err(|e| e.to_string())?,
    };
    Client::try_from(config).map_err(|e| e.to_string())
}

/// A client for the CLI's one-shot reads, with where it points.
pub struct Connected {
    pub client: Client,
    /// The API server's URL, as the kubeconfig names it.
    pub server: String,
    /// The namespace of the kubeconfig context (`default` when it names none).
    pub default_namespace: String,
}

/// How long the CLI waits for a TCP/TLS connection, and for one answer of the API server.
const CLI_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const CLI_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Why no client could be made, naming the flag or file to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("--kubeconfig {path}: {message}")]
    Kubeconfig { path: String, message: String },
    #[error("--context {context}: {message}")]
    Context { context: String, message: String },
    #[error(
        "no kubeconfig found (KUBECONFIG, ~/.kube/config) and not running in a pod: {0}; pass --kubeconfig PATH"
    )]
    NoConfig(String),
    #[error("the kubeconfig cannot be used: {0}")]
    Client(String),
}

/// A client for `--kubeconfig` and `--context` as kubectl reads them: the file (else
/// `KUBECONFIG`, else `~/.kube/config`, else the pod's service account) and the context
/// (else the current one).
pub async fn connect(
    kubeconfig: Option<&std::path::Path>,
    context: Option<&str>,
) -> Result<Connected, ConnectError> {
    let options = kube::config::KubeConfigOptions {
        context: context.map(str::to_owned),
        ..Default::default()
    };
    // the flag to fix: --context when one was given and the file was read, else the file
    let named = |message: String| match (kubeconfig, context) {
        (_, Some(c)) => ConnectError::Context {
            context: c.to_owned(),
            message,
        },
        (Some(path), None) => ConnectError::Kubeconfig {
            path: path.display().to_string(),
            message,
        },
        (None, None) => ConnectError::NoConfig(message),
    };
    let mut config = match (kubeconfig, context) {
        (Some(path), _) => {
            let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| ConnectError::Kubeconfig {
                path: path.display().to_string(),
                message: error_chain(&e),
            })?;
            kube::Config::from_custom_kubeconfig(kc, &options)
                .await
                .map_err(|e| named(error_chain(&e)))?
        }
        (None, Some(_)) => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| named(error_chain(&e)))?,
        (None, None) => kube::Config::infer().await.map_err(|e| named(error_chain(&e)))?,
    };
    config.connect_timeout = Some(CLI_CONNECT_TIMEOUT);
    config.read_timeout = Some(CLI_READ_TIMEOUT);
    let server = config.cluster_url.to_string().trim_end_matches('/').to_owned();
    let default_namespace = config.default_namespace.clone();
    let client = Client::try_from(config).map_err(|e| ConnectError::Client(error_chain(&e)))?;
    Ok(Connected {
        client,
        server,
        default_namespace,
    })
}

/// An error and its sources on one line, each text once (kube's errors often repeat their
/// source in their own message).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut line = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        next = cause.source();
    }
    line
}

/// Where the CLI lists NodePools and HostedClusters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every namespace (`-A`): one cluster-wide list.
    All,
    /// These namespaces, one list each.
    Namespaces(Vec<String>),
}

/// What [`list_once`] reads.
#[derive(Clone, Debug)]
pub struct ListOptions {
    /// Where NodePools are listed; `None`: not at all.
    pub nodepools: Option<Scope>,
    /// Where HostedClusters are listed (the NodePools' clusters, and audited themselves).
    pub hosted_clusters: Scope,
    /// Also list the namespaces labelled `live-migration-guard.io/mode`.
    pub namespace_modes: bool,
    /// Read HostedClusters' infra kubeconfig Secrets and list those clusters' facts, as
    /// `serve --infra-credentials=read` watches them.
    pub infra_credentials: bool,
    /// Objects per list request (the API server pages longer lists).
    pub page_size: u32,
    /// At most this many external infrastructure clusters are read.
    pub max_infra_clusters: usize,
    /// With `infra_credentials`: also read the infra credentials of these HostedClusters (the
    /// CLI's inputs, which may not exist in the cluster yet).
    pub infra_for: Vec<Arc<HostedCluster>>,
}

impl Default for ListOptions {
    fn default() -> Self {
        Self {
            nodepools: None,
            hosted_clusters: Scope::All,
            namespace_modes: false,
            infra_credentials: false,
            page_size: 500,
            max_infra_clusters: Options::default().max_infra_clusters,
            infra_for: Vec::new(),
        }
    }
}

/// How far a one-shot list has come: `listed` objects of `what` so far; `done` once the
/// list is complete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    pub what: String,
    pub listed: usize,
    pub done: bool,
}

/// What [`list_once`] read: the facts (and namespace modes) the server would hold, and the
/// NodePools its audit would evaluate.
#[derive(Debug)]
pub struct Listed {
    pub snapshot: Snapshot,
    pub nodepools: Vec<Arc<NodePool>>,
    /// APIs this cluster does not serve (their CRD is not installed), e.g. `StorageProfiles
    /// (cdi.kubevirt.io)`: their facts are absent, as the server treats a 404.
    pub absent: Vec<String>,
}

/// A list the API server did not answer: one line naming the resource and what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error(
        "listing {what}: {message}; grant RBAC \"list\" on {resource} {scope} (every permission needed: audit --help)"
    )]
    Forbidden {
        what: String,
        resource: String,
        scope: String,
        message: String,
    },
    #[error(
        "the API server {server} rejected the credentials (401 Unauthorized) while listing {what}: {message}; log in again or pick another --context"
    )]
    Unauthorized {
        server: String,
        what: String,
        message: String,
    },
    #[error("cannot reach the API server {server} while listing {what}: {message}")]
    Unreachable {
        server: String,
        what: String,
        message: String,
    },
    #[error("listing {what} {scope}: the API server answered {code} {reason}: {message}")]
    Api {
        what: String,
        scope: String,
        code: u16,
        reason: String,
        message: String,
    },
}

/// One kind of object the CLI lists: its name for people and for RBAC.
struct Listing<'a> {
    what: &'a str,
    /// `resource.group` as RBAC names it (`namespaces` for the core group).
    resource: &'a str,
    /// A 404 means "not installed" (a CRD) instead of an error.
    optional: bool,
}

const STORAGE_CLASSES: Listing<'static> = Listing {
    what: "StorageClasses",
    resource: "storageclasses.storage.k8s.io",
    optional: false,
};
const STORAGE_PROFILES: Listing<'static> = Listing {
    what: "StorageProfiles",
    resource: "storageprofiles.cdi.kubevirt.io",
    optional: true,
};
const KUBEVIRTS: Listing<'static> = Listing {
    what: "KubeVirts",
    resource: "kubevirts.kubevirt.io",
    optional: true,
};
const HOSTED_CLUSTERS: Listing<'static> = Listing {
    what: "HostedClusters",
    resource: "hostedclusters.hypershift.openshift.io",
    optional: true,
};
const NODEPOOLS: Listing<'static> = Listing {
    what: "NodePools",
    resource: "nodepools.hypershift.openshift.io",
    optional: true,
};
const NAMESPACES: Listing<'static> = Listing {
    what: "Namespaces",
    resource: "namespaces",
    optional: false,
};

/// Lists, once, what the server's reflectors watch (StorageClasses, StorageProfiles, KubeVirt,
/// HostedClusters, NodePools, labelled Namespaces; [`WATCHED`]) and turns it into the same
/// facts, through the same stripping and the same builder. Pages of `page_size` objects;
/// `progress` hears of every page. `server` names the API server in errors.
pub async fn list_once(
    client: &Client,
    server: &str,
    opts: &ListOptions,
    progress: &dyn Fn(Progress),
) -> Result<Listed, ListError> {
    let mut absent = Vec::new();
    let lister = Lister {
        server,
        page_size: opts.page_size,
        progress,
    };
    let classes = lister
        .list(
            Api::all(client.clone()),
            &STORAGE_CLASSES,
            None,
            None,
            strip_storage_class,
        )
        .await?
        .unwrap_or_default();
    let profiles = lister
        .list(Api::all(client.clone()), &STORAGE_PROFILES, None, None, keep)
        .await?;
    let profiles_known = profiles.is_some();
    if !profiles_known {
        absent.push(format!("{} (cdi.kubevirt.io)", STORAGE_PROFILES.what));
    }
    let kubevirts = lister
        .list(Api::all(client.clone()), &KUBEVIRTS, None, None, keep)
        .await?;
    if kubevirts.is_none() {
        absent.push(format!("{} (kubevirt.io)", KUBEVIRTS.what));
    }
    let (hosted_clusters, hc_served) = lister
        .list_scoped::<HostedCluster>(client, &opts.hosted_clusters, &HOSTED_CLUSTERS)
        .await?;
    let nodepools = match &opts.nodepools {
        Some(scope) => {
            let (nps, served) = lister.list_scoped::<NodePool>(client, scope, &NODEPOOLS).await?;
            if !served {
                absent.push(format!("{} (hypershift.openshift.io)", NODEPOOLS.what));
            }
            nps
        }
        None => Vec::new(),
    };
    if !hc_served {
        absent.push(format!("{} (hypershift.openshift.io)", HOSTED_CLUSTERS.what));
    }
    let namespace_modes = if opts.namespace_modes {
        let namespaces = lister
            .list(
                Api::all(client.clone()),
                &NAMESPACES,
                None,
                Some(MODE_LABEL),
                strip_namespace,
            )
            .await?
            .unwrap_or_default();
        Some(Arc::new(namespace_modes(&namespaces)))
    } else {
        None
    };
    let mut builder = builder_of(&Parts {
        classes: &classes,
        classes_known: true,
        profiles: profiles.as_deref().unwrap_or_default(),
        profiles_known,
        kubevirts: kubevirts.as_deref().unwrap_or_default(),
        hosted_clusters: &hosted_clusters,
    });
    if opts.infra_credentials {
        // the inputs first: an input's credentials win over the stored object's
        let mut with_credentials = opts.infra_for.clone();
        with_credentials.extend(hosted_clusters.iter().cloned());
        for (key, facts) in lister
            .infra_facts(client, &with_credentials, opts.max_infra_clusters)
            .await
        {
            builder.add_infra(&key.0, &key.1, facts);
        }
    }
    Ok(Listed {
        snapshot: Snapshot {
            namespace_modes,
            ..Snapshot::fixed(builder.build())
        },
        nodepools,
        absent,
    })
}

struct Lister<'a> {
    server: &'a str,
    page_size: u32,
    progress: &'a dyn Fn(Progress),
}

impl Lister<'_> {
    /// Every object of `api`, page by page, stripped like the watches strip them; `None` when
    /// an optional API is not served (404).
    async fn list<K>(
        &self,
        api: Api<K>,
        listing: &Listing<'_>,
        namespace: Option<&str>,
        label_selector: Option<&str>,
        strip: fn(&mut K),
    ) -> Result<Option<Vec<Arc<K>>>, ListError>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    {
        let scope = match namespace {
            Some(ns) => format!("in namespace {ns}"),
            None => "at the cluster scope".to_owned(),
        };
        let mut out = Vec::new();
        let mut params = kube::api::ListParams {
            label_selector: label_selector.map(str::to_owned),
            ..Default::default()
        }
        .limit(self.page_size);
        loop {
            let page = match api.list(&params).await {
                Ok(page) => page,
                Err(kube::Error::Api(s)) if s.code == 404 && listing.optional => return Ok(None),
                Err(e) => return Err(self.error(listing, &scope, e)),
            };
            out.extend(page.items.into_iter().map(|mut k| {
                strip(&mut k);
                Arc::new(k)
            }));
            let next = page.metadata.continue_.filter(|c| !c.is_empty());
            (self.progress)(Progress {
                what: listing.what.to_owned(),
                listed: out.len(),
                done: next.is_none(),
            });
            match next {
                Some(token) => params.continue_token = Some(token),
                None => return Ok(Some(out)),
            }
        }
    }

    /// NodePools or HostedClusters in `scope`; `false` when the API is not served.
    async fn list_scoped<K>(
        &self,
        client: &Client,
        scope: &Scope,
        listing: &Listing<'_>,
    ) -> Result<(Vec<Arc<K>>, bool), ListError>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        match scope {
            Scope::All => {
                let found = self
                    .list(Api::<K>::all(client.clone()), listing, None, None, keep)
                    .await?;
                let served = found.is_some();
                Ok((found.unwrap_or_default(), served))
            }
            Scope::Namespaces(namespaces) => {
                let mut all = Vec::new();
                let mut served = true;
                for ns in namespaces {
                    match self
                        .list(
                            Api::<K>::namespaced(client.clone(), ns),
                            listing,
                            Some(ns),
                            None,
                            keep,
                        )
                        .await?
                    {
                        Some(found) => all.extend(found),
                        None => served = false,
                    }
                }
                Ok((all, served))
            }
        }
    }

    fn error(&self, listing: &Listing<'_>, scope: &str, e: kube::Error) -> ListError {
        let what = listing.what.to_owned();
        match e {
            kube::Error::Api(s) if s.code == 403 => ListError::Forbidden {
                what,
                resource: listing.resource.to_owned(),
                scope: scope.to_owned(),
                message: s.message.clone(),
            },
            kube::Error::Api(s) if s.code == 401 => ListError::Unauthorized {
                server: self.server.to_owned(),
                what,
                message: if s.message.is_empty() {
                    "Unauthorized".to_owned()
                } else {
                    s.message.clone()
                },
            },
            kube::Error::Api(s) => ListError::Api {
                what,
                scope: scope.to_owned(),
                code: s.code,
                reason: s.reason.clone(),
                message: s.message.clone(),
            },
            other => ListError::Unreachable {
                server: self.server.to_owned(),
                what,
                message: error_chain(&other),
            },
        }
    }

    /// The facts of each HostedCluster's external infrastructure cluster (those with
    /// `credentials`): what cannot be read becomes `Unavailable` with why, as in the server.
    async fn infra_facts(
        &self,
        client: &Client,
        hosted_clusters: &[Arc<HostedCluster>],
        max: usize,
    ) -> Vec<((String, String), InfraFacts)> {
        let mut out = Vec::new();
        for hc in hosted_clusters {
            let Some(secret) = hc.credentials().and_then(|c| c.infra_kube_config_secret.as_ref()) else {
                continue;
            };
            let (ns, name) = hc.key();
            let key = (ns.to_owned(), name.to_owned());
            if out.iter().any(|(k, _)| *k == key) {
                continue;
            }
            if out.len() >= max {
                out.push((
                    key,
                    InfraFacts::Unavailable(format!(
                        "more than {max} external infrastructure clusters; raise the limit"
                    )),
                ));
                continue;
            }
            let facts = match infra_client_from_secret(client, ns, &secret.name, &secret.key).await {
                Err(problem) => InfraFacts::Unavailable(problem),
                Ok(infra) => match self.infra_cluster_facts(&infra, ns, name).await {
                    Ok(facts) => InfraFacts::Ready(Arc::new(facts)),
                    Err(e) => InfraFacts::Unavailable(format!("infrastructure cluster: {e}")),
                },
            };
            out.push((key, facts));
        }
        out
    }

    async fn infra_cluster_facts(&self, infra: &Client, ns: &str, name: &str) -> Result<Facts, ListError> {
        let label = |l: &Listing<'_>| format!("{} of HostedCluster {ns}/{name}'s infrastructure", l.what);
        let (sc_what, sp_what, kv_what) = (
            label(&STORAGE_CLASSES),
            label(&STORAGE_PROFILES),
            label(&KUBEVIRTS),
        );
        let classes = self
            .list(
                Api::all(infra.clone()),
                &Listing {
                    what: &sc_what,
                    ..STORAGE_CLASSES
                },
                None,
                None,
                strip_storage_class,
            )
            .await?
            .unwrap_or_default();
        let profiles = self
            .list(
                Api::all(infra.clone()),
                &Listing {
                    what: &sp_what,
                    ..STORAGE_PROFILES
                },
                None,
                None,
                keep,
            )
            .await?;
        let kubevirts = self
            .list(
                Api::all(infra.clone()),
                &Listing {
                    what: &kv_what,
                    ..KUBEVIRTS
                },
                None,
                None,
                keep,
            )
            .await?;
        Ok(builder_of(&Parts {
            classes: &classes,
            classes_known: true,
            profiles: profiles.as_deref().unwrap_or_default(),
            profiles_known: profiles.is_some(),
            kubevirts: kubevirts.as_deref().unwrap_or_default(),
            hosted_clusters: &[],
        })
        .build())
    }
}
