//! A fake of Google's STS token exchange and of a URL-sourced subject token, so the
//! `external_account` (Workload Identity Federation) credential path can run offline.

use serde_json::json;

use crate::model::SimModel;

pub const SUBJECT_TOKEN: &str = "sim-subject-token";
pub const SUBJECT_TOKEN_PATH: &str = "/subject-token";
pub const TOKEN_PATH: &str = "/v1/token";
const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// Decodes `application/x-www-form-urlencoded` (also a URL's query string); repeated keys stay.
pub(crate) fn parse_form(input: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(input.as_bytes())
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect()
}

/// The STS endpoint; the tokens it issues are kept in the model's [`TokenLedger`].
#[derive(Debug, Default)]
pub(crate) struct Sts;

/// An STS answer: status, content type, body.
pub(crate) type StsResponse = (u16, &'static str, String);

impl Sts {
    pub fn subject_token(&self) -> StsResponse {
        (200, "text/plain", SUBJECT_TOKEN.to_string())
    }

    /// `POST /v1/token` per RFC 8693 as Google's STS implements it.
    pub fn exchange(
        &self,
        model: &SimModel,
        content_type: Option<&str>,
        body: &[u8],
    ) -> StsResponse {
        let error = |code: &str, description: String| {
            (
                400,
                "application/json",
                json!({"error": code, "error_description": description}).to_string(),
            )
        };
        if !content_type.is_some_and(|c| c.starts_with("application/x-www-form-urlencoded")) {
            return error(
                "invalid_request",
                "The request body must be application/x-www-form-urlencoded.".to_string(),
            );
        }
        let form = parse_form(&String::from_utf8_lossy(body));
        let get = |name: &str| {
            form.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        match get("grant_type") {
            Some(GRANT_TYPE) => {}
            other => {
                return error(
                    "unsupported_grant_type",
                    format!("Unsupported grant_type {other:?}; expected {GRANT_TYPE}."),
                );
            }
        }
        if get("subject_token_type").is_none_or(str::is_empty) {
            return error(
                "invalid_request",
                "Missing required parameter: subject_token_type.".to_string(),
            );
        }
        if let Some(t) = get("requested_token_type")
            && t != ACCESS_TOKEN_TYPE
        {
            return error(
                "invalid_request",
                format!("Unsupported requested_token_type {t}."),
            );
        }
        match get("subject_token") {
            Some(SUBJECT_TOKEN) => {}
            Some(_) => {
                return error(
                    "invalid_grant",
                    "The subject token is invalid or has expired.".to_string(),
                );
            }
            None => {
                return error(
                    "invalid_request",
                    "Missing required parameter: subject_token.".to_string(),
                );
            }
        }
        let (token, lifetime) = {
            let mut state = model.state();
            let now = state.clock.now();
            state.tokens.issue(now)
        };
        (
            200,
            "application/json",
            json!({
                "access_token": token,
                "issued_token_type": ACCESS_TOKEN_TYPE,
                "token_type": "Bearer",
                "expires_in": lifetime.as_secs(),
            })
            .to_string(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding() {
        let form = parse_form("a=b%3Dc&x=hello+world&a=2&e=%zz");
        assert_eq!(form[0], ("a".into(), "b=c".into()));
        assert_eq!(form[1], ("x".into(), "hello world".into()));
        assert_eq!(form[2], ("a".into(), "2".into()));
        assert_eq!(form[3], ("e".into(), "%zz".into()));
    }

    #[test]
    fn exchange_checks_the_subject_token() {
        let sts = Sts;
        let model = SimModel::new(shiftgate_clock::Clock::new());
        let form = "application/x-www-form-urlencoded";
        let good = format!(
            "grant_type={}&subject_token={SUBJECT_TOKEN}&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt",
            GRANT_TYPE.replace(':', "%3A")
        );
        let (status, _, body) = sts.exchange(&model, Some(form), good.as_bytes());
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("sim-exchanged-token-1"));
        let bad = good.replace(SUBJECT_TOKEN, "other");
        let (status, _, body) = sts.exchange(&model, Some(form), bad.as_bytes());
        assert_eq!(status, 400);
        assert!(body.contains("invalid_grant"));
    }
}
