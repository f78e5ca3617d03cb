//! The HTTP health probe: the adapter that fetches a health endpoint for the engine's health port,
//! with a Google ID token where the service wants one, no redirects followed, a bounded body read.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::id_token::IdTokens;
use crate::rollout::health_judge::MAX_HEALTH_BODY;
use crate::rollout::ports::{HealthEndpoint, HealthProbe, HealthResponse};

/// Fetches health endpoints over HTTP with a per-request timeout. Redirects are not followed: a
/// 3xx is handed to the judge with the `Location` target as its body (the judge has no headers,
/// and where the redirect points is what a person needs to see). Bodies are read up to
/// `MAX_HEALTH_BODY` + 1 bytes.
///
/// IAM-protected services: a probe with an audience always carries an ID token for it. A Cloud
/// Run URL that refuses a probe without a token (401/403) is probed again with one, and from then
/// on always gets one. Its audience is the URL's own origin or the service's main URL: Google
/// documents "the receiving service's URL", which for a tag URL can be read either way, so both
/// are tried, and the one accepted is remembered.
#[derive(Debug, Clone)]
pub struct HttpHealthEndpoint {
    client: reqwest::Client,
    identity: Option<Arc<Identity>>,
}

#[derive(Debug)]
struct Identity {
    tokens: IdTokens,
    /// Origins that refused a probe without a token.
    protected: Mutex<HashSet<String>>,
    /// The audience each origin accepted.
    accepted: Mutex<HashMap<String, String>>,
}

impl HttpHealthEndpoint {
    /// A probe that sends no identity: for the simulator and public endpoints.
    pub fn new(timeout: Duration) -> Self {
        let client = crate::tls::client_builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("shiftgate/", env!("CARGO_PKG_VERSION"), " health"))
            .build()
            .expect("a reqwest client with only timeouts set builds");
        Self {
            client,
            identity: None,
        }
    }

    /// The same probe, sending ID tokens from `tokens` to services that want one.
    pub fn with_id_tokens(mut self, tokens: IdTokens) -> Self {
        self.identity = Some(Arc::new(Identity {
            tokens,
            protected: Mutex::new(HashSet::new()),
            accepted: Mutex::new(HashMap::new()),
        }));
        self
    }

    async fn get(&self, url: &str, token: Option<&str>) -> Result<HealthResponse, String> {
        let mut request = self.client.get(url).header("accept", "application/json");
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let mut response = request
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

    /// Probes with an ID token for each candidate audience until one is accepted.
    async fn fetch_with_token(
        &self,
        identity: &Identity,
        probe: &HealthProbe<'_>,
        origin: &str,
        refused_without: Option<u16>,
    ) -> Result<HealthResponse, String> {
        let remembered = lock(&identity.accepted).get(origin).cloned();
        let audiences = audiences(probe, origin, remembered.as_deref());
        let mut last = None;
        for audience in &audiences {
            let token = match identity.tokens.token(audience).await {
                Ok(token) => token,
                Err(why) => {
                    return Ok(HealthResponse {
                        status: refused_without.unwrap_or(401),
                        body: match refused_without {
                            Some(status) => format!(
                                "the service wants an ID token (it answered {status} without one), \
                                 and none could be made: {why}"
                            ),
                            None => format!("no ID token for audience {audience}: {why}"),
                        },
                    });
                }
            };
            let response = self.get(probe.url, Some(&token)).await?;
            if !is_refusal(response.status) {
                lock(&identity.accepted).insert(origin.to_string(), audience.clone());
                return Ok(response);
            }
            last = Some(response);
        }
        let mut response = last.expect("there is always at least one audience");
        response.body = format!(
            "the ID token was refused (audience {}): the identity needs roles/run.invoker on the \
             service, or the service expects another audience (--health-audience)",
            audiences.join(", then ")
        );
        Ok(response)
    }
}

#[async_trait]
impl HealthEndpoint for HttpHealthEndpoint {
    async fn fetch(&self, probe: &HealthProbe<'_>) -> Result<HealthResponse, String> {
        let Some(identity) = &self.identity else {
            return self.get(probe.url, None).await;
        };
        let origin = origin_of(probe.url);
        if probe.audience.is_some() || lock(&identity.protected).contains(&origin) {
            return self.fetch_with_token(identity, probe, &origin, None).await;
        }
        let response = self.get(probe.url, None).await?;
        if !is_refusal(response.status) || !is_cloud_run_url(probe, &origin) {
            return Ok(response);
        }
        lock(&identity.protected).insert(origin.clone());
        self.fetch_with_token(identity, probe, &origin, Some(response.status))
            .await
    }
}

/// How Google's front end refuses a caller without a valid ID token.
fn is_refusal(status: u16) -> bool {
    status == 401 || status == 403
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// `scheme://host[:port]` of a URL, as an audience is written.
fn origin_of(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(parsed) => parsed.origin().ascii_serialization(),
        Err(_) => url.to_string(),
    }
}

/// A URL Cloud Run serves: the service's own (as the API reported it) or any `*.run.app`.
fn is_cloud_run_url(probe: &HealthProbe<'_>, origin: &str) -> bool {
    probe.service_url.is_some()
        || reqwest::Url::parse(origin)
            .ok()
            .and_then(|url| url.host_str().map(|host| host.ends_with(".run.app")))
            .unwrap_or(false)
}

/// The audiences to try, most likely first: the one given, else the one this origin accepted
/// before, the URL's own origin, and the service's main URL (from the API, or from a tag URL's
/// documented form `https://TAG---SERVICE-HASH.REGION.run.app`).
fn audiences(probe: &HealthProbe<'_>, origin: &str, remembered: Option<&str>) -> Vec<String> {
    if let Some(audience) = probe.audience {
        return vec![audience.to_string()];
    }
    let from_tag = origin.split_once("://").and_then(|(scheme, host)| {
        let (_, service_host) = host.split_once("---")?;
        service_host
            .ends_with(".run.app")
            .then(|| format!("{scheme}://{service_host}"))
    });
    let mut audiences: Vec<String> = Vec::new();
    let candidates = [
        remembered.map(str::to_string),
        Some(origin.to_string()),
        probe.service_url.map(origin_of),
        from_tag,
    ];
    for candidate in candidates.into_iter().flatten() {
        if !audiences.contains(&candidate) {
            audiences.push(candidate);
        }
    }
    audiences
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_url_is_tried_with_its_own_origin_then_the_services_url() {
        let probe = HealthProbe {
            url: "https://candidate---web-abc123-uc.a.run.app/health",
            service_url: None,
            audience: None,
        };
        let origin = origin_of(probe.url);
        assert_eq!(origin, "https://candidate---web-abc123-uc.a.run.app");
        assert_eq!(
            audiences(&probe, &origin, None),
            [
                "https://candidate---web-abc123-uc.a.run.app",
                "https://web-abc123-uc.a.run.app"
            ]
        );
        assert_eq!(
            audiences(&probe, &origin, Some("https://web-abc123-uc.a.run.app")),
            [
                "https://web-abc123-uc.a.run.app",
                "https://candidate---web-abc123-uc.a.run.app"
            ],
            "the audience accepted before goes first"
        );
    }

    #[test]
    fn the_service_url_from_the_api_is_a_candidate_and_a_given_audience_is_the_only_one() {
        let probe = HealthProbe {
            url: "http://127.0.0.1:4002/health",
            service_url: Some("http://127.0.0.1:4001/"),
            audience: None,
        };
        let origin = origin_of(probe.url);
        assert_eq!(
            audiences(&probe, &origin, None),
            ["http://127.0.0.1:4002", "http://127.0.0.1:4001"]
        );
        assert!(is_cloud_run_url(&probe, &origin));
        let custom_domain = HealthProbe {
            url: "https://app.example.com/health",
            service_url: None,
            audience: Some("https://app.example.com"),
        };
        assert_eq!(
            audiences(&custom_domain, &origin_of(custom_domain.url), None),
            ["https://app.example.com"]
        );
        assert!(!is_cloud_run_url(
            &HealthProbe::of(custom_domain.url),
            &origin_of(custom_domain.url)
        ));
    }
}
