//! The Cloud Run Admin API v2 surface (services get/patch, revisions get/list, operations get/wait):
//! request parsing and validation, JSON in the real wire format, and the dispatcher HTTP and in-process callers share.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::error::{ApiError, status_error};
use crate::faults::{Answer, HANG, MALFORMED_JSON, RESET_MESSAGE};
use crate::model::{PatchMode, SimModel};
use crate::state::{
    Operation, ServiceKey, ServicePatch, TYPE_LATEST, TYPE_REVISION, Target, TemplateSpec,
};
use crate::wire::{
    operation_json, parse_google_duration, revision_json, service_json, typed_service,
};

/// Who is calling: an HTTP client (its `Authorization` header) or in-process code, which needs none.
#[derive(Debug, Clone)]
pub enum Caller {
    Http(Option<String>),
    InProcess,
}

/// One API call, independent of transport.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub caller: Caller,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct ApiResponse {
    pub status: u16,
    pub retry_after: Option<u64>,
    /// The answer; for [`Delivery::Raw`] the raw text as a JSON string, which an in-process
    /// caller fails to read just as an HTTP client fails to parse the text.
    pub body: Value,
    pub delivery: Delivery,
}

/// How the HTTP layer sends an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// `body` as JSON.
    Json,
    /// This text as the body, whatever it is.
    Raw(String),
    /// No response: the connection closes.
    Reset,
}

impl ApiResponse {
    fn ok(body: Value) -> Self {
        Self {
            status: 200,
            retry_after: None,
            body,
            delivery: Delivery::Json,
        }
    }

    fn error(e: ApiError) -> Self {
        Self {
            status: e.code,
            retry_after: e.retry_after,
            body: e.to_json(),
            delivery: Delivery::Json,
        }
    }

    fn raw(text: String) -> Self {
        Self {
            status: 200,
            retry_after: None,
            body: Value::String(text.clone()),
            delivery: Delivery::Raw(text),
        }
    }

    /// What a call faulted with `answer` returns, given the real answer when it was applied.
    async fn faulted(answer: Answer, real: Option<ApiResponse>) -> Self {
        match answer {
            Answer::Status {
                status,
                retry_after,
            } => Self::error(status_error(status, retry_after)),
            Answer::Hang => {
                tokio::time::sleep(HANG).await;
                Self::error(status_error(504, None))
            }
            Answer::Reset => Self {
                delivery: Delivery::Reset,
                ..Self::error(ApiError::new(503, RESET_MESSAGE))
            },
            Answer::MalformedJson => Self::raw(MALFORMED_JSON.to_string()),
            Answer::TruncatedJson => {
                let text = real.map(|r| r.body.to_string()).unwrap_or_default();
                // Cut on a char boundary so the cut, not the encoding, is what is wrong.
                let mut cut = text.len() / 2;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                Self::raw(text[..cut].to_string())
            }
        }
    }
}

/// Query parameters every Google API accepts.
const SYSTEM_PARAMS: &[&str] = &[
    "alt",
    "$alt",
    "prettyPrint",
    "key",
    "quotaUser",
    "$.xgafv",
    "fields",
];

/// Handles one control-plane or monitoring call: auth, faults, then the method itself.
pub async fn call(model: &SimModel, req: ApiRequest) -> ApiResponse {
    let fault = {
        let mut s = model.state();
        s.log_call(&req.method, &req.path);
        if let Caller::Http(header) = &req.caller {
            let token = header
                .as_deref()
                .and_then(|h| {
                    h.strip_prefix("Bearer ")
                        .or_else(|| h.strip_prefix("bearer "))
                })
                .map(str::trim);
            if let Some(token) = token {
                s.seen_tokens.push(token.to_string());
            }
            let now = s.clock.now();
            let expired = token.is_some_and(|t| s.tokens.is_expired(t, now));
            // Under a bearer requirement, tokens the STS issued count as well as the listed ones.
            if expired
                || s.bearer.as_ref().is_some_and(|allowed| {
                    !token.is_some_and(|t| allowed.iter().any(|a| a == t) || s.tokens.is_issued(t))
                })
            {
                return ApiResponse::error(ApiError::new(
                    401,
                    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
                ));
            }
        }
        s.take_call_fault(&req.method, &req.path)
    };
    match fault {
        None => answer(model, &req).await,
        Some((faulted, applied)) => {
            let real = if applied {
                Some(answer(model, &req).await)
            } else {
                None
            };
            ApiResponse::faulted(faulted, real).await
        }
    }
}

async fn answer(model: &SimModel, req: &ApiRequest) -> ApiResponse {
    match dispatch(model, req).await {
        Ok(body) => ApiResponse::ok(body),
        Err(e) => ApiResponse::error(e),
    }
}

fn check_params(query: &[(String, String)], allowed: &[&str]) -> Result<(), ApiError> {
    for (k, v) in query {
        if k == "alt" && v != "json" {
            return Err(ApiError::invalid(format!("Unsupported alt value '{v}'.")));
        }
        if !allowed.contains(&k.as_str()) && !SYSTEM_PARAMS.contains(&k.as_str()) {
            return Err(ApiError::invalid(format!(
                "Invalid JSON payload received. Unknown name \"{k}\": Cannot bind query parameter. Field '{k}' could not be found in request message."
            )));
        }
    }
    Ok(())
}

fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn bool_param(query: &[(String, String)], name: &str) -> Result<bool, ApiError> {
    match param(query, name) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(v) => Err(ApiError::invalid(format!(
            "Invalid value at '{name}' (TYPE_BOOL), \"{v}\""
        ))),
    }
}

fn method_not_found(req: &ApiRequest) -> ApiError {
    ApiError::new(
        404,
        format!("Method {} {} not found.", req.method, req.path),
    )
}

async fn dispatch(model: &SimModel, req: &ApiRequest) -> Result<Value, ApiError> {
    if req.path.starts_with(crate::identity::SERVICE_ACCOUNTS_PATH) {
        let mut state = model.state();
        // IAM Credentials always wants a caller, even where the simulated APIs do not.
        if let Caller::Http(header) = &req.caller {
            let token = header
                .as_deref()
                .and_then(|h| h.strip_prefix("Bearer "))
                .map(str::trim);
            let listed = state
                .bearer
                .as_ref()
                .is_some_and(|allowed| token.is_some_and(|t| allowed.iter().any(|a| a == t)));
            if !listed && !token.is_some_and(|t| state.tokens.is_issued(t)) {
                return Err(ApiError::new(
                    401,
                    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
                ));
            }
        }
        if let Some(answer) = crate::identity::call(&mut state, &req.method, &req.path, &req.body) {
            return answer;
        }
    }
    let segments: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        [
            "storage",
            "v1",
            "b",
            sb,
            "o",
            so,
            "rewriteTo",
            "b",
            db,
            "o",
            dobj,
        ] if req.method == "POST" => {
            let name = |text: &str| {
                percent_encoding::percent_decode_str(text)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            let mut state = model.state();
            let now = state.clock.now();
            state.storage.rewrite(
                (name(sb), name(so)),
                (name(db), name(dobj)),
                &req.query,
                now,
            )
        }
        ["v2", "projects", p, "locations", r, "jobs", run]
            if req.method == "POST" && run.ends_with(":run") =>
        {
            // Google's front end decodes path segments; so does this one.
            let decoded = |text: &str| {
                percent_encoding::percent_decode_str(text)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            let job = decoded(run.trim_end_matches(":run"));
            let mut state = model.state();
            let now = state.clock.now();
            state
                .jobs
                .run(&decoded(p), &decoded(r), &job, &req.body, now)
        }
        [
            "v2",
            "projects",
            p,
            "locations",
            r,
            "jobs",
            job,
            "executions",
            execution,
        ] if req.method == "GET" => {
            check_params(&req.query, &[])?;
            let state = model.state();
            let name = format!("projects/{p}/locations/{r}/jobs/{job}/executions/{execution}");
            state.jobs.execution(&name, state.clock.now())
        }
        ["v2", "projects", p, "locations", r, "operations", id]
            if id.starts_with(crate::jobs::OPERATION_PREFIX) =>
        {
            let clock = model.clock();
            let (id, wait) = match id.strip_suffix(":wait") {
                Some(id) if req.method == "POST" => (id, Some(wait_timeout(&req.body)?)),
                None if req.method == "GET" => (*id, None),
                _ => return Err(method_not_found(req)),
            };
            if let Some(timeout) = wait {
                let due = model.state().jobs.due(id);
                if let Some(due) = due {
                    let until = due.min(clock.now() + timeout);
                    if let Ok(pause) = until.duration_since(clock.now()) {
                        tokio::time::sleep(pause).await;
                    }
                }
            }
            let state = model.state();
            state.jobs.operation(p, r, id, clock.now())
        }
        ["v2", "entries:list"] if req.method == "POST" => {
            check_params(&req.query, &[])?;
            crate::logging::list_entries(model, &req.body)
        }
        ["v3", "projects", project, "timeSeries"] if req.method == "GET" => {
            crate::monitoring::list_time_series(model, project, &req.query)
        }
        ["v2", "projects", p, "locations", r, "services", s] => {
            let key = ServiceKey::new(p, r, s);
            match req.method.as_str() {
                "GET" => {
                    check_params(&req.query, &[])?;
                    let state = model.state();
                    Ok(service_json(state.service(&key)?))
                }
                "PATCH" => patch_service(model, &key, req),
                _ => Err(method_not_found(req)),
            }
        }
        [
            "v2",
            "projects",
            p,
            "locations",
            r,
            "services",
            s,
            "revisions",
        ] if req.method == "GET" => {
            check_params(&req.query, &["pageSize", "pageToken", "showDeleted"])?;
            let key = ServiceKey::new(p, r, s);
            let state = model.state();
            let svc = state.service(&key)?;
            let revisions: Vec<Value> = svc
                .revisions
                .iter()
                .rev()
                .map(|rev| revision_json(svc, rev))
                .collect();
            Ok(json!({ "revisions": revisions }))
        }
        [
            "v2",
            "projects",
            p,
            "locations",
            r,
            "services",
            s,
            "revisions",
            rev,
        ] if req.method == "GET" => {
            check_params(&req.query, &[])?;
            let key = ServiceKey::new(p, r, s);
            let state = model.state();
            let svc = state.service(&key)?;
            let revision = svc.revision(rev).ok_or_else(|| {
                ApiError::new(
                    404,
                    format!(
                        "Resource '{rev}' of kind 'REVISION' in region '{r}' in project '{p}' does not exist."
                    ),
                )
            })?;
            Ok(revision_json(svc, revision))
        }
        ["v2", "projects", p, "locations", r, "operations", id] => {
            match (req.method.as_str(), id.strip_suffix(":wait")) {
                ("GET", None) => {
                    check_params(&req.query, &[])?;
                    let state = model.state();
                    Ok(operation_json(find_op(&state.ops, p, r, id)?))
                }
                ("POST", Some(id)) => {
                    check_params(&req.query, &[])?;
                    let timeout = wait_timeout(&req.body)?;
                    let id = id.to_string();
                    {
                        let state = model.state();
                        find_op(&state.ops, p, r, &id)?;
                    }
                    Ok(operation_json(&wait_operation(model, &id, timeout).await))
                }
                _ => Err(method_not_found(req)),
            }
        }
        _ => Err(method_not_found(req)),
    }
}

fn find_op<'a>(
    ops: &'a BTreeMap<String, Operation>,
    project: &str,
    region: &str,
    id: &str,
) -> Result<&'a Operation, ApiError> {
    ops.get(id)
        .filter(|op| op.key.project == project && op.key.region == region)
        .ok_or_else(|| {
            ApiError::new(
                404,
                format!(
                    "Operation 'projects/{project}/locations/{region}/operations/{id}' not found."
                ),
            )
        })
}

fn wait_timeout(body: &[u8]) -> Result<Duration, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Duration::from_secs(60));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("Invalid JSON payload received. {e}")))?;
    let obj = value
        .as_object()
        .ok_or_else(|| ApiError::invalid("Invalid JSON payload received. Expected an object."))?;
    for k in obj.keys() {
        if k != "timeout" {
            return Err(unknown_name(k));
        }
    }
    match obj.get("timeout") {
        None => Ok(Duration::from_secs(60)),
        Some(Value::String(s)) => parse_google_duration(s)
            .ok_or_else(|| ApiError::invalid(format!("Invalid value at 'timeout' (type.googleapis.com/google.protobuf.Duration), Field 'timeout', Illegal duration format; duration must end with 's': \"{s}\""))),
        Some(other) => Err(ApiError::invalid(format!(
            "Invalid value at 'timeout' (type.googleapis.com/google.protobuf.Duration), {other}"
        ))),
    }
}

fn unknown_name(name: &str) -> ApiError {
    ApiError::invalid(format!(
        "Invalid JSON payload received. Unknown name \"{name}\": Cannot find field."
    ))
}

/// Waits (tokio time) until the operation is done or `timeout` passes; returns it either way.
pub(crate) async fn wait_operation(model: &SimModel, id: &str, timeout: Duration) -> Operation {
    let clock = model.clock();
    let deadline = clock.now() + timeout;
    loop {
        let (op, hold) = {
            let s = model.state();
            (s.ops[id].clone(), s.hold)
        };
        let now = clock.now();
        if op.done || now >= deadline {
            return op;
        }
        let until = if hold {
            now + Duration::from_millis(50)
        } else {
            op.due
        };
        let wake = until.min(deadline);
        let pause = wake.duration_since(now).unwrap_or_default();
        tokio::time::sleep(pause.max(Duration::from_millis(1))).await;
    }
}

/// Top-level fields of `GoogleCloudRunV2Service` (run.v2 discovery document).
const SERVICE_FIELDS: &[&str] = &[
    "annotations",
    "binaryAuthorization",
    "buildConfig",
    "client",
    "clientVersion",
    "conditions",
    "createTime",
    "creator",
    "customAudiences",
    "defaultUriDisabled",
    "deleteTime",
    "description",
    "etag",
    "expireTime",
    "functionalType",
    "generation",
    "iapEnabled",
    "ingress",
    "invokerIamDisabled",
    "labels",
    "lastModifier",
    "latestCreatedRevision",
    "latestReadyRevision",
    "launchStage",
    "multiRegionSettings",
    "name",
    "observedGeneration",
    "reconciling",
    "satisfiesPzs",
    "scaling",
    "sshEnabled",
    "template",
    "terminalCondition",
    "threatDetectionEnabled",
    "traffic",
    "trafficStatuses",
    "uid",
    "updateTime",
    "uri",
    "urls",
];

/// Fields of `GoogleCloudRunV2RevisionTemplate`.
const TEMPLATE_FIELDS: &[&str] = &[
    "ambientNetworking",
    "annotations",
    "client",
    "clientVersion",
    "containers",
    "encryptionKey",
    "encryptionKeyRevocationAction",
    "encryptionKeyShutdownDuration",
    "executionEnvironment",
    "gpuZonalRedundancyDisabled",
    "healthCheckDisabled",
    "labels",
    "maxInstanceRequestConcurrency",
    "nodeSelector",
    "revision",
    "sandboxes",
    "scaling",
    "serviceAccount",
    "serviceMesh",
    "sessionAffinity",
    "timeout",
    "volumes",
    "vpcAccess",
    "workloadIdentityConfig",
];

/// Fields of `GoogleCloudRunV2Container`.
const CONTAINER_FIELDS: &[&str] = &[
    "args",
    "baseImageUri",
    "buildConfig",
    "buildInfo",
    "command",
    "dependsOn",
    "env",
    "image",
    "livenessProbe",
    "name",
    "ports",
    "readinessProbe",
    "resources",
    "sandboxLauncher",
    "sourceCode",
    "startupProbe",
    "volumeMounts",
    "workingDir",
];

/// The fields a PATCH may change here; others of the schema are refused as unsupported.
const UPDATABLE: &[&str] = &[
    "template",
    "traffic",
    "annotations",
    "labels",
    "description",
];

fn patch_service(model: &SimModel, key: &ServiceKey, req: &ApiRequest) -> Result<Value, ApiError> {
    check_params(
        &req.query,
        &[
            "updateMask",
            "validateOnly",
            "allowMissing",
            "forceNewRevision",
        ],
    )?;
    let validate_only = bool_param(&req.query, "validateOnly")?;
    let allow_missing = bool_param(&req.query, "allowMissing")?;
    let force_new_revision = bool_param(&req.query, "forceNewRevision")?;
    let body: Value = serde_json::from_slice(&req.body)
        .map_err(|e| ApiError::invalid(format!("Invalid JSON payload received. {e}")))?;
    let obj = body
        .as_object()
        .ok_or_else(|| ApiError::invalid("Invalid JSON payload received. Expected an object."))?;
    for k in obj.keys() {
        if !SERVICE_FIELDS.contains(&k.as_str()) {
            return Err(unknown_name(k));
        }
    }
    if let Some(name) = obj.get("name")
        && name.as_str() != Some(key.name().as_str())
    {
        return Err(ApiError::invalid(format!(
            "name: the service name in the body ({name}) does not match the request path ({}).",
            key.name()
        )));
    }
    let mask: Vec<String> = match param(&req.query, "updateMask") {
        Some(m) => {
            let mut fields = Vec::new();
            for path in m.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let top = path.split('.').next().unwrap_or(path);
                if !SERVICE_FIELDS.contains(&top) {
                    return Err(ApiError::invalid(format!(
                        "updateMask: invalid field path '{path}'."
                    )));
                }
                if !UPDATABLE.contains(&top) {
                    return Err(ApiError::invalid(format!(
                        "updateMask: field '{path}' cannot be updated here (the simulator supports {}).",
                        UPDATABLE.join(", ")
                    )));
                }
                fields.push(top.to_string());
            }
            fields
        }
        None => match model.patch_mode() {
            // AIP-134: the fields present in the body. Output-only and identifying fields in
            // the body (name, etag, uri, ...) are ignored, as the real API ignores them.
            PatchMode::FieldMask => UPDATABLE
                .iter()
                .filter(|f| obj.contains_key(**f))
                .map(|s| s.to_string())
                .collect(),
            PatchMode::FullReplace => UPDATABLE.iter().map(|s| s.to_string()).collect(),
        },
    };
    let exists = model.state().services.contains_key(key);
    if !exists && allow_missing {
        return Err(ApiError::invalid(
            "allowMissing: creating a service through PATCH is not supported by the simulator.",
        ));
    }
    let has = |f: &str| mask.iter().any(|m| m == f);
    let mut patch = ServicePatch {
        etag: match obj.get("etag") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => return Err(type_error("etag", "TYPE_STRING", other)),
        },
        validate_only,
        force_new_revision,
        ..Default::default()
    };
    if has("template") {
        let t = obj
            .get("template")
            .ok_or_else(|| ApiError::invalid("template: Required field is not set."))?;
        patch.template = Some(parse_template(t)?);
    }
    if has("traffic") {
        patch.traffic = Some(match obj.get("traffic") {
            None => Vec::new(),
            Some(t) => parse_traffic(t)?,
        });
    }
    if has("annotations") {
        patch.annotations = Some(parse_string_map("annotations", obj.get("annotations"))?);
    }
    if has("labels") {
        patch.labels = Some(parse_string_map("labels", obj.get("labels"))?);
    }
    if has("description") {
        patch.description = Some(match obj.get("description") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => return Err(type_error("description", "TYPE_STRING", other)),
        });
    }
    let mut state = model.state();
    match state.patch(key, patch)? {
        Some(id) => Ok(operation_json(&state.ops[&id])),
        None => {
            // validateOnly: a finished operation carrying the service as it is.
            let svc = state.service(key)?;
            Ok(json!({
                "name": format!("projects/{}/locations/{}/operations/validate-only", key.project, key.region),
                "done": true,
                "response": typed_service(svc),
            }))
        }
    }
}

fn type_error(field: &str, expected: &str, got: &Value) -> ApiError {
    ApiError::invalid(format!("Invalid value at '{field}' ({expected}), {got}"))
}

fn parse_template(t: &Value) -> Result<TemplateSpec, ApiError> {
    let obj = t
        .as_object()
        .ok_or_else(|| type_error("template", "google.cloud.run.v2.RevisionTemplate", t))?;
    for k in obj.keys() {
        if !TEMPLATE_FIELDS.contains(&k.as_str()) {
            return Err(unknown_name(&format!("template.{k}")));
        }
    }
    let revision = match obj.get("revision") {
        None => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => return Err(type_error("template.revision", "TYPE_STRING", other)),
    };
    let containers = match obj.get("containers") {
        Some(Value::Array(c)) if !c.is_empty() => c,
        _ => {
            return Err(ApiError::invalid(
                "template.containers: at least one container is required.",
            ));
        }
    };
    for (i, c) in containers.iter().enumerate() {
        let c = c.as_object().ok_or_else(|| {
            type_error(
                &format!("template.containers[{i}]"),
                "google.cloud.run.v2.Container",
                c,
            )
        })?;
        for k in c.keys() {
            if !CONTAINER_FIELDS.contains(&k.as_str()) {
                return Err(unknown_name(&format!("template.containers[{i}].{k}")));
            }
        }
    }
    let image = match containers[0].get("image") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => {
            return Err(ApiError::invalid(
                "template.containers[0].image: Required field is not set.",
            ));
        }
    };
    let session_affinity = match obj.get("sessionAffinity") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(on)) => *on,
        Some(other) => return Err(type_error("template.sessionAffinity", "TYPE_BOOL", other)),
    };
    Ok(TemplateSpec {
        revision,
        image,
        session_affinity,
    })
}

fn parse_traffic(t: &Value) -> Result<Vec<Target>, ApiError> {
    let items = t
        .as_array()
        .ok_or_else(|| type_error("traffic", "google.cloud.run.v2.TrafficTarget", t))?;
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let field = format!("traffic[{i}]");
        let obj = item
            .as_object()
            .ok_or_else(|| type_error(&field, "google.cloud.run.v2.TrafficTarget", item))?;
        for k in obj.keys() {
            if !["type", "revision", "percent", "tag"].contains(&k.as_str()) {
                return Err(unknown_name(&format!("{field}.{k}")));
            }
        }
        let latest = match obj.get("type").and_then(Value::as_str) {
            Some(TYPE_LATEST) => true,
            Some(TYPE_REVISION) => false,
            other => {
                return Err(ApiError::invalid(format!(
                    "{field}.type: must be {TYPE_LATEST} or {TYPE_REVISION}, got {}.",
                    other.unwrap_or("nothing")
                )));
            }
        };
        let percent = match obj.get("percent") {
            None => 0,
            Some(v) => match v.as_i64() {
                Some(p) if (0..=100).contains(&p) => p as u8,
                _ => {
                    return Err(ApiError::invalid(format!(
                        "{field}.percent: must be an integer between 0 and 100, got {v}."
                    )));
                }
            },
        };
        let string = |name: &str| -> Result<Option<String>, ApiError> {
            match obj.get(name) {
                None => Ok(None),
                Some(Value::String(s)) if s.is_empty() => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(type_error(&format!("{field}.{name}"), "TYPE_STRING", other)),
            }
        };
        out.push(Target {
            latest,
            revision: string("revision")?,
            percent,
            tag: string("tag")?,
        });
    }
    Ok(out)
}

fn parse_string_map(field: &str, v: Option<&Value>) -> Result<BTreeMap<String, String>, ApiError> {
    let mut out = BTreeMap::new();
    let Some(v) = v else {
        return Ok(out);
    };
    let obj = v
        .as_object()
        .ok_or_else(|| type_error(field, "map<string, string>", v))?;
    for (k, v) in obj {
        match v {
            Value::String(s) => {
                out.insert(k.clone(), s.clone());
            }
            other => return Err(type_error(&format!("{field}[{k}]"), "TYPE_STRING", other)),
        }
    }
    Ok(out)
}
