//! Black-box tests of `shiftgate report`: a history made by real rollouts through the binary
//! against the simulator, incident issues seeded in the fake GitHub, and the counts it reports.

use std::process::Command;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use shiftgate::clock::Clock;
use shiftgate_sim::{Behavior, GitHubFault, GitHubSim, ServiceKey};

use crate::support::binary::{json_of, run, stderr_of};
use crate::support::openapi::OpenApi;
use crate::support::world::{
    BAD_CANDIDATE_ROLLOUT, BinaryWorld, CANDIDATE_IMAGE, PROJECT, QUICK_ROLLOUT, REGION, SERVICE,
    expect_refused_naming, with_github,
};

const DAY: Duration = Duration::from_secs(24 * 3600);
const BAD_IMAGE: &str = "registry/app:v1.2.0";

fn ago(duration: Duration) -> SystemTime {
    SystemTime::now() - duration
}

async fn github() -> GitHubSim {
    GitHubSim::start(Clock::new(), "loopcloser", "app")
        .await
        .unwrap()
}

/// `report` on the world's service, reading incidents from `github`.
fn report(world: &BinaryWorld, github: &GitHubSim, args: &[&str]) -> Command {
    let mut all = vec!["report", "--repo", "loopcloser/app"];
    all.extend(args);
    let mut command = world.service_command(&all);
    with_github(&mut command, github);
    command
}

/// Every answer the fake gave fits the official description, and so does every query sent.
fn assert_contract(github: &GitHubSim) {
    let api = OpenApi::load("tests/contracts/github.json");
    for exchange in github.exchanges() {
        let context = format!("{} {}", exchange.method, exchange.operation);
        let schema = api
            .response_schema(&exchange.method, &exchange.operation, exchange.status)
            .unwrap_or_else(|e| panic!("{context}: {e}"))
            .unwrap_or_else(|| panic!("{context}: no body declared"));
        let body = exchange.body.clone().unwrap_or_default();
        if let Err(problems) = api.validate(schema, &body) {
            panic!("{context}: {problems:#?}");
        }
        if let Err(problems) =
            api.check_query(&exchange.method, &exchange.operation, &exchange.query)
        {
            panic!("{context}: {problems:#?}");
        }
    }
}

/// A history entry as an older shiftgate would have written it `age` ago.
fn old_entry(id: &str, age: Duration) -> Value {
    let text = |at: SystemTime| humantime::format_rfc3339_seconds(at).to_string();
    json!({
        "id": id, "candidate": format!("{SERVICE}-{id}"), "stable": format!("{SERVICE}-before"),
        "outcome": "promoted", "started": text(ago(age + Duration::from_secs(600))),
        "ended": text(ago(age)), "who": "host ci pid 1",
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_rollouts_a_rollback_and_incidents_when_report_runs_then_it_counts_them_exactly() {
    let world = BinaryWorld::start("report").await;
    let _load = world.start_load(40.0);
    let github = github().await;
    // Given: an entry from 30 days ago, then a good rollout, a bad one, and a person's rollback.
    world.sim.model().set_service_annotation(
        &ServiceKey::new(PROJECT, REGION, SERVICE),
        "shiftgate.dev/history",
        &json!([old_entry("month-old", 30 * DAY)]).to_string(),
    );
    let mut quick = QUICK_ROLLOUT.to_vec();
    quick.push("--json");
    let good = world.run_on_service(&quick).await;
    assert_eq!(good.status.code(), Some(0), "{}", stderr_of(&good));
    let promoted = json_of(&good)["candidate"].as_str().unwrap().to_string();
    world
        .sim
        .register_image(BAD_IMAGE, Behavior::erroring("1.2.0", 0.4));
    let bad_args: Vec<&str> = BAD_CANDIDATE_ROLLOUT
        .iter()
        .map(|arg| {
            if *arg == CANDIDATE_IMAGE {
                BAD_IMAGE
            } else {
                arg
            }
        })
        .collect();
    let bad = world.run_on_service(&bad_args).await;
    assert_eq!(bad.status.code(), Some(1), "{}", stderr_of(&bad));
    assert_eq!(json_of(&bad)["outcome"], "rolled_back");
    let rejected = json_of(&bad)["candidate"].as_str().unwrap().to_string();
    let person = world
        .run_on_service(&["rollback", "--json", "--to", &world.stable])
        .await;
    assert_eq!(person.status.code(), Some(0), "{}", stderr_of(&person));
    // And incidents: one closed in the period after a day open, one open from the period, one
    // open from before it, one closed before it, and an issue that is no incident.
    // Each filed under the service's key, as shiftgate files them; and one of another service,
    // one filed by hand, which the report counts apart.
    let ours = service_marker();
    github.seed(
        "SEV-2: rollback",
        &ours,
        &["incident", "sev-2"],
        ago(3 * DAY),
        Some(ago(2 * DAY)),
    );
    let open_new = github.seed("SEV-1: down", &ours, &["incident", "sev-1"], ago(DAY), None);
    let open_old = github.seed(
        "SEV-3: slow",
        &ours,
        &["incident", "sev-3"],
        ago(20 * DAY),
        None,
    );
    github.seed(
        "SEV-2: old",
        &ours,
        &["incident", "sev-2"],
        ago(40 * DAY),
        Some(ago(39 * DAY)),
    );
    github.seed_issue("feature request", &["enhancement"], ago(DAY), None);
    github.seed(
        "SEV-2: another service",
        "<!-- shiftgate-incident: projects/loopcloser/locations/us-central1/services/other -->",
        &["incident", "sev-2"],
        ago(DAY),
        None,
    );
    github.seed_issue("by hand", &["incident", "sev-3"], ago(DAY), None);

    // When
    let output = run(report(&world, &github, &["--since", "7d", "--json"])).await;

    // Then
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let result = json_of(&output);
    assert_eq!(result["outcome"], "ok");
    assert_eq!(result["command"], "report");
    assert_eq!(
        result["totals"],
        json!({"rollouts": 3, "promoted": 1, "rolled_back": 2, "failed": 0, "aborted": 0,
               "interrupted": 0, "manual": 1})
    );
    let rows = result["rollouts"].as_array().unwrap();
    let facts: Vec<(&str, &str, &str, bool)> = rows
        .iter()
        .map(|row| {
            (
                row["candidate"].as_str().unwrap(),
                row["stable"].as_str().unwrap(),
                row["outcome"].as_str().unwrap(),
                row["manual"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    assert_eq!(
        facts,
        [
            (promoted.as_str(), world.stable.as_str(), "promoted", false),
            (rejected.as_str(), promoted.as_str(), "rolled_back", false),
            (
                promoted.as_str(),
                world.stable.as_str(),
                "rolled_back",
                true
            ),
        ]
    );
    // Only the gate's rollback has a detection: first traffic, verdict and restore, in order.
    let gate = &rows[1];
    assert_eq!(gate["failed_percent"], 50);
    assert!(gate["reason"].as_str().unwrap().contains("5xx"), "{gate}");
    assert!(gate["traffic_at"].as_str().unwrap() <= gate["detected_at"].as_str().unwrap());
    assert!(gate["detected_at"].as_str().unwrap() <= gate["restored_at"].as_str().unwrap());
    assert!(gate["ttd_s"].is_u64() && gate["ttr_s"].is_u64(), "{gate}");
    assert_eq!(result["time_to_detect"]["count"], 1);
    assert_eq!(result["time_to_restore"]["count"], 1);
    assert_eq!(rows[0]["ttd_s"], Value::Null);
    assert_eq!(rows[2]["ttd_s"], Value::Null);
    assert!(
        rows[2]["reason"]
            .as_str()
            .unwrap()
            .contains("shiftgate rollback")
    );
    let incidents = &result["incidents"];
    assert_eq!(incidents["read"], true);
    assert_eq!(incidents["open_count"], 2);
    assert_eq!(
        incidents["other_open"], 2,
        "another service's, and one filed by hand"
    );
    assert_eq!(incidents["opened_in_period"], 2);
    assert_eq!(incidents["closed_in_period"], 1);
    assert_eq!(incidents["closed"][0]["open_s"], DAY.as_secs());
    let open: Vec<u64> = incidents["open"]
        .as_array()
        .unwrap()
        .iter()
        .map(|issue| issue["number"].as_u64().unwrap())
        .collect();
    assert_eq!(open, [open_new, open_old]);
    assert_contract(&github);

    // And the month-old entry counts once the period reaches back to it.
    let longer = json_of(&run(report(&world, &github, &["--since", "40d", "--json"])).await);
    assert_eq!(longer["totals"]["rollouts"], 4);
    assert_eq!(longer["rollouts"][0]["id"], "month-old");

    // And the Markdown, on stdout and in the step summary, has a row per rollout.
    let summary = world.workdir.join("summary.md");
    let mut markdown = report(&world, &github, &["--since", "7d"]);
    markdown
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary);
    let shown = run(markdown).await;
    assert_eq!(shown.status.code(), Some(0), "{}", stderr_of(&shown));
    let stdout = String::from_utf8_lossy(&shown.stdout).into_owned();
    let summary = std::fs::read_to_string(&summary).unwrap();
    for text in [&stdout, &summary] {
        assert!(text.contains("| 3 | 1 | 2 | 0 | 0 | 0 |"), "{text}");
        for (candidate, outcome) in [
            (&promoted, "| promoted |"),
            (&rejected, "| rolled back |"),
            (&promoted, "| rolled back (manual) |"),
        ] {
            assert!(
                text.lines()
                    .any(|line| line.contains(&format!("`{candidate}`")) && line.contains(outcome)),
                "{candidate} {outcome}: {text}"
            );
        }
        assert!(text.contains("open now: 2 · opened in the period: 2 · closed in the period: 1"));
        assert!(
            text.contains(&format!("/loopcloser/app/issues/{open_new}")),
            "{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_more_incidents_than_a_page_when_report_runs_then_it_reads_every_page() {
    let world = BinaryWorld::start("report-pages").await;
    let github = github().await;
    for n in 0..130 {
        github.seed(
            &format!("incident {n}"),
            &service_marker(),
            &["incident", "sev-3"],
            ago(DAY),
            None,
        );
    }

    let output = run(report(&world, &github, &["--since", "7d", "--json"])).await;

    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let result = json_of(&output);
    assert_eq!(result["incidents"]["open_count"], 130);
    assert_eq!(result["incidents"]["opened_in_period"], 130);
    assert_eq!(result["totals"]["rollouts"], 0);
    let pages: Vec<(Option<String>, bool)> = github
        .exchanges()
        .iter()
        .map(|e| (e.query.get("page").cloned(), e.link.is_some()))
        .collect();
    assert_eq!(pages.len(), 4, "{pages:?}");
    assert!(pages.iter().all(|(_, linked)| *linked), "{pages:?}");
    assert_contract(&github);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_no_repository_or_token_when_report_runs_then_it_reports_the_service_and_says_why_not_incidents()
 {
    let world = BinaryWorld::start("report-alone").await;

    let output = world
        .run_on_service(&["report", "--since", "1h", "--json"])
        .await;

    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let result = json_of(&output);
    assert_eq!(result["outcome"], "ok");
    assert_eq!(result["totals"]["rollouts"], 0);
    assert_eq!(result["incidents"]["read"], false);
    assert!(
        result["incidents"]["not_read"]
            .as_str()
            .unwrap()
            .contains("no repository")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_github_refusing_the_listing_when_report_runs_then_it_exits_3_with_the_service_report()
 {
    let world = BinaryWorld::start("report-github-down").await;
    let github = github().await;
    github.inject(GitHubFault {
        method: "GET",
        path_suffix: "/issues",
        status: 404,
        after_effect: false,
    });

    let output = run(report(&world, &github, &["--since", "7d", "--json"])).await;

    assert_eq!(output.status.code(), Some(3), "{}", stderr_of(&output));
    let result = json_of(&output);
    assert_eq!(result["outcome"], "incomplete");
    assert_eq!(result["incidents"]["read"], false);
    assert_eq!(result["totals"]["rollouts"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_bad_period_when_report_runs_then_exit_2_naming_since_and_nothing_is_asked() {
    let world = BinaryWorld::start("report-input").await;
    let github = github().await;
    for since in [
        "5m",
        "401d",
        "yesterday",
        "2099-01-01T00:00:00Z",
        "2020-01-01T00:00:00Z",
    ] {
        let output = run(report(&world, &github, &["--since", since, "--json"])).await;
        expect_refused_naming(&output, "--since", &since);
        assert_eq!(json_of(&output)["exit_code"], 2, "{since}");
    }
    assert_eq!(github.counts().total, 0);
    assert_eq!(world.sim.model().api_calls("GET"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_paused_rollout_aborted_by_a_person_when_report_runs_then_it_is_one_aborted_entry()
{
    let world = BinaryWorld::start("report-abort").await;
    let _load = world.start_load(40.0);
    let github = github().await;
    let mut pausing = vec!["--json"];
    pausing.extend(QUICK_ROLLOUT);
    pausing.extend(["--pause-at", "50", "--pause-timeout", "10m"]);
    let rollout = run(world.service_command(&pausing));
    let person = async {
        let mut waited = Duration::ZERO;
        loop {
            let status = json_of(&world.run_on_service(&["status", "--json"]).await);
            if status["rollout"]["state"] == "paused" {
                break;
            }
            assert!(waited < Duration::from_secs(30), "the rollout never paused");
            tokio::time::sleep(Duration::from_millis(100)).await;
            waited += Duration::from_millis(100);
        }
        world.run_on_service(&["--json", "abort"]).await
    };
    let (rolled, aborted) = tokio::join!(rollout, person);
    assert_eq!(aborted.status.code(), Some(0), "{}", stderr_of(&aborted));
    assert_eq!(json_of(&rolled)["outcome"], "aborted");

    let output = run(report(&world, &github, &["--since", "1h", "--json"])).await;

    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let result = json_of(&output);
    assert_eq!(
        result["totals"],
        json!({"rollouts": 1, "promoted": 0, "rolled_back": 0, "failed": 0, "aborted": 1,
               "interrupted": 0, "manual": 1})
    );
    let entry = &result["rollouts"][0];
    assert_eq!(entry["id"], json_of(&rolled)["rollout_id"]);
    assert_eq!(entry["candidate"], json_of(&rolled)["candidate"]);
    assert_eq!(entry["stable"], world.stable.as_str());
    assert!(
        entry["reason"]
            .as_str()
            .unwrap()
            .starts_with("`shiftgate abort` by a person at 50%"),
        "{entry}"
    );
    assert_eq!(result["incidents"]["open_count"], 0);
}

/// The hidden key shiftgate files the world's service's incidents under.
fn service_marker() -> String {
    format!("<!-- shiftgate-incident: projects/{PROJECT}/locations/{REGION}/services/{SERVICE} -->")
}
