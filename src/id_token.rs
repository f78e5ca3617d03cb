//! Google ID tokens for probing IAM-protected Cloud Run services: where they come from (ADC through
//! google-cloud-auth, or Workload Identity through IAM Credentials' `generateIdToken`) and caching.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use google_cloud_auth::credentials::idtoken::{self, IDTokenCredentials};
use google_cloud_auth::credentials::{AccessTokenCredentials, external_account};
use serde_json::Value;

use crate::gcp::{CLOUD_PLATFORM_SCOPE, adc_file, metadata_server_answers, non_empty_env};
use crate::health::describe_reqwest_error;

/// No token source of ours takes longer than this when it works (a metadata server answers in
/// milliseconds, IAM Credentials in well under a second); a probe must not hang on one.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(30);
/// A cached token with less life left than this is replaced: the probe may be retried, and
/// clocks differ.
const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);
const GENERATE_ATTEMPTS: u32 = 3;

/// Makes ID tokens for audiences from the credentials of the environment.
pub struct IdTokens {
    source: Source,
    cache: tokio::sync::Mutex<HashMap<String, Cached>>,
}

impl std::fmt::Debug for IdTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = match &self.source {
            Source::Unavailable(_) => "unavailable",
            Source::Adc => "application default credentials",
            Source::AuthorizedUser(_) => "gcloud user credentials",
            Source::Federated { .. } => "workload identity",
        };
        f.debug_struct("IdTokens")
            .field("source", &source)
            .finish_non_exhaustive()
    }
}

enum Source {
    /// Nothing here can make an ID token; why, and how to fix it.
    Unavailable(String),
    /// google-cloud-auth's ID tokens from ADC: a service account key, an impersonated service
    /// account, or the metadata server.
    Adc,
    /// gcloud's user credentials: Google issues a user's ID token for gcloud's OAuth client, which
    /// Cloud Run accepts from a user with `roles/run.invoker`; the audience cannot be chosen.
    AuthorizedUser(Value),
    /// Workload Identity Federation through a service account (what google-github-actions/auth
    /// writes): the federated token asks IAM Credentials for the service account's ID token,
    /// which needs `roles/iam.serviceAccountOpenIdTokenCreator` on that account.
    Federated {
        /// The credentials file without `service_account_impersonation_url`: the federated
        /// principal itself.
        federated: Value,
        /// `…/serviceAccounts/{email}:generateIdToken`.
        generate_url: String,
        credentials: tokio::sync::OnceCell<AccessTokenCredentials>,
    },
}

enum Cached {
    Library(IDTokenCredentials),
    Token { token: String, expires: SystemTime },
}

impl IdTokens {
    /// The ID-token source the environment offers, found without any network call: an access
    /// token alone cannot make one, a credentials file says what it can, and otherwise the
    /// metadata server is asked when a token is first needed.
    pub fn from_env() -> Self {
        Self::new(if non_empty_env("GOOGLE_OAUTH_ACCESS_TOKEN").is_some() {
            Source::Unavailable(
                "GOOGLE_OAUTH_ACCESS_TOKEN is an access token, which cannot make the ID token an \
                 IAM-protected service wants; give shiftgate credentials instead \
                 (GOOGLE_APPLICATION_CREDENTIALS, which google-github-actions/auth writes)"
                    .to_string(),
            )
        } else {
            match adc_file() {
                Ok(Some(json)) => Self::source_of_file(json),
                Ok(None) => Source::Adc,
                Err(why) => Source::Unavailable(why),
            }
        })
    }

    /// ID tokens from a credentials file's content (as `GOOGLE_APPLICATION_CREDENTIALS` names).
    pub fn from_credentials_file(json: Value) -> Self {
        Self::new(Self::source_of_file(json))
    }

    fn new(source: Source) -> Self {
        Self {
            source,
            cache: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    fn source_of_file(json: Value) -> Source {
        match json.get("type").and_then(Value::as_str) {
            Some("external_account") => {
                let impersonation = json
                    .get("service_account_impersonation_url")
                    .and_then(Value::as_str)
                    .and_then(|url| url.strip_suffix(":generateAccessToken"));
                match impersonation {
                    Some(account) => {
                        let mut federated = json.clone();
                        if let Some(map) = federated.as_object_mut() {
                            map.remove("service_account_impersonation_url");
                            map.remove("service_account_impersonation");
                        }
                        Source::Federated {
                            federated,
                            generate_url: format!("{account}:generateIdToken"),
                            credentials: tokio::sync::OnceCell::new(),
                        }
                    }
                    None => Source::Unavailable(
                        "Workload Identity without a service account cannot make ID tokens; give \
                         google-github-actions/auth a `service_account` (and grant it \
                         roles/run.invoker on the service)"
                            .to_string(),
                    ),
                }
            }
            Some("authorized_user") => Source::AuthorizedUser(json),
            _ => Source::Adc,
        }
    }

    /// An ID token for `audience`, from the cache while it has life left.
    pub async fn token(&self, audience: &str) -> Result<String, String> {
        let mut cache = self.cache.lock().await;
        if let Some(Cached::Token { token, expires }) = cache.get(audience)
            && SystemTime::now() + REFRESH_MARGIN < *expires
        {
            return Ok(token.clone());
        }
        let token = match &self.source {
            Source::Unavailable(why) => return Err(why.clone()),
            Source::Adc | Source::AuthorizedUser(_) => {
                if !cache.contains_key(audience) {
                    let built = self.library_credentials(audience).await?;
                    cache.insert(audience.to_string(), Cached::Library(built));
                }
                let Some(Cached::Library(credentials)) = cache.get(audience) else {
                    unreachable!("library credentials were cached just above");
                };
                // The library caches and refreshes its own tokens.
                tokio::time::timeout(TOKEN_TIMEOUT, credentials.id_token())
                    .await
                    .map_err(|_| format!("no ID token within {}s", TOKEN_TIMEOUT.as_secs()))?
                    .map_err(|error| format!("could not get an ID token: {error}"))?
            }
            Source::Federated {
                federated,
                generate_url,
                credentials,
            } => {
                let token =
                    generate_id_token(federated, generate_url, credentials, audience).await?;
                let expires = expiry_of(&token)
                    .unwrap_or_else(|| SystemTime::now() + Duration::from_secs(3600));
                cache.insert(
                    audience.to_string(),
                    Cached::Token {
                        token: token.clone(),
                        expires,
                    },
                );
                token
            }
        };
        crate::mask::mask_once(&token);
        Ok(token)
    }

    async fn library_credentials(&self, audience: &str) -> Result<IDTokenCredentials, String> {
        crate::tls::ensure_crypto_provider();
        match &self.source {
            Source::AuthorizedUser(json) => idtoken::user_account::Builder::new(json.clone())
                .build()
                .map_err(|error| {
                    format!("gcloud's user credentials cannot make ID tokens: {error}")
                }),
            _ => {
                // Without a credentials file the library falls back to the metadata server,
                // which off Google Cloud only times out; say so plainly instead.
                if adc_file().ok().flatten().is_none() && !metadata_server_answers().await {
                    return Err("no Google credentials to make an ID token with: set \
                         GOOGLE_APPLICATION_CREDENTIALS (google-github-actions/auth writes it), or \
                         run `gcloud auth application-default login`"
                        .to_string());
                }
                idtoken::Builder::new(audience)
                    .with_include_email()
                    .build()
                    .map_err(|error| format!("these credentials cannot make ID tokens: {error}"))
            }
        }
    }
}

/// IAM Credentials `generateIdToken` on behalf of the federated principal. Minting a token
/// changes nothing, so a failed attempt is retried.
async fn generate_id_token(
    federated: &Value,
    generate_url: &str,
    credentials: &tokio::sync::OnceCell<AccessTokenCredentials>,
    audience: &str,
) -> Result<String, String> {
    crate::tls::ensure_crypto_provider();
    let credentials = credentials
        .get_or_try_init(|| async {
            external_account::Builder::new(federated.clone())
                .with_scopes([CLOUD_PLATFORM_SCOPE])
                .build_access_token_credentials()
                .map_err(|error| {
                    format!("the Workload Identity credentials file is not usable: {error}")
                })
        })
        .await?;
    let access = tokio::time::timeout(TOKEN_TIMEOUT, credentials.access_token())
        .await
        .map_err(|_| "no federated token within 30s".to_string())?
        .map_err(|error| format!("could not get a federated token: {error}"))?;
    crate::mask::mask_once(&access.token);
    let client = crate::tls::client_builder()
        .timeout(TOKEN_TIMEOUT)
        .build()
        .map_err(|error| error.to_string())?;
    let body = serde_json::json!({ "audience": audience, "includeEmail": true });
    let mut last = String::new();
    for attempt in 0..GENERATE_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(500) * 2u32.pow(attempt - 1)).await;
        }
        let response = match client
            .post(generate_url)
            .bearer_auth(&access.token)
            .json(&body)
            .send()
            .await
        {
            Ok(response) => response,
            Err(error) => {
                last = describe_reqwest_error(&error);
                continue;
            }
        };
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if status.is_success() {
            let answer: Value = serde_json::from_str(&text)
                .map_err(|error| format!("generateIdToken answered no JSON: {error}"))?;
            return answer
                .get("token")
                .and_then(Value::as_str)
                .filter(|token| !token.is_empty())
                .map(str::to_string)
                .ok_or_else(|| "generateIdToken answered without a token".to_string());
        }
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|error| error["error"]["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| text.chars().take(200).collect());
        last = format!("generateIdToken answered {status}: {message}");
        if status.is_client_error() && status.as_u16() != 429 {
            let hint = if status.as_u16() == 403 {
                "; grant the Workload Identity principal roles/iam.serviceAccountOpenIdTokenCreator \
                 on the service account"
            } else {
                ""
            };
            return Err(format!("{last}{hint}"));
        }
    }
    Err(last)
}

/// The `exp` claim of a JWT, unverified: only to know when to fetch the next one.
fn expiry_of(token: &str) -> Option<SystemTime> {
    let payload = token.split('.').nth(1)?;
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(claims.get("exp")?.as_u64()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tokens_expiry_is_read_from_its_exp_claim() {
        let claims = URL_SAFE_NO_PAD.encode(r#"{"aud":"x","exp":1700000000}"#);
        let token = format!("e30.{claims}.c2ln");
        assert_eq!(
            expiry_of(&token),
            Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        );
        assert_eq!(expiry_of("not-a-jwt"), None);
    }

    #[test]
    fn workload_identity_makes_id_tokens_only_through_a_service_account() {
        let through_account = serde_json::json!({
            "type": "external_account",
            "service_account_impersonation_url":
                "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/deploy@p.iam.gserviceaccount.com:generateAccessToken",
        });
        match IdTokens::source_of_file(through_account) {
            Source::Federated {
                federated,
                generate_url,
                ..
            } => {
                assert_eq!(
                    generate_url,
                    "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/deploy@p.iam.gserviceaccount.com:generateIdToken"
                );
                assert!(federated.get("service_account_impersonation_url").is_none());
            }
            _ => panic!("expected the federated source"),
        }
        let direct = serde_json::json!({"type": "external_account"});
        assert!(matches!(
            IdTokens::source_of_file(direct),
            Source::Unavailable(why) if why.contains("service_account")
        ));
    }
}
