//! What a chat channel is told about an incident issue shiftgate opened, commented on or closed
//! (the runbook's "notify stakeholders"), and sending those messages from commands without a rollout.

use serde_json::Value;

use crate::notify::deliver::{Delivery, Outbox};
use crate::notify::message::{escape, link_target, run_link, slack_message};
use crate::notify::url::NotifyUrl;
use crate::notify::{PATIENCE, PATIENCE_WHEN_INTERRUPTED, warn_undelivered};
use crate::rollout::Interrupt;

/// What happened to the issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Opened,
    Commented,
    Closed,
}

/// One incident message: the issue, its severity and title, the environment it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentNotice {
    pub change: Change,
    /// `SEV-1` … `SEV-4`, when known.
    pub severity: Option<String>,
    pub title: String,
    pub environment: Option<String>,
    /// The issue's web address.
    pub issue_url: String,
    pub number: u64,
    /// One line of what changed: the reason it is down, the downtime, the promoted revision.
    pub detail: Option<String>,
    /// The GitHub Actions run, when there is one.
    pub run_link: Option<String>,
}

/// Slack refuses a section over 3000 characters; details quote API answers and health bodies.
const DETAIL_CHARS: usize = 1500;

impl IncidentNotice {
    /// The name the `--json` result gives this message.
    pub fn event(&self) -> &'static str {
        match self.change {
            Change::Opened => "incident_opened",
            Change::Commented => "incident_commented",
            Change::Closed => "incident_closed",
        }
    }

    /// The Slack-compatible webhook body: `{"text": …, "blocks": […]}`. Everything from outside
    /// is escaped, so it can make neither a link nor a mention.
    pub fn body(&self) -> Value {
        let what = match self.change {
            Change::Opened => "Incident opened",
            Change::Commented => "Incident updated",
            Change::Closed => "Incident resolved",
        };
        let severity = self
            .severity
            .as_deref()
            .map(|s| format!("{} ", escape(s)))
            .unwrap_or_default();
        let headline = format!(
            "{what}: {severity}*{}* (#{})",
            escape(&self.title),
            self.number
        );
        let mut facts: Vec<(&str, String)> = Vec::new();
        if let Some(severity) = &self.severity {
            facts.push(("Severity", escape(severity)));
        }
        if let Some(environment) = &self.environment {
            facts.push(("Environment", escape(environment)));
        }
        let issue = format!("<{}|issue #{}>", link_target(&self.issue_url), self.number);
        facts.push(("Issue", issue));
        let detail = self.detail.as_deref().map(|text| {
            let text: String = match text.char_indices().nth(DETAIL_CHARS) {
                Some((end, _)) => format!("{}…", &text[..end]),
                None => text.to_string(),
            };
            escape(&text)
        });
        let run = self.run_link.as_deref().map(run_link);
        let detail = detail.map(|text| ("", text));
        slack_message(&headline, &facts, detail.as_ref(), run.as_deref())
    }
}

/// Sends each batch's messages to that batch's webhooks (one environment's, say), every webhook
/// in its own queue, and waits up to [`PATIENCE`] for them ([`PATIENCE_WHEN_INTERRUPTED`] once
/// `interrupt` fires). Each message not delivered is said once, as a warning; nothing here fails.
pub async fn send(
    batches: Vec<(Vec<NotifyUrl>, Vec<IncidentNotice>)>,
    interrupt: &Interrupt,
) -> Vec<Delivery> {
    let mut announcer = Announcer::default();
    for (urls, notices) in batches {
        announcer.announce(&urls, &notices);
    }
    announcer.finish(interrupt).await
}

/// Messages that start on their way as soon as they are known (a job killed a minute later has
/// still told its channel), and one bounded wait for all of them at the end.
#[derive(Default)]
pub struct Announcer {
    outboxes: Vec<Outbox>,
}

impl Announcer {
    /// Queues `notices` to `urls` now, each webhook in its own queue.
    pub fn announce(&mut self, urls: &[NotifyUrl], notices: &[IncidentNotice]) {
        if urls.is_empty() || notices.is_empty() {
            return;
        }
        for url in urls {
            crate::mask::mask_once(url.secret());
        }
        let outbox = Outbox::start(urls.to_vec());
        for notice in notices {
            outbox.send(notice.event(), notice.body());
        }
        self.outboxes.push(outbox);
    }

    /// Waits up to [`PATIENCE`] ([`PATIENCE_WHEN_INTERRUPTED`] once `interrupt` fires) for every
    /// message; each one not delivered is said once, as a warning.
    pub async fn finish(self, interrupt: &Interrupt) -> Vec<Delivery> {
        drain(self.outboxes, interrupt).await
    }
}

async fn drain(outboxes: Vec<Outbox>, interrupt: &Interrupt) -> Vec<Delivery> {
    if outboxes.is_empty() {
        return Vec::new();
    }
    let deadline = async {
        tokio::select! {
            _ = tokio::time::sleep(PATIENCE) => {}
            _ = interrupt.fired() => tokio::time::sleep(PATIENCE_WHEN_INTERRUPTED).await,
        }
    };
    // One deadline for all: the outboxes drain side by side.
    let shared = futures_util::FutureExt::shared(Box::pin(deadline));
    let closed = futures_util::future::join_all(
        outboxes
            .into_iter()
            .map(|outbox| outbox.close(shared.clone())),
    )
    .await;
    let deliveries: Vec<Delivery> = closed.into_iter().flatten().collect();
    for delivery in deliveries.iter().filter(|delivery| !delivery.delivered) {
        warn_undelivered(delivery);
    }
    deliveries
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(change: Change) -> IncidentNotice {
        IncidentNotice {
            change,
            severity: Some("SEV-1".into()),
            title: "prod is down".into(),
            environment: Some("prod".into()),
            issue_url: "https://github.com/o/r/issues/7".into(),
            number: 7,
            detail: Some("down for 1h 5m".into()),
            run_link: Some("https://github.com/o/r/actions/runs/42".into()),
        }
    }

    #[test]
    fn given_an_opened_incident_then_the_message_names_severity_title_environment_and_link() {
        let body = notice(Change::Opened).body();
        let text = body["text"].as_str().unwrap();
        assert!(
            text.starts_with("Incident opened: SEV-1 *prod is down* (#7)"),
            "{text}"
        );
        for fact in [
            "severity: SEV-1",
            "environment: prod",
            "issue: <https://github.com/o/r/issues/7|issue #7>",
            "down for 1h 5m",
            "<https://github.com/o/r/actions/runs/42|workflow run>",
        ] {
            assert!(text.contains(fact), "{fact:?} in {text}");
        }
        assert_eq!(notice(Change::Closed).event(), "incident_closed");
        assert!(
            notice(Change::Closed).body()["text"]
                .as_str()
                .unwrap()
                .starts_with("Incident resolved: ")
        );
    }

    #[test]
    fn given_text_from_outside_then_it_makes_no_mention_or_link() {
        let mut hostile = notice(Change::Commented);
        hostile.title = "<!channel> down".into();
        hostile.detail = Some("answered <https://evil|here>".into());
        hostile.issue_url = "https://x/issues/7|<!here>".into();
        let all = hostile.body().to_string();
        assert!(!all.contains("<!"), "{all}");
        assert!(!all.contains("<https://evil"), "{all}");
    }
}
