//! Errors in the Google API sense (HTTP code, canonical status, message) that every simulated API
//! answers with, including the ones fault injection makes up.

use serde_json::Value;

use crate::state::ServiceKey;

/// An error in the Google API sense: HTTP code, canonical status name, message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: u16,
    pub status: String,
    pub message: String,
    /// Seconds, for a `retry-after` header.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: u16, message: impl Into<String>) -> Self {
        Self {
            code,
            status: status_name(code).to_string(),
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }

    pub fn to_json(&self) -> Value {
        serde_json::json!({"error": {"code": self.code, "message": self.message, "status": self.status}})
    }
}

/// The canonical status Google APIs pair with an HTTP code.
pub fn status_name(code: u16) -> &'static str {
    match code {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        412 => "FAILED_PRECONDITION",
        429 => "RESOURCE_EXHAUSTED",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    }
}

impl ApiError {
    pub fn with_status(mut self, status: &str) -> Self {
        self.status = status.to_string();
        self
    }
}

pub(crate) fn not_found_service(key: &ServiceKey) -> ApiError {
    ApiError::new(
        404,
        format!(
            "Resource '{}' of kind 'SERVICE' in region '{}' in project '{}' does not exist.",
            key.service, key.region, key.project
        ),
    )
}

/// The Google error a refused or lost call is answered with.
pub(crate) fn status_error(status: u16, retry_after: Option<u64>) -> ApiError {
    let message = match status {
        401 => {
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential."
        }
        403 => "The caller does not have permission",
        429 => {
            "Quota exceeded for quota metric 'Read requests' and limit 'Read requests per minute per region'."
        }
        503 => "The service is currently unavailable.",
        504 => "The request timed out.",
        409 => "Conflict: the resource was modified concurrently. Retry the request.",
        _ => "Internal error encountered.",
    };
    let mut error = ApiError::new(status, message);
    error.retry_after = retry_after;
    error
}
