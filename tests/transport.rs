//! What the HTTP plumbing proves under hostile or broken peers on loopback: health probes that do
//! not follow redirects or buffer endless bodies, Google API retries that are announced and end at
//! the caller's deadline, and Workload Identity credentials that keep working as tokens expire.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::Instant;

use shiftgate::clock::Clock;
use shiftgate::ports::{HealthEndpoint, HealthProbe, Platform, PortError};
use shiftgate::{
    CandidateSource, CloudMonitoring, CloudRunService, Credentials, Expectations, GoogleRest,
    HttpHealthEndpoint, Outcome, Policy, Retry, Verdict,
};
use shiftgate_sim::Sim;

use crate::support::adapters::roll_out_over_http;
use crate::support::world::{closed_port_url, external_account};

const PROJECT: &str = "loopcloser";
const REGION: &str = "us-central1";
const SERVICE: &str = "loopcloser-staging";

/// A server whose every answer is `head` followed by `prefix` and then `x` without end, written
/// lazily in 16 KiB pieces. Returns its URL and the number of body bytes it managed to send
/// before clients hung up.
async fn endless_body_server(head: &'static str, prefix: &'static str) -> (String, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(send_endlessly(socket, head, prefix, counter.clone()));
        }
    });
    (format!("http://{address}"), sent)
}

async fn send_endlessly(
    mut socket: tokio::net::TcpStream,
    head: &'static str,
    prefix: &'static str,
    counter: Arc<AtomicU64>,
) {
    let mut request = Vec::new();
    let mut buffer = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match socket.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buffer[..n]),
        }
    }
    if socket.write_all(head.as_bytes()).await.is_err()
        || socket.write_all(prefix.as_bytes()).await.is_err()
    {
        return;
    }
    let piece = vec![b'x'; 16 * 1024];
    while socket.write_all(&piece).await.is_ok() {
        counter.fetch_add(piece.len() as u64, Ordering::Relaxed);
    }
}

/// Reads a service (a GET that is safe to retry) within `budget`.
async fn get_service(rest: &GoogleRest, budget: Duration) -> Result<serde_json::Value, PortError> {
    rest.send(
        Method::GET,
        "v2/projects/p/locations/r/services/web",
        &[],
        None,
        Retry::Safe,
        budget,
    )
    .await
}

const FOUR_HUNDRED_MB: &str =
    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 419430400\r\n\r\n";

#[tokio::test(start_paused = true)]
async fn a_redirect_to_the_stable_revisions_health_is_not_healthy_and_is_not_followed() {
    // Given a candidate whose /health redirects to stable's /health, which would say "ok".
    let stable_hits = Arc::new(AtomicU64::new(0));
    let hits = stable_hits.clone();
    let app = axum::Router::new()
        .route(
            "/health",
            axum::routing::get(|| async {
                (
                    axum::http::StatusCode::FOUND,
                    [("location", "/stable/health")],
                    "",
                )
            }),
        )
        .route(
            "/stable/health",
            axum::routing::get(move || {
                hits.fetch_add(1, Ordering::Relaxed);
                async { r#"{"status":"ok"}"# }
            }),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let expectations = Expectations::default();

    // When the probe checks the candidate.
    let answer = HttpHealthEndpoint::new(Duration::from_secs(5))
        .fetch(&HealthProbe::of(&expectations.url_for(&base)))
        .await
        .expect("the candidate answers");

    // Then the 302 itself is judged, and it is not healthy.
    assert_eq!(
        expectations.judge(&answer),
        Verdict::Fail("redirected (302 to /stable/health) — a redirect is not healthy".into())
    );
    assert_eq!(stable_hits.load(Ordering::Relaxed), 0, "never followed");
}

#[tokio::test(start_paused = true)]
async fn a_400_mb_health_body_is_judged_from_its_first_64_kib_and_the_rest_is_never_read() {
    // Given a health endpoint that starts a healthy answer and then sends 400 MB of padding.
    let (base, sent) = endless_body_server(FOUR_HUNDRED_MB, r#"{"status":"ok","pad":""#).await;
    let expectations = Expectations::default();
    let started = std::time::Instant::now();

    // When the probe checks it.
    let answer = HttpHealthEndpoint::new(Duration::from_secs(5))
        .fetch(&HealthProbe::of(&expectations.url_for(&base)))
        .await
        .expect("the endpoint answers");

    // Then it fails for its size, holding no more than the limit (and one byte).
    assert_eq!(
        expectations.judge(&answer),
        Verdict::Fail("body larger than 64 KiB; a health answer is short".into())
    );
    assert_eq!(answer.body.len(), 64 * 1024 + 1);
    // And the connection is dropped: the server stops early, with at most what socket buffers hold.
    let mut waited = 0;
    let mut last = u64::MAX;
    while sent.load(Ordering::Relaxed) != last && waited < 200 {
        last = sent.load(Ordering::Relaxed);
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        waited += 1;
    }
    let sent = sent.load(Ordering::Relaxed);
    eprintln!(
        "health probe of a 400 MB body: verdict in {:?} of real time; the server sent {} KiB before the hang-up",
        started.elapsed(),
        sent / 1024
    );
    assert!(sent < 32 * 1024 * 1024, "sent {sent} bytes");
}

#[tokio::test(start_paused = true)]
async fn an_endless_google_api_answer_is_refused_after_16_mib() {
    let (base, sent) = endless_body_server(FOUR_HUNDRED_MB, r#"{"name":""#).await;
    let rest = GoogleRest::new(&base, Credentials::None);

    let error = get_service(&rest, Duration::from_secs(30))
        .await
        .unwrap_err();

    assert!(
        matches!(&error, PortError::Unavailable(m) if m.contains("larger than 16 MiB")),
        "{error}"
    );
    assert_eq!(
        rest.calls(),
        1,
        "an oversized answer is not asked for again"
    );
    assert!(sent.load(Ordering::Relaxed) < 64 * 1024 * 1024);
}

fn logged(rest: GoogleRest) -> (GoogleRest, Arc<Mutex<Vec<String>>>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let rest = rest.with_retry_log(move |line| sink.lock().unwrap().push(line.to_string()));
    (rest, lines)
}

#[tokio::test(start_paused = true)]
async fn retries_against_an_unreachable_api_are_announced_one_line_each_and_end_at_the_deadline() {
    // Given an API nobody answers and a command limited to 10 seconds.
    let (rest, lines) = logged(GoogleRest::new(&closed_port_url(), Credentials::None));
    let started = Instant::now();
    rest.set_deadline(Some(started + Duration::from_secs(10)));

    // When a read with a minute's retry budget is sent.
    let error = get_service(&rest, Duration::from_secs(60))
        .await
        .unwrap_err();

    // Then it ends inside the deadline, and every retry said what, why, which attempt and when.
    assert!(
        started.elapsed() <= Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(error, PortError::Unavailable(_)), "{error}");
    let lines = lines.lock().unwrap().clone();
    assert!(lines.len() >= 3, "{lines:#?}");
    assert_eq!(rest.calls() as usize, lines.len() + 1);
    assert!(
        lines[0].starts_with(
            "retrying GET v2/projects/p/locations/r/services/web (attempt 2, in 0.25s): "
        ),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].ends_with(
            "(attempt 2, in 0.25s): could not connect: Connection refused (os error 111)"
        ),
        "{}",
        lines[0]
    );
    assert!(lines[1].contains("(attempt 3, in 0.5s)"), "{}", lines[1]);
}

#[tokio::test(start_paused = true)]
async fn no_attempt_outlives_the_deadline_even_against_a_server_that_never_answers() {
    // Given a server that accepts connections and never answers, and 4 seconds left.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let (rest, _) = logged(GoogleRest::new(&base, Credentials::None));
    let started = Instant::now();
    rest.set_deadline(Some(started + Duration::from_secs(4)));

    let error = get_service(&rest, Duration::from_secs(60))
        .await
        .unwrap_err();

    // Then the 30-second per-request timeout was cut to what was left.
    assert_eq!(started.elapsed(), Duration::from_secs(4));
    assert!(
        matches!(&error, PortError::Unavailable(m) if m.contains("no answer within 4s")),
        "{error}"
    );
}

/// A server answering every request with `status`, `retry-after` and a Google error body.
async fn answering(status: u16, retry_after: Option<&'static str>) -> (String, Arc<AtomicU64>) {
    let count = Arc::new(AtomicU64::new(0));
    let counter = count.clone();
    let app = axum::Router::new().fallback(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        async move {
            let mut response = axum::response::IntoResponse::into_response((
                axum::http::StatusCode::from_u16(status).unwrap(),
                serde_json::json!({"error": {"code": status, "message": "no", "status": "X"}})
                    .to_string(),
            ));
            if let Some(seconds) = retry_after {
                response
                    .headers_mut()
                    .insert("retry-after", seconds.parse().unwrap());
            }
            response
        }
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, count)
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_beyond_the_remaining_budget_ends_the_call_at_once_and_says_why() {
    let (base, count) = answering(429, Some("30")).await;
    let (rest, lines) = logged(GoogleRest::new(&base, Credentials::None));
    let started = Instant::now();

    let error = get_service(&rest, Duration::from_secs(10))
        .await
        .unwrap_err();

    assert_eq!(started.elapsed(), Duration::ZERO, "nothing was waited for");
    assert_eq!(count.load(Ordering::Relaxed), 1);
    assert!(lines.lock().unwrap().is_empty());
    let PortError::Unavailable(message) = error else {
        panic!("{error}")
    };
    assert!(
        message.contains("the server asked to retry after 30s, beyond the 10s left"),
        "{message}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_refused_static_token_is_not_retried_and_is_called_what_it_is() {
    let (base, count) = answering(401, None).await;
    let rest = GoogleRest::new(&base, Credentials::Token("expired-static-token".into()));

    let error = get_service(&rest, Duration::from_secs(60))
        .await
        .unwrap_err();

    assert_eq!(count.load(Ordering::Relaxed), 1);
    let PortError::Rejected {
        status: 401,
        message,
    } = error
    else {
        panic!("{error}")
    };
    assert!(
        message.contains(
            "the access token in GOOGLE_OAUTH_ACCESS_TOKEN was rejected (expired?); it cannot be refreshed"
        ),
        "{message}"
    );
    assert!(!message.contains("expired-static-token"));
}

#[tokio::test(start_paused = true)]
async fn a_permission_error_is_not_retried() {
    let (base, count) = answering(403, None).await;
    let (rest, lines) = logged(GoogleRest::new(&base, Credentials::None));

    let error = get_service(&rest, Duration::from_secs(60))
        .await
        .unwrap_err();

    assert!(
        matches!(error, PortError::Rejected { status: 403, .. }),
        "{error}"
    );
    assert_eq!(count.load(Ordering::Relaxed), 1);
    assert!(lines.lock().unwrap().is_empty());
}

fn distinct(tokens: Vec<String>) -> usize {
    let mut tokens = tokens;
    tokens.sort();
    tokens.dedup();
    tokens.len()
}

#[tokio::test(start_paused = true)]
async fn a_rollout_much_longer_than_its_tokens_live_still_promotes_on_workload_identity() {
    // Given APIs that demand STS-issued tokens, and an STS whose tokens live 30 seconds.
    let clock = Clock::new();
    let sim = Sim::start(clock).await.unwrap();
    let stable = sim.add_service(PROJECT, REGION, SERVICE, "registry/app:v1.0.0");
    sim.require_bearer(Some(Vec::new()));
    sim.set_token_lifetime(Duration::from_secs(30));
    let _load = sim.start_load(PROJECT, REGION, SERVICE, 5.0);
    let credentials = Credentials::external_account(external_account(&sim));
    let platform = CloudRunService::new(
        GoogleRest::new(&sim.cloud_run_url(), credentials.clone()),
        PROJECT,
        REGION,
        SERVICE,
    );
    let metrics = CloudMonitoring::new(
        GoogleRest::new(&sim.monitoring_url(), credentials.clone()),
        PROJECT,
        SERVICE,
    );
    let policy = Policy {
        steps: "10,50,100".parse().unwrap(),
        bake: Duration::from_secs(120),
        interval: Duration::from_secs(20),
        min_requests: 50,
        metrics_delay: Duration::ZERO,
        ..Policy::default()
    };
    let started = Instant::now();

    // When a rollout lasting minutes runs on those credentials.
    let candidate = CandidateSource::Image("registry/app:v1.1.0".into());
    let report = roll_out_over_http(&platform, &metrics, clock, policy, candidate)
        .await
        .expect("the rollout starts");

    // Then it promotes, having used many successive tokens.
    assert_eq!(report.outcome, Outcome::Promoted, "{:?}", report.reason);
    assert_ne!(report.candidate, stable);
    let lasted = started.elapsed();
    let used = distinct(sim.seen_tokens());
    eprintln!(
        "a {lasted:?} rollout on 30-second tokens: {} issued, {used} used, {} credential rebuilds after a 401",
        sim.issued_tokens(),
        credentials.rebuilds()
    );
    assert!(lasted > Duration::from_secs(6 * 60), "{lasted:?}");
    assert!(used >= 6, "only {used} distinct tokens were used");
}

#[tokio::test(start_paused = true)]
async fn a_token_the_api_refuses_before_the_library_expects_is_replaced_once_and_the_call_succeeds()
{
    // Given Workload Identity credentials that have fetched a token and used it.
    let sim = Sim::start(Clock::new()).await.unwrap();
    sim.add_service(PROJECT, REGION, SERVICE, "registry/app:v1.0.0");
    sim.require_bearer(Some(Vec::new()));
    let credentials = Credentials::external_account(external_account(&sim));
    let (rest, lines) = logged(GoogleRest::new(&sim.cloud_run_url(), credentials.clone()));
    let platform = CloudRunService::new(rest, PROJECT, REGION, SERVICE);
    platform
        .read_service()
        .await
        .expect("the first token works");
    assert_eq!(sim.issued_tokens(), 1);

    // When the API stops accepting it while the library still thinks it valid.
    sim.revoke_tokens();
    let read = platform.read_service().await;

    // Then one fresh token is fetched and the read succeeds, and the retry was said.
    assert!(read.is_ok(), "{read:?}");
    assert_eq!(sim.issued_tokens(), 2);
    assert_eq!(credentials.rebuilds(), 1);
    let lines = lines.lock().unwrap().clone();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].contains("the access token was rejected; fetching a new one"),
        "{}",
        lines[0]
    );
    assert!(
        !lines[0].contains("sim-exchanged-token"),
        "no token in a log line"
    );

    // And a token refused even when fresh is not retried forever.
    sim.set_token_lifetime(Duration::ZERO);
    sim.revoke_tokens();
    let refused = platform.read_service().await.unwrap_err();
    assert!(
        matches!(refused, PortError::Rejected { status: 401, .. }),
        "{refused}"
    );
    assert_eq!(sim.issued_tokens(), 3, "one new token, then it gave up");
}

fn github(base: &str) -> (shiftgate::GitHub, Arc<Mutex<Vec<String>>>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let github = shiftgate::GitHub::new(base, "github-test-token", Clock::new())
        .unwrap()
        .with_wait_log(move |line| sink.lock().unwrap().push(line.to_string()));
    (github, lines)
}

#[tokio::test(start_paused = true)]
async fn github_reads_against_an_unreachable_api_announce_each_retry() {
    let (github, lines) = github(&closed_port_url());

    let error = github.get("/repos/loopcloser/app").await.unwrap_err();

    assert!(
        matches!(error, shiftgate::GitHubError::Ambiguous(_)),
        "{error}"
    );
    let lines = lines.lock().unwrap().clone();
    assert_eq!(lines.len(), 4, "five attempts, four retries: {lines:#?}");
    assert!(
        lines[0].starts_with("retrying GET /repos/loopcloser/app (attempt 2, in 2s): "),
        "{}",
        lines[0]
    );
    assert!(lines[3].contains("(attempt 5, in 16s)"), "{}", lines[3]);
}

#[tokio::test(start_paused = true)]
async fn an_endless_github_answer_is_cut_at_8_mib() {
    let (base, sent) = endless_body_server(FOUR_HUNDRED_MB, r#"{"id":1,"pad":""#).await;
    let (github, lines) = github(&base);

    let error = github.get("/repos/loopcloser/app").await.unwrap_err();

    assert!(error.to_string().contains("larger than 8 MiB"), "{error}");
    assert!(lines.lock().unwrap().is_empty(), "not asked for again");
    assert_eq!(github.stats().requests, 1);
    let sent = sent.load(Ordering::Relaxed);
    assert!(sent < 16 * 1024 * 1024, "{sent} bytes");
}
