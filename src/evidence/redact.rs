//! Secrets taken out of a log line before it is shown: bearer tokens, `key=value` credentials,
//! passwords in URLs, well-known token shapes, and the tokens shiftgate itself was given.

/// What replaces a secret.
pub const REDACTED: &str = "[REDACTED]";

/// Names whose value is a secret in `name=value`, `name: value` or `"name": "value"`, compared
/// case-insensitively; a name ending in one of them (`x-api-key`, `db_password`) counts too, as
/// does a camelCase name whose last word is one of them (`privateKey`, `secretAccessKey`).
const SECRET_NAMES: &[&str] = &[
    "key",
    "apikey",
    "token",
    "secret",
    "password",
    "passwd",
    "pwd",
    "sig",
    "signature",
    "authorization",
    "credential",
    "credentials",
    "session",
    "cookie",
];

/// Prefixes of tokens that are secrets wherever they appear (Google OAuth, GitHub, Slack, Google
/// API keys), and JWTs.
const TOKEN_PREFIXES: &[&str] = &[
    "ya29.",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "xoxb-",
    "xoxp-",
    "xoxa-",
    "xoxr-",
    "AIza",
    "eyJ",
];

/// `text` with every secret replaced by [`REDACTED`]; `known` are secret values to take out
/// wherever they appear (the tokens shiftgate was given).
pub fn redact(text: &str, known: &[String]) -> String {
    let mut out = text.to_string();
    for secret in known.iter().filter(|s| s.len() >= 8) {
        out = out.replace(secret.as_str(), REDACTED);
    }
    let out = url_credentials(&out);
    let out = after_scheme(&out, "bearer");
    let out = after_scheme(&out, "basic");
    let out = named_values(&out);
    token_shapes(&out)
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~' | '+' | '/' | '=' | '%')
}

/// `scheme://user:password@host` → `scheme://[REDACTED]@host`.
fn url_credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        let authority_end = after
            .find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace() || c == '"')
            .unwrap_or(after.len());
        let authority = &after[..authority_end];
        match authority.rfind('@') {
            Some(cut) => {
                out.push_str(REDACTED);
                out.push_str(&authority[cut..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[authority_end..];
    }
    out.push_str(rest);
    out
}

/// `Bearer abc.def` (any case) → `Bearer [REDACTED]`.
fn after_scheme(text: &str, scheme: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut search = 0;
    while let Some(found) = lower[search..].find(scheme) {
        let start = search + found;
        let word_start = start == 0 || !text[..start].ends_with(|c: char| c.is_alphanumeric());
        let after = start + scheme.len();
        let spaces = text[after..].len() - text[after..].trim_start_matches([' ', '\t']).len();
        let token_start = after + spaces;
        let token_len = text[token_start..]
            .find(|c: char| !is_token_char(c))
            .unwrap_or(text.len() - token_start);
        // Real tokens are long; `bearer of news` is prose.
        if word_start && spaces > 0 && token_len >= 8 {
            out.push_str(&text[copied..token_start]);
            out.push_str(REDACTED);
            copied = token_start + token_len;
            search = copied;
        } else {
            search = after;
        }
    }
    out.push_str(&text[copied..]);
    out
}

fn secret_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SECRET_NAMES.iter().any(|secret| {
        lower == *secret
            || lower.strip_suffix(secret).is_some_and(|head| {
                head.ends_with(['_', '-', '.']) || secret.len() > 3 || camel_word(name, head.len())
            })
    })
}

/// Whether the word of `name` starting at byte `at` is a camelCase word: an upper-case letter
/// right after a lower-case letter or digit (`privateKey`, `aws2Key`), not `monkey` or `MONKEY`.
fn camel_word(name: &str, at: usize) -> bool {
    name[at..].starts_with(|c: char| c.is_ascii_uppercase())
        && name[..at].ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
}

/// The byte offset of the first `quote` in `text` not escaped by a backslash, if any.
fn closing_quote(text: &str, quote: char) -> Option<usize> {
    let mut escaped = false;
    for (at, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            _ if c == quote => return Some(at),
            _ => {}
        }
    }
    None
}

/// `token=abc`, `password: hunter2`, `"api_key": "abc"` → the value is [`REDACTED`].
fn named_values(text: &str) -> String {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < chars.len() {
        let (at, c) = chars[i];
        if !matches!(c, '=' | ':') {
            i += 1;
            continue;
        }
        // The name before: letters, digits, `_`, `-`, `.`, maybe inside quotes, maybe with spaces
        // before the separator (`"password" : "x"`, `token = x`).
        let mut name_end = at - (text[..at].len() - text[..at].trim_end_matches([' ', '\t']).len());
        if text[..name_end].ends_with(['"', '\'']) {
            name_end -= 1;
        }
        let name_start = text[..name_end]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
            .map_or(0, |p| p + 1);
        let name = &text[name_start..name_end];
        // `://` is a URL, not a value.
        if name.is_empty() || !secret_name(name) || text[at..].starts_with("://") {
            i += 1;
            continue;
        }
        let mut value_start = at + c.len_utf8();
        value_start += text[value_start..].len() - text[value_start..].trim_start().len();
        let quote = text[value_start..]
            .chars()
            .next()
            .filter(|q| matches!(q, '"' | '\''));
        let (value_start, value_end) = match quote {
            Some(q) => {
                let inner = value_start + 1;
                // `"ab\"cd"`: an escaped quote does not end the value.
                let end = closing_quote(&text[inner..], q).map_or(text.len(), |p| inner + p);
                (inner, end)
            }
            None => {
                let end = text[value_start..]
                    .find(|c: char| c.is_whitespace() || matches!(c, '&' | ',' | ';' | '"' | '\''))
                    .map_or(text.len(), |p| value_start + p);
                (value_start, end)
            }
        };
        let value = &text[value_start..value_end];
        // `Authorization: Bearer …`: the scheme stays, the token after it is already gone.
        let scheme = ["bearer", "basic"].contains(&value.to_ascii_lowercase().as_str());
        if value_end > value_start && value != REDACTED && !scheme {
            out.push_str(&text[copied..value_start]);
            out.push_str(REDACTED);
            copied = value_end;
        }
        i = chars.partition_point(|(p, _)| *p < value_end.max(at + 1));
    }
    out.push_str(&text[copied..]);
    out
}

/// Well-known token shapes (see [`TOKEN_PREFIXES`]) → [`REDACTED`].
fn token_shapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let found = TOKEN_PREFIXES
            .iter()
            .filter_map(|prefix| {
                let mut from = 0;
                while let Some(p) = rest[from..].find(prefix) {
                    let start = from + p;
                    let boundary =
                        start == 0 || !rest[..start].ends_with(|c: char| is_token_char(c));
                    if boundary {
                        return Some(start);
                    }
                    from = start + prefix.len();
                }
                None
            })
            .min();
        let Some(start) = found else { break };
        let len = rest[start..]
            .find(|c: char| !is_token_char(c))
            .unwrap_or(rest.len() - start);
        out.push_str(&rest[..start]);
        // A bare prefix (`AIza` in prose) is not a token: it needs a body.
        if len >= 12 {
            out.push_str(REDACTED);
        } else {
            out.push_str(&rest[start..start + len]);
        }
        rest = &rest[start + len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_bearer_token_then_only_the_token_goes() {
        assert_eq!(
            redact(
                "auth failed: Authorization: Bearer abc.DEF-123_x== for /x",
                &[]
            ),
            "auth failed: Authorization: Bearer [REDACTED] for /x"
        );
        assert_eq!(redact("bearer\tzzzzzzzz1", &[]), "bearer\t[REDACTED]");
        assert_eq!(redact("a bearer of news", &[]), "a bearer of news");
    }

    #[test]
    fn given_credentials_in_a_url_then_the_user_info_goes() {
        assert_eq!(
            redact("connect postgres://app:hunter2@db:5432/x failed", &[]),
            "connect postgres://[REDACTED]@db:5432/x failed"
        );
        assert_eq!(
            redact("GET https://a.b/c?x=1", &[]),
            "GET https://a.b/c?x=1"
        );
    }

    #[test]
    fn given_named_secrets_then_their_values_go() {
        assert_eq!(
            redact("GET /v1?key=AIzaSyA-1234&q=cats&access_token=abc", &[]),
            "GET /v1?key=[REDACTED]&q=cats&access_token=[REDACTED]"
        );
        assert_eq!(
            redact(
                r#"{"password": "p@ss word", "user": "bob", "x-api-key":"k1"}"#,
                &[]
            ),
            r#"{"password": "[REDACTED]", "user": "bob", "x-api-key":"[REDACTED]"}"#
        );
        assert_eq!(
            redact("DB_PASSWORD=s3cret done", &[]),
            "DB_PASSWORD=[REDACTED] done"
        );
        assert_eq!(redact("monkey=1 tokens: 5", &[]), "monkey=1 tokens: 5");
    }

    #[test]
    fn given_camel_case_names_spaced_separators_and_escaped_quotes_then_the_values_still_go() {
        assert_eq!(
            redact(
                r#"{"privateKey":"pk1","accessKey":"ak1","secretAccessKey":"sak1","apiToken":"t1"}"#,
                &[]
            ),
            r#"{"privateKey":"[REDACTED]","accessKey":"[REDACTED]","secretAccessKey":"[REDACTED]","apiToken":"[REDACTED]"}"#
        );
        assert_eq!(
            redact(
                "dbPassword=pw1 awsCredential=c1 clientSecret=s1 aws2Key=k2",
                &[]
            ),
            "dbPassword=[REDACTED] awsCredential=[REDACTED] clientSecret=[REDACTED] aws2Key=[REDACTED]"
        );
        assert_eq!(
            redact(r#"{"password" : "x1", "token"	:	"t2"} key = k3"#, &[]),
            r#"{"password" : "[REDACTED]", "token"	:	"[REDACTED]"} key = [REDACTED]"#
        );
        assert_eq!(
            redact(r#"{"password":"ab\"cd", "user":"bob"}"#, &[]),
            r#"{"password":"[REDACTED]", "user":"bob"}"#
        );
        assert_eq!(
            redact(r#"password='it\'s' ok"#, &[]),
            r#"password='[REDACTED]' ok"#
        );
        // Not secrets: a word that merely ends in the letters, in any case, spaced or not.
        assert_eq!(
            redact("monkey=1 MONKEY=2 turkey : 3 Key=4x", &[]),
            "monkey=1 MONKEY=2 turkey : 3 Key=[REDACTED]"
        );
    }

    #[test]
    fn given_token_shapes_and_known_tokens_then_they_go() {
        assert_eq!(
            redact(
                "sent ya29.a0AfH6SMBxxxxxxxxxxxx and ghs_abcdefghijklmnop",
                &[]
            ),
            "sent [REDACTED] and [REDACTED]"
        );
        assert_eq!(
            redact("jwt eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.sig ok", &[]),
            "jwt [REDACTED] ok"
        );
        assert_eq!(
            redact(
                "leaked my-own-secret-value!",
                &["my-own-secret-value".into()]
            ),
            "leaked [REDACTED]!"
        );
        assert_eq!(redact("AIza is a prefix", &[]), "AIza is a prefix");
    }
}
