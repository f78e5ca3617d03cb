//! Property tests over every parser of data that comes from outside the process: Cloud Run v2
//! resources, Cloud Monitoring `timeSeries.list` answers, Prometheus query answers, health bodies
//! and Google error envelopes. Whatever a server answers, shiftgate must not panic, must not read
//! garbage as a count of zero errors, and must not accept a traffic split that cannot be.
//!
//! Each property runs 256 cases by default (64 where a case is a real loopback exchange);
//! `PROPTEST_CASES=N` overrides both, e.g. for a long soak.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Value, json};

use shiftgate::ports::{
    HealthResponse, PortError, RequestCounts, RolloutRecord, ServiceState, TrafficTarget, Window,
};
use shiftgate::wire::cloudrun::{
    ListRevisionsResponse, Operation, ROLLOUT_ANNOTATION, Revision, Service, TYPE_LATEST,
    TYPE_REVISION,
};
use shiftgate::wire::{monitoring, prometheus};
use shiftgate::{Expectations, HEALTHY_STATUSES, Verdict};

/// `cases` unless `PROPTEST_CASES` says otherwise. No regression files are written: inputs that
/// once failed are kept below as named tests instead.
fn cases(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config.failure_persistence = None;
    config
}

// ---------------------------------------------------------------------------------------------
// Arbitrary JSON, biased towards the field names and values the parsers look for.

const FIELDS: &[&str] = &[
    "name",
    "uri",
    "etag",
    "generation",
    "observedGeneration",
    "reconciling",
    "annotations",
    "traffic",
    "trafficStatuses",
    "type",
    "revision",
    "percent",
    "tag",
    "latestReadyRevision",
    "latestCreatedRevision",
    "template",
    "containers",
    "image",
    "conditions",
    "terminalCondition",
    "state",
    "message",
    "reason",
    "done",
    "error",
    "code",
    "revisions",
    "nextPageToken",
    "timeSeries",
    "points",
    "interval",
    "startTime",
    "endTime",
    "value",
    "int64Value",
    "doubleValue",
    "metric",
    "resource",
    "labels",
    "revision_name",
    "response_code_class",
    "status",
    "data",
    "resultType",
    "result",
    "version",
    ROLLOUT_ANNOTATION,
];

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        select(vec![
            "",
            TYPE_REVISION,
            TYPE_LATEST,
            "CONDITION_SUCCEEDED",
            "CONDITION_FAILED",
            "Ready",
            "app-1",
            "app-2",
            "projects/p/locations/r/services/app/revisions/app-2",
            "/",
            "..",
            "5xx",
            "2xx",
            "success",
            "error",
            "vector",
            "matrix",
            "ok",
            "OK",
            "healthy",
            "degraded",
            "1.2.3",
            "v2.0.0-rc.1",
            "-1",
            "0",
            "60",
            "sixty",
            "60.0",
            "9223372036854775807",
            "9223372036854775808",
            "18446744073709551616",
            "NaN",
            "+Inf",
            "1e300",
            "2030-01-15T08:00:00Z",
            "\u{0}",
            "\u{feff}ok",
            "\u{fffd}\u{fffd}",
            "::add-mask::secret",
            "{\"id\":\"x\"}",
        ])
        .prop_map(str::to_string),
        any::<String>(),
        "[0-9]{0,25}",
    ]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        (-5i64..=300).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        select(vec![0.5, -0.0, 100.0, 1e300, f64::MAX]).prop_map(Value::from),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        text().prop_map(Value::String),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![3 => select(FIELDS).prop_map(str::to_string), 1 => any::<String>()]
}

/// Any JSON value, a few levels deep, with objects keyed mostly by the fields parsers read.
fn any_json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map(key(), inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An object built from optional fields, each either of a plausible shape or (one time in
/// `junk`) anything at all, plus a few unknown keys.
fn object_with(
    junk: u32,
    fields: Vec<(&'static str, BoxedStrategy<Value>)>,
) -> BoxedStrategy<Value> {
    let parts: Vec<BoxedStrategy<Option<(String, Value)>>> = fields
        .into_iter()
        .map(|(name, plausible)| {
            prop_oneof![
                junk => Just(None),
                junk * 3 => plausible.prop_map(move |v| Some((name.to_string(), v))),
                1 => any_json().prop_map(move |v| Some((name.to_string(), v))),
            ]
            .boxed()
        })
        .collect();
    (parts, btree_map(any::<String>(), any_json(), 0..2))
        .prop_map(|(parts, extra)| {
            let mut object: Map<String, Value> = extra.into_iter().collect();
            object.extend(parts.into_iter().flatten());
            Value::Object(object)
        })
        .boxed()
}

fn object(fields: Vec<(&'static str, BoxedStrategy<Value>)>) -> BoxedStrategy<Value> {
    object_with(2, fields)
}

fn string_of(strategy: impl Strategy<Value = String> + 'static) -> BoxedStrategy<Value> {
    strategy.prop_map(Value::String).boxed()
}

// ---------------------------------------------------------------------------------------------
// Cloud Run v2

fn revision_name() -> impl Strategy<Value = String> {
    prop_oneof![
        select(vec!["app-1", "app-2", "app-3"]).prop_map(str::to_string),
        select(vec!["app-1", "app-2"])
            .prop_map(|r| format!("projects/p/locations/r/services/app/revisions/{r}")),
        text(),
    ]
}

/// A share; the rarer `junk` is, the more often a few shares add up to at most 100.
fn percent(junk: u32) -> BoxedStrategy<Value> {
    prop_oneof![
        junk * 4 => (0u64..=33).prop_map(Value::from),
        8 => (0u64..=50).prop_map(Value::from),
        2 => (0u64..=100).prop_map(Value::from),
        1 => (101u64..=255).prop_map(Value::from),
        1 => number(),
    ]
    .boxed()
}

fn traffic_entry_with(with_uri: bool, junk: u32) -> BoxedStrategy<Value> {
    let mut fields = vec![
        (
            "type",
            string_of(prop_oneof![
                select(vec![TYPE_REVISION, TYPE_LATEST]).prop_map(str::to_string),
                text()
            ]),
        ),
        ("revision", string_of(revision_name())),
        ("percent", percent(junk)),
        (
            "tag",
            string_of(prop_oneof![
                select(vec!["", "candidate", "stable"]).prop_map(str::to_string),
                text()
            ]),
        ),
    ];
    if with_uri {
        fields.push((
            "uri",
            string_of(prop_oneof![
                Just("https://t---app.run.app".to_string()),
                text()
            ]),
        ));
    }
    object_with(junk, fields)
}

fn condition() -> BoxedStrategy<Value> {
    condition_with(2)
}

fn condition_with(junk: u32) -> BoxedStrategy<Value> {
    object_with(
        junk,
        vec![
            (
                "type",
                string_of(prop_oneof![Just("Ready".to_string()), text()]),
            ),
            (
                "state",
                string_of(prop_oneof![Just("CONDITION_SUCCEEDED".to_string()), text()]),
            ),
            ("message", string_of(text())),
            ("reason", string_of(text())),
        ],
    )
}

/// A rollout record as the annotation holds it: sometimes well formed, sometimes not JSON,
/// sometimes JSON of the wrong shape.
fn rollout_annotation() -> BoxedStrategy<Value> {
    prop_oneof![
        (revision_name(), revision_name(), 0u16..=300, text()).prop_map(
            |(stable, candidate, percent, state)| {
                json!({"id": "r-1", "owner": "host h pid 1", "stable": stable,
                       "candidate": candidate, "percent": percent, "state": state,
                       "started_at": "2030-01-15T08:00:00Z"})
                .to_string()
            }
        ),
        any_json().prop_map(|v| v.to_string()),
        text(),
    ]
    .prop_map(Value::String)
    .boxed()
}

fn generation() -> BoxedStrategy<Value> {
    string_of(prop_oneof![(0u64..5).prop_map(|g| g.to_string()), text()])
}

/// Service answers, mostly well typed (one wrong-typed field refuses the whole answer, which
/// would leave `to_state` untested), sometimes not.
fn service_json() -> BoxedStrategy<Value> {
    prop_oneof![3 => service_json_with(400), 1 => service_json_with(2)].boxed()
}

fn service_json_with(junk: u32) -> BoxedStrategy<Value> {
    object_with(
        junk,
        vec![
            (
                "name",
                string_of(prop_oneof![
                    Just("projects/p/locations/r/services/app".to_string()),
                    text()
                ]),
            ),
            ("uri", string_of(text())),
            ("etag", string_of(text())),
            ("generation", generation()),
            ("observedGeneration", generation()),
            ("reconciling", any::<bool>().prop_map(Value::Bool).boxed()),
            (
                "annotations",
                (
                    rollout_annotation(),
                    btree_map(key(), text().prop_map(Value::String), 0..3),
                )
                    .prop_map(|(record, others)| {
                        let mut map: Map<String, Value> = others.into_iter().collect();
                        map.insert(ROLLOUT_ANNOTATION.to_string(), record);
                        Value::Object(map)
                    })
                    .boxed(),
            ),
            (
                "traffic",
                vec(traffic_entry_with(false, junk), 0..4)
                    .prop_map(Value::Array)
                    .boxed(),
            ),
            (
                "trafficStatuses",
                vec(traffic_entry_with(true, junk), 0..4)
                    .prop_map(Value::Array)
                    .boxed(),
            ),
            ("latestReadyRevision", string_of(revision_name())),
            ("latestCreatedRevision", string_of(revision_name())),
            (
                "template",
                object_with(
                    junk,
                    vec![
                        ("revision", string_of(revision_name())),
                        (
                            "containers",
                            vec(object_with(junk, vec![("image", string_of(text()))]), 0..3)
                                .prop_map(Value::Array)
                                .boxed(),
                        ),
                    ],
                ),
            ),
            ("terminalCondition", condition_with(junk)),
        ],
    )
}

fn revision_json() -> BoxedStrategy<Value> {
    object(vec![
        ("name", string_of(revision_name())),
        ("reconciling", any::<bool>().prop_map(Value::Bool).boxed()),
        ("createTime", string_of(text())),
        (
            "containers",
            vec(object(vec![("image", string_of(text()))]), 0..3)
                .prop_map(Value::Array)
                .boxed(),
        ),
        (
            "conditions",
            vec(condition(), 0..4).prop_map(Value::Array).boxed(),
        ),
        ("terminalCondition", condition()),
    ])
}

/// What must hold of any service state shiftgate accepts from the API.
fn check_state(state: &ServiceState) {
    let mut sum = 0u32;
    for target in &state.traffic {
        assert!(target.percent <= 100, "a share over 100%: {state:?}");
        sum += u32::from(target.percent);
        assert!(
            !target.revision.contains('/'),
            "revisions are short names: {state:?}"
        );
        assert!(target.tag.as_deref() != Some(""), "empty tags are no tags");
    }
    assert!(sum <= 100, "a split of {sum}% was accepted: {state:?}");
    let serving = state.serving();
    let serving_sum: u32 = serving.iter().map(|(_, p)| u32::from(*p)).sum();
    assert_eq!(serving_sum, sum, "serving() is the split without zeros");
    assert!(serving.iter().all(|(_, p)| *p > 0));
    assert!(
        serving.windows(2).all(|w| w[0].1 >= w[1].1),
        "largest first: {serving:?}"
    );
    for (revision, percent) in &serving {
        assert_eq!(state.percent_of(revision), *percent);
    }
    assert_eq!(state.split(), serving);
    for (tag, uri) in &state.tag_uris {
        assert!(!tag.is_empty() && !uri.is_empty());
    }
    for name in [&state.latest_ready_revision, &state.latest_created_revision]
        .into_iter()
        .flatten()
    {
        assert!(!name.contains('/'), "short names: {state:?}");
    }
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn any_service_answer_is_refused_or_read_as_a_possible_split(json in service_json()) {
        let annotation = json
            .get("annotations")
            .and_then(|a| a.get(ROLLOUT_ANNOTATION))
            .and_then(Value::as_str)
            .map(str::to_string);
        let text = json.to_string();
        let Ok(service) = serde_json::from_str::<Service>(&text) else {
            return Ok(());
        };
        let from_value = serde_json::from_value::<Service>(json);
        prop_assert!(from_value.is_ok(), "from_str and from_value agree");
        let state = service.to_state();
        check_state(&state);
        prop_assert_eq!(state.reconciling, !service.settled());
        // A record is only ever what the annotation says, never invented; one that is there but
        // cannot be read (or names a share over 100%) is said to be unreadable, never absent.
        let parsed = annotation
            .as_deref()
            .map(serde_json::from_str::<RolloutRecord>);
        match parsed {
            None => prop_assert!(state.rollout.is_none() && state.unreadable_rollout.is_none()),
            Some(Ok(record)) if record.percent <= 100 => {
                prop_assert_eq!(state.rollout, Some(record));
            }
            Some(_) => {
                prop_assert!(state.rollout.is_none());
                prop_assert!(state.unreadable_rollout.is_some());
            }
        }
    }

    #[test]
    fn any_json_at_all_as_a_service_never_panics(json in any_json()) {
        if let Ok(service) = serde_json::from_value::<Service>(json) {
            check_state(&service.to_state());
        }
    }

    #[test]
    fn any_revision_answer_is_read_as_ready_or_not_with_a_reason(json in revision_json()) {
        let Ok(revision) = serde_json::from_value::<Revision>(json) else {
            return Ok(());
        };
        let info = revision.to_info();
        prop_assert_eq!(info.ready, info.reason.is_none(), "{:?}", info);
        prop_assert!(!info.name.contains('/'));
        if revision.reconciling {
            prop_assert!(!info.ready, "a reconciling revision is not ready");
        }
    }

    #[test]
    fn any_revision_listing_or_operation_answer_never_panics(
        revisions in vec(revision_json(), 0..4),
        token in any_json(),
        operation in object(vec![
            ("name", string_of(text())),
            ("done", any::<bool>().prop_map(Value::Bool).boxed()),
            ("error", object(vec![
                ("code", number().boxed()),
                ("message", string_of(text())),
            ])),
        ]),
        junk in any_json(),
    ) {
        let listing = json!({"revisions": revisions, "nextPageToken": token});
        if let Ok(listing) = serde_json::from_value::<ListRevisionsResponse>(listing) {
            for revision in &listing.revisions {
                let info = revision.to_info();
                prop_assert_eq!(info.ready, info.reason.is_none());
            }
        }
        if let Ok(listing) = serde_json::from_value::<ListRevisionsResponse>(junk.clone()) {
            listing.revisions.iter().for_each(|r| { r.to_info(); });
        }
        if let Ok(operation) = serde_json::from_value::<Operation>(operation)
            && let Some(error) = &operation.error
        {
            let status = shiftgate::wire::cloudrun::rpc_code_to_http(error.code);
            prop_assert!((400..600).contains(&status));
        }
        let _ = serde_json::from_value::<Operation>(junk);
    }

    /// The other side: a well-formed answer is read exactly, whatever the split.
    #[test]
    fn a_well_formed_split_is_read_exactly(
        shares in vec(0u8..=100, 1..5),
        tagged in any::<bool>(),
    ) {
        // Scale the shares to a split that adds up to exactly 100.
        let total: u32 = shares.iter().map(|s| u32::from(*s)).sum::<u32>().max(1);
        let mut percents: Vec<u8> =
            shares.iter().map(|s| (u32::from(*s) * 100 / total) as u8).collect();
        let short = 100 - percents.iter().map(|p| u32::from(*p)).sum::<u32>();
        percents[0] += short as u8;
        let traffic: Vec<Value> = percents
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut entry = json!({"type": TYPE_REVISION,
                    "revision": format!("projects/p/locations/r/services/app/revisions/app-{i}")});
                if *p > 0 {
                    entry["percent"] = json!(p);
                }
                if tagged {
                    entry["tag"] = json!(format!("t{i}"));
                }
                entry
            })
            .collect();
        let service: Service = serde_json::from_value(json!({
            "name": "projects/p/locations/r/services/app",
            "generation": "2", "observedGeneration": "2",
            "traffic": traffic,
        }))
        .unwrap();
        let state = service.to_state();
        let expected: Vec<TrafficTarget> = percents
            .iter()
            .enumerate()
            .map(|(i, p)| TrafficTarget {
                revision: format!("app-{i}"),
                percent: *p,
                tag: tagged.then(|| format!("t{i}")),
            })
            .collect();
        prop_assert_eq!(&state.traffic, &expected);
        check_state(&state);
    }
}

/// A service whose traffic names one revision twice with shares that add up past 255 once made
/// `serving()` overflow a `u8` (a panic in debug builds, a wrapped percent in release).
#[test]
fn a_split_over_100_percent_is_refused_as_the_answer_it_is() {
    for traffic in [
        json!([{"revision": "app-1", "percent": 200}, {"revision": "app-1", "percent": 100}]),
        json!([{"revision": "app-1", "percent": 60}, {"revision": "app-2", "percent": 60}]),
        json!([{"revision": "app-1", "percent": 101}]),
    ] {
        let answer = json!({"name": "projects/p/locations/r/services/app", "traffic": traffic});
        let error = serde_json::from_value::<Service>(answer)
            .map(|s| s.to_state())
            .expect_err("a split over 100% is not a service state");
        assert!(error.to_string().contains("percent"), "{error}");
    }
    let answer = json!({"name": "s", "generation": "2", "observedGeneration": "1",
        "trafficStatuses": [{"revision": "app-1", "percent": 255}, {"revision": "app-1", "percent": 255}]});
    assert!(serde_json::from_value::<Service>(answer).is_err());
}

/// States built elsewhere (the simulator, the engine) go through the same arithmetic.
#[test]
fn serving_and_percent_of_never_overflow() {
    let state = ServiceState {
        traffic: vec![
            TrafficTarget::new("app-1", 200),
            TrafficTarget::new("app-1", 100),
        ],
        ..ServiceState::default()
    };
    assert_eq!(state.serving(), vec![("app-1".to_string(), 255)]);
    assert_eq!(state.percent_of("app-1"), 255);
}

// ---------------------------------------------------------------------------------------------
// Cloud Monitoring v3 `timeSeries.list`

const T0: u64 = 1_800_000_000;

fn at(offset: i64) -> SystemTime {
    let base = SystemTime::UNIX_EPOCH + Duration::from_secs(T0);
    if offset >= 0 {
        base + Duration::from_secs(offset as u64)
    } else {
        base - Duration::from_secs(offset.unsigned_abs())
    }
}

/// The five-minute window every generated answer is read for.
fn window() -> Window {
    Window {
        start: at(0),
        end: at(300),
    }
}

fn rfc3339(offset: i64) -> String {
    humantime::format_rfc3339_millis(at(offset)).to_string()
}

/// One generated point, kept as a model so that the expected reading can be worked out.
#[derive(Debug, Clone)]
enum Count {
    Text(String),
    Number(Value),
    Double(Value),
    Missing,
    Junk(Value),
}

#[derive(Debug, Clone)]
struct Point {
    start: Option<i64>,
    end: Option<i64>,
    count: Count,
}

#[derive(Debug, Clone)]
struct Series {
    revision: Option<String>,
    class: Option<String>,
    points: Vec<Point>,
}

fn count() -> impl Strategy<Value = Count> {
    prop_oneof![
        16 => (0u64..10_000).prop_map(|c| Count::Text(c.to_string())),
        2 => text().prop_map(Count::Text),
        1 => select(vec![
            i64::MAX.to_string(),
            (i64::MAX as u64 + 1).to_string(),
            u64::MAX.to_string(),
            "-60".to_string(),
            "60.0".to_string(),
            "+60".to_string(),
            " 60".to_string(),
            "٦٠".to_string(),
        ])
        .prop_map(Count::Text),
        1 => number().prop_map(Count::Number),
        1 => number().prop_map(Count::Double),
        1 => Just(Count::Missing),
        1 => any_json().prop_map(Count::Junk),
    ]
}

fn point() -> impl Strategy<Value = Point> {
    let inside = (0i64..=300, 0i64..=300).prop_map(|(a, b)| (Some(a.min(b)), Some(a.max(b))));
    let anywhere = (
        proptest::option::weighted(0.9, -1000i64..1000),
        proptest::option::weighted(0.9, -1000i64..1000),
    );
    (prop_oneof![8 => inside, 1 => anywhere], count()).prop_map(|((start, end), count)| Point {
        start,
        end,
        count,
    })
}

/// A series' revision label: mostly one of the service's, sometimes any text, sometimes absent.
fn revision_label() -> impl Strategy<Value = Option<String>> {
    proptest::option::weighted(
        0.9,
        prop_oneof![
            4 => select(vec!["app-1", "app-2"]).prop_map(str::to_string),
            1 => text()
        ],
    )
}

/// A series' response code class label, likewise.
fn class_label() -> impl Strategy<Value = Option<String>> {
    proptest::option::weighted(
        0.9,
        prop_oneof![
            4 => select(vec!["2xx", "4xx", "5xx"]).prop_map(str::to_string),
            1 => text()
        ],
    )
}

fn series() -> impl Strategy<Value = Series> {
    (revision_label(), class_label(), vec(point(), 0..4)).prop_map(|(revision, class, points)| {
        Series {
            revision,
            class,
            points,
        }
    })
}

fn series_json(series: &Series) -> Value {
    let points: Vec<Value> = series
        .points
        .iter()
        .map(|p| {
            let mut interval = Map::new();
            if let Some(start) = p.start {
                interval.insert("startTime".into(), json!(rfc3339(start)));
            }
            if let Some(end) = p.end {
                interval.insert("endTime".into(), json!(rfc3339(end)));
            }
            let value = match &p.count {
                Count::Text(text) => json!({"int64Value": text}),
                Count::Number(n) => json!({"int64Value": n}),
                Count::Double(n) => json!({"doubleValue": n}),
                Count::Missing => json!({}),
                Count::Junk(junk) => json!({"int64Value": junk}),
            };
            json!({"interval": interval, "value": value})
        })
        .collect();
    let mut metric = Map::new();
    if let Some(class) = &series.class {
        metric.insert("response_code_class".into(), json!(class));
    }
    let mut resource = Map::new();
    if let Some(revision) = &series.revision {
        resource.insert("revision_name".into(), json!(revision));
    }
    json!({"metric": {"labels": metric}, "resource": {"labels": resource}, "points": points})
}

/// What a point is worth when it is good data: a count dated inside the window, else `None`.
fn expected_count(point: &Point) -> Option<u64> {
    let (start, end) = (point.start?, point.end?);
    if start > end || start < 0 || end > 300 || end <= 0 {
        return None;
    }
    let limit = i64::MAX as u64;
    match &point.count {
        Count::Text(text) if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => {
            text.parse::<u64>().ok().filter(|c| *c <= limit)
        }
        Count::Number(n) => n.as_u64().filter(|c| *c <= limit),
        Count::Double(n) => n
            .as_f64()
            .filter(|v| v.is_finite() && *v >= 0.0 && v.fract() == 0.0 && *v <= 2f64.powi(53))
            .map(|v| v as u64),
        Count::Junk(Value::String(text))
            if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) =>
        {
            text.parse::<u64>().ok().filter(|c| *c <= limit)
        }
        Count::Junk(Value::Number(n)) => n.as_u64().filter(|c| *c <= limit),
        _ => None,
    }
}

/// The reading an answer must give: every point of a series with a revision is good data and
/// no sum passes an int64, or the answer is an error.
fn expected_counts(all: &[Series]) -> Option<BTreeMap<String, RequestCounts>> {
    let limit = i64::MAX as u64;
    let add = |a: u64, b: u64| a.checked_add(b).filter(|s| *s <= limit);
    let mut counts: BTreeMap<String, RequestCounts> = BTreeMap::new();
    for series in all {
        let Some(revision) = &series.revision else {
            continue;
        };
        let mut sum = 0u64;
        for point in &series.points {
            sum = add(sum, expected_count(point)?)?;
        }
        let entry = counts.entry(revision.clone()).or_default();
        entry.total = add(entry.total, sum)?;
        if series.class.as_deref() == Some("5xx") {
            entry.server_errors = add(entry.server_errors, sum)?;
        }
    }
    Some(counts)
}

fn read_monitoring(answer: Value) -> Result<BTreeMap<String, RequestCounts>, PortError> {
    let mut counts = BTreeMap::new();
    monitoring::read_answer(&mut counts, answer, window()).map(|_| counts)
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn a_monitoring_answer_is_read_exactly_or_is_a_metrics_error(
        all in vec(series(), 0..5),
        token in proptest::option::of(text()),
    ) {
        let mut answer = json!({"timeSeries": all.iter().map(series_json).collect::<Vec<_>>()});
        if let Some(token) = &token {
            answer["nextPageToken"] = json!(token);
        }
        let mut counts = BTreeMap::new();
        let read = monitoring::read_answer(&mut counts, answer, window());
        match (expected_counts(&all), read) {
            (Some(expected), Ok(next)) => {
                prop_assert_eq!(&counts, &expected);
                prop_assert_eq!(next, token.filter(|t| !t.is_empty()));
            }
            (None, Err(PortError::Unavailable(message))) => {
                prop_assert!(message.contains("Cloud Monitoring"), "{}", message);
            }
            (expected, read) => {
                prop_assert!(false, "expected {:?}, read {:?}", expected, read);
            }
        }
        for c in counts.values() {
            prop_assert!(c.server_errors <= c.total, "{:?}", c);
        }
    }

    /// The promise of issue 7: an unreadable 5xx count never reads as zero errors.
    #[test]
    fn an_unreadable_5xx_count_is_never_zero_errors(
        bad in text().prop_filter("not a count", |t| t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit())),
        good in 0u64..1000,
    ) {
        let series = |class: &str, value: Value| json!({
            "metric": {"labels": {"response_code_class": class}},
            "resource": {"labels": {"revision_name": "app-2"}},
            "points": [{"interval": {"startTime": rfc3339(0), "endTime": rfc3339(300)},
                        "value": {"int64Value": value}}]});
        let answer = json!({"timeSeries": [series("2xx", json!(good.to_string())), series("5xx", json!(bad))]});
        let read = read_monitoring(answer);
        prop_assert!(
            matches!(&read, Err(PortError::Unavailable(m)) if m.contains("5xx count") && m.contains("app-2")),
            "{:?} read as {:?}", bad, read
        );
    }

    #[test]
    fn any_json_as_a_monitoring_answer_never_panics(answer in any_json()) {
        if let Ok(counts) = read_monitoring(answer) {
            for c in counts.values() {
                prop_assert!(c.server_errors <= c.total);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Prometheus instant-query answers

/// `time` as the query sends it: the window's end.
const EVALUATED: f64 = (T0 + 300) as f64;

#[derive(Debug, Clone)]
struct Sample {
    revision: Option<String>,
    class: Option<String>,
    at: Value,
    value: Value,
}

fn sample() -> impl Strategy<Value = Sample> {
    (
        revision_label(),
        class_label(),
        prop_oneof![
            6 => Just(json!(EVALUATED)),
            1 => Just(json!(EVALUATED - 600.0)),
            1 => number(),
            1 => any_json(),
        ],
        prop_oneof![
            4 => (0u32..100_000).prop_map(|c| json!(format!("{}", f64::from(c) / 10.0))),
            2 => text().prop_map(Value::String),
            1 => select(vec!["9007199254740992", "9007199254740993", "1e16", "-0", "-1", "NaN", "Inf", " 5 "])
                .prop_map(|t| json!(t)),
            1 => any_json(),
        ],
    )
        .prop_map(|(revision, class, at, value)| Sample {
            revision,
            class,
            at,
            value,
        })
}

fn sample_json(sample: &Sample) -> Value {
    let mut metric = Map::new();
    if let Some(revision) = &sample.revision {
        metric.insert("revision_name".into(), json!(revision));
    }
    if let Some(class) = &sample.class {
        metric.insert("response_code_class".into(), json!(class));
    }
    json!({"metric": metric, "value": [sample.at, sample.value]})
}

fn prometheus_answer() -> impl Strategy<Value = (Vec<Sample>, Value)> {
    (
        vec(sample(), 0..5),
        prop_oneof![8 => Just(json!("success")), 1 => Just(json!("error")), 1 => any_json()],
        prop_oneof![8 => Just(json!("vector")), 1 => Just(json!("matrix")), 1 => any_json()],
    )
        .prop_map(|(samples, status, kind)| {
            let result: Vec<Value> = samples.iter().map(sample_json).collect();
            let answer = json!({"status": status, "data": {"resultType": kind, "result": result}});
            (samples, answer)
        })
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn a_prometheus_answer_gives_consistent_counts_or_a_metrics_error(
        (samples, answer) in prometheus_answer(),
    ) {
        let success = answer["status"] == "success" && answer["data"]["resultType"] == "vector";
        let read = prometheus::read_answer(answer, window());
        let Ok(counts) = read else {
            return Ok(());
        };
        prop_assert!(success, "only a successful vector is data");
        for c in counts.values() {
            prop_assert!(c.server_errors <= c.total, "{:?}", c);
        }
        // Every sample of a revision was a readable, non-negative count at the asked time.
        for sample in samples.iter().filter(|s| s.revision.is_some()) {
            let value = sample.value.as_str().and_then(|v| v.trim().parse::<f64>().ok());
            prop_assert!(
                value.is_some_and(|v| v.is_finite() && v >= 0.0),
                "{:?} was read as a count", sample.value
            );
            prop_assert!(sample.at.as_f64().is_some_and(|t| (t - EVALUATED).abs() <= 0.002));
        }
        let errors: u64 = counts.values().map(|c| c.server_errors).sum();
        let five_xx: f64 = samples
            .iter()
            .filter(|s| s.revision.is_some() && s.class.as_deref() == Some("5xx"))
            .map(|s| s.value.as_str().unwrap().trim().parse::<f64>().unwrap())
            .sum();
        if five_xx >= 1.0 {
            prop_assert!(errors > 0, "{} 5xx requests read as none", five_xx);
        }
    }

    #[test]
    fn any_json_as_a_prometheus_answer_never_panics(answer in any_json(), data in any_json()) {
        let _ = prometheus::read_answer(answer, window());
        let _ = prometheus::read_answer(json!({"status": "success", "data": data}), window());
    }
}

// ---------------------------------------------------------------------------------------------
// Latency answers (Cloud Monitoring distributions, Prometheus histograms)

/// One revision's latency distribution as Monitoring sends it: a layout and its counts.
fn distribution() -> impl Strategy<Value = (Value, u64)> {
    let layout = prop_oneof![
        (1i64..50, 1.1f64..4.0, 0.5f64..10.0).prop_map(|(n, growth, scale)| {
            (json!({"exponentialBuckets": {"numFiniteBuckets": n, "growthFactor": growth, "scale": scale}}), n as usize)
        }),
        (1i64..50, 1.0f64..500.0, 0.0f64..100.0).prop_map(|(n, width, offset)| {
            (json!({"linearBuckets": {"numFiniteBuckets": n, "width": width, "offset": offset}}), n as usize)
        }),
        vec(1.0f64..10_000.0, 1..20).prop_map(|mut bounds| {
            bounds.sort_by(f64::total_cmp);
            bounds.dedup();
            let n = bounds.len() - 1;
            (json!({"explicitBuckets": {"bounds": bounds}}), n)
        }),
    ];
    layout.prop_flat_map(|(options, finite)| {
        vec(0u64..1_000, 0..=finite + 2).prop_map(move |counts| {
            let total: u64 = counts.iter().sum();
            let value = json!({
                "count": total.to_string(),
                "bucketOptions": options,
                "bucketCounts": counts.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
            });
            (value, total)
        })
    })
}

fn latency_series(revision: &str, distribution: &Value) -> Value {
    json!({
        "resource": {"labels": {"revision_name": revision}},
        "metricKind": "DELTA",
        "valueType": "DISTRIBUTION",
        "points": [{
            "interval": {"startTime": rfc3339(0), "endTime": rfc3339(300)},
            "value": {"distributionValue": distribution},
        }],
    })
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn a_monitoring_distribution_is_read_with_every_request(
        (candidate, n) in distribution(),
        (stable, m) in distribution(),
    ) {
        let answer = json!({"timeSeries": [
            latency_series("app-2", &candidate),
            latency_series("app-1", &stable),
        ]});
        let mut read = BTreeMap::new();
        match monitoring::read_latency_answer(&mut read, answer, window()) {
            Ok(None) => {
                prop_assert_eq!(read.get("app-2").map_or(0, |h| h.total()), n);
                prop_assert_eq!(read.get("app-1").map_or(0, |h| h.total()), m);
            }
            // Every layout here is valid and its counts fit it: nothing may be refused.
            Ok(Some(token)) => prop_assert!(false, "a page token from nowhere: {}", token),
            Err(error) => prop_assert!(false, "{:?}", error),
        }
    }

    #[test]
    fn any_json_as_a_latency_answer_never_panics(answer in any_json(), value in any_json()) {
        let mut read = BTreeMap::new();
        let _ = monitoring::read_latency_answer(&mut read, answer, window());
        let wrapped = json!({"timeSeries": [latency_series("app-1", &value)]});
        let _ = monitoring::read_latency_answer(&mut read, wrapped, window());
        let _ = prometheus::read_latency_answer(value, window());
    }

    #[test]
    fn prometheus_cumulative_buckets_become_a_histogram_of_the_inf_bucket_total(
        mut bounds in vec(1u32..10_000, 1..12),
        steps in vec(0u32..500, 13),
    ) {
        bounds.sort_unstable();
        bounds.dedup();
        let mut cumulative = 0u64;
        let mut result = Vec::new();
        for (bound, step) in bounds.iter().map(|b| b.to_string()).chain(["+Inf".to_string()]).zip(&steps) {
            cumulative += u64::from(*step);
            result.push(json!({
                "metric": {"revision_name": "app-2", "le": bound},
                "value": [EVALUATED, format!("{cumulative}")],
            }));
        }
        let answer = json!({"status": "success", "data": {"resultType": "vector", "result": result}});
        let read = prometheus::read_latency_answer(answer, window()).unwrap();
        prop_assert_eq!(read.get("app-2").map_or(0, |h| h.total()), cumulative);
    }
}

#[test]
fn a_prometheus_histogram_without_its_inf_bucket_is_refused() {
    let answer = json!({"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"revision_name": "app-2", "le": "100"}, "value": [EVALUATED, "5"]},
    ]}});
    let error = prometheus::read_latency_answer(answer, window()).unwrap_err();
    assert!(error.to_string().contains("+Inf"), "{error}");
}

// ---------------------------------------------------------------------------------------------
// Health bodies

fn health_body() -> impl Strategy<Value = String> {
    prop_oneof![
        any_json().prop_map(|v| v.to_string()),
        (
            proptest::option::of(prop_oneof![
                4 => select(HEALTHY_STATUSES.to_vec()).prop_map(|s| json!(s)),
                1 => leaf(),
                1 => any_json(),
            ]),
            proptest::option::of(prop_oneof![
                Just(json!("1.4.2")),
                Just(json!("v2.0.0")),
                leaf()
            ]),
            btree_map(key(), any_json(), 0..3),
        )
            .prop_map(|(status, version, extra)| {
                let mut body: Map<String, Value> = extra.into_iter().collect();
                body.remove("status");
                body.remove("version");
                if let Some(status) = status {
                    body.insert("status".into(), status);
                }
                if let Some(version) = version {
                    body.insert("version".into(), version);
                }
                Value::Object(body).to_string()
            }),
        text(),
        any::<Vec<u8>>().prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

fn http_status() -> impl Strategy<Value = u16> {
    prop_oneof![3 => 200u16..300, 2 => 100u16..600, 1 => any::<u16>()]
}

fn is_healthy_status(value: &Value) -> bool {
    value
        .as_str()
        .is_some_and(|s| HEALTHY_STATUSES.iter().any(|ok| ok.eq_ignore_ascii_case(s)))
}

proptest! {
    #![proptest_config(cases(256))]

    /// DESIGN.md "Health by default": a 2xx answer, and where the body is JSON with a `status`
    /// field, its value is one of ok/healthy/pass/up. A 3xx is not healthy.
    #[test]
    fn the_default_rule_passes_exactly_what_the_contract_says(
        status in http_status(),
        body in health_body(),
    ) {
        let verdict = Expectations::default().judge(&HealthResponse { status, body: body.clone() });
        let json: Option<Value> = serde_json::from_str(&body).ok();
        let expected = (200..300).contains(&status)
            && match json.as_ref().and_then(|b| b.get("status")) {
                Some(value) => is_healthy_status(value),
                // Not JSON, or JSON without a status: a 2xx is enough.
                None => true,
            };
        prop_assert_eq!(verdict.is_pass(), expected, "{} {:?}: {:?}", status, body, verdict);
        if !verdict.is_pass() {
            prop_assert!(verdict.is_fail(), "a health answer is a pass or a fail: {:?}", verdict);
        }
    }

    #[test]
    fn field_rules_and_a_version_requirement_never_pass_what_they_do_not_see(
        status in http_status(),
        body in health_body(),
        rules in vec((select(vec!["status", "ready", "database", "checks.db"]), text()), 0..3),
        requirement in proptest::option::of(select(vec![">=1.4.0", "^2", "*", "=1.4.2"])),
    ) {
        let expectations = Expectations {
            fields: rules
                .iter()
                .filter_map(|(k, v)| format!("{k}={v}").parse().ok())
                .collect(),
            version: requirement.map(|r| r.parse().unwrap()),
            ..Expectations::default()
        };
        let verdict = expectations.judge(&HealthResponse { status, body: body.clone() });
        if !(200..300).contains(&status) {
            prop_assert!(verdict.is_fail(), "HTTP {} passed: {:?}", status, verdict);
        }
        if verdict.is_pass() {
            let json: Value = match serde_json::from_str(&body) {
                Ok(json) => json,
                Err(_) => {
                    prop_assert!(
                        expectations.fields.is_empty() && expectations.version.is_none(),
                        "a body that is not JSON passed explicit expectations: {:?}", body
                    );
                    return Ok(());
                }
            };
            for rule in &expectations.fields {
                let found = rule.key.split('.').try_fold(&json, |v, k| v.get(k));
                prop_assert!(found.is_some(), "{} absent yet passed: {}", rule.key, body);
            }
            if expectations.version.is_some() {
                prop_assert!(json.get("version").is_some(), "no version yet passed: {}", body);
            }
        }
        if let Verdict::Fail(reason) = &verdict {
            prop_assert!(!reason.is_empty());
        }
    }
}

/// `{"status": null}`, `{"status": ["ok"]}` and `{"status": {}}` are JSON bodies with a
/// `status` field whose value is none of the healthy ones: they once passed the default rule.
#[test]
fn a_status_that_is_not_a_healthy_word_fails_the_default_rule() {
    for body in [
        r#"{"status":null}"#,
        r#"{"status":["ok"]}"#,
        r#"{"status":{"ok":true}}"#,
        r#"{"status":true}"#,
        r#"{"status":200}"#,
    ] {
        let verdict = Expectations::default().judge(&HealthResponse {
            status: 200,
            body: body.to_string(),
        });
        assert!(verdict.is_fail(), "{body}: {verdict:?}");
        assert!(verdict.reason().unwrap().contains("status"), "{verdict:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Google error envelopes and answer bodies, through the real `GoogleRest` client and a loopback
// server that answers each generated status and body.

mod loopback {
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex, OnceLock};

    use axum::http::StatusCode;
    use axum::response::IntoResponse;

    /// What the server answers next: status and body bytes.
    pub type Answer = Arc<Mutex<(u16, Vec<u8>)>>;

    pub struct Server {
        pub runtime: tokio::runtime::Runtime,
        pub address: SocketAddr,
        pub answer: Answer,
    }

    /// One server for all cases, on 127.0.0.1.
    pub fn server() -> &'static Server {
        static SERVER: OnceLock<Server> = OnceLock::new();
        SERVER.get_or_init(|| {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let answer: Answer = Arc::new(Mutex::new((200, b"{}".to_vec())));
            let shared = answer.clone();
            let app = axum::Router::new().fallback(move || {
                let shared = shared.clone();
                async move {
                    let (status, body) = shared.lock().unwrap().clone();
                    (StatusCode::from_u16(status).unwrap(), body).into_response()
                }
            });
            let listener = runtime
                .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
                .unwrap();
            let address = listener.local_addr().unwrap();
            runtime.spawn(async move { axum::serve(listener, app).await });
            Server {
                runtime,
                address,
                answer,
            }
        })
    }
}

fn google_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => (number(), text(), text(), any_json()).prop_map(|(code, message, status, details)| {
            json!({"error": {"code": code, "message": message, "status": status, "details": details}})
                .to_string()
                .into_bytes()
        }),
        1 => any_json().prop_map(|v| v.to_string().into_bytes()),
        1 => text().prop_map(String::into_bytes),
        1 => vec(any::<u8>(), 0..64),
    ]
}

fn google_status() -> impl Strategy<Value = u16> {
    prop_oneof![
        3 => Just(200u16),
        1 => select(vec![201u16, 204, 400, 401, 403, 404, 409, 412, 429, 500, 503]),
        1 => 200u16..600,
    ]
}

proptest! {
    #![proptest_config(cases(64))]

    #[test]
    fn any_google_answer_is_json_or_a_port_error_never_a_panic(
        status in google_status(),
        body in google_body(),
    ) {
        use shiftgate::{Credentials, GoogleRest, Retry};
        let server = loopback::server();
        *server.answer.lock().unwrap() = (status, body.clone());
        let rest = GoogleRest::new(&format!("http://{}", server.address), Credentials::None)
            .with_retry_log(|_| {});
        let read = server.runtime.block_on(rest.send(
            reqwest::Method::GET,
            "v2/projects/p/locations/r/services/app",
            &[],
            None,
            Retry::Never,
            Duration::from_secs(10),
        ));
        let text = String::from_utf8_lossy(&body);
        let parsed: Option<Value> = serde_json::from_str(&text).ok();
        // hyper drops the body of a 204 (and of a 304, not a 2xx); a 205 keeps what it was given.
        let bodiless = status == 204 || text.trim().is_empty();
        match read {
            Ok(value) => {
                prop_assert!((200..300).contains(&status), "HTTP {} read as an answer", status);
                if bodiless {
                    prop_assert_eq!(value, json!({}));
                } else {
                    prop_assert_eq!(Some(value), parsed, "the answer is the body as sent");
                }
            }
            Err(error) => {
                prop_assert!(
                    !(200..300).contains(&status) || (!bodiless && parsed.is_none()),
                    "a 2xx JSON answer was refused: {:?}", error
                );
                match (status, &error) {
                    (404, PortError::NotFound(_)) | (409, PortError::Conflict(_)) => {}
                    (404 | 409, other) => prop_assert!(false, "HTTP {} read as {:?}", status, other),
                    (400..=599, error) => {
                        // The server's own message is passed on, so a person can act on it.
                        if let Some(message) = parsed
                            .as_ref()
                            .and_then(|p| p["error"]["message"].as_str())
                            .filter(|m| !m.is_empty())
                        {
                            prop_assert!(error.to_string().contains(message), "{}", error);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// GitHub: the workflow file read back from the contents API when a dispatch is refused.

fn workflow_line() -> impl Strategy<Value = String> {
    prop_oneof![
        select(vec![
            "on:",
            "  workflow_dispatch:",
            "    inputs:",
            "      environment:",
            "        type: choice",
            "      image_tag:",
            "  push:",
            "jobs:",
            "# comment",
            "",
            "\t",
            "inputs:",
            "workflow_dispatch:",
        ])
        .prop_map(str::to_string),
        text(),
        ("[ \t]{0,8}", text()).prop_map(|(indent, line)| format!("{indent}{line}:")),
    ]
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn any_workflow_file_gives_input_names_it_contains(lines in vec(workflow_line(), 0..16)) {
        let yaml = lines.join("\n");
        for name in shiftgate::workflow_dispatch_inputs(&yaml) {
            prop_assert!(yaml.contains(name.as_str()), "{:?} is not in the file", name);
        }
    }

    #[test]
    fn the_declared_inputs_of_a_well_formed_workflow_are_read_exactly(
        names in proptest::collection::btree_set("[a-z][a-z0-9_-]{0,12}", 0..5),
        indent in 1usize..4,
    ) {
        let pad = " ".repeat(indent);
        let mut yaml = format!("name: Deploy\non:\n{pad}workflow_dispatch:\n{pad}{pad}inputs:\n");
        for name in &names {
            yaml.push_str(&format!("{pad}{pad}{pad}{name}:\n{pad}{pad}{pad}{pad}required: true\n"));
        }
        yaml.push_str(&format!("{pad}push:\njobs:\n{pad}deploy:\n{pad}{pad}runs-on: ubuntu-latest\n"));
        let read = shiftgate::workflow_dispatch_inputs(&yaml);
        prop_assert_eq!(read, names.into_iter().collect::<Vec<_>>());
    }
}
