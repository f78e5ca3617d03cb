//! The incident lifecycle through the binary: scheduled `health --incident` runs that open one
//! SEV-1 for an outage, comment at most once an hour and close it when health is back; a good
//! rollout that closes the SEV-2 of an earlier rollback; the chat messages of each. The fake
//! GitHub's clock is moved on between runs: no test waits for the hours it spans.

use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use shiftgate::clock::Clock;
use shiftgate_sim::{Behavior, GitHubSim};

use crate::support::binary::{json_of, run, stderr_of};
use crate::support::openapi::OpenApi;
use crate::support::webhook::{Answer, Webhook};
use crate::support::world::{
    BAD_CANDIDATE_ROLLOUT, BinaryWorld, PROJECT, QUICK_ROLLOUT, REGION, SERVICE, STABLE_IMAGE,
    expect_refused_naming, with_github,
};

const MINUTE: Duration = Duration::from_secs(60);
const RUN_LINK: &str = "https://github.com/loopcloser/app/actions/runs/4242";

async fn github() -> GitHubSim {
    GitHubSim::start(Clock::new(), "loopcloser", "app")
        .await
        .unwrap()
}

/// A config naming `dev` (the world's service, by its URL), the repository, and `hook`.
fn write_config(world: &BinaryWorld, hook: &Webhook) {
    let url = world.sim.service_url(PROJECT, REGION, SERVICE).unwrap();
    std::fs::write(
        world.workdir.join("shiftgate.toml"),
        format!(
            "repo = \"loopcloser/app\"\nnotify = [\"{}\"]\n\n[environments.dev]\nproject = \
             \"{PROJECT}\"\nregion = \"{REGION}\"\nservice = \"{SERVICE}\"\nurl = \"{url}\"\n",
            hook.url
        ),
    )
    .unwrap();
}

/// One scheduled run: `health --incident --env dev`, three checks 100ms apart, inside a workflow.
async fn scheduled_check(world: &BinaryWorld, github: &GitHubSim) -> Output {
    let mut command = world.command(&[
        "health",
        "--json",
        "--incident",
        "--env",
        "dev",
        "--every",
        "100ms",
    ]);
    in_a_workflow(with_github(&mut command, github));
    run(command).await
}

fn in_a_workflow(command: &mut Command) -> &mut Command {
    command
        .env("GITHUB_SERVER_URL", "https://github.com")
        .env("GITHUB_REPOSITORY", "loopcloser/app")
        .env("GITHUB_RUN_ID", "4242")
}

/// The service's stable image answers its health checks `healthy` or not from now on.
fn set_health(world: &BinaryWorld, healthy: bool) {
    let behavior = match healthy {
        true => Behavior::healthy("1.0.0"),
        false => Behavior::unhealthy("1.0.0"),
    };
    world.sim.register_image(STABLE_IMAGE, behavior);
}

fn incident_of(output: &Output) -> Value {
    let result = json_of(output);
    let incidents = result["incidents"].as_array().cloned().unwrap_or_default();
    assert_eq!(incidents.len(), 1, "{result}");
    incidents[0].clone()
}

/// Every request the binary sent the fake (query and body) and every answer follows GitHub's
/// OpenAPI description.
fn assert_contract(github: &GitHubSim) {
    let api = OpenApi::load("tests/contracts/github.json");
    for exchange in github.exchanges() {
        let context = format!(
            "{} {} → {}",
            exchange.method, exchange.operation, exchange.status
        );
        assert!(
            !exchange.operation.is_empty(),
            "{context}: an unknown route"
        );
        if let Err(problems) =
            api.check_query(&exchange.method, &exchange.operation, &exchange.query)
        {
            panic!("{context}: query {problems:#?}");
        }
        if let Some(request) = exchange
            .request
            .as_ref()
            .filter(|_| matches!(exchange.method.as_str(), "POST" | "PATCH"))
            && let Err(problems) =
                api.validate_request(&exchange.method, &exchange.operation, request)
        {
            panic!("{context}: request {problems:#?}\n{request:#}");
        }
        if exchange.status == 304 {
            continue;
        }
        let body = exchange.body.clone().unwrap_or_default();
        match api.response_schema(&exchange.method, &exchange.operation, exchange.status) {
            Ok(Some(schema)) => {
                if let Err(problems) = api.validate(schema, &body) {
                    panic!("{context}: {problems:#?}\n{body:#}");
                }
            }
            Ok(None) => {}
            Err(error) => panic!("{context}: {error}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_an_outage_seen_by_three_scheduled_runs_then_one_issue_is_opened_commented_on_once_and_closed_when_health_returns()
 {
    let world = BinaryWorld::start("lifecycle-health").await;
    let github = github().await;
    let hook = Webhook::start(Answer::Slack).await;
    write_config(&world, &hook);

    // Given dev is down.
    set_health(&world, false);

    // When the first scheduled run sees it fail three checks in a row, it opens a SEV-1.
    let first = scheduled_check(&world, &github).await;
    assert_eq!(first.status.code(), Some(1), "{}", stderr_of(&first));
    let opened = incident_of(&first);
    assert_eq!(opened["action"], "opened");
    let health_url = format!(
        "{}/health",
        world.sim.service_url(PROJECT, REGION, SERVICE).unwrap()
    );
    let key = format!("health:dev {health_url}");
    assert_eq!(opened["key"], key.as_str());
    assert_eq!(opened["environment"], "dev");
    assert_eq!(json_of(&first)["results"][0]["checks"], 3);
    assert_eq!(json_of(&first)["checks"]["failures"], 3);
    let number = opened["number"].as_u64().unwrap();

    // And the runs 10 and 30 minutes later (the issue is younger than an hour) only look.
    github.advance(10 * MINUTE);
    let second = scheduled_check(&world, &github).await;
    assert_eq!(second.status.code(), Some(1));
    assert_eq!(incident_of(&second)["action"], "comment_skipped");
    assert_eq!(incident_of(&second)["number"], number);
    github.advance(20 * MINUTE);
    let third = scheduled_check(&world, &github).await;
    assert_eq!(incident_of(&third)["action"], "comment_skipped");

    // An hour after the issue was opened, a run comments once; ten minutes on, the next skips.
    github.advance(31 * MINUTE);
    let fourth = scheduled_check(&world, &github).await;
    assert_eq!(
        incident_of(&fourth)["action"],
        "commented",
        "{}",
        stderr_of(&fourth)
    );
    github.advance(10 * MINUTE);
    let fifth = scheduled_check(&world, &github).await;
    assert_eq!(incident_of(&fifth)["action"], "comment_skipped");

    assert_eq!(github.issue_create_posts(), 1, "one issue for the outage");
    // Within the hour of the opening a run reads only the listing; after it, the comments too.
    let issues = "/repos/loopcloser/app/issues";
    let comments = "/repos/loopcloser/app/issues/1/comments";
    let expected: Vec<String> = [
        // The first run: the search, then filing (which looks again, makes the labels, creates
        // once and checks for a twin).
        format!("GET {issues}"),
        format!("GET {issues}"),
        "GET /repos/loopcloser/app/labels/incident".into(),
        "POST /repos/loopcloser/app/labels".into(),
        "GET /repos/loopcloser/app/labels/sev-1".into(),
        "POST /repos/loopcloser/app/labels".into(),
        format!("POST {issues}"),
        format!("GET {issues}"),
        // 10 and 30 minutes on.
        format!("GET {issues}"),
        format!("GET {issues}"),
        // 61 minutes on: the comments of the last hour, then the one comment.
        format!("GET {issues}"),
        format!("GET {comments}"),
        format!("POST {comments}"),
        // 71 minutes on: that comment is 10 minutes old.
        format!("GET {issues}"),
        format!("GET {comments}"),
    ]
    .into();
    assert_eq!(github.requests(), expected);
    let issues = github.issues();
    assert_eq!(issues.len(), 1);
    let issue = &issues[0];
    assert!(issue.open);
    assert_eq!(issue.labels, ["incident", "sev-1"]);
    assert_eq!(issue.title, "dev is down: its health check failed");
    assert!(
        issue
            .body
            .starts_with(&format!("<!-- shiftgate-incident: {key} -->"))
    );
    assert!(
        issue.body.contains("3 checks in a row failed"),
        "{}",
        issue.body
    );
    assert_eq!(issue.comments.len(), 1, "{:#?}", issue.comments);
    assert!(
        issue.comments[0].contains("### Still down at"),
        "{}",
        issue.comments[0]
    );
    assert!(
        issue.comments[0].contains("Down for 1h 1m"),
        "{}",
        issue.comments[0]
    );

    // When dev answers again, the next run comments with the downtime and closes the issue.
    set_health(&world, true);
    github.advance(9 * MINUTE);
    let recovered = scheduled_check(&world, &github).await;
    assert_eq!(
        recovered.status.code(),
        Some(0),
        "{}",
        stderr_of(&recovered)
    );
    let closed = incident_of(&recovered);
    assert_eq!(closed["action"], "closed");
    assert_eq!(closed["number"], number);
    let downtime = closed["downtime_s"].as_u64().unwrap();
    assert!(
        (80 * 60..80 * 60 + 30).contains(&downtime),
        "down from the first failed check for 80 minutes of GitHub's time: {downtime}"
    );
    assert_eq!(
        json_of(&recovered)["results"][0]["checks"],
        3,
        "a recovery holds as many checks in a row as an outage needs"
    );
    let issue = &github.issues()[0];
    assert!(!issue.open);
    assert_eq!(issue.state_reason.as_deref(), Some("completed"));
    assert_eq!(github.issue_closes(), 1);
    assert_eq!(issue.comments.len(), 2);
    assert!(
        issue.comments[1].contains("is healthy again"),
        "{}",
        issue.comments[1]
    );
    assert!(
        issue.comments[1].contains("Down for 1h 20m"),
        "{}",
        issue.comments[1]
    );
    assert!(
        issue.comments[1].contains(RUN_LINK),
        "{}",
        issue.comments[1]
    );

    // And a healthy run with nothing open only looks.
    let before = github.requests().len();
    let quiet = scheduled_check(&world, &github).await;
    assert_eq!(quiet.status.code(), Some(0));
    assert_eq!(incident_of(&quiet)["action"], "none");
    assert_eq!(
        github.requests()[before..],
        ["GET /repos/loopcloser/app/issues".to_string()]
    );

    // The channel heard the opening, the one comment and the close, each with its link.
    let texts = hook.texts();
    assert_eq!(texts.len(), 3, "{texts:#?}");
    assert!(
        texts[0].starts_with("Incident opened: SEV-1 *dev is down: its health check failed* (#1)"),
        "{}",
        texts[0]
    );
    assert!(texts[0].contains("environment: dev"), "{}", texts[0]);
    assert!(
        texts[0].contains("/loopcloser/app/issues/1|issue #1>"),
        "{}",
        texts[0]
    );
    assert!(
        texts[1].starts_with("Incident updated: SEV-1"),
        "{}",
        texts[1]
    );
    assert!(
        texts[2].starts_with("Incident resolved: SEV-1"),
        "{}",
        texts[2]
    );
    assert!(
        texts[2].contains("healthy again after 1h 20m down"),
        "{}",
        texts[2]
    );
    let events: Vec<String> = json_of(&recovered)["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| format!("{} {}", n["event"].as_str().unwrap(), n["delivered"]))
        .collect();
    assert_eq!(events, ["incident_closed true"]);
    assert_contract(&github);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_bad_health_incident_input_then_exit_2_names_the_flag_and_nothing_is_probed() {
    let world = BinaryWorld::start("lifecycle-input").await;
    let github = github().await;
    for (args, flag) in [
        (vec!["--failures", "0"], "--failures"),
        (vec!["--failures", "21"], "--failures"),
        (vec!["--every", "0s"], "--every"),
        (vec!["--every", "2h"], "--every"),
        (vec!["--incident"], "--incident"),
        (
            vec!["--notify", "https://hooks.slack.com/services/T/B/x"],
            "--notify",
        ),
        (vec!["--repo", "loopcloser/app"], "--repo"),
    ] {
        let mut full = vec!["health", "--url", "http://127.0.0.1:9"];
        full.extend(&args);
        let mut command = world.command(&full);
        with_github(&mut command, &github);
        let output = run(command).await;
        expect_refused_naming(&output, flag, &args);
    }
    assert!(github.requests().is_empty());
    // Set for the whole job (as the action sets them for every step), the same two do not fail
    // a plain health check: it probes, files nothing and tells no one.
    let url = world.sim.service_url(PROJECT, REGION, SERVICE).unwrap();
    let mut plain = world.command(&["health", "--json", "--url", &url]);
    with_github(&mut plain, &github)
        .env("SHIFTGATE_REPO", "loopcloser/app")
        .env("SHIFTGATE_NOTIFY", "https://hooks.slack.com/services/T/B/x");
    let output = run(plain).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert_eq!(json_of(&output)["outcome"], "healthy");
    assert!(github.requests().is_empty());
}

// ---- A rollback's SEV-2, closed by the next good rollout of the same service ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_bad_rollout_filed_a_sev2_when_a_good_rollout_of_the_service_promotes_then_it_comments_and_closes_it()
 {
    let world = BinaryWorld::start("lifecycle-rollout").await;
    let github = github().await;
    let hook = Webhook::start(Answer::Slack).await;
    let _load = world.start_load(40.0);
    let notify = ["--notify", hook.url.as_str()];

    // Given a bad candidate rolled back, which filed a SEV-2 for the service.
    world.candidate_fails(0.4);
    let mut args = BAD_CANDIDATE_ROLLOUT.to_vec();
    args.extend(["--repo", "loopcloser/app"]);
    args.extend(notify);
    let mut bad = world.service_command(&args);
    in_a_workflow(with_github(&mut bad, &github));
    let bad = run(bad).await;
    assert_eq!(bad.status.code(), Some(1), "{}", stderr_of(&bad));
    let filed = json_of(&bad)["incident"].clone();
    assert_eq!(filed["action"], "created");
    assert_eq!(filed["severity"], "SEV-2");

    // When a fixed candidate rolls out and is promoted.
    world.sim.register_image(
        crate::support::world::CANDIDATE_IMAGE,
        Behavior::healthy("1.1.0"),
    );
    github.advance(30 * MINUTE);
    let mut args = vec!["--json"];
    args.extend(QUICK_ROLLOUT);
    args.extend(["--repo", "loopcloser/app"]);
    args.extend(notify);
    let mut good = world.service_command(&args);
    in_a_workflow(with_github(&mut good, &github));
    let good = run(good).await;

    // Then the rollout is promoted, and the rollback's incident is commented on and closed.
    assert_eq!(good.status.code(), Some(0), "{}", stderr_of(&good));
    let result = json_of(&good);
    assert_eq!(result["outcome"], "promoted");
    let resolved = &result["resolved_incident"];
    assert_eq!(resolved["action"], "closed", "{result}");
    assert_eq!(resolved["number"], filed["number"]);
    let issue = &github.issues()[0];
    assert!(!issue.open);
    assert_eq!(issue.state_reason.as_deref(), Some("completed"));
    let last = issue.comments.last().unwrap();
    let candidate = result["candidate"].as_str().unwrap();
    assert!(
        last.contains(&format!("Resolved: `{candidate}` promoted at")),
        "{last}"
    );
    assert!(last.contains(RUN_LINK), "{last}");

    // And the channel heard the incident opened and resolved, beside the rollout's own messages.
    let texts = hook.texts();
    assert!(
        texts
            .iter()
            .any(|t| t.starts_with("Incident opened: SEV-2")),
        "{texts:#?}"
    );
    assert!(
        texts
            .iter()
            .any(|t| t.starts_with("Incident resolved: SEV-2")),
        "{texts:#?}"
    );
    let events: Vec<String> = result["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(events, ["started", "promoted", "incident_closed"]);
    assert_contract(&github);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_no_repository_when_a_good_rollout_promotes_then_it_says_why_no_incident_was_looked_for()
 {
    let world = BinaryWorld::start("lifecycle-norepo").await;
    let _load = world.start_load(40.0);
    let mut args = vec!["--json"];
    args.extend(QUICK_ROLLOUT);
    let output = world.run_on_service(&args).await;

    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let resolved = &json_of(&output)["resolved_incident"];
    assert_eq!(resolved["action"], "skipped");
    let stderr = stderr_of(&output);
    assert_eq!(
        stderr.matches("no open incident was looked for").count(),
        1,
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_github_refuses_the_search_when_a_healthy_environment_is_checked_then_it_says_so_and_exits_3()
 {
    let world = BinaryWorld::start("lifecycle-refused").await;
    let github = github().await;
    let hook = Webhook::start(Answer::Slack).await;
    write_config(&world, &hook);
    github.inject(shiftgate_sim::GitHubFault {
        method: "GET",
        path_suffix: "/issues",
        status: 403,
        after_effect: false,
    });

    let output = scheduled_check(&world, &github).await;

    assert_eq!(output.status.code(), Some(3), "{}", stderr_of(&output));
    let result = json_of(&output);
    assert_eq!(result["outcome"], "healthy");
    let incident = incident_of(&output);
    assert_eq!(incident["action"], "failed");
    assert!(
        incident["error"]
            .as_str()
            .unwrap()
            .starts_with("listing the open incidents failed: GitHub answered 403"),
        "{incident}"
    );
    assert_eq!(result["notifications"], serde_json::json!([]));
    assert!(hook.texts().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_the_close_is_refused_when_a_good_rollout_promotes_then_it_is_a_warning_and_the_rollout_still_succeeds()
 {
    let world = BinaryWorld::start("lifecycle-close-refused").await;
    let github = github().await;
    let _load = world.start_load(40.0);
    // Given an open SEV-2 that a rollback of the service filed earlier.
    let key = format!("projects/{PROJECT}/locations/{REGION}/services/{SERVICE}");
    let number = github.seed_incident(
        "Rollout of loopcloser-dev-00002 to loopcloser-dev rolled back",
        &format!("<!-- shiftgate-incident: {key} -->\n## Incident"),
        &["incident", "sev-2"],
    );
    assert_eq!(number, 1);
    github.inject(shiftgate_sim::GitHubFault {
        method: "PATCH",
        path_suffix: "/issues/1",
        status: 403,
        after_effect: false,
    });

    let mut args = vec!["--json"];
    args.extend(QUICK_ROLLOUT);
    args.extend(["--repo", "loopcloser/app"]);
    let mut command = world.service_command(&args);
    with_github(&mut command, &github);
    let output = run(command).await;

    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let result = json_of(&output);
    assert_eq!(result["outcome"], "promoted");
    assert_eq!(result["resolved_incident"]["action"], "failed");
    assert!(
        stderr_of(&output).contains(&format!("warning: incident: closing #{number} failed")),
        "{}",
        stderr_of(&output)
    );
    assert!(github.issues()[0].open);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_webhook_when_incident_opens_then_comments_then_the_channel_hears_both() {
    let github = github().await;
    let hook = Webhook::start(Answer::Slack).await;
    let args = [
        "incident",
        "--json",
        "--repo",
        "loopcloser/app",
        "--severity",
        "SEV-3",
        "--title",
        "Checkout is slow <!here>",
        "--notify",
        hook.url.as_str(),
    ];
    let mut outputs = Vec::new();
    for _ in 0..2 {
        let mut command = crate::support::world::shiftgate(&std::env::temp_dir(), &args);
        in_a_workflow(with_github(&mut command, &github));
        outputs.push(run(command).await);
    }

    let events: Vec<Value> = outputs
        .iter()
        .map(|output| {
            assert_eq!(output.status.code(), Some(0), "{}", stderr_of(output));
            json_of(output)["notifications"][0]["event"].clone()
        })
        .collect();
    assert_eq!(events, ["incident_opened", "incident_commented"]);
    let texts = hook.texts();
    assert_eq!(texts.len(), 2);
    assert!(
        texts[0].starts_with("Incident opened: SEV-3 *Checkout is slow &lt;!here&gt;* (#1)"),
        "{}",
        texts[0]
    );
    assert!(
        texts[1].starts_with("Incident updated: SEV-3"),
        "{}",
        texts[1]
    );
    assert!(
        texts[0].contains(&format!("<{RUN_LINK}|workflow run>")),
        "{}",
        texts[0]
    );
    for output in &outputs {
        assert!(!String::from_utf8_lossy(&output.stdout).contains(crate::support::webhook::SECRET));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_backlog_of_150_open_incidents_when_health_returns_then_the_outage_issue_on_page_two_is_closed()
 {
    // Given 150 older incidents of other services, and dev's SEV-1 after them (page 2 of 100).
    let world = BinaryWorld::start("lifecycle-backlog").await;
    let github = github().await;
    let hook = Webhook::start(Answer::Slack).await;
    write_config(&world, &hook);
    for n in 0..150 {
        github.seed_incident(
            &format!("old incident {n}"),
            &format!("<!-- shiftgate-incident: other-{n} -->\nold"),
            &["incident", "sev-3"],
        );
    }
    let url = world.sim.service_url(PROJECT, REGION, SERVICE).unwrap();
    let key = format!("health:dev {url}/health");
    let dev = github.seed_incident(
        "dev is down: its health check failed",
        &format!("<!-- shiftgate-incident: {key} -->\n## Incident: dev is down"),
        &["incident", "sev-1"],
    );

    // When a scheduled run finds dev healthy again,
    let output = scheduled_check(&world, &github).await;

    // then it finds that issue past the first page and closes it, and opens none.
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let incident = incident_of(&output);
    assert_eq!(incident["action"], "closed", "{incident}");
    assert_eq!(incident["number"], dev);
    let issues = github.issues();
    assert_eq!(issues.len(), 151);
    assert!(!issues[dev as usize - 1].open);
    assert_eq!(issues.iter().filter(|issue| issue.open).count(), 150);
    assert_contract(&github);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_sev2_that_a_later_failure_raised_to_sev1_when_a_good_rollout_promotes_then_it_stays_open()
 {
    let world = BinaryWorld::start("lifecycle-raised").await;
    let github = github().await;
    let _load = world.start_load(40.0);
    // Given a bad candidate rolled back, which filed a SEV-2 for the service,
    world.candidate_fails(0.4);
    let mut args = BAD_CANDIDATE_ROLLOUT.to_vec();
    args.extend(["--repo", "loopcloser/app"]);
    let mut bad = world.service_command(&args);
    in_a_workflow(with_github(&mut bad, &github));
    let bad = run(bad).await;
    assert_eq!(json_of(&bad)["incident"]["severity"], "SEV-2");
    // and a SEV-1 of the same service since (a rollback that failed), filed as a comment there.
    let key = format!("projects/{PROJECT}/locations/{REGION}/services/{SERVICE}");
    let mut sev1 = world.command(&[
        "incident",
        "--json",
        "--repo",
        "loopcloser/app",
        "--key",
        &key,
        "--severity",
        "SEV-1",
        "--title",
        "Rollback of loopcloser-dev FAILED: the service needs a person",
    ]);
    in_a_workflow(with_github(&mut sev1, &github));
    let sev1 = run(sev1).await;
    assert_eq!(sev1.status.code(), Some(0), "{}", stderr_of(&sev1));
    assert_eq!(
        github.issues().len(),
        1,
        "the SEV-1 is a comment on the open issue"
    );

    // When a fixed candidate is promoted,
    world.sim.register_image(
        crate::support::world::CANDIDATE_IMAGE,
        Behavior::healthy("1.1.0"),
    );
    let mut args = vec!["--json"];
    args.extend(QUICK_ROLLOUT);
    args.extend(["--repo", "loopcloser/app"]);
    let mut good = world.service_command(&args);
    in_a_workflow(with_github(&mut good, &github));
    let good = run(good).await;

    // then the issue stays open for a person: a SEV-1 is closed by one.
    assert_eq!(good.status.code(), Some(0), "{}", stderr_of(&good));
    let resolved = &json_of(&good)["resolved_incident"];
    assert_eq!(resolved["action"], "left_open", "{resolved}");
    assert!(github.issues()[0].open);
    assert_contract(&github);
}
