//! Tests of the simulator: API semantics and validation in process under a paused clock, and one
//! run over real loopback sockets.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};

use shiftgate::clock::Clock;
use shiftgate::ports::{
    HealthEndpoint, HealthProbe, Metrics, NewRevision, Platform, PortError, RolloutRecord,
    TrafficChange, TrafficTarget, Window,
};
use shiftgate_sim::*;

use crate::support::inproc::{
    SimHealth, SimMetrics, SimPlatform, call_in_process, start_inproc_load,
};

const P: &str = "proj";
const R: &str = "us-central1";
const S: &str = "app";
const SVC: &str = "/v2/projects/proj/locations/us-central1/services/app";

async fn get(model: &SimModel, path: &str) -> ApiResponse {
    call_in_process(model, "GET", path, &[], None).await
}

async fn get_service(model: &SimModel) -> Value {
    let r = get(model, SVC).await;
    expect_ok(&r);
    r.body
}

/// PATCHes the service with `?updateMask={mask}`.
async fn patch_service(model: &SimModel, mask: &str, body: Value) -> ApiResponse {
    call_in_process(model, "PATCH", SVC, &[("updateMask", mask)], Some(body)).await
}

/// PATCHes the service with no `updateMask`, which the model's patch mode decides how to read.
async fn patch_service_without_mask(model: &SimModel, body: Value) -> ApiResponse {
    call_in_process(model, "PATCH", SVC, &[], Some(body)).await
}

/// A new revision of the service from `image`, as `gcloud run deploy --image` asks for it.
async fn deploy(model: &SimModel, image: &str) -> ApiResponse {
    let body = json!({"template": {"containers": [{"image": image}]}});
    patch_service(model, "template", body).await
}

/// `POST /v2/{operation}:wait` with `timeout` (e.g. `"10s"`).
async fn wait_for(model: &SimModel, operation: &str, timeout: &str) -> ApiResponse {
    let path = format!("/v2/{operation}:wait");
    let body = json!({ "timeout": timeout });
    call_in_process(model, "POST", &path, &[], Some(body)).await
}

/// The name of the long-running operation a PATCH answered with.
fn operation_name(r: &ApiResponse) -> String {
    r.body["name"].as_str().unwrap().to_string()
}

async fn list_time_series(model: &SimModel, query: &[(&str, &str)]) -> ApiResponse {
    call_in_process(model, "GET", "/v3/projects/proj/timeSeries", query, None).await
}

#[track_caller]
fn expect_ok(r: &ApiResponse) {
    assert_eq!(r.status, 200, "{}", r.body);
}

/// The answer is Google's error with this HTTP status and `error.status`.
#[track_caller]
fn expect_error(r: &ApiResponse, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.body["error"]["status"], code);
}

/// Lets a second of virtual time pass: the simulator finishes an operation well within it.
async fn operations_finish() {
    tokio::time::sleep(Duration::from_secs(1)).await;
}

fn setup() -> (SimModel, String) {
    let model = SimModel::new(Clock::new());
    let stable = model.add_service(P, R, S, "gcr.io/proj/app:v1.0.0");
    (model, stable)
}

fn split(pairs: &[(&str, u8)]) -> Vec<(String, u8)> {
    pairs.iter().map(|(n, p)| (n.to_string(), *p)).collect()
}

#[tokio::test(start_paused = true)]
async fn a_new_service_looks_like_gcloud_run_deploy_left_it() {
    let (model, stable) = setup();
    assert!(stable.starts_with("app-00001-") && stable.len() == "app-00001-abc".len());
    let svc = get_service(&model).await;
    assert_eq!(
        svc["name"],
        "projects/proj/locations/us-central1/services/app"
    );
    assert_eq!(
        svc["traffic"],
        json!([{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}])
    );
    assert_eq!(svc["template"]["revision"], json!(stable));
    assert_eq!(
        svc["template"]["containers"][0]["image"],
        "gcr.io/proj/app:v1.0.0"
    );
    assert_eq!(svc["generation"], "1");
    assert_eq!(svc["observedGeneration"], "1");
    assert!(svc.get("reconciling").is_none());
    assert_eq!(
        svc["latestReadyRevision"],
        json!(format!(
            "projects/proj/locations/us-central1/services/app/revisions/{stable}"
        ))
    );
    assert_eq!(svc["terminalCondition"]["state"], "CONDITION_SUCCEEDED");
    assert_eq!(
        model.traffic_history(P, R, S),
        vec![split(&[(&stable, 100)])]
    );
    let missing = get(
        &model,
        "/v2/projects/proj/locations/us-central1/services/nope",
    )
    .await;
    expect_error(&missing, 404, "NOT_FOUND");
}

#[tokio::test(start_paused = true)]
async fn a_stale_etag_is_aborted_and_changes_nothing() {
    let (model, _) = setup();
    let body = json!({"etag": "\"stale\"", "traffic": [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}]});
    let r = patch_service(&model, "traffic", body).await;
    expect_error(&r, 409, "ABORTED");
    assert_eq!(model.write_count(), 0);
    assert_eq!(get_service(&model).await["generation"], "1");
}

#[tokio::test(start_paused = true)]
async fn keeping_template_revision_with_a_new_image_is_already_exists() {
    let (model, stable) = setup();
    let body = json!({"template": {"revision": stable, "containers": [{"image": "gcr.io/proj/app:v2.0.0"}]}});
    let r = patch_service(&model, "template", body).await;
    expect_error(&r, 409, "ALREADY_EXISTS");
    assert_eq!(
        r.body["error"]["message"],
        format!("Revision named '{stable}' already exists.")
    );
    let bad_prefix =
        json!({"template": {"revision": "other-v2", "containers": [{"image": "x:2"}]}});
    let r = patch_service(&model, "template", bad_prefix).await;
    assert_eq!(r.status, 400);
}

#[tokio::test(start_paused = true)]
async fn traffic_is_validated_like_the_real_api() {
    let (model, stable) = setup();
    let cases = [
        json!({"traffic": [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": stable, "percent": 90}]}),
        json!({"traffic": [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": "app-00009-zzz", "percent": 100}]}),
        json!({"traffic": [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": stable, "percent": 100, "tag": "a"},
                           {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "tag": "a"}]}),
        json!({"traffic": [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": stable, "percent": 100, "tag": "Bad_Tag"}]}),
        json!({"traffic": [{"revision": stable, "percent": 100}]}),
        json!({"traffic": [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": stable, "percent": 100, "weight": 1}]}),
        json!({"trafic": []}),
    ];
    for body in cases {
        let r = patch_service(&model, "traffic", body.clone()).await;
        assert_eq!(r.status, 400, "{body} -> {}", r.body);
        assert_eq!(r.body["error"]["status"], "INVALID_ARGUMENT");
    }
    let r = patch_service(&model, "uri", json!({})).await;
    assert_eq!(r.status, 400);
    let misspelt_mask = [("updateMsk", "traffic")];
    let r = call_in_process(&model, "PATCH", SVC, &misspelt_mask, Some(json!({}))).await;
    assert_eq!(r.status, 400);
    // Read as a full replace, a mask-less body must carry the template a service needs.
    model.set_patch_mode(PatchMode::FullReplace);
    let r = patch_service_without_mask(&model, json!({"traffic": []})).await;
    assert_eq!(r.status, 400);
    assert_eq!(model.write_count(), 0);
}

/// Sets the service's annotations through an explicit mask, and lets the operation finish.
async fn annotate(model: &SimModel, annotations: Value) {
    let r = patch_service(model, "annotations", json!({ "annotations": annotations })).await;
    expect_ok(&r);
    operations_finish().await;
}

fn pinned(revision: &str) -> Value {
    json!([{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": revision, "percent": 100}])
}

#[tokio::test(start_paused = true)]
async fn a_maskless_patch_changes_only_the_fields_in_its_body_by_default() {
    assert_eq!(
        PatchMode::default(),
        PatchMode::FieldMask,
        "AIP-134 is the default"
    );
    let (model, stable) = setup();
    // Explicit, so the test means the same when SHIFTGATE_SIM_PATCH_MODE picks the other mode.
    model.set_patch_mode(PatchMode::FieldMask);
    annotate(
        &model,
        json!({"shiftgate.dev/rollout": "{\"percent\":100}", "team": "web"}),
    )
    .await;

    // When a PATCH without updateMask carries traffic and no annotations,
    let r = patch_service_without_mask(&model, json!({ "traffic": pinned(&stable) })).await;
    expect_ok(&r);
    operations_finish().await;

    // then the traffic changes and the annotations stay as they were.
    let svc = get_service(&model).await;
    assert_eq!(svc["traffic"], pinned(&stable));
    assert_eq!(
        svc["annotations"],
        json!({"shiftgate.dev/rollout": "{\"percent\":100}", "team": "web"})
    );
    // An empty map present in the body is a field present: it clears them.
    let r = patch_service_without_mask(&model, json!({ "annotations": {} })).await;
    expect_ok(&r);
    operations_finish().await;
    let svc = get_service(&model).await;
    assert!(svc.get("annotations").is_none(), "{svc}");
    assert_eq!(svc["traffic"], pinned(&stable), "traffic untouched");
}

#[tokio::test(start_paused = true)]
async fn a_maskless_patch_read_as_a_full_replace_clears_what_the_body_leaves_out() {
    let (model, stable) = setup();
    model.set_patch_mode(PatchMode::FullReplace);
    annotate(
        &model,
        json!({"shiftgate.dev/rollout": "{}", "team": "web"}),
    )
    .await;

    // When a mask-less PATCH carries the same template and new traffic but no annotations,
    let body = json!({
        "template": {"revision": stable, "containers": [{"image": "gcr.io/proj/app:v1.0.0"}]},
        "traffic": pinned(&stable),
    });
    let r = patch_service_without_mask(&model, body).await;
    expect_ok(&r);
    operations_finish().await;

    // then the annotations are gone, and no revision was made from the unchanged template.
    let svc = get_service(&model).await;
    assert!(svc.get("annotations").is_none(), "{svc}");
    assert_eq!(svc["traffic"], pinned(&stable));
    assert_eq!(model.revisions(P, R, S), vec![stable]);
}

#[tokio::test(start_paused = true)]
async fn with_an_update_mask_both_modes_change_exactly_the_named_fields() {
    for mode in [PatchMode::FieldMask, PatchMode::FullReplace] {
        let (model, stable) = setup();
        model.set_patch_mode(mode);
        annotate(&model, json!({"team": "web"})).await;

        // A field the mask does not name is left alone even when the body carries it,
        let body = json!({"traffic": pinned(&stable), "annotations": {"team": "other"}});
        let r = patch_service(&model, "traffic", body).await;
        assert_eq!(r.status, 200, "{mode:?}: {}", r.body);
        operations_finish().await;
        let svc = get_service(&model).await;
        assert_eq!(svc["annotations"], json!({"team": "web"}), "{mode:?}");
        assert_eq!(svc["traffic"], pinned(&stable), "{mode:?}");

        // and a named field absent from the body is cleared.
        let r = patch_service(&model, "annotations", json!({})).await;
        assert_eq!(r.status, 200, "{mode:?}: {}", r.body);
        operations_finish().await;
        let svc = get_service(&model).await;
        assert!(svc.get("annotations").is_none(), "{mode:?}: {svc}");
        assert_eq!(svc["traffic"], pinned(&stable), "{mode:?}");
    }
}

#[test]
fn patch_modes_are_named_like_the_environment_variable_takes_them() {
    assert_eq!(PatchMode::parse("field-mask"), Some(PatchMode::FieldMask));
    assert_eq!(
        PatchMode::parse("full-replace"),
        Some(PatchMode::FullReplace)
    );
    assert_eq!(PatchMode::parse("replace"), None);
}

#[tokio::test(start_paused = true)]
async fn latest_follows_the_newest_ready_revision_once_the_operation_is_done() {
    let (model, stable) = setup();
    let r = deploy(&model, "gcr.io/proj/app:v2.0.0").await;
    expect_ok(&r);
    assert!(r.body.get("done").is_none());
    assert_eq!(
        r.body["metadata"]["@type"],
        "type.googleapis.com/google.cloud.run.v2.Service"
    );
    let op_name = operation_name(&r);
    assert!(op_name.starts_with("projects/proj/locations/us-central1/operations/"));
    let svc = get_service(&model).await;
    assert_eq!(svc["reconciling"], true);
    assert_eq!(svc["generation"], "2");
    assert_eq!(svc["observedGeneration"], "1");
    let candidate = model.revisions(P, R, S)[1].clone();
    assert!(candidate.starts_with("app-00002-"));
    // Still serving the old revision while the operation runs.
    assert_eq!(model.route(P, R, S, None).as_deref(), Some(stable.as_str()));
    tokio::time::sleep(Duration::from_millis(150)).await;
    let op = get(&model, &format!("/v2/{op_name}")).await;
    assert_eq!(op.body["done"], true);
    assert_eq!(
        op.body["response"]["@type"],
        "type.googleapis.com/google.cloud.run.v2.Service"
    );
    let svc = get_service(&model).await;
    assert!(svc.get("reconciling").is_none());
    assert_eq!(svc["observedGeneration"], "2");
    assert_eq!(
        model.traffic_history(P, R, S),
        vec![split(&[(&stable, 100)]), split(&[(&candidate, 100)])]
    );
}

#[tokio::test(start_paused = true)]
async fn a_candidate_with_pinned_traffic_gets_none_and_a_tag_url() {
    let (model, stable) = setup();
    let etag = get_service(&model).await["etag"]
        .as_str()
        .unwrap()
        .to_string();
    let body = json!({
        "etag": etag,
        "template": {"revision": "app-v2", "containers": [{"image": "gcr.io/proj/app:v2.0.0"}]},
        "traffic": [
            {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": stable, "percent": 100},
            {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": "app-v2", "tag": "candidate"},
        ],
    });
    let r = patch_service(&model, "template,traffic", body).await;
    expect_ok(&r);
    let waited = wait_for(&model, &operation_name(&r), "10s").await;
    assert_eq!(waited.body["done"], true, "{}", waited.body);
    let svc = get_service(&model).await;
    let statuses = svc["trafficStatuses"].as_array().unwrap();
    assert_eq!(statuses.len(), 2);
    assert!(statuses[1].get("percent").is_none());
    let tag_uri = statuses[1]["uri"].as_str().unwrap();
    assert_eq!(
        tag_uri,
        "https://candidate---app-".to_string() + &tag_uri["https://candidate---app-".len()..]
    );
    assert_eq!(
        model.route(P, R, S, Some("candidate")).as_deref(),
        Some("app-v2")
    );
    assert_eq!(
        model.traffic_history(P, R, S),
        vec![split(&[(&stable, 100)])]
    );
    assert_eq!(model.write_count(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_revision_that_fails_to_start_leaves_traffic_alone() {
    let (model, stable) = setup();
    model.register_image(
        "gcr.io/proj/app:broken",
        Behavior::failing_to_start("2.0.0"),
    );
    let r = deploy(&model, "gcr.io/proj/app:broken").await;
    let waited = wait_for(&model, &operation_name(&r), "5s").await;
    assert_eq!(waited.body["done"], true);
    assert_eq!(waited.body["error"]["code"], 9);
    assert!(
        waited.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("failed to start")
    );
    assert!(waited.body.get("response").is_none());
    let svc = get_service(&model).await;
    assert_eq!(svc["terminalCondition"]["state"], "CONDITION_FAILED");
    assert!(
        svc["latestReadyRevision"]
            .as_str()
            .unwrap()
            .ends_with(&stable)
    );
    assert!(
        svc["latestCreatedRevision"]
            .as_str()
            .unwrap()
            .contains("app-00002-")
    );
    assert_eq!(
        model.traffic_history(P, R, S),
        vec![split(&[(&stable, 100)])]
    );
    assert_eq!(model.route(P, R, S, None).as_deref(), Some(stable.as_str()));
    let broken = model.revisions(P, R, S)[1].clone();
    let rev = get(&model, &format!("{SVC}/revisions/{broken}")).await;
    assert_eq!(rev.body["conditions"][0]["state"], "CONDITION_FAILED");
}

#[tokio::test(start_paused = true)]
async fn held_operations_stay_pending_and_wait_times_out() {
    let (model, _) = setup();
    model.hold_operations(true);
    let op = operation_name(&deploy(&model, "x:2").await);
    let waited = wait_for(&model, &op, "30s").await;
    assert_eq!(waited.status, 200);
    assert!(waited.body.get("done").is_none());
    model.hold_operations(false);
    let op_now = get(&model, &format!("/v2/{op}")).await;
    assert_eq!(op_now.body["done"], true);
}

#[tokio::test(start_paused = true)]
async fn status_faults_are_used_once() {
    let (model, _) = setup();
    model.inject(Fault::status_retry_after("GET", "/services/app", 429, 7));
    let r = get(&model, SVC).await;
    expect_error(&r, 429, "RESOURCE_EXHAUSTED");
    assert_eq!(r.retry_after, Some(7));
    assert_eq!(get(&model, SVC).await.status, 200);
    assert_eq!(model.api_calls("GET"), 2);
}

#[tokio::test(start_paused = true)]
async fn error_rate_is_exact_and_health_follows_behavior() {
    let (model, stable) = setup();
    model.register_image("bad:1", Behavior::erroring("1.0.0", 0.1));
    deploy(&model, "bad:1").await;
    operations_finish().await;
    let bad = model.revisions(P, R, S)[1].clone();
    let failures = (0..100)
        .filter(|_| model.respond(&bad, "/").0 == 500)
        .count();
    assert_eq!(failures, 10);
    assert_eq!(model.respond(&bad, "/health").0, 200);
    let (status, body) = model.respond(&stable, "/health");
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"ready":true,"status":"ok","version":"1.0.0"}"#)
    );
    model.register_image("sick:1", Behavior::unhealthy("1.0.0"));
    deploy(&model, "sick:1").await;
    operations_finish().await;
    let sick = model.revisions(P, R, S)[2].clone();
    assert_eq!(
        model.respond(&sick, "/health"),
        (503, r#"{"status":"error"}"#.to_string())
    );
}

#[tokio::test(start_paused = true)]
async fn weighted_round_robin_is_exact() {
    let (model, stable) = setup();
    let body = json!({"template": {"revision": "app-two", "containers": [{"image": "x:2"}]},
        "traffic": [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": stable, "percent": 100}]});
    patch_service(&model, "template,traffic", body).await;
    for (percent, every) in [(10u8, 10usize), (25, 4)] {
        let etag = get_service(&model).await["etag"].clone();
        let body = json!({"etag": etag, "traffic": [
            {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": stable, "percent": 100 - percent},
            {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": "app-two", "percent": percent}]});
        let r = patch_service(&model, "traffic", body).await;
        expect_ok(&r);
        operations_finish().await;
        let picks: Vec<bool> = (0..100)
            .map(|_| model.route(P, R, S, None).as_deref() == Some("app-two"))
            .collect();
        assert_eq!(
            picks.iter().filter(|p| **p).count(),
            percent as usize,
            "{:?} {}",
            model.traffic_history(P, R, S),
            get_service(&model).await
        );
        for chunk in picks.chunks(every) {
            assert_eq!(
                chunk.iter().filter(|p| **p).count(),
                1,
                "{percent}%: {picks:?}"
            );
        }
    }
    assert_eq!(
        model.traffic_history(P, R, S),
        vec![
            split(&[(&stable, 100)]),
            split(&[(&stable, 90), ("app-two", 10)]),
            split(&[(&stable, 75), ("app-two", 25)]),
        ]
    );
}

fn ts(secs: u64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

fn rfc(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339(t).to_string()
}

#[tokio::test(start_paused = true)]
async fn time_series_are_aligned_backwards_from_the_end() {
    let (model, stable) = setup();
    // Hits at +10s (outside), +70s, +100s (5xx), +150s, +170s.
    for (at, code) in [(10, 200), (70, 200), (100, 500), (150, 200), (170, 200)] {
        model.record(&stable, code, ts(at));
    }
    let filter = format!(
        "metric.type=\"run.googleapis.com/request_count\" AND resource.labels.service_name=\"{S}\""
    );
    let start = rfc(ts(60));
    let end = rfc(ts(180));
    let query = [
        ("filter", filter.as_str()),
        ("interval.startTime", start.as_str()),
        ("interval.endTime", end.as_str()),
        ("aggregation.alignmentPeriod", "60s"),
        ("aggregation.perSeriesAligner", "ALIGN_DELTA"),
        ("aggregation.crossSeriesReducer", "REDUCE_SUM"),
        ("aggregation.groupByFields", "resource.labels.revision_name"),
        (
            "aggregation.groupByFields",
            "metric.labels.response_code_class",
        ),
    ];
    let r = list_time_series(&model, &query).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let series = r.body["timeSeries"].as_array().unwrap();
    assert_eq!(series.len(), 2);
    let ok = &series[0];
    assert_eq!(
        ok["metric"]["labels"],
        json!({"response_code_class": "2xx"})
    );
    assert_eq!(
        ok["resource"],
        json!({"type": "cloud_run_revision", "labels": {"revision_name": stable}})
    );
    assert_eq!(ok["metricKind"], "DELTA");
    assert_eq!(ok["valueType"], "INT64");
    // Periods (120,180] and (60,120]: newest first.
    assert_eq!(ok["points"][0]["value"]["int64Value"], "2");
    assert_eq!(
        ok["points"][0]["interval"]["endTime"],
        json!(humantime::format_rfc3339_nanos(ts(180)).to_string())
    );
    assert_eq!(ok["points"][1]["value"]["int64Value"], "1");
    assert_eq!(ok["points"].as_array().unwrap().len(), 2);
    assert_eq!(series[1]["metric"]["labels"]["response_code_class"], "5xx");
    assert_eq!(series[1]["points"][0]["value"]["int64Value"], "1");

    let mut bad = query.to_vec();
    bad[3] = ("aggregation.alignmentPeriod", "30s");
    assert_eq!(list_time_series(&model, &bad).await.status, 400);
    let mut bad = query.to_vec();
    bad[0] = (
        "filter",
        "metric.type=\"run.googleapis.com/container/instance_count\"",
    );
    assert_eq!(list_time_series(&model, &bad).await.status, 400);
    let mut bad = query.to_vec();
    bad[0] = (
        "filter",
        "metric.type=\"run.googleapis.com/request_count\" AND resource.labels.zone=\"a\"",
    );
    let r = list_time_series(&model, &bad).await;
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("resource.labels.zone")
    );
    let mut bad = query.to_vec();
    bad[1] = ("interval.startTime", end.as_str());
    bad[2] = ("interval.endTime", start.as_str());
    assert_eq!(list_time_series(&model, &bad).await.status, 400);
    let mut none = query.to_vec();
    none[0] = (
        "filter",
        "metric.type=\"run.googleapis.com/request_count\" AND resource.labels.service_name=\"other\"",
    );
    assert_eq!(list_time_series(&model, &none).await.body, json!({}));
}

/// `request_latencies` of the service over `(start, end]` in `period` steps, summed per the fields.
fn latency_query(
    start: &str,
    end: &str,
    period: &str,
    group_by: &[&str],
) -> Vec<(&'static str, String)> {
    let mut query = vec![
        (
            "filter",
            format!(
                "metric.type=\"run.googleapis.com/request_latencies\" AND resource.labels.service_name=\"{S}\""
            ),
        ),
        ("interval.startTime", start.to_string()),
        ("interval.endTime", end.to_string()),
        ("aggregation.alignmentPeriod", period.to_string()),
        ("aggregation.perSeriesAligner", "ALIGN_DELTA".to_string()),
        ("aggregation.crossSeriesReducer", "REDUCE_SUM".to_string()),
    ];
    for field in group_by {
        query.push(("aggregation.groupByFields", field.to_string()));
    }
    query
}

#[tokio::test(start_paused = true)]
async fn latency_distributions_are_aligned_like_counts_and_binned_in_the_layout_set() {
    let (model, stable) = setup();
    model.set_latency_buckets(LatencyBuckets::Linear {
        count: 4,
        width: 100.0,
        offset: 0.0,
    });
    // Given hits at +10s (outside), +70s, +100s (5xx), +150s, +170s and +175s, with their latencies,
    for (at, code, ms) in [
        (10, 200, 5),
        (70, 200, 50),
        (100, 500, 150),
        (150, 200, 100),
        (170, 200, 200),
        (175, 200, 900),
    ] {
        model.record_with_latency(&stable, code, ts(at), Duration::from_millis(ms));
    }
    let by_revision = ["resource.labels.revision_name"];

    // when the latencies of (60, 180] are read per revision in 60 s periods,
    let query = latency_query(&rfc(ts(60)), &rfc(ts(180)), "60s", &by_revision);
    let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = list_time_series(&model, &query).await;
    expect_ok(&r);

    // then one series carries a distribution per period, newest first, in the linear layout:
    // bucket 0 is below 0 ms, bucket i is [100(i-1), 100i) ms, bucket 5 from 400 ms on.
    assert_eq!(r.body["unit"], "ms");
    let series = r.body["timeSeries"].as_array().unwrap();
    assert_eq!(series.len(), 1, "{}", r.body);
    assert_eq!(
        series[0]["metric"],
        json!({"type": "run.googleapis.com/request_latencies"})
    );
    assert_eq!(
        series[0]["resource"],
        json!({"type": "cloud_run_revision", "labels": {"revision_name": stable}})
    );
    assert_eq!(series[0]["metricKind"], "DELTA");
    assert_eq!(series[0]["valueType"], "DISTRIBUTION");
    let options = json!({"linearBuckets": {"numFiniteBuckets": 4, "width": 100.0, "offset": 0.0}});
    assert_eq!(
        series[0]["points"],
        json!([
            {
                "interval": {
                    "startTime": humantime::format_rfc3339_nanos(ts(120)).to_string(),
                    "endTime": humantime::format_rfc3339_nanos(ts(180)).to_string(),
                },
                "value": {"distributionValue": {
                    "count": "3",
                    "mean": 400.0,
                    "sumOfSquaredDeviation": 380000.0,
                    "bucketOptions": options,
                    "bucketCounts": ["0", "0", "1", "1", "0", "1"],
                }},
            },
            {
                "interval": {
                    "startTime": humantime::format_rfc3339_nanos(ts(60)).to_string(),
                    "endTime": humantime::format_rfc3339_nanos(ts(120)).to_string(),
                },
                "value": {"distributionValue": {
                    "count": "2",
                    "mean": 100.0,
                    "sumOfSquaredDeviation": 5000.0,
                    "bucketOptions": options,
                    "bucketCounts": ["0", "1", "1"],
                }},
            },
        ])
    );

    // Grouped by response class too (meaningful for a distribution), the 5xx latency stands apart.
    let query = latency_query(
        &rfc(ts(60)),
        &rfc(ts(180)),
        "120s",
        &[
            "resource.labels.revision_name",
            "metric.labels.response_code_class",
        ],
    );
    let series = series_of(&model, &query).await;
    assert_eq!(series.len(), 2);
    assert_eq!(
        series[1]["metric"]["labels"],
        json!({"response_code_class": "5xx"})
    );
    let errors = &series[1]["points"][0]["value"]["distributionValue"];
    assert_eq!(
        (errors["count"].clone(), errors["mean"].clone()),
        (json!("1"), json!(150.0))
    );
    assert_eq!(
        series[0]["points"][0]["value"]["distributionValue"]["count"],
        "4"
    );

    // Replaced request-count points neither show in a latency answer nor are used up by it.
    model.inject(Fault::metric_points(
        &stable,
        "2xx",
        vec![BadPoint::int64("-1")],
    ));
    let series = series_of(&model, &query).await;
    assert_eq!(
        series[0]["points"][0]["value"]["distributionValue"]["count"],
        "4"
    );
    assert_eq!(model.pending_faults(), 1);

    // Aligners and reducers the simulator does not implement are refused, as for counts.
    for (name, value) in [
        ("aggregation.perSeriesAligner", "ALIGN_PERCENTILE_95"),
        ("aggregation.crossSeriesReducer", "REDUCE_PERCENTILE_95"),
        ("aggregation.alignmentPeriod", "30s"),
    ] {
        let mut bad = latency_query(&rfc(ts(60)), &rfc(ts(180)), "60s", &by_revision);
        bad.retain(|(k, _)| *k != name);
        bad.push((name, value.to_string()));
        let bad: Vec<(&str, &str)> = bad.iter().map(|(k, v)| (*k, v.as_str())).collect();
        expect_error(
            &list_time_series(&model, &bad).await,
            400,
            "INVALID_ARGUMENT",
        );
    }
}

#[tokio::test(start_paused = true)]
async fn ingestion_lag_hides_recent_requests() {
    let (model, stable) = setup();
    model.set_ingestion_lag(Duration::from_secs(60));
    let clock = model.clock();
    let start = clock.now();
    model.record(&stable, 200, clock.now());
    let metrics = SimMetrics::new(&model, P, R, S);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let window = Window {
        start: start - Duration::from_secs(1),
        end: clock.now(),
    };
    assert!(metrics.request_counts(window).await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_secs(60)).await;
    let counts = metrics.request_counts(window).await.unwrap();
    assert_eq!(counts[&stable].total, 1);
}

#[tokio::test(start_paused = true)]
async fn in_process_ports_run_a_rollout_step() {
    let (model, stable) = setup();
    model.register_image("gcr.io/proj/app:v2.0.0", Behavior::erroring("2.0.0", 0.5));
    let platform = SimPlatform::new(&model, P, R, S);
    let health = SimHealth::new(&model);
    let metrics = SimMetrics::new(&model, P, R, S);
    let state = platform.read_service().await.unwrap();
    assert_eq!(state.split(), split(&[(&stable, 100)]));
    let record = RolloutRecord {
        id: "r1".into(),
        stable: stable.clone(),
        candidate: "app-v2".into(),
        percent: 0,
        started_at: "now".into(),
        pause: None,
        ..RolloutRecord::default()
    };
    let spec = NewRevision {
        revision: "app-v2".into(),
        image: "gcr.io/proj/app:v2.0.0".into(),
        traffic: vec![
            TrafficTarget::new(&stable, 100),
            TrafficTarget::tagged("app-v2", 0, "candidate"),
        ],
        rollout: Some(record.clone()),
    };
    let stale = platform
        .create_revision(&spec, "\"old\"", Duration::from_secs(30))
        .await;
    assert!(matches!(stale, Err(PortError::Conflict(_))), "{stale:?}");
    let state = platform
        .create_revision(&spec, &state.etag, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(state.rollout, Some(record.clone()));
    assert_eq!(state.latest_ready_revision.as_deref(), Some("app-v2"));
    let health_url = format!("{}/health", state.tag_uris["candidate"]);
    let answer = health.fetch(&HealthProbe::of(&health_url)).await.unwrap();
    assert_eq!(answer.status, 200);
    assert!(answer.body.contains("\"version\":\"2.0.0\""));
    assert!(
        health
            .fetch(&HealthProbe::of("https://nowhere.example/health"))
            .await
            .is_err()
    );

    let change = TrafficChange {
        traffic: vec![
            TrafficTarget::new(&stable, 90),
            TrafficTarget::tagged("app-v2", 10, "candidate"),
        ],
        rollout: Some(RolloutRecord {
            percent: 10,
            ..record
        }),
        history: None,
    };
    let writes = model.write_count();
    let state = platform
        .set_traffic(&change, &state.etag, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(model.write_count(), writes + 1);
    assert_eq!(state.split(), split(&[(&stable, 90), ("app-v2", 10)]));
    let start = model.clock().now();
    let load = start_inproc_load(&model, P, R, S, 10.0);
    tokio::time::sleep(Duration::from_millis(99_950)).await;
    assert_eq!(load.sent(), 1000);
    drop(load);
    let counts = metrics
        .request_counts(Window {
            start: start - Duration::from_millis(1),
            end: model.clock().now(),
        })
        .await
        .unwrap();
    assert_eq!(counts["app-v2"].total, 100);
    assert_eq!(counts["app-v2"].server_errors, 50);
    assert_eq!(counts[&stable].total, 900);

    let cleared = TrafficChange {
        traffic: vec![TrafficTarget::new(&stable, 100)],
        rollout: None,
        history: None,
    };
    let state = platform
        .set_traffic(&cleared, &state.etag, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(state.rollout, None);
    assert_eq!(state.split(), split(&[(&stable, 100)]));
    let revisions = platform.list_revisions().await.unwrap();
    assert_eq!(revisions.len(), 2);
    assert!(revisions.iter().all(|r| r.ready));
}

#[tokio::test(start_paused = true)]
async fn in_process_failures_map_to_port_errors() {
    let (model, stable) = setup();
    model.register_image("broken:1", Behavior::failing_to_start("1.0.0"));
    let platform = SimPlatform::new(&model, P, R, S);
    let state = platform.read_service().await.unwrap();
    let spec = NewRevision {
        revision: "app-broken".into(),
        image: "broken:1".into(),
        traffic: vec![TrafficTarget::new(&stable, 100)],
        rollout: None,
    };
    let err = platform
        .create_revision(&spec, &state.etag, Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(
        matches!(err, PortError::Rejected { status: 400, .. }),
        "{err:?}"
    );
    let info = platform.read_revision("app-broken").await.unwrap();
    assert!(!info.ready);
    assert!(info.reason.unwrap().contains("failed to start"));
    assert!(matches!(
        platform.read_revision("app-nope").await,
        Err(PortError::NotFound(_))
    ));

    model.inject(Fault::SlowOperation(Duration::from_secs(120)));
    let state = platform.read_service().await.unwrap();
    let change = TrafficChange {
        traffic: vec![TrafficTarget::new(&stable, 100)],
        rollout: None,
        history: None,
    };
    let err = platform
        .set_traffic(&change, &state.etag, Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(matches!(err, PortError::Unavailable(_)), "{err:?}");
    model.inject(Fault::status("GET", "/services/app", 503));
    assert!(matches!(
        platform.read_service().await,
        Err(PortError::Unavailable(_))
    ));
}

/// Over real sockets: the control plane, an operation, the data plane and monitoring.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http_on_loopback() {
    let sim = Sim::start(Clock::new()).await.unwrap();
    let stable = sim.add_service(P, R, S, "gcr.io/proj/app:v1.0.0");
    sim.set_operation_delay(Duration::from_millis(50));
    sim.require_bearer(Some(vec!["tok".into()]));
    let http = shiftgate::client_builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let base = sim.cloud_run_url();

    let unauthenticated = http.get(format!("{base}{SVC}")).send().await.unwrap();
    assert_eq!(unauthenticated.status(), 401);
    let svc = answer_json(http.get(format!("{base}{SVC}")).bearer_auth("tok")).await;
    let uri = svc["uri"].as_str().unwrap().to_string();
    assert_eq!(Some(uri.clone()), sim.service_url(P, R, S));

    let body = json!({
        "etag": svc["etag"],
        "template": {"revision": "app-v2", "containers": [{"image": "gcr.io/proj/app:v2.0.0"}]},
        "traffic": [
            {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": stable, "percent": 100},
            {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": "app-v2", "tag": "candidate"},
        ],
        "annotations": {"shiftgate.dev/rollout": "{}"},
    });
    let op = answer_json(
        http.patch(format!("{base}{SVC}"))
            .query(&[("updateMask", "template,traffic,annotations")])
            .bearer_auth("tok")
            .json(&body),
    )
    .await;
    let name = op["name"].as_str().unwrap().to_string();
    let mut done = false;
    for _ in 0..100 {
        let op = answer_json(http.get(format!("{base}/v2/{name}")).bearer_auth("tok")).await;
        if op["done"] == true {
            assert!(op.get("error").is_none(), "{op}");
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(done);
    let svc = answer_json(http.get(format!("{base}{SVC}")).bearer_auth("tok")).await;
    assert_eq!(svc["annotations"]["shiftgate.dev/rollout"], "{}");
    let tag_uri = svc["trafficStatuses"][1]["uri"]
        .as_str()
        .unwrap()
        .to_string();

    let front = http.get(format!("{uri}/")).send().await.unwrap();
    assert_eq!(front.status(), 200);
    assert_eq!(front.text().await.unwrap(), format!("hello from {stable}"));
    let tagged = http.get(format!("{tag_uri}/health")).send().await.unwrap();
    assert_eq!(tagged.status(), 200);
    let health: Value = tagged.json().await.unwrap();
    assert_eq!(health["version"], "2.0.0");
    assert_eq!(sim.model().counts(&stable), (1, 0));
    assert_eq!(sim.model().counts("app-v2"), (1, 0));

    let end =
        humantime::format_rfc3339(sim.model().clock().now() + Duration::from_secs(1)).to_string();
    let start =
        humantime::format_rfc3339(sim.model().clock().now() - Duration::from_secs(600)).to_string();
    let list_series = http
        .get(format!("{}/v3/projects/{P}/timeSeries", sim.monitoring_url()))
        .query(&[
            ("filter", format!("metric.type=\"run.googleapis.com/request_count\" AND resource.labels.service_name=\"{S}\"").as_str()),
            ("interval.startTime", start.as_str()),
            ("interval.endTime", end.as_str()),
            ("aggregation.alignmentPeriod", "600s"),
            ("aggregation.perSeriesAligner", "ALIGN_DELTA"),
            ("aggregation.crossSeriesReducer", "REDUCE_SUM"),
            ("aggregation.groupByFields", "resource.labels.revision_name"),
        ])
        .bearer_auth("tok");
    let series = answer_json(list_series).await;
    assert_eq!(
        series["timeSeries"].as_array().map(Vec::len),
        Some(2),
        "{series}"
    );

    let load = sim.start_load(P, R, S, 50.0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(load.sent() > 0);
    drop(load);

    let subject = http
        .get(sim.subject_token_url())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let exchange = http
        .post(sim.sts_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token={subject}&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt"
        ));
    let token = answer_json(exchange).await;
    assert_eq!(token["access_token"], "sim-exchanged-token-1");
    assert!(sim.seen_tokens().iter().all(|t| t == "tok"));
}

/// The HTTP simulator with one service, and a plain client with a 30 s timeout like the adapters'.
async fn http_sim() -> (Sim, String, reqwest::Client) {
    let sim = Sim::start(Clock::new()).await.unwrap();
    let stable = sim.add_service(P, R, S, "gcr.io/proj/app:v1.0.0");
    let http = shiftgate::client_builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    (sim, stable, http)
}

/// Sends `request` and reads its answer as JSON.
async fn answer_json(request: reqwest::RequestBuilder) -> Value {
    request.send().await.unwrap().json().await.unwrap()
}

/// The PATCH that pins all traffic to `revision`, guarded by `etag`, ready to send.
fn pin_traffic(
    http: &reqwest::Client,
    url: &str,
    etag: &Value,
    revision: &str,
) -> reqwest::RequestBuilder {
    http.patch(url)
        .query(&[("updateMask", "traffic")])
        .json(&json!({"etag": etag, "traffic": pinned(revision)}))
}

/// The numbers of `/metrics` lines that start with `name{` and carry `revision_name="{revision}"`,
/// by their `le` label (empty for lines without one).
fn metric_lines(text: &str, name: &str, revision: &str) -> Vec<(String, f64)> {
    let revision_label = format!("revision_name=\"{revision}\"");
    text.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")) && line.contains(&revision_label))
        .map(|line| {
            let le = line
                .split_once("le=\"")
                .and_then(|(_, rest)| rest.split_once('"'))
                .map(|(le, _)| le.to_string())
                .unwrap_or_default();
            let value = line.rsplit_once(' ').unwrap().1.parse().unwrap();
            (le, value)
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn given_median_200ms_p95_800ms_when_1000_requests_go_through_the_data_plane_then_monitoring_and_metrics_report_them()
 {
    let (sim, _, http) = http_sim().await;
    let ms = Duration::from_millis;
    sim.register_image(
        "gcr.io/proj/app:slow",
        Behavior::healthy("2.0.0").with_latency(ms(200), ms(800)),
    );
    let slow = sim.add_service(P, R, "slow", "gcr.io/proj/app:slow");
    let url = sim.service_url(P, R, "slow").unwrap();
    let start = sim.model().clock().now();

    // When 1,000 requests are served over HTTP, 50 at a time, each answered after its latency,
    let started = tokio::time::Instant::now();
    let statuses: Vec<u16> = futures_util::stream::iter(0..1000)
        .map(|_| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                http.get(format!("{url}/"))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }
        })
        .buffer_unordered(50)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 200));
    let end = sim.model().clock().now();

    // then the recorded latencies are the revision's first 1,000 draws, whatever order the
    // answers came back in: exactly 50 above 800 ms,
    let key = ServiceKey::new(P, R, "slow");
    let latencies = sim
        .model()
        .latencies_between(&key, start, end)
        .remove(&slow)
        .unwrap();
    let above_p95 = latencies.iter().filter(|l| **l > ms(800)).count();
    assert_eq!((latencies.len(), above_p95), (1000, 50));
    // and the answers really waited: 20 rounds of 50 take at least the 20th of the total latency.
    let waited: Duration = latencies.iter().sum();
    assert!(
        started.elapsed() >= waited / 50,
        "{:?} for {waited:?}",
        started.elapsed()
    );

    // Monitoring's distribution counts them in buckets that add up to its count,
    let query = [
        (
            "filter",
            "metric.type=\"run.googleapis.com/request_latencies\" AND resource.labels.service_name=\"slow\""
                .to_string(),
        ),
        ("interval.startTime", rfc(start)),
        ("interval.endTime", rfc(end + Duration::from_secs(1))),
        ("aggregation.alignmentPeriod", "3600s".to_string()),
        ("aggregation.perSeriesAligner", "ALIGN_DELTA".to_string()),
        ("aggregation.crossSeriesReducer", "REDUCE_SUM".to_string()),
        (
            "aggregation.groupByFields",
            "resource.labels.revision_name".to_string(),
        ),
    ];
    let series_url = format!("{}/v3/projects/{P}/timeSeries", sim.monitoring_url());
    let body = answer_json(http.get(&series_url).query(&query)).await;
    let distribution = &body["timeSeries"][0]["points"][0]["value"]["distributionValue"];
    assert_eq!(distribution["count"], "1000", "{body}");
    let bucket_counts: Vec<u64> = distribution["bucketCounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(bucket_counts.iter().sum::<u64>(), 1000);

    // and /metrics has 1,000 in its count, with each `le` bucket holding the latencies below it,
    // bucket for bucket what Monitoring reported.
    let text = http
        .get(sim.metrics_url())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let count = metric_lines(&text, "run_googleapis_com:request_latencies_count", &slow);
    assert_eq!(count, vec![(String::new(), 1000.0)]);
    let buckets = metric_lines(&text, "run_googleapis_com:request_latencies_bucket", &slow);
    assert_eq!(buckets.len(), 42, "40 finite buckets: 41 bounds and +Inf");
    let mut below = 0;
    for (i, (le, cumulative)) in buckets.iter().enumerate() {
        below += bucket_counts.get(i).copied().unwrap_or(0);
        assert_eq!(*cumulative, below as f64, "le={le}");
        if let Ok(bound) = le.parse::<f64>() {
            let served_below = latencies
                .iter()
                .filter(|l| l.as_nanos() as f64 / 1e6 < bound)
                .count();
            assert_eq!(*cumulative, served_below as f64, "le={le}");
        }
    }
    assert_eq!(buckets.last().unwrap(), &("+Inf".to_string(), 1000.0));
}

#[tokio::test(start_paused = true)]
async fn status_faults_over_http_carry_googles_error_and_retry_after() {
    let (sim, _, http) = http_sim().await;
    let url = format!("{}{SVC}", sim.cloud_run_url());
    for (status, name) in [
        (401, "UNAUTHENTICATED"),
        (403, "PERMISSION_DENIED"),
        (409, "ABORTED"),
        (500, "INTERNAL"),
        (503, "UNAVAILABLE"),
    ] {
        sim.inject(Fault::status("GET", "/services/app", status));
        let r = http.get(&url).send().await.unwrap();
        assert_eq!(r.status(), status);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["status"], name);
        assert_eq!(body["error"]["code"], status);
    }
    sim.inject(Fault::status_retry_after("GET", "/services/app", 429, 3));
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "3");
    // Each fault was used by exactly one call.
    assert_eq!(http.get(&url).send().await.unwrap().status(), 200);
}

#[tokio::test(start_paused = true)]
async fn a_hung_call_is_ended_by_the_clients_timeout_and_nothing_is_applied() {
    let (sim, stable, http) = http_sim().await;
    let url = format!("{}{SVC}", sim.cloud_run_url());
    let svc = answer_json(http.get(&url)).await;
    sim.inject(Fault::hang("PATCH", "/services/app"));

    let started = tokio::time::Instant::now();
    let err = pin_traffic(&http, &url, &svc["etag"], &stable)
        .send()
        .await
        .unwrap_err();

    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(30),
        "the client's timeout"
    );
    assert_eq!(sim.model().write_count(), 0);
    // The same PATCH goes through once the fault is used up.
    let r = pin_traffic(&http, &url, &svc["etag"], &stable)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(sim.model().write_count(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_reset_closes_the_connection_without_an_answer() {
    let (sim, stable, http) = http_sim().await;
    let url = format!("{}{SVC}", sim.cloud_run_url());
    let svc = answer_json(http.get(&url)).await;
    sim.inject(Fault::reset("PATCH", "/services/app"));

    let err = pin_traffic(&http, &url, &svc["etag"], &stable)
        .send()
        .await
        .unwrap_err();

    // No status, no body: the request failed on the wire, and not by a timeout.
    assert!(err.is_request() && !err.is_timeout(), "{err:?}");
    assert!(
        format!("{err:?}").contains("IncompleteMessage"),
        "hyper read end-of-stream where the answer should be: {err:?}"
    );
    assert!(err.status().is_none());
    assert_eq!(sim.model().write_count(), 0, "not applied");
    assert_eq!(http.get(&url).send().await.unwrap().status(), 200);
}

#[tokio::test(start_paused = true)]
async fn malformed_and_truncated_json_come_with_a_200() {
    let (sim, _, http) = http_sim().await;
    let url = format!("{}{SVC}", sim.cloud_run_url());
    let whole = http.get(&url).send().await.unwrap().text().await.unwrap();

    sim.inject(Fault::malformed_json("GET", "/services/app"));
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), MALFORMED_JSON);

    sim.inject(Fault::truncated_json("GET", "/services/app"));
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(!text.is_empty() && whole.starts_with(&text) && text.len() < whole.len());
    assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");

    sim.inject(Fault::truncated_json("GET", "/services/app"));
    let err = http
        .get(&url)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap_err();
    assert!(err.is_decode(), "{err:?}");
}

#[tokio::test(start_paused = true)]
async fn a_lost_answer_hides_a_write_that_took_effect() {
    let (sim, stable, http) = http_sim().await;
    let url = format!("{}{SVC}", sim.cloud_run_url());

    for fault in [
        Fault::lost_answer("PATCH", "/services/app", 503),
        Fault::lost_answer_reset("PATCH", "/services/app"),
        Fault::lost_answer_hang("PATCH", "/services/app"),
        Fault::malformed_json("PATCH", "/services/app"),
    ] {
        let before = answer_json(http.get(&url)).await;
        let writes = sim.model().write_count();
        sim.inject(fault.clone());

        let sent = pin_traffic(&http, &url, &before["etag"], &stable)
            .send()
            .await;

        // The caller learns nothing useful,
        match sent {
            Ok(r) if r.status() == 503 => {}
            Ok(r) => assert!(r.json::<Value>().await.is_err(), "{fault:?}"),
            Err(e) => assert!(e.is_request() || e.is_timeout(), "{fault:?}: {e:?}"),
        }
        // yet the PATCH was accepted: the etag moved and the same PATCH again is a conflict.
        assert_eq!(sim.model().write_count(), writes + 1, "{fault:?}");
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after = answer_json(http.get(&url)).await;
        assert_ne!(after["etag"], before["etag"], "{fault:?}");
        assert_eq!(after["traffic"], pinned(&stable), "{fault:?}");
        let again = pin_traffic(&http, &url, &before["etag"], &stable)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 409, "{fault:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn operations_and_time_series_take_faults_too() {
    let (sim, stable, http) = http_sim().await;
    sim.set_operation_delay(Duration::from_secs(5));
    let url = format!("{}{SVC}", sim.cloud_run_url());
    let svc = answer_json(http.get(&url)).await;
    let op = answer_json(pin_traffic(&http, &url, &svc["etag"], &stable)).await;
    let op_url = format!(
        "{}/v2/{}",
        sim.cloud_run_url(),
        op["name"].as_str().unwrap()
    );

    // GET operation: a 503, then the operation.
    sim.inject(Fault::status("GET", "/operations/", 503));
    assert_eq!(http.get(&op_url).send().await.unwrap().status(), 503);
    assert_eq!(http.get(&op_url).send().await.unwrap().status(), 200);

    // :wait whose answer is lost after it waited: the client sees a reset, the operation is done.
    sim.inject(Fault::lost_answer_reset("POST", ":wait"));
    let err = http
        .post(format!("{op_url}:wait"))
        .json(&json!({"timeout": "10s"}))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_request(), "{err:?}");
    let done = answer_json(http.get(&op_url)).await;
    assert_eq!(done["done"], true);

    // timeSeries: malformed JSON, then a hang.
    let series_url = format!("{}/v3/projects/{P}/timeSeries", sim.monitoring_url());
    let now = sim.model().clock().now();
    let query = [
        (
            "filter",
            format!(
                "metric.type=\"run.googleapis.com/request_count\" AND resource.labels.service_name=\"{S}\""
            ),
        ),
        ("interval.startTime", rfc(now - Duration::from_secs(60))),
        ("interval.endTime", rfc(now)),
    ];
    sim.inject(Fault::malformed_json("GET", "timeSeries"));
    let r = http.get(&series_url).query(&query).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), MALFORMED_JSON);
    sim.inject(Fault::hang("GET", "timeSeries"));
    let err = http
        .get(&series_url)
        .query(&query)
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(sim.model().pending_faults(), 0);
}

#[tokio::test(start_paused = true)]
async fn in_process_callers_see_resets_hangs_and_mangled_bodies_as_results() {
    let (model, _) = setup();

    model.inject(Fault::reset("GET", "/services/app"));
    let r = get(&model, SVC).await;
    expect_error(&r, 503, "UNAVAILABLE");

    model.inject(Fault::hang("GET", "/services/app"));
    let started = tokio::time::Instant::now();
    let r = get(&model, SVC).await;
    assert_eq!(started.elapsed(), HANG);
    assert_eq!(r.status, 504);

    model.inject(Fault::malformed_json("GET", "/services/app"));
    let r = get(&model, SVC).await;
    assert_eq!((r.status, r.body), (200, json!(MALFORMED_JSON)));
    let platform = SimPlatform::new(&model, P, R, S);
    model.inject(Fault::truncated_json("GET", "/services/app"));
    assert!(matches!(
        platform.read_service().await,
        Err(PortError::Unavailable(_))
    ));

    let metrics = SimMetrics::new(&model, P, R, S);
    let now = model.clock().now();
    let window = Window {
        start: now - Duration::from_secs(60),
        end: now,
    };
    model.inject(Fault::reset("GET", "timeSeries"));
    assert!(matches!(
        metrics.request_counts(window).await,
        Err(PortError::Unavailable(_))
    ));
}

fn revision_query(start: &str, end: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "filter",
            format!(
                "metric.type=\"run.googleapis.com/request_count\" AND resource.labels.service_name=\"{S}\""
            ),
        ),
        ("interval.startTime", start.to_string()),
        ("interval.endTime", end.to_string()),
        ("aggregation.alignmentPeriod", "120s".to_string()),
        ("aggregation.perSeriesAligner", "ALIGN_DELTA".to_string()),
        ("aggregation.crossSeriesReducer", "REDUCE_SUM".to_string()),
        (
            "aggregation.groupByFields",
            "resource.labels.revision_name".to_string(),
        ),
        (
            "aggregation.groupByFields",
            "metric.labels.response_code_class".to_string(),
        ),
    ]
}

async fn series_of(model: &SimModel, query: &[(&str, String)]) -> Vec<Value> {
    let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = list_time_series(model, &query).await;
    expect_ok(&r);
    r.body["timeSeries"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(start_paused = true)]
async fn a_test_can_make_time_series_carry_bad_points_for_one_revision() {
    let (model, stable) = setup();
    for at in [70, 100, 150] {
        model.record(&stable, 200, ts(at));
    }
    model.record(&stable, 500, ts(160));
    let query = revision_query(&rfc(ts(60)), &rfc(ts(180)));

    // Given a lasting override of the stable revision's 5xx series,
    model.override_points(
        &stable,
        "5xx",
        vec![
            BadPoint::int64("sixty"),
            BadPoint::int64(&i64::MAX.to_string()),
            BadPoint::int64("7").before_window(Duration::from_secs(600)),
            BadPoint::int64("8").after_window(Duration::from_secs(60)),
        ],
    );
    // when the series are read twice,
    for _ in 0..2 {
        let series = series_of(&model, &query).await;
        // then the 2xx series is the recorded one and the 5xx series carries the bad points.
        assert_eq!(series.len(), 2, "{series:?}");
        assert_eq!(series[0]["points"][0]["value"]["int64Value"], "3");
        let bad = &series[1];
        assert_eq!(
            bad["metric"]["labels"],
            json!({"response_code_class": "5xx"})
        );
        assert_eq!(bad["resource"]["labels"], json!({"revision_name": stable}));
        let points = bad["points"].as_array().unwrap();
        assert_eq!(points[0]["value"], json!({"int64Value": "sixty"}));
        assert_eq!(
            points[1]["value"],
            json!({"int64Value": "9223372036854775807"})
        );
        let interval = |i: usize| {
            (
                points[i]["interval"]["startTime"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                points[i]["interval"]["endTime"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        };
        let nanos = |t| humantime::format_rfc3339_nanos(t).to_string();
        assert_eq!(interval(0), (nanos(ts(60)), nanos(ts(180))));
        assert_eq!(
            interval(2),
            (
                nanos(ts(0) - Duration::from_secs(660)),
                nanos(ts(0) - Duration::from_secs(540))
            )
        );
        assert_eq!(interval(3), (nanos(ts(240)), nanos(ts(360))));
    }

    // A one-shot fault replaces the series of a class the revision never served, once.
    model.clear_point_overrides();
    model.inject(Fault::metric_points(
        &stable,
        "4xx",
        vec![BadPoint::int64("-60")],
    ));
    let series = series_of(&model, &query).await;
    assert_eq!(series.len(), 3);
    assert_eq!(series[1]["metric"]["labels"]["response_code_class"], "4xx");
    assert_eq!(series[1]["points"][0]["value"]["int64Value"], "-60");
    let series = series_of(&model, &query).await;
    assert_eq!(series.len(), 2);
    assert_eq!(series[1]["points"][0]["value"]["int64Value"], "1");
}
