//! The Cloud Run Admin v2 JSON the simulator answers with: services, revisions, operations,
//! conditions, timestamps and durations, rendered from the records in `state`.

use std::time::{Duration, SystemTime};

use serde_json::{Map, Value, json};

use crate::state::{Operation, RevState, Revision, Service, TYPE_LATEST, TYPE_REVISION, Target};

pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_nanos(t).to_string()
}

/// A protobuf JSON duration: decimal seconds with an `s` suffix (`"10s"`, `"1.5s"`).
pub(crate) fn parse_google_duration(s: &str) -> Option<Duration> {
    let secs = s.strip_suffix('s')?;
    if secs.is_empty() || !secs.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    let value: f64 = secs.parse().ok()?;
    Some(Duration::from_secs_f64(value))
}

/// A service as it appears inside an operation (`metadata`, `response`): with its `@type`.
pub(crate) fn typed_service(svc: &Service) -> Value {
    let mut service = service_json(svc);
    if let Value::Object(map) = &mut service {
        map.insert(
            "@type".to_string(),
            Value::String("type.googleapis.com/google.cloud.run.v2.Service".to_string()),
        );
    }
    service
}

fn target_json(t: &Target, uri: Option<&String>) -> Value {
    let mut m = Map::new();
    m.insert(
        "type".into(),
        Value::String(if t.latest { TYPE_LATEST } else { TYPE_REVISION }.into()),
    );
    if let Some(r) = &t.revision {
        m.insert("revision".into(), Value::String(r.clone()));
    }
    if t.percent > 0 {
        m.insert("percent".into(), json!(t.percent));
    }
    if let Some(tag) = &t.tag {
        m.insert("tag".into(), Value::String(tag.clone()));
        if let Some(uri) = uri {
            m.insert("uri".into(), Value::String(uri.clone()));
        }
    }
    Value::Object(m)
}

fn condition(kind: &str, state: &str, message: Option<&str>, at: SystemTime) -> Value {
    let mut m = Map::new();
    m.insert("type".into(), Value::String(kind.into()));
    m.insert("state".into(), Value::String(state.into()));
    if let Some(msg) = message {
        m.insert("message".into(), Value::String(msg.into()));
    }
    m.insert("lastTransitionTime".into(), Value::String(rfc3339(at)));
    Value::Object(m)
}

/// A `GoogleCloudRunV2Service`, with default-valued fields left out like the real API does.
pub(crate) fn service_json(svc: &Service) -> Value {
    let key = &svc.key;
    let (state, message) = if svc.reconciling() {
        ("CONDITION_RECONCILING", None)
    } else if let Some(f) = &svc.failure {
        ("CONDITION_FAILED", Some(f.as_str()))
    } else {
        ("CONDITION_SUCCEEDED", None)
    };
    let mut template = Map::new();
    if let Some(r) = &svc.template_revision {
        template.insert("revision".into(), Value::String(r.clone()));
    }
    template.insert("containers".into(), json!([{ "image": svc.image }]));
    // Like every bool the API leaves out at its default.
    if svc.session_affinity {
        template.insert("sessionAffinity".into(), Value::Bool(true));
    }
    let mut m = Map::new();
    m.insert("name".into(), Value::String(key.name()));
    m.insert("uid".into(), Value::String(svc.uid.clone()));
    m.insert(
        "generation".into(),
        Value::String(svc.generation.to_string()),
    );
    if !svc.labels.is_empty() {
        m.insert("labels".into(), json!(svc.labels));
    }
    if !svc.annotations.is_empty() {
        m.insert("annotations".into(), json!(svc.annotations));
    }
    if let Some(d) = &svc.description {
        m.insert("description".into(), Value::String(d.clone()));
    }
    m.insert("createTime".into(), Value::String(rfc3339(svc.created)));
    m.insert("updateTime".into(), Value::String(rfc3339(svc.updated)));
    m.insert(
        "ingress".into(),
        Value::String("INGRESS_TRAFFIC_ALL".into()),
    );
    m.insert("launchStage".into(), Value::String("GA".into()));
    m.insert("template".into(), Value::Object(template));
    m.insert(
        "traffic".into(),
        Value::Array(svc.traffic.iter().map(|t| target_json(t, None)).collect()),
    );
    m.insert(
        "observedGeneration".into(),
        Value::String(svc.observed_generation.to_string()),
    );
    m.insert(
        "terminalCondition".into(),
        condition("Ready", state, message, svc.transition),
    );
    m.insert(
        "conditions".into(),
        json!([
            condition("RoutesReady", state, message, svc.transition),
            condition("ConfigurationsReady", state, message, svc.transition),
        ]),
    );
    if let Some(r) = svc.latest_ready() {
        m.insert(
            "latestReadyRevision".into(),
            Value::String(key.revision_name(r)),
        );
    }
    if let Some(r) = svc.latest_created() {
        m.insert(
            "latestCreatedRevision".into(),
            Value::String(key.revision_name(r)),
        );
    }
    m.insert(
        "trafficStatuses".into(),
        Value::Array(
            svc.applied
                .iter()
                .map(|t| target_json(t, t.tag.as_ref().and_then(|tag| svc.tag_uris.get(tag))))
                .collect(),
        ),
    );
    m.insert("uri".into(), Value::String(svc.uri.clone()));
    m.insert("urls".into(), json!([svc.uri]));
    if svc.reconciling() {
        m.insert("reconciling".into(), Value::Bool(true));
    }
    m.insert("etag".into(), Value::String(svc.etag.clone()));
    Value::Object(m)
}

/// A `GoogleCloudRunV2Revision`.
pub(crate) fn revision_json(svc: &Service, rev: &Revision) -> Value {
    let (state, message) = match &rev.state {
        RevState::Pending => ("CONDITION_RECONCILING", None),
        RevState::Ready => ("CONDITION_SUCCEEDED", None),
        RevState::Failed(m) => ("CONDITION_FAILED", Some(m.as_str())),
    };
    let mut m = Map::new();
    m.insert(
        "name".into(),
        Value::String(svc.key.revision_name(&rev.name)),
    );
    m.insert("uid".into(), Value::String(rev.uid.clone()));
    m.insert("generation".into(), Value::String("1".into()));
    m.insert("createTime".into(), Value::String(rfc3339(rev.created)));
    m.insert("updateTime".into(), Value::String(rfc3339(rev.updated)));
    m.insert("launchStage".into(), Value::String("GA".into()));
    m.insert("service".into(), Value::String(svc.key.name()));
    m.insert("maxInstanceRequestConcurrency".into(), json!(80));
    m.insert("timeout".into(), Value::String("300s".into()));
    m.insert("containers".into(), json!([{ "image": rev.image }]));
    m.insert(
        "executionEnvironment".into(),
        Value::String("EXECUTION_ENVIRONMENT_GEN2".into()),
    );
    if rev.state == RevState::Pending {
        m.insert("reconciling".into(), Value::Bool(true));
    }
    // A Revision has no terminalCondition in v2: readiness is its `Ready` condition.
    m.insert(
        "conditions".into(),
        json!([
            condition("Ready", state, message, rev.updated),
            condition("ResourcesAvailable", state, message, rev.updated),
            condition("ContainerHealthy", state, message, rev.updated),
        ]),
    );
    m.insert("observedGeneration".into(), Value::String("1".into()));
    m.insert(
        "etag".into(),
        Value::String(format!("\"{}\"", &rev.uid[..8])),
    );
    Value::Object(m)
}

/// A `GoogleLongrunningOperation`; `done` only when true.
pub(crate) fn operation_json(op: &Operation) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), Value::String(op.name()));
    m.insert("metadata".into(), op.metadata.clone());
    if op.done {
        m.insert("done".into(), Value::Bool(true));
    }
    if let Some((code, message)) = &op.error {
        m.insert("error".into(), json!({ "code": code, "message": message }));
    }
    if let Some(r) = &op.response {
        m.insert("response".into(), r.clone());
    }
    Value::Object(m)
}
