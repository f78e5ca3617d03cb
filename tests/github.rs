//! Scenarios of `dispatch` and `incident` against the fake GitHub over loopback, under a paused
//! tokio clock; every response the fake gives is checked against GitHub's OpenAPI description.

use crate::support::openapi;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use openapi::OpenApi;
use shiftgate::clock::Clock;
use shiftgate::{
    DispatchError, DispatchRequest, GitHub, Incident, Interrupt, Repo, Severity, WatchEnd,
    dispatch, file_incident, incident_marker,
};
use shiftgate_sim::{Approval, DispatchMode, GitHubFault, GitHubSim, JobSpec, WorkflowSpec};

const MIN: Duration = Duration::from_secs(60);

fn deploy_workflow() -> WorkflowSpec {
    WorkflowSpec::new("deploy.yml", "Deploy to Cloud Run")
        .input("environment")
        .input("image_tag")
        .input("distinct_id")
        .run_name_from("distinct_id")
        .job(
            JobSpec::new("build")
                .step("Checkout", Duration::from_secs(20))
                .step("Build image", MIN),
        )
        .job(
            JobSpec::new("deploy")
                .step("gcloud run deploy", MIN)
                .step("Smoke test", Duration::from_secs(20)),
        )
}

struct Harness {
    sim: GitHubSim,
    github: GitHub,
    log: Arc<Mutex<Vec<String>>>,
}

impl Harness {
    async fn start(workflow: WorkflowSpec) -> Self {
        let clock = Clock::new();
        let sim = GitHubSim::start(clock, "loopcloser", "app").await.unwrap();
        sim.add_workflow(workflow);
        let github = GitHub::new(&sim.api_url(), "test-token", clock)
            .unwrap()
            .with_wait_log(|_| {});
        Self {
            sim,
            github,
            log: Arc::default(),
        }
    }

    fn request(&self, distinct: &str) -> DispatchRequest {
        DispatchRequest {
            repo: Repo::parse("loopcloser/app").unwrap(),
            workflow: "deploy.yml".into(),
            git_ref: "main".into(),
            inputs: vec![
                ("environment".into(), "prod".into()),
                ("image_tag".into(), "v1.4.0".into()),
                ("distinct_id".into(), distinct.into()),
            ],
            timeout: 60 * MIN,
            poll: Duration::from_secs(10),
            wait: true,
            cancel_on_timeout: false,
            cancel_on_interrupt: false,
        }
    }

    async fn dispatch(
        &self,
        request: &DispatchRequest,
        interrupt: &Interrupt,
    ) -> Result<shiftgate::DispatchReport, DispatchError> {
        let log = self.log.clone();
        let sink = move |line: &str| log.lock().unwrap().push(line.to_string());
        dispatch(&self.github, request, interrupt, &sink).await
    }

    fn lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn count(&self, text: &str) -> usize {
        self.lines().iter().filter(|l| l.contains(text)).count()
    }

    /// Every response the fake gave validates against the OpenAPI description.
    fn assert_contract(&self) {
        let api = OpenApi::load("tests/contracts/github.json");
        let exchanges = self.sim.exchanges();
        assert!(!exchanges.is_empty());
        for exchange in exchanges {
            let context = format!(
                "{} {} → {}",
                exchange.method, exchange.operation, exchange.status
            );
            if exchange.status == 304 {
                assert!(exchange.body.is_none(), "{context}: a 304 has no body");
                continue;
            }
            let body = exchange.body.clone().unwrap_or_default();
            let declared = if exchange.operation.is_empty() {
                Err("no operation".to_string())
            } else {
                api.response_schema(&exchange.method, &exchange.operation, exchange.status)
            };
            match declared {
                Ok(Some(schema)) => {
                    if let Err(problems) = api.validate(schema, &body) {
                        panic!("{context}: {problems:#?}\n{body:#}");
                    }
                }
                Ok(None) => assert!(
                    exchange.body.is_none() || body == serde_json::json!({}),
                    "{context}: body where none is declared: {body}"
                ),
                // Statuses the description leaves out (401, 403 rate limits, 5xx, 400): GitHub's
                // generic error shape.
                Err(_) => {
                    if let Err(problems) = api.validate_component("basic-error", &body) {
                        panic!("{context}: {problems:#?}");
                    }
                    assert!(body["message"].is_string(), "{context}: {body}");
                }
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn given_a_healthy_workflow_when_dispatched_then_each_transition_is_printed_once_and_it_succeeds()
 {
    let h = Harness::start(deploy_workflow()).await;

    let report = h
        .dispatch(&h.request("sg-1"), &Interrupt::never())
        .await
        .unwrap();

    assert_eq!(report.end, WatchEnd::Concluded("success".into()));
    assert_eq!(report.exit_code(), 0);
    assert_eq!(
        report.jobs,
        vec![
            ("build".to_string(), Some("success".to_string())),
            ("deploy".to_string(), Some("success".to_string()))
        ]
    );
    let lines = h.lines();
    assert!(
        lines[1].starts_with("run: http"),
        "the run URL comes first: {lines:#?}"
    );
    assert_eq!(h.count("job build: in_progress"), 1, "{lines:#?}");
    assert_eq!(h.count("build › Build image: in_progress"), 1, "{lines:#?}");
    assert_eq!(h.count("deploy › Smoke test: success"), 1, "{lines:#?}");
    assert_eq!(h.sim.dispatch_posts(), 1);
    let json = report.json();
    assert_eq!(json["outcome"], "success");
    assert_eq!(json["run_id"], report.run_id);
    assert_eq!(json["jobs"][1]["conclusion"], "success");
    assert!(json["duration_s"].as_f64().unwrap() >= 160.0);
    h.assert_contract();
}

#[tokio::test(start_paused = true)]
async fn given_a_failing_step_when_dispatched_then_it_exits_1_naming_the_failed_job() {
    let workflow = WorkflowSpec::new("deploy.yml", "Deploy")
        .input("environment")
        .job(JobSpec::new("deploy").failing_step("gcloud run deploy", MIN))
        .job(JobSpec::new("notify").step("Post", Duration::from_secs(5)));
    let h = Harness::start(workflow).await;
    let mut request = h.request("x");
    request.inputs.truncate(1);

    let report = h.dispatch(&request, &Interrupt::never()).await.unwrap();

    assert_eq!(report.end, WatchEnd::Concluded("failure".into()));
    assert_eq!(report.exit_code(), 1);
    assert_eq!(report.jobs[0], ("deploy".into(), Some("failure".into())));
    assert_eq!(report.jobs[1], ("notify".into(), Some("skipped".into())));
    h.assert_contract();
}

#[tokio::test(start_paused = true)]
async fn given_a_run_cancelled_by_someone_when_watched_then_it_concludes_cancelled_with_exit_1() {
    let h = Harness::start(deploy_workflow()).await;
    let sim_ids = {
        let sim = &h.sim;
        async move {
            tokio::time::sleep(Duration::from_secs(45)).await;
            for id in sim.run_ids() {
                sim.cancel(id);
            }
        }
    };

    let (request, never) = (h.request("c"), Interrupt::never());
    let (report, ()) = tokio::join!(h.dispatch(&request, &never), sim_ids);

    let report = report.unwrap();
    assert_eq!(report.end, WatchEnd::Concluded("cancelled".into()));
    assert_eq!(report.exit_code(), 1);
    h.assert_contract();
}

#[tokio::test(start_paused = true)]
async fn given_a_slow_run_when_the_timeout_ends_the_watch_then_exit_1_and_the_run_is_left_running()
{
    let h = Harness::start(deploy_workflow()).await;
    let mut request = h.request("slow");
    request.timeout = MIN;

    let report = h.dispatch(&request, &Interrupt::never()).await.unwrap();

    assert_eq!(report.end, WatchEnd::TimedOut);
    assert_eq!(report.exit_code(), 1);
    assert_eq!(report.json()["outcome"], "timed_out");
    assert!(!report.cancelled);
    let (status, _) = h.sim.run_state(report.run_id).unwrap();
    assert_eq!(status, "in_progress");
    assert_eq!(h.count("left running"), 1);
}

#[tokio::test(start_paused = true)]
async fn given_cancel_on_timeout_when_the_timeout_ends_the_watch_then_the_run_is_cancelled() {
    let h = Harness::start(deploy_workflow()).await;
    let mut request = h.request("slow");
    request.timeout = MIN;
    request.cancel_on_timeout = true;

    let report = h.dispatch(&request, &Interrupt::never()).await.unwrap();

    assert!(report.cancelled);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        h.sim.run_state(report.run_id).unwrap().1.as_deref(),
        Some("cancelled")
    );
    h.assert_contract();
}

#[tokio::test(start_paused = true)]
async fn given_cancel_on_interrupt_when_interrupted_then_the_run_is_cancelled_and_exit_is_130() {
    let h = Harness::start(deploy_workflow()).await;
    let mut request = h.request("int");
    request.cancel_on_interrupt = true;
    let (trigger, interrupt) = Interrupt::channel();
    let fire = async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        trigger.trigger();
    };

    let (report, ()) = tokio::join!(h.dispatch(&request, &interrupt), fire);

    let report = report.unwrap();
    assert_eq!(report.end, WatchEnd::Interrupted);
    assert_eq!(report.exit_code(), 130);
    assert!(report.cancelled);
}

#[tokio::test(start_paused = true)]
async fn given_a_server_answering_204_when_dispatched_then_the_right_run_is_found_among_several() {
    let h = Harness::start(deploy_workflow()).await;
    h.sim.add_branch("release");
    h.sim.set_dispatch_mode(DispatchMode::NoContent);
    let older = h.sim.start_run("deploy.yml", "main", "sg-old");
    tokio::time::sleep(5 * MIN).await;
    let other_branch = h.sim.start_run("deploy.yml", "release", "sg-42");
    let someone_else = h.sim.start_run("deploy.yml", "main", "someone-else");

    let report = h
        .dispatch(&h.request("sg-42"), &Interrupt::never())
        .await
        .unwrap();

    assert_eq!(h.sim.dispatch_posts(), 1);
    let ours = *h.sim.run_ids().last().unwrap();
    assert_eq!(report.run_id, ours);
    assert!(![older, other_branch, someone_else].contains(&report.run_id));
    assert_eq!(report.end, WatchEnd::Concluded("success".into()));
    h.assert_contract();
}

#[tokio::test(start_paused = true)]
async fn given_ghes_rejecting_return_run_details_when_dispatched_then_it_retries_once_without_the_field()
 {
    let h = Harness::start(deploy_workflow()).await;
    h.sim.set_dispatch_mode(DispatchMode::RejectsRunDetails);

    let report = h
        .dispatch(&h.request("ghes"), &Interrupt::never())
        .await
        .unwrap();

    assert_eq!(
        h.sim.dispatch_posts(),
        2,
        "the refused one and the plain one"
    );
    assert_eq!(h.sim.run_ids(), vec![report.run_id]);
    assert_eq!(report.end, WatchEnd::Concluded("success".into()));
}

#[tokio::test(start_paused = true)]
async fn given_an_ambiguous_dispatch_failure_then_the_run_is_looked_for_and_the_post_is_not_resent()
{
    let h = Harness::start(deploy_workflow()).await;
    h.sim.inject(GitHubFault {
        method: "POST",
        path_suffix: "/dispatches",
        status: 502,
        after_effect: true,
    });

    let report = h
        .dispatch(&h.request("amb"), &Interrupt::never())
        .await
        .unwrap();

    assert_eq!(h.sim.dispatch_posts(), 1);
    assert_eq!(h.sim.run_ids(), vec![report.run_id]);
    assert_eq!(h.count("looking for its run"), 1);
    h.assert_contract();
}

#[tokio::test(start_paused = true)]
async fn given_an_environment_with_reviewers_when_the_run_waits_then_the_approval_wait_is_shown_once()
 {
    let workflow = WorkflowSpec::new("deploy.yml", "Deploy")
        .input("environment")
        .job(JobSpec::new("build").step("Build", MIN))
        .job(
            JobSpec::new("deploy")
                .approval(Approval {
                    environment: "prod".into(),
                    reviewers: vec!["alice".into()],
                    teams: vec!["ops".into()],
                    approve_after: Some(10 * MIN),
                })
                .step("Deploy", MIN),
        );
    let h = Harness::start(workflow).await;
    let mut request = h.request("x");
    request.inputs.truncate(1);

    let report = h.dispatch(&request, &Interrupt::never()).await.unwrap();

    assert_eq!(report.end, WatchEnd::Concluded("success".into()));
    assert_eq!(h.count(": waiting"), 2, "run and job: {:#?}", h.lines());
    assert_eq!(
        h.count("WAITING for approval to deploy to environment prod: @alice, team ops can approve"),
        1,
        "{:#?}",
        h.lines()
    );
    h.assert_contract();
}

#[tokio::test(start_paused = true)]
async fn given_a_30_minute_run_polled_every_10s_then_unchanged_polls_are_free_304s() {
    let mut job = JobSpec::new("deploy");
    for n in 1..=6 {
        job = job.step(&format!("phase {n}"), 5 * MIN);
    }
    let h = Harness::start(WorkflowSpec::new("deploy.yml", "Deploy").job(job)).await;
    let mut request = h.request("x");
    request.inputs.clear();

    let report = h.dispatch(&request, &Interrupt::never()).await.unwrap();

    assert_eq!(report.end, WatchEnd::Concluded("success".into()));
    let counts = h.sim.counts();
    let stats = h.github.stats();
    println!(
        "30-minute run at 10 s polling: {} requests, {} were 304 (free), {} counted against the rate limit",
        counts.total, counts.not_modified, counts.counted
    );
    assert_eq!(stats.requests, counts.total);
    assert!(
        counts.total > 360,
        "two GETs per poll for 30 minutes: {counts:?}"
    );
    assert!(counts.counted <= 20, "only changes cost: {counts:?}");
    h.assert_contract();
}

#[tokio::test(start_paused = true)]
async fn given_secondary_rate_limits_when_dispatching_then_it_waits_retry_after_and_sends_once() {
    let h = Harness::start(deploy_workflow()).await;
    h.sim.secondary_limit(2);
    let start = tokio::time::Instant::now();

    let report = h
        .dispatch(&h.request("rl"), &Interrupt::never())
        .await
        .unwrap();

    assert_eq!(
        h.sim.dispatch_posts(),
        1,
        "rejected attempts were not carried out"
    );
    assert_eq!(h.github.stats().rate_limit_waits, 2);
    assert!(start.elapsed() >= 2 * MIN);
    assert_eq!(report.end, WatchEnd::Concluded("success".into()));
    h.assert_contract();
}

#[tokio::test(start_paused = true)]
async fn given_the_hourly_limit_runs_out_while_watching_then_it_waits_for_the_reset_and_finishes() {
    let h = Harness::start(deploy_workflow()).await;
    h.sim.set_rate_limit(1000, 990);
    let start = tokio::time::Instant::now();
    let mut request = h.request("rl");
    request.timeout = 3 * 60 * MIN;

    let report = h.dispatch(&request, &Interrupt::never()).await.unwrap();

    assert_eq!(report.end, WatchEnd::Concluded("success".into()));
    assert!(h.github.stats().rate_limit_waits >= 1);
    assert!(start.elapsed() >= 50 * MIN, "waited for x-ratelimit-reset");
    h.assert_contract();
}

#[tokio::test(start_paused = true)]
async fn given_mistakes_a_user_can_fix_then_the_error_names_them() {
    let h = Harness::start(deploy_workflow()).await;
    let mut request = h.request("x");
    request.workflow = "deploy-prod.yml".into();
    let DispatchError::BadInput(message) =
        h.dispatch(&request, &Interrupt::never()).await.unwrap_err()
    else {
        panic!("bad input")
    };
    assert!(
        message.contains("deploy.yml (Deploy to Cloud Run)"),
        "{message}"
    );

    let mut request = h.request("x");
    request.inputs.push(("region".into(), "eu".into()));
    let DispatchError::BadInput(message) =
        h.dispatch(&request, &Interrupt::never()).await.unwrap_err()
    else {
        panic!("bad input")
    };
    assert!(message.contains("\"region\""), "{message}");
    assert!(
        message.contains("environment, image_tag, distinct_id"),
        "{message}"
    );

    h.sim.deny_actions_write();
    let DispatchError::BadInput(message) = h
        .dispatch(&h.request("x"), &Interrupt::never())
        .await
        .unwrap_err()
    else {
        panic!("bad input")
    };
    assert!(message.contains("actions: write"), "{message}");
    assert!(h.sim.run_ids().is_empty());
    h.assert_contract();
}

fn incident(title: &str, key: &str) -> Incident {
    Incident {
        repo: Repo::parse("loopcloser/app").unwrap(),
        title: title.into(),
        severity: Severity::Sev2,
        key: key.into(),
        labels: vec!["deploy".into()],
        summary: "The candidate answered 5xx to a third of requests.".into(),
        timeline: None,
        links: vec![],
    }
}

#[tokio::test(start_paused = true)]
async fn given_no_open_incident_when_filed_then_an_issue_is_created_and_the_next_one_comments() {
    let h = Harness::start(deploy_workflow()).await;

    let first = file_incident(
        &h.github,
        &incident("Deploy of v1.4.0 to prod failed", "prod"),
    )
    .await
    .unwrap();
    let second = file_incident(
        &h.github,
        &incident("Deploy of v1.4.1 to prod failed", "prod"),
    )
    .await
    .unwrap();

    assert_eq!(first.action, "created");
    assert_eq!(second.action, "commented");
    assert_eq!(second.number, first.number);
    let issues = h.sim.issues();
    assert_eq!(issues.len(), 1);
    assert!(issues[0].body.contains(&incident_marker("prod")));
    assert_eq!(issues[0].labels, vec!["incident", "sev-2", "deploy"]);
    assert_eq!(issues[0].comments.len(), 1);
    assert!(issues[0].comments[0].contains("v1.4.1"));
    let mut labels = h.sim.label_names();
    labels.sort();
    assert_eq!(labels, vec!["deploy", "incident", "sev-2"]);
    h.assert_contract();
}

#[tokio::test(start_paused = true)]
async fn given_two_jobs_filing_the_same_incident_at_once_then_one_issue_stays_open() {
    let h = Harness::start(deploy_workflow()).await;
    let a = incident("Deploy failed", "prod");
    let b = incident("Deploy failed", "prod");

    let (first, second) = tokio::join!(file_incident(&h.github, &a), file_incident(&h.github, &b));

    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(first.number, second.number, "both point at the same issue");
    let open: Vec<_> = h.sim.issues().into_iter().filter(|i| i.open).collect();
    assert_eq!(open.len(), 1, "{:#?}", h.sim.issues());
    let mut actions = [first.action, second.action];
    actions.sort();
    assert!(actions.contains(&"created") || h.sim.issues().len() == 1);
    h.assert_contract();
}

#[tokio::test(start_paused = true)]
async fn given_an_ambiguous_issue_create_failure_then_it_looks_and_does_not_create_twice() {
    let h = Harness::start(deploy_workflow()).await;
    h.sim.inject(GitHubFault {
        method: "POST",
        path_suffix: "/issues",
        status: 502,
        after_effect: true,
    });

    let filed = file_incident(&h.github, &incident("Deploy failed", "prod"))
        .await
        .unwrap();

    assert_eq!(h.sim.issue_create_posts(), 1);
    assert_eq!(h.sim.issues().len(), 1);
    assert_eq!(filed.number, 1);
    h.assert_contract();
}

#[tokio::test(start_paused = true)]
async fn given_the_fake_deployments_then_github_rules_hold_422s_and_auto_inactive_for_non_production()
 {
    // Given a successful earlier deployment of staging and of production.
    let h = Harness::start(deploy_workflow()).await;
    let staging_before = h.sim.seed_deployment("staging", false, &["success"]);
    let prod_before = h.sim.seed_deployment("production", true, &["success"]);
    let statuses = |id: u64| format!("/repos/loopcloser/app/deployments/{id}/statuses");

    // When new deployments of both are created and marked successful.
    let mut created = Vec::new();
    for environment in ["staging", "production"] {
        let body =
            serde_json::json!({"ref": "main", "environment": environment, "required_contexts": []});
        let answer = h
            .github
            .post("/repos/loopcloser/app/deployments", &body)
            .await
            .unwrap();
        let id = answer.body["id"].as_u64().unwrap();
        h.github
            .post(&statuses(id), &serde_json::json!({"state": "success"}))
            .await
            .unwrap();
        created.push(id);
    }

    // Then auto_inactive retired the earlier staging deployment, and left production alone.
    let state = |id: u64| {
        let deployments = h.sim.deployments();
        let deployment = deployments.iter().find(|d| d.id == id).unwrap();
        deployment.latest_state().map(str::to_string)
    };
    assert_eq!(state(staging_before).as_deref(), Some("inactive"));
    assert_eq!(state(prod_before).as_deref(), Some("success"));
    // And the production default follows the environment's name.
    let production = h
        .github
        .get(&format!("/repos/loopcloser/app/deployments/{}", created[1]))
        .await
        .unwrap();
    assert_eq!(production["production_environment"], true);

    // And an unknown state, a description over 140 characters and an unknown ref are 422s.
    for (path, body) in [
        (statuses(created[0]), serde_json::json!({"state": "done"})),
        (
            statuses(created[0]),
            serde_json::json!({"state": "failure", "description": "x".repeat(141)}),
        ),
        (
            "/repos/loopcloser/app/deployments".to_string(),
            serde_json::json!({"ref": "no-such-branch"}),
        ),
    ] {
        let refused = h.github.post(&path, &body).await.unwrap_err();
        assert_eq!(refused.status(), Some(422), "{body}: {refused}");
    }
    h.assert_contract();
}
