//! IAM-protected services offline: a fake of the IAM Credentials API (`generateAccessToken`,
//! `generateIdToken`) and Cloud Run's invoker check on service and tag URLs, with the ID tokens issued.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::model::Inner;
use crate::wire::{parse_google_duration, rfc3339};

/// Google's ID tokens live an hour.
const ID_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// `generateAccessToken` refuses a longer `lifetime` unless an org policy allows it.
const MAX_ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
const ISSUER: &str = "https://accounts.google.com";

/// Which `aud` Cloud Run accepts on the URLs of an IAM-protected service. Google's documentation
/// says "the receiving service's `*.run.app` URL", which leaves open whether a tag URL is a
/// receiving URL of its own; the simulator offers each reading so the client is tested under all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudienceRule {
    /// Only the service's main URL, whichever of its URLs is called.
    ServiceUrl,
    /// Only the origin of the URL called (a tag URL for a tag).
    RequestUrl,
    /// Either of them.
    Either,
}

/// How Cloud Run would refuse a data-plane request: status and (HTML) body.
pub(crate) type Refusal = (u16, String);

#[derive(Debug, Clone)]
struct IdTokenClaims {
    audience: String,
    expires: SystemTime,
}

/// ID tokens issued, and the invoker requirement of the simulated services.
#[derive(Debug, Default)]
pub(crate) struct Identity {
    /// `Some` when every service requires an ID token from its callers.
    invoker: Option<AudienceRule>,
    id_tokens: HashMap<String, IdTokenClaims>,
    /// `(service account, audience)` of every `generateIdToken` answered, in order.
    pub requested: Vec<(String, String)>,
    /// Data-plane requests refused by the invoker check.
    pub refused: u64,
    /// The token the load generator's callers hold per service URL, reused while it is valid.
    load_tokens: HashMap<String, String>,
}

impl Identity {
    pub fn require_invoker(&mut self, rule: Option<AudienceRule>) {
        self.invoker = rule;
    }

    pub fn invoker(&self) -> Option<AudienceRule> {
        self.invoker
    }

    /// An ID token for `audience`, as Google signs them (a JWT whose signature only this
    /// simulator can check: it accepts the tokens it issued and nothing else).
    pub fn issue(&mut self, audience: &str, email: &str, now: SystemTime) -> String {
        let iat = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let expires = now + ID_TOKEN_LIFETIME;
        let header = json!({"alg": "RS256", "kid": "sim", "typ": "JWT"});
        let claims = json!({
            "aud": audience,
            "azp": email,
            "email": email,
            "email_verified": true,
            "exp": iat + ID_TOKEN_LIFETIME.as_secs(),
            "iat": iat,
            "iss": ISSUER,
            "sub": "100000000000000000001",
        });
        let signature = format!("sim-signature-{}", self.id_tokens.len() + 1);
        let token = [
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string()),
            URL_SAFE_NO_PAD.encode(signature),
        ]
        .join(".");
        self.id_tokens.insert(
            token.clone(),
            IdTokenClaims {
                audience: audience.to_string(),
                expires,
            },
        );
        token
    }

    /// A caller's token for `service_url`, reused until its last minute, as client libraries cache.
    pub fn token_for_load(&mut self, service_url: &str, now: SystemTime) -> String {
        let cached = self.load_tokens.get(service_url).filter(|token| {
            self.id_tokens
                .get(token.as_str())
                .is_some_and(|claims| now + Duration::from_secs(60) < claims.expires)
        });
        if let Some(token) = cached {
            return token.clone();
        }
        let token = self.issue(service_url, "load@sim.iam.gserviceaccount.com", now);
        self.load_tokens
            .insert(service_url.to_string(), token.clone());
        token
    }

    /// Cloud Run's check of a request to `called` (a service or tag URL) of the service whose
    /// main URL is `service_url`: no token is 403, a token that is not a valid ID token for an
    /// accepted audience is 401, as Google's front end answers.
    pub fn check(
        &mut self,
        authorization: Option<&str>,
        service_url: &str,
        called: &str,
        now: SystemTime,
    ) -> Result<(), Refusal> {
        let Some(rule) = self.invoker else {
            return Ok(());
        };
        let token = authorization.and_then(|value| {
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
        });
        let Some(token) = token.map(str::trim) else {
            self.refused += 1;
            return Err((
                403,
                refusal_page(
                    "403 Forbidden",
                    "Your client does not have permission to get URL from this server.",
                ),
            ));
        };
        let accepted = self.id_tokens.get(token).is_some_and(|claims| {
            let audience = claims.audience.trim_end_matches('/');
            let fits = match rule {
                AudienceRule::ServiceUrl => audience == service_url,
                AudienceRule::RequestUrl => audience == called,
                AudienceRule::Either => audience == service_url || audience == called,
            };
            fits && now < claims.expires
        });
        if accepted {
            Ok(())
        } else {
            self.refused += 1;
            Err((
                401,
                refusal_page(
                    "401 Unauthorized",
                    "Your client does not have permission to the requested URL.",
                ),
            ))
        }
    }
}

fn refusal_page(title: &str, message: &str) -> String {
    format!(
        "<html><head><title>{title}</title></head><body><h1>Error: {title}</h1><h2>{message}</h2></body></html>"
    )
}

/// The metadata server's root and identity paths, as on a GCE VM or GKE node (a self-hosted runner).
pub(crate) const METADATA_ROOT_PATH: &str = "/computeMetadata/v1/";
const METADATA_IDENTITY_PATH: &str =
    "/computeMetadata/v1/instance/service-accounts/default/identity";
/// The account a runner's metadata server speaks for.
pub const RUNNER_ACCOUNT: &str = "runner@sim.iam.gserviceaccount.com";

/// A metadata server's answer (status, body) to `path`, `None` when it is not one of its paths.
/// Like Google's, it answers only requests that say `Metadata-Flavor: Google`, and says so too.
pub(crate) fn metadata(
    state: &mut Inner,
    path: &str,
    query: &[(String, String)],
    flavor: Option<&str>,
) -> Option<(u16, String)> {
    if path != METADATA_ROOT_PATH && path != METADATA_IDENTITY_PATH {
        return None;
    }
    if flavor != Some("Google") {
        return Some((403, "Missing Metadata-Flavor:Google header.".to_string()));
    }
    if path == METADATA_ROOT_PATH {
        return Some((200, "instance/\nproject/\n".to_string()));
    }
    let audience = query
        .iter()
        .find(|(key, _)| key == "audience")
        .map(|(_, value)| value.as_str())
        .filter(|audience| !audience.is_empty());
    let Some(audience) = audience else {
        return Some((400, "non-empty audience parameter required".to_string()));
    };
    let now = state.clock.now();
    state
        .identity
        .requested
        .push((RUNNER_ACCOUNT.to_string(), audience.to_string()));
    Some((200, state.identity.issue(audience, RUNNER_ACCOUNT, now)))
}

/// Where the IAM Credentials methods live: `/v1/projects/-/serviceAccounts/{email}:{method}`.
pub(crate) const SERVICE_ACCOUNTS_PATH: &str = "/v1/projects/-/serviceAccounts/";

/// One IAM Credentials call, on behalf of a caller whose bearer token the API layer already
/// checked is the simulator's; `None` when the path is not an IAM Credentials method.
pub(crate) fn call(
    state: &mut Inner,
    method: &str,
    path: &str,
    body: &[u8],
) -> Option<Result<Value, ApiError>> {
    let resource = path.strip_prefix(SERVICE_ACCOUNTS_PATH)?;
    let (account, verb) = resource.rsplit_once(':')?;
    if method != "POST" {
        return Some(Err(ApiError::new(
            404,
            format!("Method {method} not found for {path}."),
        )));
    }
    let account = percent_decode(account);
    Some(serve(state, &account, verb, body))
}

fn serve(state: &mut Inner, account: &str, verb: &str, body: &[u8]) -> Result<Value, ApiError> {
    if !account.contains('@') || account.starts_with('@') || account.ends_with('@') {
        return Err(ApiError::new(
            404,
            format!("Not found; Gaia id not found for email {account}"),
        ));
    }
    let request: Value = serde_json::from_slice(body)
        .map_err(|error| ApiError::invalid(format!("Invalid JSON payload received. {error}")))?;
    let Some(request) = request.as_object() else {
        return Err(ApiError::invalid(
            "Invalid JSON payload received. Expected an object.",
        ));
    };
    let now = state.clock.now();
    match verb {
        "generateIdToken" => {
            for field in request.keys() {
                if !["audience", "includeEmail", "delegates"].contains(&field.as_str()) {
                    return Err(unknown_field(field));
                }
            }
            let audience = request
                .get("audience")
                .and_then(Value::as_str)
                .filter(|audience| !audience.is_empty())
                .ok_or_else(|| {
                    ApiError::invalid("Invalid value for audience: must not be empty")
                })?;
            if request
                .get("includeEmail")
                .is_some_and(|value| !value.is_boolean())
            {
                return Err(ApiError::invalid(
                    "Invalid value for includeEmail: must be a boolean",
                ));
            }
            state
                .identity
                .requested
                .push((account.to_string(), audience.to_string()));
            let token = state.identity.issue(audience, account, now);
            Ok(json!({ "token": token }))
        }
        "generateAccessToken" => {
            for field in request.keys() {
                if !["scope", "lifetime", "delegates"].contains(&field.as_str()) {
                    return Err(unknown_field(field));
                }
            }
            let scopes = request.get("scope").and_then(Value::as_array);
            if scopes.is_none_or(|scopes| scopes.is_empty() || !scopes.iter().all(Value::is_string))
            {
                return Err(ApiError::invalid(
                    "Invalid value for scope: at least one scope is required",
                ));
            }
            let lifetime = match request.get("lifetime") {
                None => MAX_ACCESS_TOKEN_LIFETIME,
                Some(value) => value
                    .as_str()
                    .and_then(parse_google_duration)
                    .filter(|lifetime| *lifetime <= MAX_ACCESS_TOKEN_LIFETIME)
                    .ok_or_else(|| {
                        ApiError::invalid(format!(
                            "Invalid value for lifetime: {value}; it must be a duration of at most 3600s"
                        ))
                    })?,
            };
            let lifetime = lifetime.min(state.tokens.lifetime);
            let token = state.tokens.issue_for(now, lifetime);
            Ok(json!({ "accessToken": token, "expireTime": rfc3339(now + lifetime) }))
        }
        _ => Err(ApiError::new(
            404,
            format!("Method {verb} not found on service accounts."),
        )),
    }
}

fn unknown_field(field: &str) -> ApiError {
    ApiError::invalid(format!(
        "Invalid JSON payload received. Unknown name \"{field}\": Cannot find field."
    ))
}

fn percent_decode(text: &str) -> String {
    form_urlencoded::parse(format!("x={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, value)| value.into_owned())
        .unwrap_or_else(|| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    /// The status Cloud Run answers `token` on `called` (a URL of the service at `SERVICE`) at
    /// `seconds`: 200 when it passes.
    fn answer(identity: &mut Identity, token: Option<&str>, called: &str, seconds: u64) -> u16 {
        let bearer = token.map(|token| format!("Bearer {token}"));
        match identity.check(bearer.as_deref(), SERVICE, called, at(seconds)) {
            Ok(()) => 200,
            Err((status, _)) => status,
        }
    }

    const SERVICE: &str = "http://127.0.0.1:1001";
    const TAG: &str = "http://127.0.0.1:1002";

    #[test]
    fn given_an_iam_protected_service_then_only_its_own_unexpired_id_tokens_pass() {
        let mut identity = Identity::default();
        identity.require_invoker(Some(AudienceRule::ServiceUrl));
        let for_service = identity.issue(SERVICE, "deploy@p.iam.gserviceaccount.com", at(1_000));
        let for_tag = identity.issue(TAG, "deploy@p.iam.gserviceaccount.com", at(1_000));
        let (signed, _) = for_service.rsplit_once('.').unwrap();
        let forged = format!("{signed}.{}", URL_SAFE_NO_PAD.encode("forged"));
        let (service, tag) = (Some(for_service.as_str()), Some(for_tag.as_str()));

        assert_eq!(answer(&mut identity, None, TAG, 1_001), 403);
        assert_eq!(answer(&mut identity, service, TAG, 1_001), 200);
        assert_eq!(
            answer(&mut identity, tag, TAG, 1_001),
            401,
            "under ServiceUrl a tag URL's own audience is refused"
        );
        assert_eq!(
            answer(&mut identity, service, TAG, 4_600),
            401,
            "expired after an hour"
        );
        assert_eq!(answer(&mut identity, Some(&forged), SERVICE, 1_001), 401);

        identity.require_invoker(Some(AudienceRule::RequestUrl));
        assert_eq!(answer(&mut identity, tag, TAG, 1_001), 200);
        assert_eq!(answer(&mut identity, service, TAG, 1_001), 401);

        identity.require_invoker(Some(AudienceRule::Either));
        assert_eq!(answer(&mut identity, tag, TAG, 1_001), 200);
        assert_eq!(answer(&mut identity, service, TAG, 1_001), 200);
        assert_eq!(identity.refused, 5);
    }

    #[test]
    fn an_issued_id_token_is_a_jwt_whose_claims_name_its_audience_and_expiry() {
        let mut identity = Identity::default();
        let token = identity.issue(
            "https://web-x.a.run.app",
            "sa@p.iam.gserviceaccount.com",
            at(50),
        );
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["aud"], "https://web-x.a.run.app");
        assert_eq!(claims["exp"], 3650);
        assert_eq!(claims["iss"], ISSUER);
    }
}
