//! Faults a test can inject into the simulated control plane and monitoring API: each one is used
//! up by the first call it applies to.

use std::time::Duration;

use super::model::ApiError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The next call with this HTTP method whose path contains `path_contains` gets this status
    /// (with the matching Google error body) and is not applied.
    Status {
        method: String,
        path_contains: String,
        status: u16,
        retry_after: Option<u64>,
    },
    /// The next operation takes this long instead of the configured delay.
    SlowOperation(Duration),
    /// The next operation ends with this error message; nothing it carried takes effect.
    FailOperation(String),
}

impl Fault {
    pub fn status(method: &str, path_contains: &str, status: u16) -> Self {
        Fault::Status {
            method: method.to_string(),
            path_contains: path_contains.to_string(),
            status,
            retry_after: None,
        }
    }

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

    pub(crate) fn matches(&self, method: &str, path: &str) -> bool {
        match self {
            Fault::Status {
                method: m,
                path_contains,
                ..
            } => m.eq_ignore_ascii_case(method) && path.contains(path_contains.as_str()),
            _ => false,
        }
    }

    pub(crate) fn into_error(self) -> Option<ApiError> {
        match self {
            Fault::Status {
                status,
                retry_after,
                ..
            } => {
                let message = match status {
                    429 => {
                        "Quota exceeded for quota metric 'Read requests' and limit 'Read requests per minute per region'."
                    }
                    503 => "The service is currently unavailable.",
                    409 => "Conflict: the resource was modified concurrently. Retry the request.",
                    _ => "Internal error encountered.",
                };
                let mut error = ApiError::new(status, message);
                error.retry_after = retry_after;
                Some(error)
            }
            _ => None,
        }
    }
}
