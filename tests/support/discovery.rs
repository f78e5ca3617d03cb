//! Validate JSON bodies and query strings against a (trimmed) Google API
//! discovery document from `tests/contracts/`.
//!
//! Include from an integration test with
//! `#[path = "support/discovery.rs"] mod discovery;`.
//!
//! The rules follow Google's JSON mapping of protobuf (proto3 JSON):
//! `int64`/`uint64` travel as decimal strings, `int32`/`uint32` as numbers,
//! timestamps as RFC 3339 strings and durations as `"<seconds>s"`.
//! `readOnly` is ignored: the simulator's bodies are responses, where
//! output-only fields are expected.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// A loaded discovery document (as written by `scripts/update-contracts.py`).
#[derive(Debug, Clone)]
pub struct Discovery {
    doc: Value,
}

/// One parameter of a method, as declared in the discovery document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parameter {
    pub name: String,
    /// `"query"` or `"path"`.
    pub location: String,
    /// Discovery `type`: `string`, `boolean`, `integer`, ...
    pub kind: String,
    pub format: Option<String>,
    pub repeated: bool,
    pub required: bool,
    /// Empty when the parameter has no `enum`.
    pub enum_values: Vec<String>,
}

impl Discovery {
    /// Load a discovery document; panics with a readable message on failure
    /// (this is test support). A relative path that does not exist from the
    /// current directory is retried relative to the crate root.
    pub fn load(path: impl AsRef<Path>) -> Self {
        let path = path.as_ref();
        Self::try_load(path)
            .unwrap_or_else(|e| panic!("cannot load discovery document {}: {e}", path.display()))
    }

    pub fn try_load(path: impl AsRef<Path>) -> Result<Self, String> {
        let mut path = PathBuf::from(path.as_ref());
        if path.is_relative() && !path.exists() {
            path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
        }
        let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
        let doc: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        Self::from_value(doc)
    }

    pub fn from_value(doc: Value) -> Result<Self, String> {
        if !doc.get("schemas").is_some_and(Value::is_object) {
            return Err("document has no `schemas` object".into());
        }
        Ok(Self { doc })
    }

    /// API name, e.g. `run` or `monitoring`.
    pub fn name(&self) -> &str {
        self.doc["name"].as_str().unwrap_or_default()
    }

    /// Discovery revision, e.g. `20261031`.
    pub fn revision(&self) -> &str {
        self.doc["revision"].as_str().unwrap_or_default()
    }

    /// The raw schema object, if the document has it.
    pub fn schema(&self, name: &str) -> Option<&Value> {
        self.doc["schemas"].get(name)
    }

    /// The method summary (path, httpMethod, parameters, request, response),
    /// by full method id such as `run.projects.locations.services.get`.
    pub fn method(&self, method_id: &str) -> Option<&Value> {
        self.doc.get("methods")?.get(method_id)
    }

    /// Validate `value` against schema `schema`. Returns every violation,
    /// each prefixed with a JSON path (`$.traffic[0].type: ...`).
    pub fn validate(&self, schema: &str, value: &Value) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        match self.schema(schema) {
            Some(node) => self.check(node, value, "$", &mut errors),
            None => errors.push(format!("$: unknown schema `{schema}` in {}", self.name())),
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Validate a response body of `method_id` against its `response.$ref`.
    pub fn validate_response(&self, method_id: &str, value: &Value) -> Result<(), Vec<String>> {
        let schema = self.method_ref(method_id, "response")?;
        self.validate(&schema, value)
    }

    /// Validate a request body of `method_id` against its `request.$ref`.
    pub fn validate_request(&self, method_id: &str, value: &Value) -> Result<(), Vec<String>> {
        let schema = self.method_ref(method_id, "request")?;
        self.validate(&schema, value)
    }

    fn method_ref(&self, method_id: &str, which: &str) -> Result<String, Vec<String>> {
        let method = self
            .method(method_id)
            .ok_or_else(|| vec![format!("unknown method `{method_id}` in {}", self.name())])?;
        method[which]["$ref"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| vec![format!("method `{method_id}` has no {which} body")])
    }

    /// All parameters of a method (path and query), by name.
    pub fn parameters(&self, method_id: &str) -> Option<BTreeMap<String, Parameter>> {
        let params = self.method(method_id)?.get("parameters")?.as_object()?;
        Some(
            params
                .iter()
                .map(|(name, p)| {
                    let s = |k: &str| p.get(k).and_then(Value::as_str).map(str::to_owned);
                    let b = |k: &str| p.get(k).and_then(Value::as_bool).unwrap_or(false);
                    let param = Parameter {
                        name: name.clone(),
                        location: s("location").unwrap_or_default(),
                        kind: s("type").unwrap_or_default(),
                        format: s("format"),
                        repeated: b("repeated"),
                        required: b("required"),
                        enum_values: p
                            .get("enum")
                            .and_then(Value::as_array)
                            .map(|a| {
                                a.iter()
                                    .filter_map(Value::as_str)
                                    .map(str::to_owned)
                                    .collect()
                            })
                            .unwrap_or_default(),
                    };
                    (name.clone(), param)
                })
                .collect(),
        )
    }

    /// The query parameters of a method (e.g.
    /// `monitoring.projects.timeSeries.list`), by name; `None` for an
    /// unknown method.
    pub fn query_parameters(&self, method_id: &str) -> Option<BTreeMap<String, Parameter>> {
        let mut params = self.parameters(method_id)?;
        params.retain(|_, p| p.location == "query");
        Some(params)
    }

    /// Check decoded query pairs (as a client sent them) against a method:
    /// every name must be a query parameter of the method, a non-repeated
    /// parameter may appear once, and each value must fit the parameter's
    /// type, format and enum.
    pub fn check_query<'a, I>(&self, method_id: &str, pairs: I) -> Result<(), Vec<String>>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let Some(params) = self.query_parameters(method_id) else {
            return Err(vec![format!(
                "unknown method `{method_id}` in {}",
                self.name()
            )]);
        };
        let mut errors = Vec::new();
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (name, value) in pairs {
            let Some(param) = params.get(name) else {
                errors.push(format!("?{name}: not a query parameter of {method_id}"));
                continue;
            };
            let count = seen.entry(name).or_default();
            *count += 1;
            if *count == 2 && !param.repeated {
                errors.push(format!("?{name}: given more than once but not repeated"));
            }
            if let Err(e) = check_scalar_text(param, value) {
                errors.push(format!("?{name}={value}: {e}"));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn check(&self, node: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
        let Some(node) = node.as_object() else {
            errors.push(format!("{path}: malformed schema node"));
            return;
        };
        if let Some(name) = node.get("$ref").and_then(Value::as_str) {
            match self.schema(name) {
                Some(target) => self.check(target, value, path, errors),
                None => errors.push(format!("{path}: dangling $ref `{name}`")),
            }
            return;
        }
        let kind = node.get("type").and_then(Value::as_str).unwrap_or("any");
        if kind == "any" {
            return;
        }
        if value.is_null() {
            errors.push(format!(
                "{path}: null where {kind} expected (omit the field instead)"
            ));
            return;
        }
        let format = node.get("format").and_then(Value::as_str);
        match kind {
            "string" => match value.as_str() {
                Some(s) => {
                    if let Some(f) = format
                        && let Err(e) = check_string_format(f, s)
                    {
                        errors.push(format!("{path}: {e}"));
                    }
                    check_enum(node, s, path, errors);
                }
                None => errors.push(type_error(path, kind, format, value)),
            },
            "boolean" => {
                if !value.is_boolean() {
                    errors.push(type_error(path, kind, format, value));
                }
            }
            "integer" => check_integer(format, value, path, errors),
            "number" => {
                let ok = value.is_number()
                    || matches!(value.as_str(), Some("NaN" | "Infinity" | "-Infinity"));
                if !ok {
                    errors.push(type_error(path, kind, format, value));
                }
            }
            "array" => match value.as_array() {
                Some(items) => {
                    if let Some(item_schema) = node.get("items") {
                        for (i, item) in items.iter().enumerate() {
                            self.check(item_schema, item, &format!("{path}[{i}]"), errors);
                        }
                    }
                }
                None => errors.push(type_error(path, kind, format, value)),
            },
            "object" => match value.as_object() {
                Some(obj) => self.check_object(node, obj, path, errors),
                None => errors.push(type_error(path, kind, format, value)),
            },
            other => errors.push(format!("{path}: schema uses unsupported type `{other}`")),
        }
    }

    fn check_object(
        &self,
        node: &Map<String, Value>,
        obj: &Map<String, Value>,
        path: &str,
        errors: &mut Vec<String>,
    ) {
        let properties = node.get("properties").and_then(Value::as_object);
        let additional = node.get("additionalProperties");
        for (key, child) in obj {
            let child_path = join_path(path, key);
            if let Some(prop) = properties.and_then(|p| p.get(key)) {
                self.check(prop, child, &child_path, errors);
            } else if let Some(extra) = additional {
                self.check(extra, child, &child_path, errors);
            } else {
                errors.push(format!("{child_path}: unknown property `{key}`"));
            }
        }
    }
}

fn join_path(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !key.starts_with(|c: char| c.is_ascii_digit());
    if plain {
        format!("{path}.{key}")
    } else {
        format!("{path}[{key:?}]")
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_error(path: &str, kind: &str, format: Option<&str>, value: &Value) -> String {
    let want = match format {
        Some(f) => format!("{kind} (format {f})"),
        None => kind.to_owned(),
    };
    format!("{path}: expected {want}, got JSON {}", json_kind(value))
}

fn check_enum(node: &Map<String, Value>, s: &str, path: &str, errors: &mut Vec<String>) {
    if let Some(allowed) = node.get("enum").and_then(Value::as_array)
        && !allowed.iter().any(|v| v.as_str() == Some(s))
    {
        let list: Vec<&str> = allowed.iter().filter_map(Value::as_str).collect();
        errors.push(format!("{path}: `{s}` is not one of {list:?}"));
    }
}

fn check_integer(format: Option<&str>, value: &Value, path: &str, errors: &mut Vec<String>) {
    let Some(n) = value.as_number() else {
        errors.push(type_error(path, "integer", format, value));
        return;
    };
    let Some(i) = n
        .as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
    else {
        errors.push(format!("{path}: expected an integer, got {n}"));
        return;
    };
    let (lo, hi) = match format {
        Some("uint32") => (0, i128::from(u32::MAX)),
        Some("int32") | None => (i128::from(i32::MIN), i128::from(i32::MAX)),
        Some(_) => (i128::from(i64::MIN), i128::from(u64::MAX)),
    };
    if i < lo || i > hi {
        let f = format.unwrap_or("int32");
        errors.push(format!("{path}: {i} is out of range for {f}"));
    }
}

/// Check a string against a discovery `format`. Unknown formats pass.
fn check_string_format(format: &str, s: &str) -> Result<(), String> {
    let ok = match format {
        "int64" => s.parse::<i64>().is_ok() && is_plain_integer(s, true),
        "uint64" => s.parse::<u64>().is_ok() && is_plain_integer(s, false),
        "google-datetime" | "date-time" => is_rfc3339(s),
        "google-duration" => is_duration(s),
        "google-fieldmask" => is_fieldmask(s),
        "byte" => is_base64(s),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("`{s}` is not a valid {format} string"))
    }
}

/// Check one textual query value against its parameter declaration.
fn check_scalar_text(param: &Parameter, value: &str) -> Result<(), String> {
    match param.kind.as_str() {
        "boolean" => {
            if value != "true" && value != "false" {
                return Err("expected `true` or `false`".into());
            }
        }
        "integer" => {
            let Ok(i) = value.parse::<i64>() else {
                return Err("expected an integer".into());
            };
            let range = match param.format.as_deref() {
                Some("uint32") => 0..=i64::from(u32::MAX),
                _ => i64::from(i32::MIN)..=i64::from(i32::MAX),
            };
            if !range.contains(&i) {
                return Err("integer out of range".into());
            }
        }
        "number" => {
            if value.parse::<f64>().is_err() {
                return Err("expected a number".into());
            }
        }
        _ => {
            if let Some(f) = &param.format {
                check_string_format(f, value)?;
            }
        }
    }
    if !param.enum_values.is_empty() && !param.enum_values.iter().any(|v| v == value) {
        return Err(format!("not one of {:?}", param.enum_values));
    }
    Ok(())
}

fn is_plain_integer(s: &str, signed: bool) -> bool {
    let digits = match s.strip_prefix('-') {
        Some(rest) if signed => rest,
        _ => s,
    };
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

fn digits(s: &[u8], n: usize) -> Option<u32> {
    if s.len() < n || !s[..n].iter().all(u8::is_ascii_digit) {
        return None;
    }
    s[..n]
        .iter()
        .try_fold(0u32, |acc, b| Some(acc * 10 + u32::from(b - b'0')))
}

/// RFC 3339 `date-time`: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`.
fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 20 {
        return false;
    }
    let (Some(year), Some(month), Some(day)) =
        (digits(b, 4), digits(&b[5..], 2), digits(&b[8..], 2))
    else {
        return false;
    };
    let (Some(hour), Some(minute), Some(second)) = (
        digits(&b[11..], 2),
        digits(&b[14..], 2),
        digits(&b[17..], 2),
    ) else {
        return false;
    };
    if b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return false;
    }
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    if day == 0 || day > days_in_month || hour > 23 || minute > 59 || second > 59 {
        return false;
    }
    let mut rest = &b[19..];
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 || n > 9 {
            return false;
        }
        rest = &frac[n..];
    }
    match rest {
        b"Z" => true,
        [sign, ..] if (*sign == b'+' || *sign == b'-') && rest.len() == 6 => {
            rest[3] == b':'
                && digits(&rest[1..], 2).is_some_and(|h| h <= 23)
                && digits(&rest[4..], 2).is_some_and(|m| m <= 59)
        }
        _ => false,
    }
}

/// Protobuf JSON duration: `-?<seconds>[.<1-9 digits>]s`, e.g. `"3.5s"`.
fn is_duration(s: &str) -> bool {
    let Some(body) = s.strip_suffix('s') else {
        return false;
    };
    let body = body.strip_prefix('-').unwrap_or(body);
    let (secs, frac) = match body.split_once('.') {
        Some((secs, frac)) => (secs, Some(frac)),
        None => (body, None),
    };
    let secs_ok = !secs.is_empty() && secs.bytes().all(|b| b.is_ascii_digit());
    let frac_ok =
        frac.is_none_or(|f| !f.is_empty() && f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()));
    secs_ok && frac_ok && secs.parse::<u64>().is_ok_and(|n| n <= 315_576_000_000)
}

/// Comma-separated field paths of lowerCamel/snake identifiers.
fn is_fieldmask(s: &str) -> bool {
    s.is_empty()
        || s.split(',').all(|path| {
            !path.is_empty()
                && path.split('.').all(|seg| {
                    !seg.is_empty()
                        && seg
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '`' || c == '*')
                })
        })
}

/// Standard or URL-safe base64, with or without padding.
fn is_base64(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    s.len() - body.len() <= 2
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_'))
}
