//! `rollout --notify` through the binary against the simulator and fake Slack webhooks: which
//! messages a channel gets, what they say, and that a failing webhook never changes a rollout.

use std::process::{Output, Stdio};

use serde_json::{Value, json};

use crate::support::binary::{self, json_of, stderr_of};
use crate::support::webhook::{Answer, SECRET, Webhook, masked};
use crate::support::world::{
    BAD_CANDIDATE_ROLLOUT, BinaryWorld, CANDIDATE_IMAGE, QUICK_ROLLOUT, closed_port_url,
    expect_refused_naming,
};

const RUN_LINK: &str = "https://github.com/loopcloser/app/actions/runs/4242";

/// The binary with `args`, inside a (fake) Actions run whose link the messages carry.
async fn run_in_a_workflow(world: &BinaryWorld, args: &[&str], service: bool) -> Output {
    let mut command = if service {
        world.service_command(args)
    } else {
        world.command(args)
    };
    command
        .env("GITHUB_SERVER_URL", "https://github.com")
        .env("GITHUB_REPOSITORY", "loopcloser/app")
        .env("GITHUB_RUN_ID", "4242");
    binary::run(command).await
}

fn events(result: &Value) -> Vec<(String, bool)> {
    result["notifications"]
        .as_array()
        .unwrap_or_else(|| panic!("a notifications list: {result}"))
        .iter()
        .map(|n| {
            (
                n["event"].as_str().unwrap().to_string(),
                n["delivered"] == true,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_an_environment_with_a_webhook_when_a_good_candidate_rolls_out_then_the_channel_hears_its_start_then_its_promotion()
 {
    let world = BinaryWorld::start("notify").await;
    let hook = Webhook::start(Answer::Slack).await;
    std::fs::write(
        world.workdir.join("shiftgate.toml"),
        "[environments.dev]\nproject = \"loopcloser\"\nregion = \"us-central1\"\n\
         service = \"loopcloser-dev\"\nnotify = [\"${SLACK_WEBHOOK_URL}\"]\n",
    )
    .unwrap();
    let _load = world.start_load(40.0);
    let mut args = vec!["--json"];
    args.extend(QUICK_ROLLOUT);
    args.extend(["--env", "dev"]);
    let mut command = world.command(&args);
    command
        .env("SLACK_WEBHOOK_URL", &hook.url)
        .env("GITHUB_SERVER_URL", "https://github.com")
        .env("GITHUB_REPOSITORY", "loopcloser/app")
        .env("GITHUB_RUN_ID", "4242");

    let output = binary::run(command).await;

    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let result = json_of(&output);
    assert_eq!(result["outcome"], "promoted");
    let candidate = result["candidate"].as_str().unwrap();
    let texts = hook.texts();
    assert_eq!(texts.len(), 2, "exactly two messages: {texts:#?}");
    assert!(
        texts[0].starts_with("Rollout started: *loopcloser-dev*"),
        "{}",
        texts[0]
    );
    assert!(
        texts[1].starts_with("Rollout promoted: *loopcloser-dev*"),
        "{}",
        texts[1]
    );
    for text in &texts {
        for fact in [
            "environment: dev".to_string(),
            "region: us-central1 (loopcloser)".to_string(),
            format!("candidate: `{candidate}`"),
            format!("stable: `{}`", world.stable),
            format!("<{RUN_LINK}|workflow run>"),
        ] {
            assert!(text.contains(&fact), "{fact:?} in {text}");
        }
    }
    assert!(hook.posts()[0]["blocks"].is_array(), "Slack blocks too");
    assert_eq!(
        result["notifications"],
        json!([
            {"event": "started", "to": masked(&hook.url), "delivered": true},
            {"event": "promoted", "to": masked(&hook.url), "delivered": true},
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_bad_candidate_when_it_rolls_back_then_the_channel_hears_the_failed_value_against_its_limit()
 {
    let world = BinaryWorld::start("notify").await;
    let hook = Webhook::start(Answer::Slack).await;
    world.candidate_fails(0.4);
    let _load = world.start_load(40.0);
    let mut args = BAD_CANDIDATE_ROLLOUT.to_vec();
    args.extend(["--no-incident", "--notify", &hook.url]);

    let output = run_in_a_workflow(&world, &args, true).await;

    // The same exit code and outcome as the same rollout without --notify (tests/cli.rs).
    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    let result = json_of(&output);
    assert_eq!(result["outcome"], "rolled_back");
    assert_eq!(world.split(), world.stable_only());
    let texts = hook.texts();
    assert_eq!(texts.len(), 2, "{texts:#?}");
    assert!(texts[0].starts_with("Rollout started:"), "{}", texts[0]);
    let rollback = &texts[1];
    assert!(
        rollback.starts_with(&format!(
            "Rollout rolled back: *loopcloser-dev* is back on `{}`",
            world.stable
        )),
        "{rollback}"
    );
    let reason = result["reason"].as_str().unwrap();
    assert!(
        reason.contains("vs stable"),
        "the value against its limit: {reason}"
    );
    let escaped = reason
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    assert!(
        rollback.contains(&format!("reason: {escaped}")),
        "{rollback}"
    );
    assert!(rollback.contains(RUN_LINK), "{rollback}");
    assert_eq!(
        events(&result),
        [("started".into(), true), ("rolled_back".into(), true)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_webhooks_that_fail_refuse_or_never_answer_when_a_rollout_runs_then_it_is_promoted_all_the_same_and_warns_without_the_secret()
 {
    let world = BinaryWorld::start("notify").await;
    let failing = Webhook::start(Answer::ServerError).await;
    let hanging = Webhook::start(Answer::Hang).await;
    let refused = format!("{}/services/{SECRET}", closed_port_url());
    let _load = world.start_load(40.0);
    let mut args = vec!["--json"];
    args.extend(QUICK_ROLLOUT);
    let webhooks = format!("{},{},{refused}", failing.url, hanging.url);
    args.extend(["--notify", &webhooks]);

    let output = run_in_a_workflow(&world, &args, true).await;

    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let result = json_of(&output);
    assert_eq!(result["outcome"], "promoted");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        !stdout.contains(SECRET) && !stderr.contains(SECRET),
        "{stderr}\n{stdout}"
    );
    let notifications = result["notifications"].as_array().unwrap();
    assert!(!notifications.is_empty());
    for notification in notifications {
        assert_eq!(notification["delivered"], false, "{notification}");
        assert!(notification["error"].is_string(), "{notification}");
    }
    for url in [&failing.url, &hanging.url, &refused] {
        let to = masked(url);
        assert!(
            notifications.iter().any(|n| n["to"] == to.as_str()),
            "{to} in {notifications:?}"
        );
        assert!(
            stderr
                .lines()
                .any(|line| line.starts_with("warning: notification") && line.contains(&to)),
            "a warning names {to}: {stderr}"
        );
    }
    // A 500 says the message was not taken: it is sent again, up to three times in all.
    let started = |hook: &Webhook| {
        hook.texts()
            .iter()
            .filter(|text| text.starts_with("Rollout started"))
            .count()
    };
    assert_eq!(started(&failing), 3, "{:#?}", failing.texts());
    // No answer may hide a message that was shown: never sent twice.
    assert_eq!(started(&hanging), 1, "{:#?}", hanging.texts());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_webhook_that_is_not_https_when_a_rollout_is_asked_for_then_it_is_refused_before_any_change()
 {
    let world = BinaryWorld::start("notify").await;
    let mut flag = QUICK_ROLLOUT.to_vec();
    flag.extend(["--notify", "ftp://x/services/T0/secretpath"]);
    let from_flag = world.run_on_service(&flag).await;
    let mut from_variable = world.service_command(QUICK_ROLLOUT);
    from_variable.env(
        "SHIFTGATE_NOTIFY",
        "http://example.com/services/T0/secretpath",
    );
    let from_variable = binary::run(from_variable).await;

    expect_refused_naming(&from_flag, "--notify", &"ftp://");
    expect_refused_naming(
        &from_variable,
        "SHIFTGATE_NOTIFY (--notify)",
        &"http://example.com",
    );
    for output in [&from_flag, &from_variable] {
        let stderr = stderr_of(output);
        assert!(stderr.contains("https://"), "says what is valid: {stderr}");
        assert!(!stderr.contains("secretpath"), "{stderr}");
    }
    assert_eq!(world.split(), world.stable_only());
    assert_eq!(world.sim.model().write_count(), 0, "nothing was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_webhook_that_never_answers_when_the_rollout_is_interrupted_then_it_restores_stable_and_exits_130_with_its_result()
 {
    let world = BinaryWorld::start("notify").await;
    let slack = Webhook::start(Answer::Slack).await;
    let hanging = Webhook::start(Answer::Hang).await;
    let _load = world.start_load(20.0);
    let webhooks = format!("{},{}", slack.url, hanging.url);
    let child = world
        .service_command(&[
            "rollout",
            "--json",
            "--image",
            CANDIDATE_IMAGE,
            "--bake",
            "10m",
            "--interval",
            "1s",
            "--metrics-delay",
            "0s",
            "--notify",
            &webhooks,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    world.wait_for_first_step().await;

    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();

    assert_eq!(output.status.code(), Some(130), "{}", stderr_of(&output));
    let result = json_of(&output);
    assert_eq!(result["outcome"], "interrupted");
    assert_eq!(world.split(), world.stable_only());
    assert!(
        slack.texts()[0].starts_with("Rollout started"),
        "{:#?}",
        slack.texts()
    );
    // Both webhooks' rollback messages are accounted for, sent or not, in the written result.
    let rolled_back: Vec<&Value> = result["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["event"] == "rolled_back")
        .collect();
    assert_eq!(rolled_back.len(), 2, "{}", result["notifications"]);
}
