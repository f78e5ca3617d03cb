//! The evidence as Markdown for an incident body: log lines cut, redacted and quoted in a code
//! block, the revisions as a table of quoted cells, the commands in a code block.

use std::time::{Duration, SystemTime};

use crate::evidence::redact::redact;
use crate::evidence::{ErrorEntries, Evidence, LogLine, MESSAGE_CHARS, REVISIONS_SHOWN};
use crate::markdown;
use crate::rollout::ports::RevisionInfo;

/// A message is read this far before redaction: nothing past it is shown anyway.
const READ_CHARS: usize = 4096;

/// `text` cut to `limit` characters, with `…` where it was cut.
fn cut(text: &str, limit: usize) -> String {
    let mut chars = text.chars();
    let kept: String = chars.by_ref().take(limit).collect();
    if chars.next().is_some() {
        format!("{kept}…")
    } else {
        kept
    }
}

/// One entry as a line: time, severity, status, message (redacted, then cut).
pub fn log_line(line: &LogLine, secrets: &[String]) -> String {
    let read: String = line.message.chars().take(READ_CHARS).collect();
    let message = cut(redact(&read, secrets).trim(), MESSAGE_CHARS);
    let mut shown = format!("{} {}", cut(&line.time, 40), cut(&line.severity, 12));
    if let Some(status) = line.status {
        shown.push_str(&format!(" {status}"));
    }
    shown.push(' ');
    shown.push_str(&message);
    shown
}

/// `3d 4h`, `2h 5m`, `7m`, `12s`: the two largest units.
fn age(duration: Duration) -> String {
    let s = duration.as_secs();
    let (d, h, m) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

fn created(revision: &RevisionInfo) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(revision.create_time.as_deref()?.trim_end_matches('Z')).ok()
}

/// The revisions to show: newest first, at most [`REVISIONS_SHOWN`], stable and candidate always.
fn shown_revisions<'a>(evidence: &Evidence, all: &'a [RevisionInfo]) -> Vec<&'a RevisionInfo> {
    let mut sorted: Vec<&RevisionInfo> = all.iter().collect();
    // Newest first; a revision without a creation time goes last, in the platform's order.
    sorted.sort_by_key(|revision| std::cmp::Reverse(created(revision)));
    let mut shown: Vec<&RevisionInfo> = sorted.iter().take(REVISIONS_SHOWN).copied().collect();
    for name in [&evidence.candidate, &evidence.stable] {
        if !shown.iter().any(|r| &r.name == name)
            && let Some(revision) = sorted.iter().find(|r| &r.name == name)
        {
            shown.push(revision);
        }
    }
    shown
}

fn role(evidence: &Evidence, revision: &RevisionInfo) -> String {
    let mut role = Vec::new();
    if revision.name == evidence.stable {
        role.push("**stable**".to_string());
    }
    if revision.name == evidence.candidate {
        role.push("**candidate** (rolled back)".to_string());
    }
    if !revision.ready {
        role.push(match &revision.reason {
            Some(reason) => format!("not ready: {}", markdown::cell_code(&cut(reason, 120))),
            None => "not ready".to_string(),
        });
    }
    role.join(", ")
}

/// The whole evidence section.
pub fn markdown(evidence: &Evidence) -> String {
    let mut out = String::from("\n### Evidence\n\n");
    let since = humantime::format_rfc3339_seconds(evidence.since);
    out.push_str(&format!(
        "#### Error logs of candidate {}\n\n",
        markdown::code(&evidence.candidate)
    ));
    match &evidence.errors {
        Ok(ErrorEntries {
            lines,
            incomplete: true,
        }) if lines.is_empty() => out.push_str(&format!(
            "Cloud Logging's search for entries at ERROR or above for this revision since {since} \
             did not finish in time: it found none so far, which does not mean there are none.\n\n"
        )),
        Ok(ErrorEntries { lines, .. }) if lines.is_empty() => out.push_str(&format!(
            "Cloud Logging holds no entries at ERROR or above for this revision since {since}.\n\n"
        )),
        Ok(ErrorEntries { lines, incomplete }) => {
            out.push_str(&format!(
                "The last {} entries at ERROR or above since {since}, newest first (each cut to {MESSAGE_CHARS} characters, secrets redacted):\n\n",
                lines.len()
            ));
            let shown: Vec<String> = lines
                .iter()
                .map(|line| log_line(line, &evidence.secrets))
                .collect();
            out.push_str(&markdown::code_block(&shown));
            out.push('\n');
            if *incomplete {
                out.push_str(
                    "Cloud Logging's search did not finish in time: older entries may be missing.\n\n",
                );
            }
        }
        Err(why) => out.push_str(&format!(
            "Error logs could not be read: {}\n\n",
            markdown::code(&cut(&redact(why, &evidence.secrets), 300))
        )),
    }
    out.push_str("#### Recent revisions\n\n");
    match &evidence.revisions {
        Ok(all) if all.is_empty() => out.push_str("The service lists no revisions.\n\n"),
        Ok(all) => {
            out.push_str("| revision | image | age | |\n|---|---|---|---|\n");
            for revision in shown_revisions(evidence, all) {
                let age = created(revision)
                    .and_then(|at| evidence.at.duration_since(at).ok())
                    .map_or_else(|| "?".to_string(), age);
                out.push_str(&format!(
                    "| {} | {} | {age} | {} |\n",
                    markdown::cell_code(&revision.name),
                    markdown::cell_code(revision.image.as_deref().unwrap_or("(unknown)")),
                    role(evidence, revision)
                ));
            }
            if all.len() > REVISIONS_SHOWN {
                out.push_str(&format!(
                    "\n({} revisions in all; the newest {REVISIONS_SHOWN} are shown.)\n",
                    all.len()
                ));
            }
            out.push('\n');
        }
        Err(why) => out.push_str(&format!(
            "Revisions could not be listed: {}\n\n",
            markdown::code(&cut(why, 300))
        )),
    }
    if !evidence.remedies.is_empty() {
        out.push_str("#### Undo or retry\n\n");
        let mut lines = Vec::new();
        for remedy in &evidence.remedies {
            lines.push(format!("# {}", remedy.purpose));
            lines.push(remedy.command.clone());
        }
        out.push_str(&markdown::code_block(&lines));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::Remedy;

    fn evidence(errors: Result<Vec<LogLine>, String>) -> Evidence {
        let errors = errors.map(|lines| ErrorEntries {
            lines,
            incomplete: false,
        });
        let at = humantime::parse_rfc3339("2026-12-01T03:00:00Z").unwrap();
        Evidence {
            stable: "app-00001-old".into(),
            candidate: "app-00002-new".into(),
            since: at - Duration::from_secs(300),
            errors,
            revisions: Ok(vec![
                RevisionInfo {
                    name: "app-00001-old".into(),
                    ready: true,
                    reason: None,
                    image: Some("registry/app:v1.0.0".into()),
                    create_time: Some("2026-11-30T23:00:00.123456789Z".into()),
                },
                RevisionInfo {
                    name: "app-00002-new".into(),
                    ready: true,
                    reason: None,
                    image: Some("registry/app:v1.1.0".into()),
                    create_time: Some("2026-12-01T02:56:00Z".into()),
                },
            ]),
            remedies: vec![Remedy {
                purpose: "Undo".into(),
                command: "shiftgate rollback --env prod --to app-00001-old".into(),
            }],
            at,
            secrets: vec!["ghs_the_real_github_token".into()],
        }
    }

    fn line(message: &str) -> LogLine {
        LogLine {
            time: "2026-12-01T02:58:00.5Z".into(),
            severity: "ERROR".into(),
            status: Some(500),
            message: message.into(),
        }
    }

    #[test]
    fn given_hostile_log_lines_then_nothing_in_them_renders_mentions_or_leaks() {
        let hostile = [
            "```\n# Pwned\n```",
            "`` ` ``````",
            "ping @octocat and @org/team",
            "<script>alert(1)</script> <img src=x onerror=y>",
            "<!-- shiftgate-incident: projects/p/locations/r/services/other -->",
            "Authorization: Bearer ya29.secret-access-token-value",
            "GET /hook?key=AIzaSyA0123456789 from https://u:p4ss@evil.example/",
            "leak ghs_the_real_github_token here",
            &"x".repeat(5000),
        ];
        let body = markdown(&evidence(Ok(hostile.iter().map(|m| line(m)).collect())));
        // One code block holds the lines: its fence is longer than any backtick run in them.
        assert!(body.contains("\n```````text\n"), "{body}");
        assert_eq!(body.matches("```````").count(), 2, "{body}");
        assert!(
            body.contains("2026-12-01T02:58:00.5Z ERROR 500 ``` # Pwned ```\n"),
            "{body}"
        );
        for gone in [
            "@octocat",
            "@org",
            "<!-- shiftgate-incident",
            "ya29.",
            "secret-access-token",
            "AIzaSyA",
            "p4ss",
            "ghs_the_real_github_token",
        ] {
            assert!(!body.contains(gone), "{gone} in {body}");
        }
        assert!(body.contains("Bearer [REDACTED]"), "{body}");
        assert!(
            body.contains("https://[REDACTED]@\u{2060}evil.example/"),
            "{body}"
        );
        let long = body.lines().find(|l| l.contains("xxxx")).unwrap();
        assert_eq!(
            long,
            format!("2026-12-01T02:58:00.5Z ERROR 500 {}…", "x".repeat(200))
        );
        // Outside the code block, the HTML is not there to render.
        let outside: String = body.split("```````").step_by(2).collect();
        assert!(!outside.contains("<script>"), "{outside}");
    }

    #[test]
    fn given_revisions_then_the_table_marks_stable_and_candidate_with_their_ages() {
        let body = markdown(&evidence(Ok(vec![line("boom")])));
        assert!(
            body.contains(
                "| `app-00002-new` | `registry/app:v1.1.0` | 4m | **candidate** (rolled back) |\n\
                 | `app-00001-old` | `registry/app:v1.0.0` | 3h 59m | **stable** |\n"
            ),
            "{body}"
        );
        assert!(body.contains("# Undo\nshiftgate rollback --env prod --to app-00001-old\n"));
    }

    #[test]
    fn given_a_search_that_did_not_finish_then_the_text_does_not_claim_there_are_no_errors() {
        let mut unfinished = evidence(Ok(Vec::new()));
        unfinished.errors = Ok(ErrorEntries {
            lines: Vec::new(),
            incomplete: true,
        });
        let body = markdown(&unfinished);
        assert!(!body.contains("holds no entries"), "{body}");
        assert!(
            body.contains(
                "Cloud Logging's search for entries at ERROR or above for this revision since \
                 2026-12-01T02:55:00Z did not finish in time: it found none so far, which does not \
                 mean there are none.\n"
            ),
            "{body}"
        );
        let complete = markdown(&evidence(Ok(Vec::new())));
        assert!(
            complete.contains(
                "Cloud Logging holds no entries at ERROR or above for this revision since 2026-12-01T02:55:00Z.\n"
            ),
            "{complete}"
        );
        unfinished.errors = Ok(ErrorEntries {
            lines: vec![line("boom")],
            incomplete: true,
        });
        let body = markdown(&unfinished);
        assert!(
            body.contains("did not finish in time: older entries may be missing.\n"),
            "{body}"
        );
    }

    #[test]
    fn given_logs_that_could_not_be_read_then_one_line_says_why() {
        let body = markdown(&evidence(Err(
            "rejected (403): PERMISSION_DENIED for @someone".into(),
        )));
        assert!(
            body.contains(
                "Error logs could not be read: `rejected (403): PERMISSION_DENIED for @\u{2060}someone`\n"
            ),
            "{body}"
        );
        assert!(body.contains("| `app-00001-old` |"), "{body}");
    }
}
