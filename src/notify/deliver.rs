//! Posting notifications in the background, one queue per webhook so one slow receiver delays no
//! other: bounded time per post, a retry only when the message surely did not arrive.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::notify::url::NotifyUrl;

/// How long one POST may take, answer included.
pub const POST_TIMEOUT: Duration = Duration::from_secs(10);
/// Sends of one message to one webhook, the first included.
const ATTEMPTS: u32 = 3;
/// A `retry-after` longer than this is not waited for: the message is reported undelivered.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);

/// What became of one message to one webhook, as the `--json` result lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    pub event: &'static str,
    /// The webhook, masked.
    pub to: String,
    pub delivered: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One message for one webhook's queue: its body and its place in the deliveries.
struct Job {
    delivery: usize,
    body: Arc<Value>,
}

/// The webhooks' queues and the deliveries their workers fill in.
pub struct Outbox {
    queues: Vec<mpsc::UnboundedSender<Job>>,
    workers: Vec<JoinHandle<()>>,
    deliveries: Arc<Mutex<Vec<Delivery>>>,
    urls: Vec<NotifyUrl>,
}

impl Outbox {
    /// Starts one worker per webhook on the current tokio runtime.
    pub fn start(urls: Vec<NotifyUrl>) -> Self {
        let client = crate::tls::client_builder()
            // A redirect would send the message somewhere its sender never named.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("shiftgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(describe_error);
        let deliveries = Arc::new(Mutex::new(Vec::new()));
        let mut queues = Vec::new();
        let mut workers = Vec::new();
        for url in &urls {
            let (queue, jobs) = mpsc::unbounded_channel();
            queues.push(queue);
            workers.push(tokio::spawn(work(
                client.clone(),
                url.clone(),
                jobs,
                deliveries.clone(),
            )));
        }
        Self {
            queues,
            workers,
            deliveries,
            urls,
        }
    }

    /// Queues `body` for every webhook; never waits.
    pub fn send(&self, event: &'static str, body: Value) {
        let body = Arc::new(body);
        let mut deliveries = lock(&self.deliveries);
        for (url, queue) in self.urls.iter().zip(&self.queues) {
            deliveries.push(Delivery {
                event,
                to: url.shown().to_string(),
                delivered: false,
                error: Some("still being sent when shiftgate had to exit".into()),
            });
            let job = Job {
                delivery: deliveries.len() - 1,
                body: body.clone(),
            };
            // A closed queue means its worker is gone; the delivery then stays unsent.
            let _ = queue.send(job);
        }
    }

    /// Lets every queue drain until `deadline`, then stops the workers: what was not sent by
    /// then is reported so.
    pub async fn close(self, deadline: impl std::future::Future<Output = ()>) -> Vec<Delivery> {
        drop(self.queues);
        let aborts: Vec<_> = self.workers.iter().map(JoinHandle::abort_handle).collect();
        tokio::select! {
            _ = futures_util::future::join_all(self.workers) => {}
            _ = deadline => aborts.iter().for_each(tokio::task::AbortHandle::abort),
        }
        lock(&self.deliveries).clone()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Sends one webhook's messages in order, each to its end before the next.
async fn work(
    client: Result<reqwest::Client, String>,
    url: NotifyUrl,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    deliveries: Arc<Mutex<Vec<Delivery>>>,
) {
    while let Some(job) = jobs.recv().await {
        let sent = match &client {
            Ok(client) => post(client, &url, &job.body).await,
            Err(error) => Err(error.clone()),
        };
        let mut deliveries = lock(&deliveries);
        let delivery = &mut deliveries[job.delivery];
        delivery.delivered = sent.is_ok();
        // Belt and braces: no error text ever carries the webhook's secret path.
        delivery.error = sent
            .err()
            .map(|error| error.replace(url.secret(), url.shown()));
    }
}

/// What to do after a webhook answered with an error status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    RetryAfter(Duration),
    GiveUp,
}

/// Only an answer that says the message was not taken (429, 5xx) is worth another send, and only
/// after the wait it asks for, within bounds.
fn after_answer(status: u16, retry_after: Option<Duration>, attempt: u32) -> Next {
    let retryable = status == 429 || (500..600).contains(&status);
    if !retryable || attempt >= ATTEMPTS {
        return Next::GiveUp;
    }
    match retry_after {
        Some(wait) if wait > MAX_RETRY_AFTER => Next::GiveUp,
        Some(wait) => Next::RetryAfter(wait),
        None => Next::RetryAfter(backoff(attempt)),
    }
}

/// 1 s, then 2 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1 << (attempt - 1).min(3))
}

/// Posts one message. Sent again only when it surely did not arrive: the connection was never
/// made, or the answer was 429 or 5xx. A timeout or a lost answer may hide a message that was
/// shown, and a duplicate in a channel is worse than a missing one.
async fn post(client: &reqwest::Client, url: &NotifyUrl, body: &Value) -> Result<(), String> {
    let mut attempt = 1;
    loop {
        let sent = client
            .post(url.secret())
            .json(body)
            .timeout(POST_TIMEOUT)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) if error.is_connect() && !error.is_timeout() && attempt < ATTEMPTS => {
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
                continue;
            }
            Err(error) => return Err(with_attempts(describe_error(error), attempt)),
        };
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = crate::gcp::retry_after(response.headers());
        let answer = response.text().await.unwrap_or_default();
        let answer: String = crate::output::one_line(answer.trim())
            .chars()
            .take(200)
            .collect();
        let error = match answer.is_empty() {
            true => format!("answered {status}"),
            false => format!("answered {status}: {answer}"),
        };
        match after_answer(status.as_u16(), retry_after, attempt) {
            Next::RetryAfter(wait) => {
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            Next::GiveUp => return Err(with_attempts(error, attempt)),
        }
    }
}

fn with_attempts(error: String, attempts: u32) -> String {
    match attempts {
        1 => error,
        n => format!("{error} (after {n} attempts)"),
    }
}

/// A reqwest error and its causes on one line, without the URL reqwest puts in its text.
fn describe_error(error: reqwest::Error) -> String {
    if error.is_timeout() {
        return format!("no answer within {}s", POST_TIMEOUT.as_secs());
    }
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    crate::output::one_line(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_an_answer_that_says_the_message_was_not_taken_then_it_is_sent_again() {
        assert_eq!(
            after_answer(503, None, 1),
            Next::RetryAfter(Duration::from_secs(1))
        );
        assert_eq!(
            after_answer(500, None, 2),
            Next::RetryAfter(Duration::from_secs(2))
        );
        assert_eq!(
            after_answer(429, Some(Duration::from_secs(3)), 1),
            Next::RetryAfter(Duration::from_secs(3))
        );
    }

    #[test]
    fn given_a_refusal_a_long_wait_or_the_last_attempt_then_it_gives_up() {
        assert_eq!(after_answer(400, None, 1), Next::GiveUp, "invalid_payload");
        assert_eq!(after_answer(404, None, 1), Next::GiveUp, "no such webhook");
        assert_eq!(
            after_answer(429, Some(Duration::from_secs(60)), 1),
            Next::GiveUp
        );
        assert_eq!(after_answer(500, None, ATTEMPTS), Next::GiveUp);
    }
}
