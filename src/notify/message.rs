//! What a rollout tells a chat channel: which timeline events are worth a message, and each
//! message as a Slack-compatible incoming-webhook body (`text` for every client, `blocks` for Slack).

use serde_json::{Value, json};

use crate::rollout::timeline::EventKind;

/// The service a rollout works on and where its run can be read: in every message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subject {
    /// The config file's environment name, when the service was named by `--env`.
    pub environment: Option<String>,
    pub project: String,
    pub region: String,
    pub service: String,
    /// The GitHub Actions run, when there is one.
    pub run_link: Option<String>,
}

/// Something worth telling the channel, with the revisions it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub kind: NoticeKind,
    pub stable: String,
    pub candidate: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoticeKind {
    Started {
        steps: Vec<u8>,
    },
    Promoted,
    /// Stable serves everything again; `reason` holds the failed value against its limit.
    RolledBack {
        reason: Option<String>,
    },
    /// Restoring stable was not confirmed: the service needs a person.
    RollbackFailed {
        reason: String,
    },
    /// Someone else changed the service; the rollout stopped without writing again.
    Aborted {
        reason: String,
    },
    /// The rollout ended after its start message without an outcome of its own (refused after
    /// planning, or an internal error).
    Stopped {
        reason: String,
    },
    /// Held after a `--pause-at` step for `shiftgate promote` or `abort`.
    Paused {
        percent: u8,
        timeout: String,
        on_timeout: &'static str,
    },
}

impl Notice {
    /// The name the `--json` result gives this message.
    pub fn event(&self) -> &'static str {
        match self.kind {
            NoticeKind::Started { .. } => "started",
            NoticeKind::Promoted => "promoted",
            NoticeKind::RolledBack { .. } => "rolled_back",
            NoticeKind::RollbackFailed { .. } => "rollback_failed",
            NoticeKind::Aborted { .. } => "aborted",
            NoticeKind::Stopped { .. } => "stopped",
            NoticeKind::Paused { .. } => "paused",
        }
    }
}

/// Follows the timeline event by event and says when one is worth a message.
#[derive(Debug, Default)]
pub struct Narrator {
    stable: String,
    candidate: String,
    /// Why the rollout is going back to stable (set just before the rollback's events).
    reason: Option<String>,
    started: bool,
    ended: bool,
}

impl Narrator {
    pub fn observe(&mut self, event: &EventKind) -> Option<Notice> {
        let kind = match event {
            EventKind::Planned {
                stable,
                candidate,
                steps,
                ..
            } => {
                self.stable = stable.clone();
                self.candidate = candidate.clone();
                self.started = true;
                NoticeKind::Started {
                    steps: steps.clone(),
                }
            }
            EventKind::RollbackStarted { reason } => {
                self.reason = Some(reason.clone());
                return None;
            }
            EventKind::RolledBack { .. } => NoticeKind::RolledBack {
                reason: self.reason.clone(),
            },
            EventKind::RollbackFailed { reason } => NoticeKind::RollbackFailed {
                reason: match &self.reason {
                    Some(why) => {
                        format!("{why}; then restoring stable was not confirmed: {reason}")
                    }
                    None => reason.clone(),
                },
            },
            EventKind::Aborted { reason } => NoticeKind::Aborted {
                reason: reason.clone(),
            },
            EventKind::Promoted { .. } => NoticeKind::Promoted,
            EventKind::Paused {
                percent,
                timeout_s,
                on_timeout,
                ..
            } => NoticeKind::Paused {
                percent: *percent,
                timeout: humantime::format_duration(std::time::Duration::from_secs_f64(
                    timeout_s.round(),
                ))
                .to_string(),
                on_timeout: match on_timeout {
                    crate::rollout::pause::PauseTimeoutAction::Rollback => "roll back",
                    crate::rollout::pause::PauseTimeoutAction::Promote => "go on by itself",
                },
            },
            // Every other event (steps, checks, retries) is progress, not news. A new event worth
            // a message (pausing, resuming) gets its own arm above this one.
            _ => return None,
        };
        // A hold is news, not an end: the outcome is still to come.
        self.ended = !matches!(kind, NoticeKind::Started { .. } | NoticeKind::Paused { .. });
        Some(self.notice(kind))
    }

    /// The rollout ended without an outcome message: one closing message when a start was
    /// announced, so a channel never sees a start with nothing after it.
    pub fn stopped(&mut self, reason: &str) -> Option<Notice> {
        if !self.started || self.ended {
            return None;
        }
        self.ended = true;
        Some(self.notice(NoticeKind::Stopped {
            reason: reason.to_string(),
        }))
    }

    fn notice(&self, kind: NoticeKind) -> Notice {
        Notice {
            kind,
            stable: self.stable.clone(),
            candidate: self.candidate.clone(),
        }
    }
}

/// Slack's escaping for text in `text` and `mrkdwn`: with `&`, `<` and `>` escaped, nothing from
/// outside (a revision name, an API error) can make a link or a mention (`<!channel>`).
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        // `@channel`, `@here`, `@everyone` are mentions in Mattermost and Discord's Slack-style
        // webhooks even as plain text: a word joiner after `@` keeps them text.
        .replace('@', "@\u{2060}")
}

/// Reasons can quote long API answers; a message keeps the start (Slack refuses a section over
/// 3000 characters).
const REASON_CHARS: usize = 1500;

/// The webhook body for `notice`: `{"text": …, "blocks": […]}`.
pub fn body(subject: &Subject, notice: &Notice) -> Value {
    let service = escape(&subject.service);
    let candidate = escape(&notice.candidate);
    let stable = escape(&notice.stable);
    let headline = match &notice.kind {
        NoticeKind::Started { steps } => {
            let steps: Vec<String> = steps.iter().map(u8::to_string).collect();
            format!(
                "Rollout started: *{service}* moves to `{candidate}` in steps {}%",
                steps.join(", ")
            )
        }
        NoticeKind::Promoted => format!("Rollout promoted: *{service}* serves `{candidate}`"),
        NoticeKind::RolledBack { .. } => {
            format!("Rollout rolled back: *{service}* is back on `{stable}`")
        }
        NoticeKind::RollbackFailed { .. } => format!(
            "Rollback FAILED: *{service}* may still send traffic to `{candidate}`; it needs a person"
        ),
        NoticeKind::Aborted { .. } => {
            format!("Rollout aborted: *{service}* was changed by someone else")
        }
        NoticeKind::Stopped { .. } => format!("Rollout stopped: *{service}*"),
        NoticeKind::Paused {
            percent,
            timeout,
            on_timeout,
        } => format!(
            "Rollout paused at {percent}%: *{service}* waits for `shiftgate promote` or `shiftgate \
             abort`; after {timeout} it will {on_timeout}"
        ),
    };
    let reason = match &notice.kind {
        NoticeKind::RolledBack { reason } => reason.clone(),
        NoticeKind::RollbackFailed { reason }
        | NoticeKind::Aborted { reason }
        | NoticeKind::Stopped { reason } => Some(reason.clone()),
        NoticeKind::Started { .. } | NoticeKind::Promoted | NoticeKind::Paused { .. } => None,
    }
    .map(|reason| escape(&shortened(&reason)));
    let mut facts: Vec<(&str, String)> = Vec::new();
    if let Some(environment) = &subject.environment {
        facts.push(("Environment", escape(environment)));
    }
    facts.push((
        "Region",
        format!("{} ({})", escape(&subject.region), escape(&subject.project)),
    ));
    facts.push(("Service", service.clone()));
    facts.push(("Candidate", format!("`{candidate}`")));
    facts.push(("Stable", format!("`{stable}`")));
    let run = subject.run_link.as_deref().map(run_link);
    let reason = reason.map(|reason| ("Reason", reason));
    slack_message(&headline, &facts, reason.as_ref(), run.as_deref())
}

/// `<URL|workflow run>`.
pub(super) fn run_link(url: &str) -> String {
    format!("<{}|workflow run>", link_target(url))
}

/// One message as every client shows it: `text` (the headline, the facts on one line, the
/// detail, the run) for any incoming webhook, and Slack's `blocks`. The detail is `(label, text)`;
/// an empty label shows the text alone.
pub(super) fn slack_message(
    headline: &str,
    facts: &[(&str, String)],
    detail: Option<&(&str, String)>,
    run: Option<&str>,
) -> Value {
    let mut text = vec![headline.to_string()];
    text.push(
        facts
            .iter()
            .map(|(name, value)| format!("{}: {value}", name.to_lowercase()))
            .collect::<Vec<_>>()
            .join(" · "),
    );
    let labelled = |separator: &str, label: &str, body: &str| match label {
        "" => body.to_string(),
        label => format!("{label}{separator}{body}"),
    };
    if let Some((label, body)) = detail {
        text.push(labelled(": ", &label.to_lowercase(), body));
    }
    if let Some(run) = run {
        text.push(format!("run: {run}"));
    }
    let mut blocks = vec![
        json!({"type": "section", "text": {"type": "mrkdwn", "text": headline}}),
        json!({"type": "section", "fields": facts
            .iter()
            .map(|(name, value)| json!({"type": "mrkdwn", "text": format!("*{name}*\n{value}")}))
            .collect::<Vec<_>>()}),
    ];
    if let Some((label, body)) = detail {
        let shown = match *label {
            "" => body.clone(),
            label => format!("*{label}*\n{body}"),
        };
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": shown}}));
    }
    if let Some(run) = run {
        blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": run}]}));
    }
    json!({"text": text.join("\n"), "blocks": blocks})
}

fn shortened(text: &str) -> String {
    match text.char_indices().nth(REASON_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

/// A URL inside `<URL|label>`: escaped, and a `|` (which would end it) percent-encoded.
pub(super) fn link_target(url: &str) -> String {
    escape(url).replace('|', "%7C")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_text_from_outside_then_it_can_neither_link_nor_mention() {
        let shown = escape("<!channel> @here @everyone a&b <https://x|y>");
        assert!(!shown.contains('<') && !shown.contains('>'), "{shown}");
        assert!(
            !shown.contains("@here") && !shown.contains("@everyone"),
            "{shown}"
        );
        assert!(shown.contains("a&amp;b"), "{shown}");
    }
    use crate::rollout::ports::TrafficTarget;

    fn subject() -> Subject {
        Subject {
            environment: Some("prod".into()),
            project: "loopcloser".into(),
            region: "us-central1".into(),
            service: "loopcloser-prod".into(),
            run_link: Some("https://github.com/o/r/actions/runs/42".into()),
        }
    }

    fn planned() -> EventKind {
        EventKind::Planned {
            stable: "web-00001-abc".into(),
            candidate: "web-00002-def".into(),
            steps: vec![10, 50, 100],
            creates_revision: true,
        }
    }

    #[test]
    fn given_a_promoted_rollout_then_the_start_and_the_promotion_are_news_and_steps_are_not() {
        let mut narrator = Narrator::default();
        let events = [
            planned(),
            EventKind::StepPassed {
                step: 1,
                percent: 10,
            },
            EventKind::Promoted {
                revision: "web-00002-def".into(),
            },
        ];
        let notices: Vec<&str> = events
            .iter()
            .filter_map(|event| narrator.observe(event))
            .map(|notice| notice.event())
            .collect();
        assert_eq!(notices, ["started", "promoted"]);
        assert_eq!(narrator.stopped("late"), None, "the outcome was told");
    }

    #[test]
    fn given_a_failed_step_then_the_rollback_message_carries_the_value_against_its_limit() {
        let reason = "candidate 5xx 21.43% (3 of 14) vs stable 0% (0 of 30): above 5%";
        let mut narrator = Narrator::default();
        narrator.observe(&planned());
        assert_eq!(
            narrator.observe(&EventKind::RollbackStarted {
                reason: reason.into()
            }),
            None
        );
        let notice = narrator
            .observe(&EventKind::RolledBack {
                traffic: vec![TrafficTarget::new("web-00001-abc", 100)],
            })
            .unwrap();
        let body = body(&subject(), &notice);
        let text = body["text"].as_str().unwrap();
        assert!(
            text.starts_with("Rollout rolled back: *loopcloser-prod*"),
            "{text}"
        );
        for fact in [
            reason,
            "environment: prod",
            "region: us-central1 (loopcloser)",
            "candidate: `web-00002-def`",
            "stable: `web-00001-abc`",
            "<https://github.com/o/r/actions/runs/42|workflow run>",
        ] {
            assert!(text.contains(fact), "{fact:?} in {text}");
        }
        assert_eq!(
            body["blocks"][2]["text"]["text"],
            format!("*Reason*\n{reason}")
        );
    }

    #[test]
    fn given_a_hold_then_it_is_news_that_names_both_commands_and_the_rollout_is_not_over() {
        let mut narrator = Narrator::default();
        narrator.observe(&planned());
        let notice = narrator
            .observe(&EventKind::Paused {
                step: 3,
                percent: 50,
                timeout_s: 1800.0,
                on_timeout: crate::rollout::pause::PauseTimeoutAction::Rollback,
            })
            .unwrap();
        assert_eq!(notice.event(), "paused");
        let text = body(&subject(), &notice)["text"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            text.contains("paused at 50%")
                && text.contains("shiftgate promote")
                && text.contains("after 30m it will roll back"),
            "{text}"
        );
        assert!(
            narrator.stopped("the runner was lost").is_some(),
            "a hold is not an end"
        );
    }

    #[test]
    fn given_a_start_that_ends_without_an_outcome_then_one_closing_message_follows() {
        let mut narrator = Narrator::default();
        assert_eq!(narrator.stopped("refused"), None, "nothing was announced");
        narrator.observe(&planned());
        let notice = narrator
            .stopped("another rollout owns the service")
            .unwrap();
        assert_eq!(notice.event(), "stopped");
        assert_eq!(narrator.stopped("again"), None);
    }

    #[test]
    fn given_text_from_outside_then_it_cannot_make_a_link_or_a_mention() {
        let notice = Notice {
            kind: NoticeKind::Aborted {
                reason: "<!channel> see <https://evil|here> & more".into(),
            },
            stable: "a<b".into(),
            candidate: "c>d".into(),
        };
        let body = body(
            &Subject {
                run_link: Some("https://x/runs/1|<!here>".into()),
                ..subject()
            },
            &notice,
        );
        let all = body.to_string();
        assert!(!all.contains("<!"), "{all}");
        assert!(!all.contains("<https://evil"), "{all}");
        assert!(all.contains("&lt;!channel&gt; see &lt;https://evil|here&gt; &amp; more"));
        assert!(
            all.contains("<https://x/runs/1%7C&lt;!here&gt;|workflow run>"),
            "{all}"
        );
    }

    #[test]
    fn given_a_long_reason_then_the_message_keeps_its_start() {
        let notice = Notice {
            kind: NoticeKind::Stopped {
                reason: "x".repeat(5000),
            },
            stable: "s".into(),
            candidate: "c".into(),
        };
        let reason = body(&subject(), &notice)["blocks"][2]["text"]["text"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(reason.chars().count() < 1600 && reason.ends_with('…'));
    }
}
