//! Faults a test can inject into the simulated control plane and monitoring API: each one is used
//! up by the first call it applies to.
//!
//! A call fault names an HTTP method and a path substring, and says what the caller gets instead
//! of the real answer ([`Answer`]) and whether the call took effect first (`applied`: the answer
//! was lost on the way back, the case idempotency has to survive). Over HTTP every answer is what
//! a client on the wire would see; in process (the shared [`call`](crate::call)),
//! where there is no connection, a reset is a 503 and a hang a long tokio sleep.

use std::time::Duration;

use serde_json::{Value, json};

/// How long a hung call keeps its caller waiting: far beyond any client timeout, and over at once
/// under a paused tokio clock when nothing else is left to run.
pub const HANG: Duration = Duration::from_secs(3600);

/// What an in-process caller reads for a reset connection.
pub const RESET_MESSAGE: &str =
    "The connection was closed before an answer was sent (simulated reset).";

/// The body a [`Answer::MalformedJson`] answer carries.
pub const MALFORMED_JSON: &str = "{\"name\": ";

/// What the caller of a faulted call gets instead of the real answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// This status with Google's error body, and a `retry-after` header when given.
    Status {
        status: u16,
        retry_after: Option<u64>,
    },
    /// Nothing for [`HANG`]: the client's own timeout ends the call (then a 504, if anyone is
    /// still listening).
    Hang,
    /// Over HTTP the server closes the connection without sending a byte of a response (the
    /// client sees "connection closed before message completed", as after a reset; a true TCP
    /// RST is not produced). In process: a 503 UNAVAILABLE saying so.
    Reset,
    /// Status 200 with [`MALFORMED_JSON`] as the body.
    MalformedJson,
    /// Status 200 with the first half of the real answer's JSON, with a matching
    /// `content-length`: the transport is clean, the JSON is cut off.
    TruncatedJson,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The next call with this HTTP method whose path contains `path_contains` gets this status
    /// (with the matching Google error body) and is not applied. The same as a
    /// [`Fault::Call`] with [`Answer::Status`] and `applied: false`.
    Status {
        method: String,
        path_contains: String,
        status: u16,
        retry_after: Option<u64>,
    },
    /// The next call with this HTTP method whose path contains `path_contains` gets `answer`.
    /// With `applied` the call takes effect first (a PATCH is accepted, an operation starts, a
    /// wait waits); without, it never reaches the API. A 200 answer
    /// ([`Answer::MalformedJson`], [`Answer::TruncatedJson`]) is always applied: the server did
    /// the work and the answer was mangled after.
    Call {
        method: String,
        path_contains: String,
        answer: Answer,
        applied: bool,
    },
    /// The next operation takes this long instead of the configured delay.
    SlowOperation(Duration),
    /// The next operation ends with this error message; nothing it carried takes effect.
    FailOperation(String),
    /// The next `timeSeries.list` answer carries these points for one revision's series of one
    /// response class, in place of the recorded ones (see also
    /// [`SimModel::override_points`](crate::SimModel::override_points), which lasts).
    MetricPoints(BadSeries),
}

impl Fault {
    /// The next matching call is refused with `status` and not applied.
    pub fn status(method: &str, path_contains: &str, status: u16) -> Self {
        Fault::Status {
            method: method.to_string(),
            path_contains: path_contains.to_string(),
            status,
            retry_after: None,
        }
    }

    /// The next matching call is refused with `status` and `retry-after: seconds`, not applied.
    pub fn status_retry_after(
        method: &str,
        path_contains: &str,
        status: u16,
        seconds: u64,
    ) -> Self {
        Fault::Status {
            method: method.to_string(),
            path_contains: path_contains.to_string(),
            status,
            retry_after: Some(seconds),
        }
    }

    /// Any [`Answer`] for the next matching call, applied or not.
    pub fn call(method: &str, path_contains: &str, answer: Answer, applied: bool) -> Self {
        Fault::Call {
            method: method.to_string(),
            path_contains: path_contains.to_string(),
            answer,
            applied,
        }
    }

    /// The next matching call never reaches the API and is never answered (a timeout).
    pub fn hang(method: &str, path_contains: &str) -> Self {
        Self::call(method, path_contains, Answer::Hang, false)
    }

    /// The next matching call never reaches the API; its connection closes without an answer.
    pub fn reset(method: &str, path_contains: &str) -> Self {
        Self::call(method, path_contains, Answer::Reset, false)
    }

    /// The next matching call is applied and answered 200 with [`MALFORMED_JSON`].
    pub fn malformed_json(method: &str, path_contains: &str) -> Self {
        Self::call(method, path_contains, Answer::MalformedJson, true)
    }

    /// The next matching call is applied and answered 200 with half of its JSON.
    pub fn truncated_json(method: &str, path_contains: &str) -> Self {
        Self::call(method, path_contains, Answer::TruncatedJson, true)
    }

    /// The next matching call is applied, and its caller gets `status` instead of the answer.
    pub fn lost_answer(method: &str, path_contains: &str, status: u16) -> Self {
        Self::call(
            method,
            path_contains,
            Answer::Status {
                status,
                retry_after: None,
            },
            true,
        )
    }

    /// The next matching call is applied, and its connection closes without the answer.
    pub fn lost_answer_reset(method: &str, path_contains: &str) -> Self {
        Self::call(method, path_contains, Answer::Reset, true)
    }

    /// The next matching call is applied, and its answer never comes (the client times out).
    pub fn lost_answer_hang(method: &str, path_contains: &str) -> Self {
        Self::call(method, path_contains, Answer::Hang, true)
    }

    /// The next `timeSeries.list` answer carries `points` as the `class` (`"5xx"`, `"2xx"`)
    /// series of `revision`.
    pub fn metric_points(revision: &str, class: &str, points: Vec<BadPoint>) -> Self {
        Fault::MetricPoints(BadSeries::new(revision, class, points))
    }

    /// For a call fault matching this call: what the caller gets, and whether the call is applied.
    pub(crate) fn call_answer(&self, method: &str, path: &str) -> Option<(Answer, bool)> {
        let (m, path_contains, answer, applied) = match self {
            Fault::Status {
                method,
                path_contains,
                status,
                retry_after,
            } => (
                method,
                path_contains,
                Answer::Status {
                    status: *status,
                    retry_after: *retry_after,
                },
                false,
            ),
            Fault::Call {
                method,
                path_contains,
                answer,
                applied,
            } => (method, path_contains, answer.clone(), *applied),
            _ => return None,
        };
        if !m.eq_ignore_ascii_case(method) || !path.contains(path_contains.as_str()) {
            return None;
        }
        let applied = applied || matches!(answer, Answer::MalformedJson | Answer::TruncatedJson);
        Some((answer, applied))
    }
}

/// One revision's series of one response class, as a `timeSeries.list` answer should not carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadSeries {
    pub revision: String,
    /// `response_code_class`, e.g. `"5xx"`.
    pub class: String,
    pub points: Vec<BadPoint>,
}

impl BadSeries {
    pub fn new(revision: &str, class: &str, points: Vec<BadPoint>) -> Self {
        Self {
            revision: revision.to_string(),
            class: class.to_string(),
            points,
        }
    }
}

/// A point's `value` object and where its interval lies relative to the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPoint {
    /// The point's whole `value`, e.g. `{"int64Value": "sixty"}`.
    pub value: Value,
    pub at: PointAt,
}

/// Where a point's interval lies. Lengths are one alignment period, as real points are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointAt {
    /// The newest aligned interval of the request: `(end - period, end]`.
    InWindow,
    /// Ending this long before the requested start time.
    BeforeWindow(Duration),
    /// Starting this long after the requested end time.
    AfterWindow(Duration),
}

impl BadPoint {
    /// `{"int64Value": text}` inside the window: the API's int64-as-string, with any text.
    pub fn int64(text: &str) -> Self {
        Self::value(json!({ "int64Value": text }))
    }

    /// Any `value` object inside the window (e.g. `{"doubleValue": 1.5}` or `{}`).
    pub fn value(value: Value) -> Self {
        Self {
            value,
            at: PointAt::InWindow,
        }
    }

    pub fn before_window(mut self, by: Duration) -> Self {
        self.at = PointAt::BeforeWindow(by);
        self
    }

    pub fn after_window(mut self, by: Duration) -> Self {
        self.at = PointAt::AfterWindow(by);
        self
    }
}
