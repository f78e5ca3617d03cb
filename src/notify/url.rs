//! A notification webhook's address: which URLs are accepted (`https://`, or `http://` to this
//! machine), and how one is shown without its secret (an incoming webhook's path is its key).

use std::fmt;

/// A webhook URL that passed the rules. `Debug` and `Display` show only [`NotifyUrl::shown`].
#[derive(Clone, PartialEq, Eq)]
pub struct NotifyUrl {
    full: String,
    shown: String,
}

/// What a refused `--notify` value is told, after the value (shown masked).
const RULE: &str = "a webhook URL must be https://, or http:// to 127.0.0.1, localhost or [::1] \
                    for local testing";

impl NotifyUrl {
    /// Accepts `https://HOST/…`, or `http://` to a loopback host; the refusal shows the value
    /// masked, never whole.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let refused = |why: &str| format!("{why}: {RULE}, got {}", mask(text));
        let url = reqwest::Url::parse(text).map_err(|_| refused("not a URL"))?;
        let Some(host) = url.host_str().filter(|host| !host.is_empty()) else {
            return Err(refused("no host"));
        };
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(host) => {}
            "http" => return Err(refused("plain http leaves this machine")),
            _ => return Err(refused("not an http(s) URL")),
        }
        Ok(Self {
            full: text.to_string(),
            shown: mask(text),
        })
    }

    /// The whole URL, secret included: only for the request itself and `::add-mask::`.
    pub fn secret(&self) -> &str {
        &self.full
    }

    /// Scheme, host and first path segment, the rest as `…`: enough to tell webhooks apart.
    pub fn shown(&self) -> &str {
        &self.shown
    }
}

impl fmt::Debug for NotifyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NotifyUrl({})", self.shown)
    }
}

impl fmt::Display for NotifyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

/// `localhost`, `127.0.0.0/8` or `[::1]`, as `Url::host_str` writes a host.
fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `https://hooks.slack.com/services/…`: scheme, host and port, and the first path segment when
/// more follows; user info, the rest of the path, the query and the fragment never show. Text that
/// is not a URL shows as its scheme, or not at all.
pub fn mask(text: &str) -> String {
    let text = text.trim();
    let Some((scheme, rest)) = text.split_once("://") else {
        return "(a value that is not a URL)".to_string();
    };
    let scheme: String = scheme
        .chars()
        .take(16)
        .filter(|c| !c.is_control())
        .collect();
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let host: String = host.chars().take(255).filter(|c| !c.is_control()).collect();
    let after = &rest[end..];
    let path = after.split(['?', '#']).next().unwrap_or_default();
    let mut segments = path.trim_start_matches('/').splitn(2, '/');
    let first = segments.next().unwrap_or_default();
    let more = segments.next().is_some_and(|s| !s.is_empty()) || path.len() < after.len();
    let tail = match (first.is_empty(), more) {
        (true, _) if after.is_empty() || after == "/" => String::new(),
        (false, true) => format!("/{first}/…"),
        _ => "/…".to_string(),
    };
    format!("{scheme}://{host}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_slack_webhook_then_it_shows_only_its_host_and_first_segment() {
        let secret = "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXX";
        let url = NotifyUrl::parse(secret).unwrap();
        assert_eq!(url.shown(), "https://hooks.slack.com/services/…");
        assert_eq!(url.secret(), secret);
        assert!(!format!("{url:?} {url}").contains("XXXX"));
    }

    #[test]
    fn given_secrets_outside_the_path_then_they_are_never_shown() {
        assert_eq!(
            mask("https://user:pw@example.com:8443/hook?token=abc#x"),
            "https://example.com:8443/hook/…"
        );
        assert_eq!(
            mask("https://example.com/onlysecret"),
            "https://example.com/…"
        );
        assert_eq!(mask("https://example.com/"), "https://example.com");
        assert_eq!(mask("http://127.0.0.1:9/a/b"), "http://127.0.0.1:9/a/…");
        assert_eq!(mask("hooks.slack.com/x"), "(a value that is not a URL)");
    }

    #[test]
    fn given_urls_then_only_https_or_loopback_http_is_accepted() {
        for good in [
            "https://hooks.slack.com/services/a/b/c",
            "http://127.0.0.1:8080/hook",
            "http://localhost/hook",
            "http://[::1]:9000/x",
        ] {
            assert!(NotifyUrl::parse(good).is_ok(), "{good}");
        }
        for (bad, words) in [
            ("ftp://x/secret/path", "not an http(s) URL"),
            (
                "http://example.com/secret/path",
                "plain http leaves this machine",
            ),
            ("not a url", "not a URL"),
        ] {
            let message = NotifyUrl::parse(bad).unwrap_err();
            assert!(message.contains(words), "{bad}: {message}");
            assert!(message.contains("https://"), "{message}");
            assert!(
                !message.contains("path"),
                "{bad} is shown masked: {message}"
            );
        }
    }
}
