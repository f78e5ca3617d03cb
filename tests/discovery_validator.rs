//! Tests for the discovery-schema validator in `tests/support/discovery.rs`,
//! against the pinned contracts in `tests/contracts/`.

use crate::support::discovery;

use discovery::Discovery;
use serde_json::{Value, json};

fn run() -> Discovery {
    Discovery::load("tests/contracts/run.v2.json")
}

fn monitoring() -> Discovery {
    Discovery::load("tests/contracts/monitoring.v3.json")
}

/// A Service as Cloud Run returns it mid-rollout: 90/10 split by revision name.
fn service() -> Value {
    json!({
        "name": "projects/demo/locations/europe-west1/services/api",
        "uid": "2f1c3c6e-8d0b-4a39-9d4e-0f1b6a7c2d11",
        "generation": "7",
        "labels": {"team": "payments"},
        "annotations": {"run.googleapis.com/client-name": "shiftgate"},
        "createTime": "2025-01-02T03:04:05.123456Z",
        "updateTime": "2025-01-02T03:14:05Z",
        "creator": "deployer@demo.iam.gserviceaccount.com",
        "lastModifier": "deployer@demo.iam.gserviceaccount.com",
        "ingress": "INGRESS_TRAFFIC_ALL",
        "launchStage": "GA",
        "template": {
            "revision": "api-00007-xyz",
            "scaling": {"minInstanceCount": 0, "maxInstanceCount": 100},
            "timeout": "300s",
            "serviceAccount": "api@demo.iam.gserviceaccount.com",
            "maxInstanceRequestConcurrency": 80,
            "containers": [{
                "image": "europe-docker.pkg.dev/demo/app/api:1.4.0",
                "ports": [{"name": "http1", "containerPort": 8080}],
                "resources": {"limits": {"cpu": "1000m", "memory": "512Mi"}, "cpuIdle": true},
                "env": [{"name": "RUST_LOG", "value": "info"}]
            }]
        },
        "traffic": [
            {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": "api-00006-abc", "percent": 90},
            {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": "api-00007-xyz", "percent": 10, "tag": "canary"}
        ],
        "observedGeneration": "7",
        "terminalCondition": {
            "type": "Ready",
            "state": "CONDITION_SUCCEEDED",
            "lastTransitionTime": "2025-01-02T03:14:05Z"
        },
        "conditions": [
            {"type": "RoutesReady", "state": "CONDITION_SUCCEEDED", "lastTransitionTime": "2025-01-02T03:14:05+00:00"},
            {"type": "ConfigurationsReady", "state": "CONDITION_SUCCEEDED", "severity": "INFO"}
        ],
        "latestReadyRevision": "projects/demo/locations/europe-west1/services/api/revisions/api-00007-xyz",
        "latestCreatedRevision": "projects/demo/locations/europe-west1/services/api/revisions/api-00007-xyz",
        "trafficStatuses": [
            {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": "api-00006-abc", "percent": 90},
            {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": "api-00007-xyz", "percent": 10,
             "tag": "canary", "uri": "https://canary---api-abc123-ew.a.run.app"}
        ],
        "uri": "https://api-abc123-ew.a.run.app",
        "urls": ["https://api-abc123-ew.a.run.app"],
        "reconciling": false,
        "satisfiesPzs": false,
        "etag": "\"CLfV0aAGEJCX3tQD/cHJvamVjdHMvZGVtbw\""
    })
}

fn expect_errors(result: Result<(), Vec<String>>) -> Vec<String> {
    match result {
        Ok(()) => panic!("expected violations, got none"),
        Err(errors) => errors,
    }
}

#[test]
fn documents_load_with_expected_identity() {
    assert_eq!(run().name(), "run");
    assert_eq!(monitoring().name(), "monitoring");
    assert!(!run().revision().is_empty());
}

#[test]
fn valid_service_passes() {
    run()
        .validate("GoogleCloudRunV2Service", &service())
        .unwrap_or_else(|e| panic!("valid Service rejected: {e:#?}"));
}

#[test]
fn valid_service_passes_as_get_response() {
    run()
        .validate_response("run.projects.locations.services.get", &service())
        .unwrap();
}

#[test]
fn unknown_field_is_named_with_its_path() {
    let mut svc = service();
    svc["trafficSplit"] = json!(10);
    svc["traffic"][1]["weight"] = json!(10);
    let errors = expect_errors(run().validate("GoogleCloudRunV2Service", &svc));
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("$.trafficSplit:") && e.contains("unknown property")),
        "{errors:#?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("$.traffic[1].weight:") && e.contains("`weight`")),
        "{errors:#?}"
    );
}

#[test]
fn int64_as_json_number_fails() {
    let mut svc = service();
    svc["generation"] = json!(5);
    let errors = expect_errors(run().validate("GoogleCloudRunV2Service", &svc));
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(errors[0].starts_with("$.generation:"), "{errors:#?}");
    assert!(errors[0].contains("int64"), "{errors:#?}");
}

#[test]
fn int64_string_must_be_digits() {
    let mut svc = service();
    svc["generation"] = json!("5.0");
    let errors = expect_errors(run().validate("GoogleCloudRunV2Service", &svc));
    assert!(errors[0].starts_with("$.generation:"), "{errors:#?}");
}

#[test]
fn int32_as_string_fails() {
    let mut svc = service();
    svc["traffic"][0]["percent"] = json!("90");
    let errors = expect_errors(run().validate("GoogleCloudRunV2Service", &svc));
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].starts_with("$.traffic[0].percent:"),
        "{errors:#?}"
    );
}

#[test]
fn wrong_enum_fails() {
    let mut svc = service();
    svc["traffic"][0]["type"] = json!("REVISION");
    let errors = expect_errors(run().validate("GoogleCloudRunV2Service", &svc));
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(errors[0].starts_with("$.traffic[0].type:"), "{errors:#?}");
    assert!(
        errors[0].contains("TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"),
        "{errors:#?}"
    );
}

#[test]
fn bad_datetime_and_duration_fail() {
    let mut svc = service();
    svc["updateTime"] = json!("2025-01-02 03:14:05");
    svc["template"]["timeout"] = json!("300");
    svc["terminalCondition"]["lastTransitionTime"] = json!("2025-02-30T00:00:00Z");
    let errors = expect_errors(run().validate("GoogleCloudRunV2Service", &svc));
    assert_eq!(errors.len(), 3, "{errors:#?}");
    for path in [
        "$.updateTime:",
        "$.template.timeout:",
        "$.terminalCondition.lastTransitionTime:",
    ] {
        assert!(
            errors.iter().any(|e| e.starts_with(path)),
            "{path}: {errors:#?}"
        );
    }
}

#[test]
fn durations_and_datetimes_in_accepted_shapes_pass() {
    let d = run();
    for timeout in ["3.5s", "0s", "300s", "0.000000001s", "-1.5s"] {
        d.validate(
            "GoogleLongrunningWaitOperationRequest",
            &json!({"timeout": timeout}),
        )
        .unwrap_or_else(|e| panic!("{timeout}: {e:?}"));
    }
    for bad in ["3.5", "s", "1.s", "1m", "1.0000000001s", " 1s"] {
        assert!(
            d.validate(
                "GoogleLongrunningWaitOperationRequest",
                &json!({"timeout": bad})
            )
            .is_err(),
            "{bad} accepted"
        );
    }
}

#[test]
fn type_mismatches_and_null_fail() {
    let mut svc = service();
    svc["reconciling"] = json!("false");
    svc["urls"] = json!("https://x");
    svc["labels"] = json!({"team": 1});
    svc["template"] = json!(null);
    let errors = expect_errors(run().validate("GoogleCloudRunV2Service", &svc));
    assert_eq!(errors.len(), 4, "{errors:#?}");
    for path in ["$.reconciling:", "$.urls:", "$.labels.team:", "$.template:"] {
        assert!(
            errors.iter().any(|e| e.starts_with(path)),
            "{path}: {errors:#?}"
        );
    }
}

#[test]
fn operation_with_any_typed_response_passes() {
    let op = json!({
        "name": "projects/demo/locations/europe-west1/operations/op-123",
        "metadata": {
            "@type": "type.googleapis.com/google.cloud.run.v2.Service",
            "name": "projects/demo/locations/europe-west1/services/api"
        },
        "done": true,
        "response": {
            "@type": "type.googleapis.com/google.cloud.run.v2.Service",
            "name": "projects/demo/locations/europe-west1/services/api",
            "generation": "8"
        }
    });
    let d = run();
    d.validate("GoogleLongrunningOperation", &op).unwrap();
    d.validate_response("run.projects.locations.operations.wait", &op)
        .unwrap();
    d.validate_response("run.projects.locations.services.patch", &op)
        .unwrap();
}

#[test]
fn failed_operation_error_is_checked() {
    let op = json!({
        "name": "projects/demo/locations/europe-west1/operations/op-124",
        "done": true,
        "error": {
            "code": 9,
            "message": "Revision api-00008-bad is not ready",
            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "X"}]
        }
    });
    run().validate("GoogleLongrunningOperation", &op).unwrap();
    let mut bad = op.clone();
    bad["error"]["code"] = json!("FAILED_PRECONDITION");
    let errors = expect_errors(run().validate("GoogleLongrunningOperation", &bad));
    assert!(errors[0].starts_with("$.error.code:"), "{errors:#?}");
}

#[test]
fn list_time_series_with_int64_string_passes() {
    let body = json!({
        "timeSeries": [{
            "metric": {
                "type": "run.googleapis.com/request_count",
                "labels": {"response_code_class": "5xx"}
            },
            "resource": {
                "type": "cloud_run_revision",
                "labels": {"service_name": "api", "revision_name": "api-00007-xyz"}
            },
            "metricKind": "DELTA",
            "valueType": "INT64",
            "points": [{
                "interval": {"startTime": "2025-01-02T03:13:05Z", "endTime": "2025-01-02T03:14:05Z"},
                "value": {"int64Value": "12"}
            }, {
                "interval": {"startTime": "2025-01-02T03:12:05Z", "endTime": "2025-01-02T03:13:05Z"},
                "value": {"doubleValue": 0.5}
            }]
        }],
        "unit": "1"
    });
    let d = monitoring();
    d.validate("ListTimeSeriesResponse", &body).unwrap();
    d.validate_response("monitoring.projects.timeSeries.list", &body)
        .unwrap();

    let mut bad = body.clone();
    bad["timeSeries"][0]["points"][0]["value"]["int64Value"] = json!(12);
    let errors = expect_errors(d.validate("ListTimeSeriesResponse", &bad));
    assert_eq!(
        errors,
        vec![
            "$.timeSeries[0].points[0].value.int64Value: expected string (format int64), got JSON number"
                .to_owned()
        ]
    );
}

#[test]
fn unknown_schema_is_an_error() {
    let errors = expect_errors(run().validate("NoSuchSchema", &json!({})));
    assert!(errors[0].contains("NoSuchSchema"));
}

#[test]
fn time_series_list_query_parameters() {
    let d = monitoring();
    let params = d
        .query_parameters("monitoring.projects.timeSeries.list")
        .expect("method present");
    for name in [
        "filter",
        "interval.startTime",
        "interval.endTime",
        "aggregation.alignmentPeriod",
        "aggregation.perSeriesAligner",
        "aggregation.crossSeriesReducer",
        "aggregation.groupByFields",
        "view",
        "pageSize",
        "pageToken",
    ] {
        assert!(params.contains_key(name), "missing {name}");
    }
    assert!(
        !params.contains_key("name"),
        "path parameter listed as query"
    );
    assert!(params["aggregation.groupByFields"].repeated);
    assert_eq!(params["view"].enum_values, ["FULL", "HEADERS"]);

    let query = [
        (
            "filter",
            r#"metric.type="run.googleapis.com/request_count""#,
        ),
        ("interval.startTime", "2025-01-02T03:13:05Z"),
        ("interval.endTime", "2025-01-02T03:14:05Z"),
        ("aggregation.alignmentPeriod", "60s"),
        ("aggregation.perSeriesAligner", "ALIGN_DELTA"),
        ("aggregation.crossSeriesReducer", "REDUCE_SUM"),
        (
            "aggregation.groupByFields",
            "metric.labels.response_code_class",
        ),
        ("aggregation.groupByFields", "resource.labels.revision_name"),
        ("view", "FULL"),
    ];
    d.check_query("monitoring.projects.timeSeries.list", query)
        .unwrap();

    let bad = [
        ("interval.start_time", "2025-01-02T03:13:05Z"),
        ("aggregation.alignmentPeriod", "60"),
        ("view", "SUMMARY"),
        ("pageSize", "ten"),
        ("filter", "a"),
        ("filter", "b"),
    ];
    let errors = expect_errors(d.check_query("monitoring.projects.timeSeries.list", bad));
    assert_eq!(errors.len(), 5, "{errors:#?}");
}

#[test]
fn services_patch_query_parameters() {
    let d = run();
    let params = d
        .query_parameters("run.projects.locations.services.patch")
        .unwrap();
    let names: Vec<&str> = params.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "allowMissing",
            "forceNewRevision",
            "updateMask",
            "validateOnly"
        ]
    );
    d.check_query(
        "run.projects.locations.services.patch",
        [("updateMask", "traffic"), ("validateOnly", "false")],
    )
    .unwrap();
    assert!(
        d.check_query(
            "run.projects.locations.services.patch",
            [("validateOnly", "yes")]
        )
        .is_err()
    );
    assert!(d.query_parameters("run.no.such.method").is_none());
}
