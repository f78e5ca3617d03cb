//! `--notify`: chat messages (Slack-compatible incoming webhooks) on a rollout's start and outcome and
//! on incidents, sent beside the work so that a slow or failing webhook never slows or changes it.

mod deliver;
pub mod incident;
mod message;
mod url;

use std::sync::Mutex;
use std::time::Duration;

pub use deliver::Delivery;
pub use message::Subject;
pub use url::NotifyUrl;

use crate::rollout::Interrupt;
use crate::rollout::timeline::Event;
use crate::workflow_command::{emit, is_actions, workflow_command};

/// How long the command waits at its end for messages still being sent.
pub const PATIENCE: Duration = Duration::from_secs(15);
/// The same after a signal: a cancelled Actions job is killed 10 s after its SIGINT, and the
/// restore may have taken 7.5 s of them; the result must still be written.
pub const PATIENCE_WHEN_INTERRUPTED: Duration = Duration::from_secs(1);

/// Turns the rollout's events into messages and hands them to the background senders.
pub struct Notifier {
    subject: Subject,
    narrator: Mutex<message::Narrator>,
    outbox: deliver::Outbox,
}

impl Notifier {
    /// Starts the senders on the current tokio runtime. Inside GitHub Actions every webhook is
    /// masked in the job log first: its path is its key.
    pub fn start(urls: Vec<NotifyUrl>, subject: Subject) -> Self {
        for url in &urls {
            crate::mask::mask_once(url.secret());
        }
        Self {
            subject,
            narrator: Mutex::new(message::Narrator::default()),
            outbox: deliver::Outbox::start(urls),
        }
    }

    /// For the progress sink: queues a message when `event` is news; never waits.
    pub fn observe(&self, event: &Event) {
        let notice = self
            .narrator
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .observe(&event.kind);
        if let Some(notice) = notice {
            self.outbox
                .send(notice.event(), message::body(&self.subject, &notice));
        }
    }

    /// Queues a message about an incident issue this rollout opened, commented on or closed.
    pub fn incident(&self, notice: &incident::IncidentNotice) {
        self.outbox.send(notice.event(), notice.body());
    }

    /// Ends the notifications: a closing message when the rollout stopped (`stopped`, why) after
    /// announcing its start without an outcome, then waits up to [`PATIENCE`] for the senders
    /// ([`PATIENCE_WHEN_INTERRUPTED`] once `interrupt` fires). Each message not delivered is said
    /// once, as a warning.
    pub async fn finish(self, stopped: Option<&str>, interrupt: &Interrupt) -> Vec<Delivery> {
        if let Some(reason) = stopped {
            let notice = self
                .narrator
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .stopped(reason);
            if let Some(notice) = notice {
                self.outbox
                    .send(notice.event(), message::body(&self.subject, &notice));
            }
        }
        let deadline = async {
            tokio::select! {
                _ = tokio::time::sleep(PATIENCE) => {}
                _ = interrupt.fired() => tokio::time::sleep(PATIENCE_WHEN_INTERRUPTED).await,
            }
        };
        let deliveries = self.outbox.close(deadline).await;
        for delivery in deliveries.iter().filter(|delivery| !delivery.delivered) {
            warn_undelivered(delivery);
        }
        deliveries
    }
}

pub(crate) fn warn_undelivered(delivery: &Delivery) {
    warn(&format!(
        "notification `{}` to {} was not delivered: {}",
        delivery.event,
        delivery.to,
        delivery.error.as_deref().unwrap_or("unknown error")
    ));
}

/// A notification problem, said once: a warning line, which in GitHub Actions is a `::warning`
/// annotation (the log shows it as the warning line, and the run's page lists it).
pub fn warn(text: &str) {
    if is_actions() {
        emit(&workflow_command(
            "warning",
            &[("title", "shiftgate notify")],
            text,
        ));
    } else {
        crate::say!("warning: {text}");
    }
}
