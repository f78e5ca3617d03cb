//! Validates JSON bodies against an OpenAPI 3.0 description (`tests/contracts/github.json`): type,
//! properties, required, nullable, enum, items, $ref, allOf/oneOf/anyOf, additionalProperties.
//!
//! `oneOf` is checked like `anyOf` (at least one branch matches): GitHub's `oneOf`s are not
//! always mutually exclusive (e.g. a content file also matches the symlink schema's shape).

use std::path::Path;

use serde_json::Value;

pub struct OpenApi {
    doc: Value,
}

impl OpenApi {
    pub fn load(path: &str) -> Self {
        let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
        let text = std::fs::read_to_string(&full)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", full.display()));
        Self {
            doc: serde_json::from_str(&text).expect("the contract is JSON"),
        }
    }

    /// The response schema of `method path` for `status`, if the description declares one
    /// (`None` when that status has no JSON body, `Err` when the status is not declared).
    pub fn response_schema(
        &self,
        method: &str,
        path: &str,
        status: u16,
    ) -> Result<Option<&Value>, String> {
        let operation = self.doc["paths"][path]
            .get(method.to_lowercase())
            .ok_or_else(|| format!("{method} {path} is not in the contract"))?;
        let mut response = operation["responses"]
            .get(status.to_string())
            .or_else(|| operation["responses"].get("default"))
            .ok_or_else(|| format!("{method} {path} does not declare status {status}"))?;
        if let Some(reference) = response["$ref"].as_str() {
            response = self.resolve(reference);
        }
        Ok(response["content"]["application/json"].get("schema"))
    }

    /// Validates a request body against `method path`'s JSON request schema, and refuses
    /// top-level fields the schema does not name (GitHub ignores them: a typo would go unseen).
    pub fn validate_request(
        &self,
        method: &str,
        path: &str,
        body: &Value,
    ) -> Result<(), Vec<String>> {
        let schema = self.doc["paths"][path]
            .get(method.to_lowercase())
            .map(|operation| &operation["requestBody"]["content"]["application/json"]["schema"])
            .filter(|schema| !schema.is_null())
            .ok_or_else(|| vec![format!("{method} {path} declares no JSON request body")])?;
        let mut problems = Vec::new();
        self.check(schema, body, "$", &mut problems);
        if let (Some(object), Some(properties)) =
            (body.as_object(), schema["properties"].as_object())
        {
            for name in object.keys().filter(|name| !properties.contains_key(*name)) {
                problems.push(format!("$.{name}: not a field of the request"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// Checks a request's query against `method path`'s declared query parameters: every name
    /// declared, integers where an integer is declared, enum values from the enum.
    pub fn check_query(
        &self,
        method: &str,
        path: &str,
        query: &[(String, String)],
    ) -> Result<(), Vec<String>> {
        let operation = &self.doc["paths"][path][method.to_lowercase()];
        let declared: Vec<&Value> = operation["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|parameter| match parameter["$ref"].as_str() {
                Some(reference) => self.resolve(reference),
                None => parameter,
            })
            .filter(|parameter| parameter["in"] == "query")
            .collect();
        let mut problems = Vec::new();
        for (name, value) in query {
            let Some(parameter) = declared.iter().find(|p| p["name"] == name.as_str()) else {
                problems.push(format!("?{name}: not a query parameter of {method} {path}"));
                continue;
            };
            let schema = &parameter["schema"];
            if schema["type"] == "integer" && value.parse::<i64>().is_err() {
                problems.push(format!("?{name}={value}: not an integer"));
            }
            if let Some(allowed) = schema["enum"].as_array()
                && !allowed.contains(&Value::String(value.clone()))
            {
                problems.push(format!("?{name}={value}: not one of {allowed:?}"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    fn resolve(&self, reference: &str) -> &Value {
        let mut node = &self.doc;
        for part in reference.trim_start_matches("#/").split('/') {
            node = &node[part];
        }
        assert!(!node.is_null(), "unresolved $ref {reference}");
        node
    }

    /// Validates `value` against `schema`; problems as `$.path: what`.
    pub fn validate(&self, schema: &Value, value: &Value) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        self.check(schema, value, "$", &mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// Validates against a named component schema.
    pub fn validate_component(&self, name: &str, value: &Value) -> Result<(), Vec<String>> {
        let schema = self
            .resolve(&format!("#/components/schemas/{name}"))
            .clone();
        self.validate(&schema, value)
    }

    fn matches(&self, schema: &Value, value: &Value, at: &str) -> bool {
        let mut problems = Vec::new();
        self.check(schema, value, at, &mut problems);
        problems.is_empty()
    }

    fn check(&self, schema: &Value, value: &Value, at: &str, problems: &mut Vec<String>) {
        if let Some(reference) = schema["$ref"].as_str() {
            let target = self.resolve(reference);
            return self.check(target, value, at, problems);
        }
        if value.is_null() {
            let typed = schema.get("type").is_some() || schema.get("properties").is_some();
            if schema["nullable"] != Value::Bool(true) && typed {
                problems.push(format!("{at}: null but not nullable"));
            }
            if typed || schema["nullable"] == Value::Bool(true) {
                return;
            }
        }
        if let Some(all) = schema["allOf"].as_array() {
            for branch in all {
                self.check(branch, value, at, problems);
            }
        }
        for key in ["oneOf", "anyOf"] {
            if let Some(branches) = schema[key].as_array()
                && !branches.iter().any(|b| self.matches(b, value, at))
            {
                problems.push(format!("{at}: matches none of the {key} branches"));
            }
        }
        if let Some(kind) = schema["type"].as_str() {
            let ok = match kind {
                "object" => value.is_object(),
                "array" => value.is_array(),
                "string" => value.is_string(),
                "integer" => value.is_i64() || value.is_u64(),
                "number" => value.is_number(),
                "boolean" => value.is_boolean(),
                _ => true,
            };
            if !ok {
                problems.push(format!("{at}: expected {kind}, got {value}"));
                return;
            }
        }
        if let Some(allowed) = schema["enum"].as_array()
            && !value.is_null()
            && !allowed.contains(value)
        {
            problems.push(format!("{at}: {value} is not one of {allowed:?}"));
        }
        if let Some(object) = value.as_object() {
            for name in schema["required"].as_array().into_iter().flatten() {
                let name = name.as_str().unwrap_or_default();
                if !object.contains_key(name) {
                    problems.push(format!("{at}: missing required {name}"));
                }
            }
            let properties = schema["properties"].as_object();
            for (name, item) in object {
                let path = format!("{at}.{name}");
                match properties.and_then(|p| p.get(name)) {
                    Some(property) => self.check(property, item, &path, problems),
                    None => match &schema["additionalProperties"] {
                        Value::Bool(false) => problems
                            .push(format!("{path}: not allowed (additionalProperties: false)")),
                        extra @ Value::Object(_) => self.check(extra, item, &path, problems),
                        _ => {}
                    },
                }
            }
        }
        if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
            for (index, item) in array.iter().enumerate() {
                self.check(items, item, &format!("{at}[{index}]"), problems);
            }
        }
    }
}
