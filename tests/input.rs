//! Input and the text that comes back from outside: property tests over argument and config
//! parsing (no panic; a refusal names the flag or key; what is accepted is in range), the binary
//! refusing smuggled names and unbounded durations before any request, and hostile text from a
//! health body or an API error running under GITHUB_ACTIONS=true without becoming a workflow
//! command, a mention or Markdown.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use clap::Parser;
use proptest::prelude::*;
use shiftgate::clock::Clock;
use shiftgate::{Cli, Command as Sub, Config};
use shiftgate_sim::{Behavior, GitHubSim};

use crate::support::binary::{json_of, run, stderr_of};
use crate::support::world::{
    BinaryWorld, CANDIDATE_IMAGE, PROJECT, REGION, SERVICE, SERVICE_ARGS, STABLE_IMAGE,
    closed_port_url, expect_refused_naming, shiftgate, with_github, workdir,
};

// ---------------------------------------------------------------------------------------------
// Properties of the parsers.

fn parse(argv: &[&str]) -> Result<Cli, clap::Error> {
    let mut full = vec!["shiftgate"];
    full.extend_from_slice(argv);
    Cli::try_parse_from(full)
}

/// Text that looks like what people (and attackers) type: numbers with units, names with URL
/// parts, and anything at all.
fn wordish() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{1,22}(ns|ms|s|m|h|d|w|y)?",
        "-?[0-9]{0,4}(\\.[0-9]{0,4})?%?",
        "[a-z0-9./?#%:@-]{0,70}",
        "[a-zA-Z0-9_.-]{0,45}/[a-zA-Z0-9_./-]{0,110}",
        "/[ -~]{0,40}",
        any::<String>(),
    ]
}

fn refused_naming(error: &clap::Error, flag: &str) -> Result<(), TestCaseError> {
    prop_assert_eq!(error.exit_code(), 2);
    let message = error.to_string();
    prop_assert!(message.contains(flag), "{}: {}", flag, message);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn given_any_duration_text_then_rollout_flags_accept_only_bounded_values(text in wordish()) {
        let bounds = [
            ("--bake", Duration::ZERO, Duration::from_secs(86_400)),
            ("--interval", Duration::from_millis(100), Duration::from_secs(3600)),
            ("--metrics-delay", Duration::ZERO, Duration::from_secs(3600)),
        ];
        for (flag, min, max) in bounds {
            let argument = format!("{flag}={text}");
            match parse(&["rollout", &argument]) {
                Ok(cli) => {
                    let Sub::Rollout(args) = cli.command else { unreachable!() };
                    let value = match flag {
                        "--bake" => args.policy.bake,
                        "--interval" => args.policy.interval,
                        _ => args.policy.metrics_delay,
                    }
                    .unwrap();
                    prop_assert!(value >= min && value <= max, "{} {:?}", flag, value);
                }
                Err(error) => refused_naming(&error, flag)?,
            }
        }
        for (argv, flag) in [
            (vec!["rollback".to_string(), format!("--timeout={text}")], "--timeout"),
            (
                vec!["dispatch".into(), "--workflow=d.yml".into(), format!("--poll={text}")],
                "--poll",
            ),
        ] {
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            match parse(&argv) {
                Ok(cli) => {
                    let value = match cli.command {
                        Sub::Rollback(args) => args.restore.timeout,
                        Sub::Dispatch(args) => args.poll,
                        _ => unreachable!(),
                    };
                    prop_assert!(value > Duration::ZERO && value <= Duration::from_secs(86_400));
                }
                Err(error) => refused_naming(&error, flag)?,
            }
        }
    }

    #[test]
    fn given_any_rate_steps_or_count_then_what_is_accepted_is_in_range(text in wordish()) {
        match parse(&["rollout", &format!("--max-error-rate={text}")]) {
            Ok(cli) => {
                let Sub::Rollout(args) = cli.command else { unreachable!() };
                let rate = args.policy.max_error_rate.unwrap();
                prop_assert!(rate.is_finite() && (0.0..=1.0).contains(&rate));
            }
            Err(error) => refused_naming(&error, "--max-error-rate")?,
        }
        match parse(&["rollout", &format!("--steps={text}")]) {
            Ok(cli) => {
                let Sub::Rollout(args) = cli.command else { unreachable!() };
                let steps = args.policy.steps.unwrap();
                let percents = steps.percents();
                prop_assert_eq!(percents.last(), Some(&100));
                prop_assert!(percents.windows(2).all(|w| w[0] < w[1]) && percents[0] >= 1);
            }
            Err(error) => refused_naming(&error, "--steps")?,
        }
        match parse(&["rollout", &format!("--max-latency=p95={text}")]) {
            Ok(cli) => {
                let Sub::Rollout(args) = cli.command else { unreachable!() };
                for limit in args.max_latency {
                    prop_assert!(
                        limit.limit >= Duration::from_millis(1)
                            && limit.limit <= Duration::from_secs(3600),
                        "{:?}", limit
                    );
                }
            }
            Err(error) => refused_naming(&error, "--max-latency")?,
        }
        match parse(&["rollout", &format!("--min-requests={text}")]) {
            Ok(cli) => {
                let Sub::Rollout(args) = cli.command else { unreachable!() };
                prop_assert!((1..=1_000_000_000).contains(&args.policy.min_requests.unwrap()));
            }
            Err(error) => refused_naming(&error, "--min-requests")?,
        }
    }

    #[test]
    fn given_any_name_then_what_is_accepted_cannot_carry_a_url_part(text in wordish()) {
        let cases: [(&[&str], &str); 6] = [
            (&["status"], "--project"),
            (&["status"], "--region"),
            (&["status"], "--service"),
            (&["rollout"], "--revision"),
            (&["rollback"], "--to"),
            (&["rollout"], "--health-path"),
        ];
        for (command, flag) in cases {
            let argument = format!("{flag}={text}");
            let mut argv = command.to_vec();
            argv.push(&argument);
            match parse(&argv) {
                Ok(_) if flag == "--health-path" => {
                    prop_assert!(text.starts_with('/') && !text.starts_with("//"));
                    prop_assert!(!text.chars().any(|c| c.is_whitespace() || c.is_control()));
                    prop_assert!(!text.split(['?', '#']).next().unwrap().split('/').any(|s| s == ".."));
                }
                Ok(_) => {
                    let allowed = |c: char| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
                            || (flag == "--project" && (c == ':' || c == '.'))
                    };
                    prop_assert!(text.chars().all(allowed), "{} accepted {:?}", flag, text);
                }
                Err(error) => refused_naming(&error, flag)?,
            }
        }
        match parse(&["rollout", &format!("--repo={text}")]) {
            Ok(_) => {
                let parts: Vec<&str> = text.split('/').collect();
                prop_assert_eq!(parts.len(), 2, "{:?}", text);
                prop_assert!(parts[1] != ".." && parts[1] != "." && !parts[0].is_empty());
                prop_assert!(!text.contains(['?', '#', '%', ' ']));
            }
            Err(error) => refused_naming(&error, "--repo")?,
        }
    }

    #[test]
    fn given_any_toml_text_then_loading_never_panics(text in any::<String>()) {
        let _ = Config::parse(&text);
    }

    #[test]
    fn given_any_value_for_any_key_then_a_refusal_names_the_key(
        key in prop::sample::select(vec![
            "steps", "bake", "interval", "max_error_rate", "min_requests", "metrics_delay",
            "health_path", "health_expect", "expect_version", "max_latency",
        ]),
        environment_key in prop::sample::select(vec!["project", "region", "service", "url"]),
        value in prop_oneof![
            wordish().prop_map(|text| toml_string(&text)),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|f| format!("{f:?}")),
            prop::collection::vec(any::<u8>(), 0..6).prop_map(|v| format!("{v:?}")),
            Just("true".to_string()),
        ],
    ) {
        let in_policy = format!("[environments.prod.policy]\n{key} = {value}\n");
        if let Err(error) = Config::parse(&in_policy) {
            prop_assert!(error.0.contains(key), "{}: {}", in_policy, error.0);
        }
        let in_environment = format!("[environments.prod]\n{environment_key} = {value}\n");
        if let Err(error) = Config::parse(&in_environment) {
            prop_assert!(error.0.contains(environment_key), "{}: {}", in_environment, error.0);
        }
    }
}

/// A TOML basic string holding `text`.
fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

// ---------------------------------------------------------------------------------------------
// The binary.

/// Gives the binary a Google access token, which under Actions it masks.
fn with_google_token(mut command: Command) -> Command {
    command.env("GOOGLE_OAUTH_ACCESS_TOKEN", "test-google-token");
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_smuggled_names_or_unbounded_durations_then_the_binary_exits_2_before_any_request() {
    let world = BinaryWorld::start("input-refused").await;
    world.sim.add_service(PROJECT, REGION, "web", STABLE_IMAGE);
    let huge = "9999999999999999999s";
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--service", "web?updateMask=traffic"], "--service"),
        (vec!["--service", "nope/../web"], "--service"),
        (vec!["--project", "p/x"], "--project"),
        (vec!["--region", "us-central1/../x"], "--region"),
        (vec!["--repo", "a/b/c"], "--repo"),
        (
            vec!["--health-path", "http://169.254.169.254/x"],
            "--health-path",
        ),
        (vec!["--revision", "web-1/../../x"], "--revision"),
        (vec!["--bake", huge], "--bake"),
        (vec!["--metrics-delay", huge], "--metrics-delay"),
        (vec!["--dry-run", "--bake", huge], "--bake"),
        (vec!["--min-requests", "0"], "--min-requests"),
        (vec!["--max-latency", "p90=1s"], "--max-latency"),
        (vec!["--max-latency", "p95=0ms"], "--max-latency"),
        (vec!["--max-latency", "p95=1s,p95=2s"], "--max-latency"),
    ];
    for (extra, flag) in cases {
        // Later flags win in clap only for repeated flags; give the good address first and let the
        // case override it, so the only bad value is the one under test.
        let mut args = vec![
            "--json",
            "rollout",
            "--project",
            PROJECT,
            "--region",
            REGION,
        ];
        if !extra.contains(&"--service") {
            args.extend(["--service", SERVICE]);
        }
        if !extra.contains(&"--revision") {
            args.extend(["--image", "registry/app:v2"]);
        }
        let args: Vec<&str> = args
            .into_iter()
            .filter(|a| !(extra.contains(&"--project") && (*a == "--project" || *a == PROJECT)))
            .filter(|a| !(extra.contains(&"--region") && (*a == "--region" || *a == REGION)))
            .chain(extra.iter().copied())
            .collect();
        let output = run(with_google_token(world.command(&args))).await;
        expect_refused_naming(&output, flag, &args);
        assert_eq!(json_of(&output)["exit_code"], 2, "{args:?}");
    }

    // The same rules hold for SHIFTGATE_* variables and for the config file.
    let mut from_env =
        with_google_token(world.command(&["status", "--project", PROJECT, "--region", REGION]));
    from_env.env("SHIFTGATE_SERVICE", "web?updateMask=traffic");
    let output = run(from_env).await;
    assert_eq!(output.status.code(), Some(2), "{}", stderr_of(&output));
    assert!(stderr_of(&output).contains("--service"));

    std::fs::write(
        world.workdir.join("shiftgate.toml"),
        "[environments.prod]\nproject = \"loopcloser\"\nregion = \"us-central1\"\nservice = \"nope/../web\"\n",
    )
    .unwrap();
    let from_file = world.command(&["rollback", "--env", "prod", "--to", "web-00001"]);
    let output = run(with_google_token(from_file)).await;
    assert_eq!(output.status.code(), Some(2), "{}", stderr_of(&output));
    assert!(
        stderr_of(&output).contains("environments.prod.service"),
        "{}",
        stderr_of(&output)
    );

    assert!(
        world.sim.model().request_log().is_empty(),
        "no request at all"
    );
    assert_eq!(world.sim.model().write_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_bad_name_and_no_api_listening_then_the_exit_is_2_not_3() {
    // A closed port: had a request been tried, the answer would be an API failure (3).
    let url = closed_port_url();
    let dir = workdir("input-closed");
    for service in ["web?updateMask=traffic", "nope/../web"] {
        let mut command = with_google_token(shiftgate(
            &dir,
            &[
                "rollback",
                "--project",
                PROJECT,
                "--region",
                REGION,
                "--service",
                service,
                "--to",
                "web-1",
            ],
        ));
        command.env("SHIFTGATE_CLOUD_RUN_URL", &url);
        let output = run(command).await;
        assert_eq!(output.status.code(), Some(2), "{}", stderr_of(&output));
    }
}

// ---------------------------------------------------------------------------------------------
// Hostile text under GitHub Actions.

const HOSTILE: &str =
    "{\"status\":\"error\"}\n::add-mask::x\n::stop-commands::tok\r\n::warning::x\n##[error]y @team";

/// Lines that a runner would read as a workflow command must be shiftgate's own: the mask of the
/// tokens it was given, log groups, and titled annotations (whose data is escaped).
fn assert_only_own_workflow_commands(output: &Output) {
    let streams = [
        String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr_of(output),
    ];
    for stream in &streams {
        // The runner splits on \r as well as \n.
        for line in stream.split(['\n', '\r']) {
            let line = line.trim_start();
            if !(line.starts_with("::") || line.starts_with("##")) {
                continue;
            }
            let own = line == "::add-mask::test-token"
                || line == "::add-mask::test-google-token"
                || line.starts_with("::group::")
                || line == "::endgroup::"
                || line.starts_with("::error title=")
                || line.starts_with("::warning title=");
            assert!(
                own,
                "a line from outside reads as a workflow command: {line:?}\n{stream}"
            );
        }
    }
}

fn actions_env(command: &mut Command, dir: &Path) -> (PathBuf, PathBuf) {
    let outputs = dir.join("github_output");
    let summary = dir.join("step_summary");
    let _ = std::fs::remove_file(&outputs);
    let _ = std::fs::remove_file(&summary);
    command
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_OUTPUT", &outputs)
        .env("GITHUB_STEP_SUMMARY", &summary);
    (outputs, summary)
}

/// Every `name<<DELIMITER` entry of `$GITHUB_OUTPUT` is closed by its delimiter, and nothing sits
/// between entries: no value could have added an output of its own.
fn assert_outputs_well_formed(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let (name, delimiter) = line
            .split_once("<<")
            .unwrap_or_else(|| panic!("{line:?}\n{text}"));
        assert!(delimiter.starts_with("ghadelimiter_"), "{text}");
        names.push(name.to_string());
        assert!(lines.any(|l| l == delimiter), "{text}");
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_health_body_with_workflow_commands_and_mentions_when_a_rollout_fails_under_actions_then_nothing_runs_or_mentions()
 {
    let github = GitHubSim::start(Clock::new(), "loopcloser", "app")
        .await
        .unwrap();
    let world = BinaryWorld::start("input-hostile-health").await;
    world.sim.register_image(
        CANDIDATE_IMAGE,
        Behavior::unhealthy("1.1.0").with_health_body(HOSTILE),
    );
    let mut command = with_google_token(world.service_command(&[
        "rollout",
        "--json",
        "--image",
        CANDIDATE_IMAGE,
        "--repo",
        "loopcloser/app",
        "--steps",
        "50,100",
        "--bake",
        "1s",
        "--interval",
        "250ms",
        "--min-requests",
        "1",
        "--metrics-delay",
        "0s",
    ]));
    with_github(&mut command, &github);
    let (outputs, summary) = actions_env(&mut command, &world.workdir);

    let output = run(command).await;

    let stderr = stderr_of(&output);
    assert!(matches!(output.status.code(), Some(1 | 3)), "{stderr}");
    assert_eq!(world.split(), world.stable_only());
    assert!(
        stderr.contains("::add-mask::x"),
        "the body is shown, escaped: {stderr}"
    );
    assert_only_own_workflow_commands(&output);

    let summary = std::fs::read_to_string(&summary).unwrap();
    assert!(
        summary.contains("::add-mask::x"),
        "the reason is in the summary: {summary}"
    );
    assert!(!summary.contains("@team"), "{summary}");
    let names = assert_outputs_well_formed(&std::fs::read_to_string(&outputs).unwrap());
    assert!(names.contains(&"outcome".to_string()), "{names:?}");

    let result = json_of(&output);
    assert_eq!(result["incident"]["filed"], true, "{}", result["incident"]);
    let issues = github.issues();
    assert_eq!(issues.len(), 1);
    let body = &issues[0].body;
    assert!(
        body.contains("::add-mask::x"),
        "the reason is quoted in the issue: {body}"
    );
    assert!(!body.contains("@team"), "{body}");
    assert!(
        body.starts_with("<!-- shiftgate-incident: projects/"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_an_api_error_with_workflow_commands_when_status_runs_under_actions_then_nothing_runs()
 {
    use axum::http::StatusCode;
    // A Cloud Run stand-in whose every answer is a Google error carrying hostile text.
    let app = axum::Router::new().fallback(|| async {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({"error": {
                "code": 400,
                "message": HOSTILE,
                "status": "INVALID_ARGUMENT",
            }})),
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let dir = workdir("input-hostile-api");
    let mut command = with_google_token(shiftgate(&dir, &["status"]));
    command
        .args(SERVICE_ARGS)
        .env("SHIFTGATE_CLOUD_RUN_URL", &url)
        .env("SHIFTGATE_LOG", "debug");
    let (_, summary) = actions_env(&mut command, &dir);

    let output = run(command).await;

    assert_eq!(output.status.code(), Some(3), "{}", stderr_of(&output));
    assert!(
        stderr_of(&output).contains("add-mask::x"),
        "{}",
        stderr_of(&output)
    );
    assert_only_own_workflow_commands(&output);
    let summary = std::fs::read_to_string(&summary).unwrap();
    assert!(!summary.contains("@team"), "{summary}");
}

// ---------------------------------------------------------------------------------------------
// Refused arguments, as a person and a workflow see them.

/// The `name<<DELIMITER … DELIMITER` entries of a `$GITHUB_OUTPUT` file, as name and value.
fn output_values(text: &str) -> Vec<(String, String)> {
    let mut values = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let (name, delimiter) = line.split_once("<<").unwrap();
        let value: Vec<&str> = lines.by_ref().take_while(|l| *l != delimiter).collect();
        values.push((name.to_string(), value.join("\n")));
    }
    values
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_bad_value_when_it_comes_from_a_variable_or_the_command_line_then_the_refusal_names_its_source_and_the_range_in_words()
 {
    let dir = workdir("input-refusal-words");
    let mut cases = Vec::new();

    // Given SHIFTGATE_DRY_RUN=yes, when a rollout starts.
    let mut from_env = shiftgate(&dir, &["rollout", "--image", CANDIDATE_IMAGE]);
    from_env.args(SERVICE_ARGS).env("SHIFTGATE_DRY_RUN", "yes");
    cases.push((
        from_env,
        "error: SHIFTGATE_DRY_RUN (--dry-run): expected true or false, got \"yes\"",
    ));
    // Given --min-requests 0 on the command line, even with the variable set too.
    let mut from_flag = shiftgate(&dir, &["rollout", "--min-requests", "0"]);
    from_flag.env("SHIFTGATE_MIN_REQUESTS", "100");
    cases.push((
        from_flag,
        "error: --min-requests: must be a whole number between 1 and 1000000000, got \"0\"",
    ));
    // Given a count clap used to bound by itself.
    cases.push((
        shiftgate(&dir, &["simulate", "--runs", "0"]),
        "error: --runs: must be a whole number between 1 and 1000000, got \"0\"",
    ));
    // Given a value that is not one of a list.
    let mut metrics = shiftgate(&dir, &["rollout", "--image", CANDIDATE_IMAGE]);
    metrics.env("SHIFTGATE_METRICS", "datadog");
    cases.push((
        metrics,
        "error: SHIFTGATE_METRICS (--metrics): expected cloud-monitoring or prometheus, got \"datadog\"",
    ));

    for (command, expected) in cases {
        let output = run(command).await;

        // Then it is refused (exit 2) with one line that says where the value came from, what
        // is wrong with it and what would do, as config errors read.
        assert_eq!(output.status.code(), Some(2), "{}", stderr_of(&output));
        assert_eq!(stderr_of(&output).trim_end(), expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_github_actions_when_an_argument_is_refused_then_an_error_annotation_and_the_outputs_say_so()
 {
    // Given a step under GitHub Actions whose steps are out of order.
    let dir = workdir("input-actions-refusal");
    let mut command = shiftgate(&dir, &["rollout", "--steps", "10,50,25"]);
    command.args(SERVICE_ARGS);
    let (outputs, _summary) = actions_env(&mut command, &dir);

    // When shiftgate runs.
    let output = run(command).await;

    // Then it exits 2 with an error annotation naming the flag.
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let annotation = stderr
        .lines()
        .find(|line| line.starts_with("::error title=shiftgate rollout::"))
        .unwrap_or_else(|| panic!("no ::error annotation: {stderr}"));
    assert!(annotation.contains("--steps"), "{annotation}");
    assert_only_own_workflow_commands(&output);

    // And the step's outputs say it failed, and how.
    let text = std::fs::read_to_string(&outputs).unwrap();
    assert_outputs_well_formed(&text);
    let values = output_values(&text);
    assert!(
        values.contains(&("outcome".into(), "error".into())),
        "{values:?}"
    );
    assert!(
        values.contains(&("exit-code".into(), "2".into())),
        "{values:?}"
    );
}
