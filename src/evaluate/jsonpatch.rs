//! RFC 6902 JSON patch with the semantics of evanphx/json-patch v5.9 as HyperShift calls
//! it (`DecodePatch`, `ApplyWithOptions` with `EnsurePathExistsOnAdd`, default
//! `SupportNegativeIndices`), docs/rules.md §P2. Own implementation; no recursion, so a
//! deep path cannot exhaust the stack.

use serde_json::{Map, Value};

/// One decoded operation.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Add { path: String, value: Value },
    Remove { path: String },
    Replace { path: String, value: Value },
    Move { from: String, path: String },
    Copy { from: String, path: String },
    Test { path: String, value: Value },
}

impl Op {
    pub fn path(&self) -> &str {
        match self {
            Op::Add { path, .. }
            | Op::Remove { path }
            | Op::Replace { path, .. }
            | Op::Move { path, .. }
            | Op::Copy { path, .. }
            | Op::Test { path, .. } => path,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum JsonPatchError {
    #[error("is not valid JSON: {0}")]
    Syntax(String),
    #[error("is not a JSON array of operation objects")]
    NotAnArray,
    #[error("has an invalid operation {op}: {why}")]
    InvalidOperation { op: String, why: &'static str },
    #[error("operation {index} ({path}): {why}")]
    Apply { index: usize, path: String, why: String },
}

/// `DecodePatch`: a JSON array of operation objects; `null` is an empty patch.
pub fn decode(text: &str) -> Result<Vec<Op>, JsonPatchError> {
    let v: Value = serde_json::from_str(text).map_err(|e| JsonPatchError::Syntax(e.to_string()))?;
    let items = match v {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) => items,
        _ => return Err(JsonPatchError::NotAnArray),
    };
    items.into_iter().map(decode_op).collect()
}

fn decode_op(item: Value) -> Result<Op, JsonPatchError> {
    let Value::Object(mut m) = item else {
        return Err(JsonPatchError::NotAnArray);
    };
    let op_text = Value::Object(m.clone()).to_string();
    let invalid = |why| JsonPatchError::InvalidOperation {
        op: op_text.clone(),
        why,
    };
    let string = |m: &mut Map<String, Value>, k: &str| match m.remove(k) {
        Some(Value::String(s)) => Some(s),
        _ => None,
    };
    let kind = string(&mut m, "op").unwrap_or_default();
    let from = string(&mut m, "from");
    let value = m.remove("value");
    let path = string(&mut m, "path");
    let needs_value = |v: Option<Value>| v.ok_or_else(|| invalid("failed to decode 'value'"));
    let op = match kind.as_str() {
        "add" => Op::Add {
            path: String::new(),
            value: needs_value(value)?,
        },
        "replace" => Op::Replace {
            path: String::new(),
            value: needs_value(value)?,
        },
        "test" => Op::Test {
            path: String::new(),
            value: value.unwrap_or(Value::Null),
        },
        "remove" => Op::Remove { path: String::new() },
        "move" => Op::Move {
            from: from.ok_or_else(|| invalid("failed to decode 'from'"))?,
            path: String::new(),
        },
        "copy" => Op::Copy {
            from: from.ok_or_else(|| invalid("failed to decode 'from'"))?,
            path: String::new(),
        },
        _ => return Err(invalid("unsupported operation")),
    };
    let path = path.ok_or_else(|| invalid("failed to decode 'path'"))?;
    Ok(match op {
        Op::Add { value, .. } => Op::Add { path, value },
        Op::Replace { value, .. } => Op::Replace { path, value },
        Op::Test { value, .. } => Op::Test { path, value },
        Op::Remove { .. } => Op::Remove { path },
        Op::Move { from, .. } => Op::Move { from, path },
        Op::Copy { from, .. } => Op::Copy { from, path },
    })
}

/// The reference tokens evanphx walks: the path split on `/` with its first element
/// dropped (whatever it is), `~1` → `/` and `~0` → `~`. `None` for the whole document.
fn tokens(path: &str) -> Option<Vec<String>> {
    let mut split = path.split('/');
    split.next();
    let rest: Vec<String> = split.map(|t| t.replace("~1", "/").replace("~0", "~")).collect();
    if rest.is_empty() { None } else { Some(rest) }
}

/// Go `strconv.Atoi`: optional sign, decimal digits.
fn atoi(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// An index into an array of `len`, negative counting from the end (`-len..len`).
fn index(tok: &str, len: usize) -> Result<usize, String> {
    let i = atoi(tok).ok_or_else(|| format!("value was not a proper array index: '{tok}'"))?;
    let len = len as i64;
    let i = if i < 0 { i + len } else { i };
    if i < 0 || i >= len {
        return Err(format!("Unable to access invalid index: {tok}"));
    }
    Ok(i as usize)
}

/// One step down: `""` is the container itself (evanphx `get("")`).
fn child<'a>(cur: &'a mut Value, tok: &str) -> Result<&'a mut Value, String> {
    if tok.is_empty() && (cur.is_object() || cur.is_array()) {
        return Ok(cur);
    }
    match cur {
        Value::Object(m) => m
            .get_mut(tok)
            .ok_or_else(|| format!("doc is missing path: {tok}")),
        Value::Array(a) => {
            let i = index(tok, a.len())?;
            Ok(&mut a[i])
        }
        _ => Err(format!("doc is missing path: {tok}")),
    }
}

/// evanphx `findObject`: the container holding the last token (must be an object or array).
fn parent<'a>(doc: &'a mut Value, toks: &[String]) -> Result<&'a mut Value, String> {
    let mut cur = doc;
    for t in &toks[..toks.len() - 1] {
        cur = child(cur, t)?;
    }
    if cur.is_object() || cur.is_array() {
        Ok(cur)
    } else {
        Err("doc is missing path".into())
    }
}

fn get(doc: &mut Value, path: &str) -> Result<Value, String> {
    let Some(toks) = tokens(path) else {
        return Ok(doc.clone());
    };
    let last = &toks[toks.len() - 1];
    child(parent(doc, &toks)?, last).map(|v| v.clone())
}

fn add_at(con: &mut Value, key: &str, value: Value) -> Result<(), String> {
    match con {
        Value::Object(m) => {
            m.insert(key.to_owned(), value);
            Ok(())
        }
        Value::Array(a) if key == "-" => {
            a.push(value);
            Ok(())
        }
        Value::Array(a) => {
            // add may address one past the end; negative counts from len+1
            let i = index(key, a.len() + 1)?;
            a.insert(i, value);
            Ok(())
        }
        _ => Err("doc is missing path".into()),
    }
}

fn remove_at(con: &mut Value, key: &str) -> Result<Value, String> {
    match con {
        Value::Object(m) => m
            .remove(key)
            .ok_or_else(|| format!("unable to remove nonexistent key: {key}")),
        Value::Array(a) => {
            let i = index(key, a.len())?;
            Ok(a.remove(i))
        }
        _ => Err("doc is missing path".into()),
    }
}

/// `EnsurePathExistsOnAdd` (evanphx `ensurePathExists`): creates missing parents — an
/// array when the next token is an index or `-` (padded with nulls up to that index), an
/// object otherwise; a missing array index is first padded with nulls.
fn ensure_path(doc: &mut Value, toks: &[String]) -> Result<(), String> {
    let mut cur = doc;
    for (i, tok) in toks[..toks.len() - 1].iter().enumerate() {
        let exists = match &*cur {
            Value::Object(m) => tok.is_empty() || m.contains_key(tok),
            Value::Array(a) => tok.is_empty() || index(tok, a.len()).is_ok(),
            _ => return Err(format!("doc is missing path: {tok}")),
        };
        if !exists {
            if let (Value::Array(a), Some(n)) = (&mut *cur, atoi(tok)) {
                while (a.len() as i64) < n {
                    a.push(Value::Null);
                }
            }
            let next = &toks[i + 1];
            let fresh = match atoi(next) {
                Some(n) if n < -1 => {
                    return Err(format!(
                        "Unable to ensure path for negative index other than -1: {n}"
                    ));
                }
                Some(n) => Value::Array(vec![Value::Null; n.max(0) as usize]),
                None if next == "-" => Value::Array(Vec::new()),
                None => Value::Object(Map::new()),
            };
            add_at(cur, tok, fresh)?;
        }
        cur = child(cur, tok)?;
        if !(cur.is_object() || cur.is_array()) {
            return Err(format!("doc is missing path: {tok}"));
        }
    }
    Ok(())
}

/// Applies one operation in place. On error the document may be partly changed; HyperShift
/// then discards it (no machine template).
pub fn apply_op(doc: &mut Value, op: &Op) -> Result<(), String> {
    match op {
        Op::Add { path, value } => {
            let Some(toks) = tokens(path) else {
                return replace_root(doc, value);
            };
            ensure_path(doc, &toks)?;
            add_at(parent(doc, &toks)?, &toks[toks.len() - 1], value.clone())
        }
        Op::Remove { path } => {
            let toks = tokens(path).ok_or("cannot remove the whole document")?;
            remove_at(parent(doc, &toks)?, &toks[toks.len() - 1]).map(drop)
        }
        Op::Replace { path, value } => {
            let Some(toks) = tokens(path) else {
                return replace_root(doc, value);
            };
            let target = child(parent(doc, &toks)?, &toks[toks.len() - 1])
                .map_err(|_| format!("replace operation does not apply: doc is missing key: {path}"))?;
            *target = value.clone();
            Ok(())
        }
        Op::Move { from, path } => {
            let from_toks = tokens(from).ok_or("unable to move entire document to another path")?;
            let value = remove_at(parent(doc, &from_toks)?, &from_toks[from_toks.len() - 1])?;
            let toks = tokens(path).ok_or("move to the whole document")?;
            add_at(parent(doc, &toks)?, &toks[toks.len() - 1], value)
        }
        Op::Copy { from, path } => {
            let value = get(doc, from)?;
            let toks = tokens(path).ok_or("copy to the whole document")?;
            add_at(parent(doc, &toks)?, &toks[toks.len() - 1], value)
        }
        Op::Test { path, value } => {
            let found = get(doc, path).unwrap_or(Value::Null);
            if json_equal(&found, value) {
                Ok(())
            } else {
                Err(format!("testing value {path} failed"))
            }
        }
    }
}

fn replace_root(doc: &mut Value, value: &Value) -> Result<(), String> {
    if !(value.is_object() || value.is_array()) {
        return Err("replace operation value must be object or array".into());
    }
    *doc = value.clone();
    Ok(())
}

/// Structural equality with numbers compared by value (Go decodes them to float64).
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}
