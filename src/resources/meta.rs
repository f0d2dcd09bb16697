//! Lean `metadata` deserialization shared by every typed view.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// `kubectl apply`'s copy of the whole object (often kilobytes of escaped JSON): checked to
/// be a string like every annotation, never kept — no rule reads it.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The subset of `ObjectMeta` the rules, the admission log and the reflectors need.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct LeanMeta {
    name: Option<String>,
    generate_name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    generation: Option<i64>,
    creation_timestamp: Option<Time>,
    deletion_timestamp: Option<Time>,
    /// Checked (a map of strings), not kept: no rule reads an object's own labels.
    #[expect(dead_code, reason = "deserialized to check its type, never read")]
    labels: Option<StringMap<false>>,
    annotations: Option<StringMap<true>>,
}

/// A JSON object of strings, read without copying what is not kept: with `KEEP` its
/// entries but [`LAST_APPLIED_ANNOTATION`]'s value, without `KEEP` none. A value that is not
/// a string fails as it would for a `BTreeMap<String, String>`.
#[derive(Default)]
struct StringMap<const KEEP: bool>(BTreeMap<String, String>);

impl<'de, const KEEP: bool> Deserialize<'de> for StringMap<KEEP> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor<const KEEP: bool>;
        impl<'de, const KEEP: bool> Visitor<'de> for MapVisitor<KEEP> {
            type Value = StringMap<KEEP>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = BTreeMap::new();
                if !KEEP {
                    while map.next_entry::<CheckedStr, CheckedStr>()?.is_some() {}
                    return Ok(StringMap(out));
                }
                while let Some(key) = map.next_key::<String>()? {
                    if key == LAST_APPLIED_ANNOTATION {
                        map.next_value::<CheckedStr>()?;
                    } else {
                        out.insert(key, map.next_value::<String>()?);
                    }
                }
                Ok(StringMap(out))
            }
        }
        deserializer.deserialize_map(MapVisitor::<KEEP>)
    }
}

/// A string, checked and dropped (no allocation).
struct CheckedStr;

impl<'de> Deserialize<'de> for CheckedStr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor;
        impl Visitor<'_> for StrVisitor {
            type Value = CheckedStr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<CheckedStr, E> {
                Ok(CheckedStr)
            }
        }
        deserializer.deserialize_str(StrVisitor)
    }
}

/// `#[serde(deserialize_with = "lean")]` for a `metadata: ObjectMeta` field: reads only
/// the fields above (managedFields, ownerReferences, finalizers… are skipped unparsed).
pub fn lean<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ObjectMeta, D::Error> {
    let m = Option::<LeanMeta>::deserialize(deserializer)?.unwrap_or_default();
    Ok(ObjectMeta {
        name: m.name,
        generate_name: m.generate_name,
        namespace: m.namespace,
        uid: m.uid,
        resource_version: m.resource_version,
        generation: m.generation,
        creation_timestamp: m.creation_timestamp,
        deletion_timestamp: m.deletion_timestamp,
        labels: None,
        annotations: m.annotations.map(|a| a.0),
        ..ObjectMeta::default()
    })
}

/// Name for messages: `name`, else `generateName` + `*`, else `<unnamed>`.
pub fn display_name(meta: &ObjectMeta) -> String {
    match (&meta.name, &meta.generate_name) {
        (Some(n), _) if !n.is_empty() => n.clone(),
        (_, Some(g)) if !g.is_empty() => format!("{g}*"),
        _ => "<unnamed>".to_owned(),
    }
}

/// One annotation's value, if present.
pub fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}
