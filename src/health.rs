//! The HTTP health probe: the adapter that fetches a health endpoint for the engine's health port,
//! without following redirects and reading at most a bounded body. Judging it is the engine's job.

use std::time::Duration;

use async_trait::async_trait;

use crate::rollout::health_judge::MAX_HEALTH_BODY;
use crate::rollout::ports::{HealthEndpoint, HealthResponse};

/// Fetches health endpoints over HTTP with a per-request timeout. Redirects are not followed: a
/// 3xx is handed to the judge with the `Location` target as its body (the judge has no headers,
/// and where the redirect points is what a person needs to see). Bodies are read up to
/// `MAX_HEALTH_BODY` + 1 bytes.
#[derive(Debug, Clone)]
pub struct HttpHealthEndpoint {
    client: reqwest::Client,
}

impl HttpHealthEndpoint {
    pub fn new(timeout: Duration) -> Self {
        let client = crate::tls::client_builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("shiftgate/", env!("CARGO_PKG_VERSION"), " health"))
            .build()
            .expect("a reqwest client with only timeouts set builds");
        Self { client }
    }
}

#[async_trait]
impl HealthEndpoint for HttpHealthEndpoint {
    async fn fetch(&self, url: &str) -> Result<HealthResponse, String> {
        let mut response = self
            .client
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|error| describe_reqwest_error(&error))?;
        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
                .unwrap_or_default();
            return Ok(HealthResponse {
                status: status.as_u16(),
                body: location,
            });
        }
        let body = match read_bounded(&mut response, MAX_HEALTH_BODY)
            .await
            .map_err(|error| describe_reqwest_error(&error))?
        {
            Bounded::Whole(bytes) | Bounded::Cut(bytes) => bytes,
        };
        Ok(HealthResponse {
            status: status.as_u16(),
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

/// A body read up to a limit.
pub enum Bounded {
    Whole(Vec<u8>),
    /// The body went on past the limit: the first `limit + 1` bytes, the rest unread.
    Cut(Vec<u8>),
}

/// Reads at most `limit + 1` bytes of a body, chunk by chunk, so a huge or endless answer costs
/// no more memory than the limit; dropping the response afterwards closes the connection.
pub async fn read_bounded(
    response: &mut reqwest::Response,
    limit: usize,
) -> Result<Bounded, reqwest::Error> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit + 1 - bytes.len();
        if chunk.len() >= room {
            bytes.extend_from_slice(&chunk[..room]);
            return Ok(Bounded::Cut(bytes));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Bounded::Whole(bytes))
}

/// A one-line reason for a failed request that names timeouts and refused connections plainly.
pub fn describe_reqwest_error(error: &reqwest::Error) -> String {
    use std::error::Error as _;
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let mut detail = String::new();
    let mut source = error.source();
    while let Some(cause) = source {
        detail = cause.to_string();
        source = cause.source();
    }
    if detail.is_empty() {
        format!("{kind}: {error}")
    } else {
        format!("{kind}: {detail}")
    }
}
