//! Lean `metadata` deserialization shared by every typed view.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde::de::{Error as _, MapAccess, Unexpected, Visitor};
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
                        map.next_value::<ScannedStr>()?;
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

/// A string, scanned and dropped without being unescaped: for kilobytes of escaped JSON
/// such as [`LAST_APPLIED_ANNOTATION`]'s value. serde_json hands it over as raw JSON (its
/// extent found by the scan that skips unknown fields, which validates escapes but copies
/// nothing, instead of unescaping it into a buffer only to check it), which is then checked
/// to be a string; a `serde_json::Value` (objects from files) renders it as raw JSON first.
struct ScannedStr;

impl<'de> Deserialize<'de> for ScannedStr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<serde_json::value::RawValue>::deserialize(deserializer)?;
        let text = raw.get();
        if text.starts_with('"') {
            return Ok(ScannedStr);
        }
        let unexpected = match text.as_bytes().first() {
            Some(b'{') => Unexpected::Map,
            Some(b'[') => Unexpected::Seq,
            Some(b't') => Unexpected::Bool(true),
            Some(b'f') => Unexpected::Bool(false),
            Some(b'n') => Unexpected::Unit,
            _ => Unexpected::Other("number"),
        };
        Err(D::Error::invalid_type(unexpected, &"a string"))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::NodePool;

    fn nodepool(last_applied: &str) -> String {
        format!(
            r#"{{"metadata":{{"name":"np","annotations":{{"a":"b","{LAST_APPLIED_ANNOTATION}":{last_applied}}}}}}}"#
        )
    }

    #[test]
    fn last_applied_is_checked_but_not_kept() {
        let escaped = r#""{\"apiVersion\":\"hypershift.openshift.io/v1beta1\",\"kind\":\"NodePool\",\"x\":\"\\u00e9\\n\"}""#;
        let text = nodepool(escaped);
        let from_str: NodePool = serde_json::from_str(&text).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let from_value: NodePool = serde_json::from_value(value).unwrap();
        for np in [from_str, from_value] {
            let annotations = np.metadata.annotations.unwrap();
            assert_eq!(annotations.get("a").map(String::as_str), Some("b"));
            assert!(!annotations.contains_key(LAST_APPLIED_ANNOTATION));
        }
    }

    #[test]
    fn last_applied_must_be_a_string() {
        for (value, unexpected) in [
            ("{\"kind\":\"NodePool\"}", "map"),
            ("[1]", "sequence"),
            ("true", "boolean `true`"),
            ("null", "null"),
            ("42", "number"),
        ] {
            let text = nodepool(value);
            let err = serde_json::from_str::<NodePool>(&text).unwrap_err().to_string();
            assert!(
                err.contains(&format!("invalid type: {unexpected}, expected a string")),
                "{value}: {err}"
            );
            let value: serde_json::Value = serde_json::from_str(&text).unwrap();
            let err = serde_json::from_value::<NodePool>(value).unwrap_err().to_string();
            assert!(
                err.contains(&format!("invalid type: {unexpected}, expected a string")),
                "{err}"
            );
        }
        // Behind serde_path_to_error (the admission path's second pass) the annotation still
        // reads, and an error elsewhere is blamed on its own field.
        let text = nodepool(r#""{\"a\":1}""#).replace("}}}", r#"}},"spec":{"replicas":"x"}}"#);
        let mut de = serde_json::Deserializer::from_str(&text);
        let err = serde_path_to_error::deserialize::<_, NodePool>(&mut de).unwrap_err();
        assert_eq!(err.path().to_string(), "spec.replicas", "{}", err.inner());
        // A broken escape inside the string is still a syntax error.
        let err = serde_json::from_str::<NodePool>(&nodepool(r#""\q""#)).unwrap_err();
        assert!(err.to_string().contains("invalid escape"), "{err}");
    }
}
