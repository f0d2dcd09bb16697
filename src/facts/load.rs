//! Reading Kubernetes objects from YAML/JSON text: multi-document YAML, JSON streams,
//! `kind: List`, AdmissionReviews, files and directories. Every document either becomes a
//! typed object or an error that names where it came from; nothing is dropped silently.

use std::fmt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::storage::v1::StorageClass;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::resources::{HostedCluster, KubeVirt, NodePool, StorageProfile};

/// Where a document came from: `origin` (a path, `<stdin>`, `request body`), the 1-based
/// document number, and the 1-based item number inside a `List`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub origin: String,
    pub document: usize,
    pub item: Option<usize>,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} document {}", self.origin, self.document)?;
        if let Some(i) = self.item {
            write!(f, " item {i}")?;
        }
        Ok(())
    }
}

/// A typed object the project knows, or the kind of one it does not evaluate.
#[derive(Clone, Debug)]
pub enum Object {
    NodePool(Box<NodePool>),
    HostedCluster(Box<HostedCluster>),
    StorageClass(Box<StorageClass>),
    StorageProfile(Box<StorageProfile>),
    KubeVirt(Box<KubeVirt>),
    Namespace(Box<Namespace>),
    /// A Kubernetes object of another kind (or another version of ours).
    Other {
        api_version: String,
        kind: String,
        name: String,
    },
}

impl Object {
    pub fn kind(&self) -> &str {
        match self {
            Self::NodePool(_) => "NodePool",
            Self::HostedCluster(_) => "HostedCluster",
            Self::StorageClass(_) => "StorageClass",
            Self::StorageProfile(_) => "StorageProfile",
            Self::KubeVirt(_) => "KubeVirt",
            Self::Namespace(_) => "Namespace",
            Self::Other { kind, .. } => kind,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Loaded {
    pub source: Source,
    pub object: Object,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}: not valid UTF-8 (byte {offset}); save the file as UTF-8")]
    Utf8 { origin: String, offset: usize },
    #[error("{origin}: invalid {format}: {message}")]
    Syntax {
        origin: String,
        format: &'static str,
        message: String,
    },
    #[error("{at}: {message}")]
    Document { at: Source, message: String },
    #[error(transparent)]
    Field(Box<FieldError>),
    #[error(
        "{origin}: holds {count} objects; at most {max} are evaluated per request (split the input, or run `live-migration-guard evaluate` on the files)"
    )]
    TooMany {
        origin: String,
        count: usize,
        max: usize,
    },
}

/// Objects (documents and `List` items) one request body may hold.
pub const MAX_REQUEST_OBJECTS: usize = 1_000;

/// How much a parse may expand to. serde-saphyr's budget guards against alias bombs and
/// document storms; local files get room for large cluster dumps, request bodies a budget
/// sized for a few MiB of input (strings: 8 MiB in all, so that the request workers
/// together stay far below the pod's memory limit) and at most `max_objects` objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limits {
    LocalFiles,
    Request { max_objects: usize },
}

impl Limits {
    fn yaml_options(self) -> serde_saphyr::Options {
        let mut budget = serde_saphyr::Budget::default();
        match self {
            Limits::LocalFiles => {
                budget.max_documents = 1_000_000;
                budget.max_nodes = 50_000_000;
                budget.max_events = 100_000_000;
            }
            Limits::Request { max_objects } => {
                budget.max_documents = max_objects.max(1);
                budget.max_total_scalar_bytes = 8 * 1024 * 1024;
                budget.max_recorded_anchor_bytes = 8 * 1024 * 1024;
            }
        }
        let mut options = serde_saphyr::Options::default();
        options.budget = Some(budget);
        options
    }
}

/// A field of a typed object has the wrong type or value.
#[derive(Debug, thiserror::Error)]
#[error("{at}: {kind} {name}: field `{field}`: {message}")]
pub struct FieldError {
    pub at: Source,
    pub kind: String,
    pub name: String,
    pub field: String,
    pub message: String,
}

/// YAML/JSON documents in `bytes` (a local file), each classified into an [`Object`].
pub fn parse_bytes(bytes: &[u8], origin: &str) -> Result<Vec<Loaded>, LoadError> {
    parse_bytes_limited(bytes, origin, Limits::LocalFiles)
}

/// [`parse_bytes`] with explicit limits.
pub fn parse_bytes_limited(bytes: &[u8], origin: &str, limits: Limits) -> Result<Vec<Loaded>, LoadError> {
    parse_into(bytes, origin, limits, None)
}

/// [`parse_bytes`], also returning each object's document as read (`raw[i]` is `loaded[i]`'s:
/// the `List` item, the AdmissionReview's `request.object`), for callers that pass objects on
/// whole (the CLI's admission simulation).
pub fn parse_bytes_with_raw(bytes: &[u8], origin: &str) -> Result<(Vec<Loaded>, Vec<Value>), LoadError> {
    let mut raw = Vec::new();
    let loaded = parse_into(bytes, origin, Limits::LocalFiles, Some(&mut raw))?;
    Ok((loaded, raw))
}

/// Parses `bytes`; on success appends each object's raw document to `raw` (if given).
fn parse_into(
    bytes: &[u8],
    origin: &str,
    limits: Limits,
    raw: Option<&mut Vec<Value>>,
) -> Result<Vec<Loaded>, LoadError> {
    let docs = split_documents_limited(bytes, origin, limits)?;
    if let Limits::Request { max_objects } = limits {
        let count: usize = docs.iter().map(object_count).sum();
        if count > max_objects {
            return Err(LoadError::TooMany {
                origin: origin.to_owned(),
                count,
                max: max_objects,
            });
        }
    }
    let mut out = Vec::with_capacity(docs.len());
    let mut kept = raw.is_some().then(Vec::new);
    for (i, doc) in docs.into_iter().enumerate() {
        let source = Source {
            origin: origin.to_owned(),
            document: i + 1,
            item: None,
        };
        classify(doc, source, &mut out, kept.as_mut())?;
    }
    if let (Some(raw), Some(kept)) = (raw, kept) {
        raw.extend(kept);
    }
    Ok(out)
}

/// Reads a file, or every `.yaml`/`.yml`/`.json` file under a directory (recursively,
/// in name order). Hidden entries (`.git`, `..data`) are skipped.
pub fn load_path(path: &Path) -> Result<Vec<Loaded>, LoadError> {
    load_path_into(path, None)
}

fn load_path_into(path: &Path, mut raw: Option<&mut Vec<Value>>) -> Result<Vec<Loaded>, LoadError> {
    let io = |e| LoadError::Io {
        path: path.display().to_string(),
        source: e,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_dir() {
        let bytes = std::fs::read(path).map_err(io)?;
        return parse_into(&bytes, &path.display().to_string(), Limits::LocalFiles, raw);
    }
    let mut files = Vec::new();
    collect_files(path, &mut files)?;
    let mut out = Vec::new();
    for f in files {
        let bytes = std::fs::read(&f).map_err(|e| LoadError::Io {
            path: f.display().to_string(),
            source: e,
        })?;
        out.extend(parse_into(
            &bytes,
            &f.display().to_string(),
            Limits::LocalFiles,
            raw.as_deref_mut(),
        )?);
    }
    Ok(out)
}

/// What [`load_path_lenient`] found under one path.
#[derive(Debug, Default)]
pub struct PathLoad {
    pub loaded: Vec<Loaded>,
    /// With [`load_path_lenient_with_raw`]: each loaded object's document as read
    /// (`raw[i]` is `loaded[i]`'s); empty otherwise.
    pub raw: Vec<Value>,
    /// Files in a directory that hold no Kubernetes object at all (a Helm `values.yaml`, a
    /// config file): skipped, with why.
    pub not_objects: Vec<(String, String)>,
    /// Every file that could not be read or holds a broken object, one error per file.
    pub errors: Vec<LoadError>,
}

/// Like [`load_path`], but a directory is read whole: a file in it none of whose documents
/// is a Kubernetes object (a mapping with `apiVersion` and `kind`) is listed in
/// `not_objects` instead of failing the load, and every broken file is reported, not only
/// the first. A path named directly is held to [`load_path`]'s rules.
pub fn load_path_lenient(path: &Path) -> PathLoad {
    lenient(path, false)
}

/// [`load_path_lenient`], keeping each object's document as read in [`PathLoad::raw`].
pub fn load_path_lenient_with_raw(path: &Path) -> PathLoad {
    lenient(path, true)
}

fn lenient(path: &Path, keep_raw: bool) -> PathLoad {
    let mut out = PathLoad::default();
    let mut raw = Vec::new();
    let is_dir = match std::fs::metadata(path) {
        Ok(meta) => meta.is_dir(),
        Err(source) => {
            out.errors.push(LoadError::Io {
                path: path.display().to_string(),
                source,
            });
            return out;
        }
    };
    if !is_dir {
        match load_path_into(path, keep_raw.then_some(&mut raw)) {
            Ok(v) => out.loaded = v,
            Err(e) => out.errors.push(e),
        }
        out.raw = raw;
        return out;
    }
    let mut files = Vec::new();
    if let Err(e) = collect_files(path, &mut files) {
        out.errors.push(e);
    }
    for f in files {
        let origin = f.display().to_string();
        let bytes = match std::fs::read(&f) {
            Ok(b) => b,
            Err(source) => {
                out.errors.push(LoadError::Io { path: origin, source });
                continue;
            }
        };
        match parse_into(&bytes, &origin, Limits::LocalFiles, keep_raw.then_some(&mut raw)) {
            Ok(v) => out.loaded.extend(v),
            Err(e @ LoadError::Document { .. }) => match split_documents(&bytes, &origin) {
                Ok(docs) if !docs.iter().any(looks_like_object) => out.not_objects.push((
                    origin,
                    "not a Kubernetes object (no document has apiVersion and kind)".to_owned(),
                )),
                _ => out.errors.push(e),
            },
            Err(e) => out.errors.push(e),
        }
    }
    out.raw = raw;
    out
}

/// A mapping with string `apiVersion` and `kind`.
fn looks_like_object(doc: &Value) -> bool {
    let text = |k: &str| doc.get(k).and_then(Value::as_str).is_some_and(|s| !s.is_empty());
    doc.is_object() && text("apiVersion") && text("kind")
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), LoadError> {
    let io = |e| LoadError::Io {
        path: dir.display().to_string(),
        source: e,
    };
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io)?
        .collect::<Result<_, _>>()
        .map_err(io)?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        if e.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if p.is_dir() {
            collect_files(&p, out)?;
        } else if matches!(
            p.extension().and_then(|x| x.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            out.push(p);
        }
    }
    Ok(())
}

/// Splits text into documents: a JSON value stream when it starts with `{` or `[`,
/// multi-document YAML otherwise (with serde-saphyr's budget against alias bombs).
pub fn split_documents(bytes: &[u8], origin: &str) -> Result<Vec<Value>, LoadError> {
    split_documents_limited(bytes, origin, Limits::LocalFiles)
}

fn split_documents_limited(bytes: &[u8], origin: &str, limits: Limits) -> Result<Vec<Value>, LoadError> {
    let text = std::str::from_utf8(bytes).map_err(|e| LoadError::Utf8 {
        origin: origin.to_owned(),
        offset: e.valid_up_to(),
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let yaml = |text: &str| serde_saphyr::from_multiple_with_options::<Value>(text, limits.yaml_options());
    // JSON first when it looks like JSON (faster, better errors); JSON documents separated
    // by `---` are YAML, so fall back to YAML before reporting the JSON error.
    let docs: Vec<Value> = if matches!(text.trim_start().chars().next(), Some('{' | '[')) {
        match serde_json::Deserializer::from_str(text)
            .into_iter::<Value>()
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(docs) => docs,
            Err(json_err) => yaml(text).map_err(|_| LoadError::Syntax {
                origin: origin.to_owned(),
                format: "JSON",
                message: json_err.to_string(),
            })?,
        }
    } else {
        yaml(text).map_err(|e| LoadError::Syntax {
            origin: origin.to_owned(),
            format: "YAML",
            message: e.to_string(),
        })?
    };
    // An empty document (a stray `---`, a comment-only file) carries nothing.
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// How many objects a document stands for: a `List`'s items, else one.
fn object_count(doc: &Value) -> usize {
    match doc.get("items") {
        Some(Value::Array(items))
            if doc
                .get("kind")
                .and_then(Value::as_str)
                .is_some_and(|k| k.ends_with("List")) =>
        {
            items.len()
        }
        _ => 1,
    }
}

fn classify(
    doc: Value,
    source: Source,
    out: &mut Vec<Loaded>,
    raw: Option<&mut Vec<Value>>,
) -> Result<(), LoadError> {
    let Value::Object(map) = &doc else {
        return Err(LoadError::Document {
            at: source,
            message: format!(
                "expected a Kubernetes object (a mapping with apiVersion and kind), found {}",
                json_type(&doc)
            ),
        });
    };
    let text = |k: &str| map.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let (api_version, kind) = (text("apiVersion"), text("kind"));
    if kind.is_empty() || api_version.is_empty() {
        let missing = if kind.is_empty() { "kind" } else { "apiVersion" };
        return Err(LoadError::Document {
            at: source,
            message: format!("not a Kubernetes object: `{missing}` is missing or not a string"),
        });
    }
    if kind.ends_with("List") && map.contains_key("items") {
        return classify_list(doc, source, out, raw);
    }
    if kind == "AdmissionReview" {
        let object = doc
            .get("request")
            .and_then(|r| r.get("object"))
            .filter(|o| !o.is_null());
        let Some(object) = object.cloned() else {
            return Err(LoadError::Document {
                at: source,
                message: "AdmissionReview has no request.object to evaluate".to_owned(),
            });
        };
        return classify(object, source, out, raw);
    }
    if let Some(raw) = raw {
        raw.push(doc.clone());
    }
    let object = match (api_version.as_str(), kind.as_str()) {
        ("hypershift.openshift.io/v1beta1", "NodePool") => Object::NodePool(typed(doc, &source, &kind)?),
        ("hypershift.openshift.io/v1beta1", "HostedCluster") => {
            Object::HostedCluster(typed(doc, &source, &kind)?)
        }
        ("storage.k8s.io/v1", "StorageClass") => Object::StorageClass(typed(doc, &source, &kind)?),
        ("cdi.kubevirt.io/v1beta1", "StorageProfile") => Object::StorageProfile(typed(doc, &source, &kind)?),
        ("kubevirt.io/v1", "KubeVirt") => Object::KubeVirt(typed(doc, &source, &kind)?),
        ("v1", "Namespace") => Object::Namespace(typed(doc, &source, &kind)?),
        _ => Object::Other {
            api_version,
            kind,
            name: object_name(&doc),
        },
    };
    out.push(Loaded { source, object });
    Ok(())
}

fn classify_list(
    doc: Value,
    source: Source,
    out: &mut Vec<Loaded>,
    mut raw: Option<&mut Vec<Value>>,
) -> Result<(), LoadError> {
    let Some(Value::Array(items)) = doc.get("items") else {
        return Err(LoadError::Document {
            at: source,
            message: "`items` of a List must be a sequence".to_owned(),
        });
    };
    for (i, item) in items.iter().enumerate() {
        if source.item.is_some() {
            return Err(LoadError::Document {
                at: source,
                message: "a List inside a List is not supported".to_owned(),
            });
        }
        let src = Source {
            item: Some(i + 1),
            ..source.clone()
        };
        classify(item.clone(), src, out, raw.as_deref_mut())?;
    }
    Ok(())
}

fn typed<T: DeserializeOwned>(doc: Value, source: &Source, kind: &str) -> Result<Box<T>, LoadError> {
    let name = object_name(&doc);
    serde_path_to_error::deserialize(doc).map(Box::new).map_err(|e| {
        LoadError::Field(Box::new(FieldError {
            at: source.clone(),
            kind: kind.to_owned(),
            name,
            field: e.path().to_string(),
            message: e.into_inner().to_string(),
        }))
    })
}

fn object_name(doc: &Value) -> String {
    let meta = doc.get("metadata");
    let get = |k: &str| meta.and_then(|m| m.get(k)).and_then(Value::as_str);
    match (get("namespace"), get("name").or(get("generateName"))) {
        (Some(ns), Some(n)) => format!("{ns}/{n}"),
        (None, Some(n)) => n.to_owned(),
        _ => "<unnamed>".to_owned(),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a sequence",
        Value::Object(_) => "a mapping",
    }
}
