//! Decoding patched JSON back into an already-rendered Go struct, the way Go's
//! `encoding/json` does it (docs/rules.md §P3): keys absent from the JSON keep the rendered
//! value; arrays are decoded element by element into the existing elements and then cut to
//! the new length; `null` clears pointers, slices and maps but leaves strings, numbers and
//! non-pointer structs alone. HyperShift resets only the VMI template annotations first.

use serde_json::Value;

/// Go's decoder refuses documents nested deeper than this ("exceeded max depth").
const GO_MAX_DEPTH: usize = 10_000;

/// Non-pointer struct fields of the template (Go zero value is a struct, so `null` is a no-op).
const VALUE_STRUCTS: &[&str] = &[
    "metadata",
    "spec",
    "domain",
    "devices",
    "resources",
    "podAffinityTerm",
];

/// Decodes `patched` into `rendered` (the pre-patch document) in place.
pub fn decode_into(rendered: &mut Value, patched: &Value) -> Result<(), String> {
    if depth(patched) > GO_MAX_DEPTH {
        return Err("exceeded max depth".into());
    }
    if let Some(meta) = rendered
        .pointer_mut("/spec/template/metadata")
        .and_then(Value::as_object_mut)
    {
        meta.remove("annotations");
    }
    merge(rendered, patched, "")
}

/// Nesting depth, without recursion.
fn depth(v: &Value) -> usize {
    let mut max = 0;
    let mut stack = vec![(v, 1usize)];
    while let Some((v, d)) = stack.pop() {
        max = max.max(d);
        match v {
            Value::Array(a) => stack.extend(a.iter().map(|c| (c, d + 1))),
            Value::Object(m) => stack.extend(m.values().map(|c| (c, d + 1))),
            _ => {}
        }
    }
    max
}

/// Recursion follows the rendered document only, whose depth is fixed and small; patched
/// subtrees without a rendered counterpart are taken whole.
fn merge(target: &mut Value, src: &Value, key: &str) -> Result<(), String> {
    match (target, src) {
        (Value::Object(t), Value::Object(s)) => {
            for (k, v) in s {
                match (t.get_mut(k), v) {
                    (Some(existing), Value::Null) => {
                        if !(VALUE_STRUCTS.contains(&k.as_str()) || is_scalar(existing)) {
                            t.remove(k);
                        }
                    }
                    (Some(existing), v) => merge(existing, v, k)?,
                    (None, Value::Null) => {}
                    (None, v) => {
                        t.insert(k.clone(), without_nulls(v));
                    }
                }
            }
            Ok(())
        }
        (Value::Array(t), Value::Array(s)) => {
            for (i, v) in s.iter().enumerate() {
                if i < t.len() {
                    if !v.is_null() {
                        merge(&mut t[i], v, key)?;
                    }
                } else {
                    t.push(without_nulls(v));
                }
            }
            t.truncate(s.len());
            Ok(())
        }
        (t, s) if is_scalar(t) == is_scalar(s) || t.is_null() => {
            *t = without_nulls(s);
            Ok(())
        }
        (t, s) => Err(format!(
            "json: cannot unmarshal {} into Go struct field {key} of type {}",
            kind(s),
            kind(t)
        )),
    }
}

fn is_scalar(v: &Value) -> bool {
    !(v.is_object() || v.is_array())
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A fresh value as Go decodes it into a zero value: `null` members are zero (omitted).
/// Iterative, so deep patched subtrees cannot exhaust the stack.
fn without_nulls(v: &Value) -> Value {
    let mut out = v.clone();
    let mut stack: Vec<&mut Value> = vec![&mut out];
    while let Some(cur) = stack.pop() {
        match cur {
            Value::Object(m) => {
                m.retain(|_, v| !v.is_null());
                stack.extend(m.values_mut());
            }
            Value::Array(a) => stack.extend(a.iter_mut()),
            _ => {}
        }
    }
    out
}
