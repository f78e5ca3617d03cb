//! Masking secrets in a GitHub Actions job log: the tokens shiftgate reads from the environment,
//! and tokens it obtains at run time, each announced once with `::add-mask::`.

use std::sync::Mutex;

use crate::workflow_command::{emit, is_actions, workflow_command};

/// Variables holding tokens shiftgate reads; their values are masked in the job log.
pub const TOKEN_VARIABLES: [&str; 3] = ["GITHUB_TOKEN", "GH_TOKEN", "GOOGLE_OAUTH_ACCESS_TOKEN"];

/// `::add-mask::` lines for every token variable that is set (each line of a multi-line value is
/// masked on its own, as the runner matches masks line by line).
pub fn mask_commands(lookup: impl Fn(&str) -> Option<String>) -> Vec<String> {
    let mut lines = Vec::new();
    for name in TOKEN_VARIABLES {
        let Some(value) = lookup(name) else { continue };
        for part in value.lines().map(str::trim).filter(|part| !part.is_empty()) {
            let line = workflow_command("add-mask", &[], part);
            if !lines.contains(&line) {
                lines.push(line);
            }
        }
    }
    lines
}

/// Masks the tokens in the environment.
pub fn mask_tokens_from_env() {
    for line in mask_commands(|name| std::env::var(name).ok()) {
        emit(&line);
    }
}

/// Masks a token obtained at run time (Application Default Credentials) the first time it is seen,
/// inside a GitHub Actions job.
pub fn mask_once(token: &str) {
    static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());
    if token.is_empty() || !is_actions() {
        return;
    }
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    if !seen.iter().any(|t| t == token) {
        seen.push(token.to_string());
        emit(&workflow_command("add-mask", &[], token));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_token_variable_that_is_set_is_masked_line_by_line() {
        let lines = mask_commands(|name| match name {
            "GITHUB_TOKEN" => Some("ghs_abc".into()),
            "GH_TOKEN" => Some("ghs_abc".into()),
            "GOOGLE_OAUTH_ACCESS_TOKEN" => Some("ya29.x\nsecond%".into()),
            _ => None,
        });
        assert_eq!(
            lines,
            vec![
                "::add-mask::ghs_abc",
                "::add-mask::ya29.x",
                "::add-mask::second%25"
            ]
        );
        assert!(mask_commands(|_| None).is_empty());
    }
}
