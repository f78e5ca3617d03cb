//! `shiftgate simulate` through the binary: the judges compared on the same seeded traffic, the
//! numbers in `--json`, the plot, and bad scenarios refused before anything runs.

use crate::support::binary::{json_of, run, stderr_of};
use crate::support::world::{expect_refused_naming, shiftgate, workdir};

#[tokio::test]
async fn given_a_doubling_of_5xx_when_judges_are_compared_then_only_the_sequential_one_catches_it()
{
    let dir = workdir("simulate-compare");
    let svg = dir.join("judge.svg");
    let svg_arg = svg.to_str().unwrap().to_string();
    let output = run(shiftgate(
        &dir,
        &[
            "simulate",
            "--json",
            "--compare",
            "--runs",
            "60",
            "--seed",
            "5",
            "--scenario",
            "500:1%:2%",
            "--scenario",
            "50:4.5%:4.5%",
            "--svg",
            &svg_arg,
        ],
    ))
    .await;

    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let result = json_of(&output);
    assert_eq!(result["command"], "simulate");
    assert_eq!(
        result["outcome"], "done",
        "custom scenarios carry no bounds"
    );
    let doubled = &result["scenarios"][0]["judges"];
    let judges: Vec<&str> = doubled
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["judge"].as_str().unwrap())
        .collect();
    assert_eq!(judges, ["sequential", "threshold", "counter"]);
    assert!(
        doubled[0]["p_rollback"].as_f64().unwrap() >= 0.95,
        "{doubled}"
    );
    assert_eq!(doubled[1]["p_rollback"], 0.0, "under the 5% cap: {doubled}");
    let near_cap = &result["scenarios"][1]["judges"];
    assert!(
        near_cap[0]["p_rollback"].as_f64().unwrap() <= 0.05,
        "{near_cap}"
    );
    assert!(
        near_cap[1]["p_rollback"].as_f64().unwrap() >= 0.5,
        "{near_cap}"
    );
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert_eq!(plot.matches("<circle").count(), 3);
}

#[tokio::test]
async fn the_human_table_names_each_scenario_and_whether_its_bound_held() {
    let dir = workdir("simulate-table");
    let output = run(shiftgate(&dir, &["simulate", "--runs", "20"])).await;

    let stdout = String::from_utf8_lossy(&output.stdout);
    for name in ["A1 ", "A8 ", "A15 "] {
        assert!(stdout.contains(name), "{stdout}");
    }
    assert!(stdout.contains("P(rollback) ≤ 2%"), "{stdout}");
    assert!(
        matches!(output.status.code(), Some(0) | Some(1)),
        "0 when every bound held, 1 when one was missed: {}",
        stderr_of(&output)
    );
}

#[tokio::test]
async fn bad_scenarios_and_policies_are_refused_naming_the_flag() {
    let dir = workdir("simulate-refused");
    for (args, flag) in [
        (vec!["simulate", "--scenario", "50:1%"], "--scenario"),
        (vec!["simulate", "--scenario", "50:1%:200%"], "--scenario"),
        (vec!["simulate", "--runs", "0"], "--runs"),
        (vec!["simulate", "--judge", "counter"], "--judge"),
        (vec!["simulate", "--margin", "-5%"], "--margin"),
        (vec!["simulate", "--cold-start", "60s"], "--cold-start"),
    ] {
        let output = run(shiftgate(&dir, &args)).await;
        expect_refused_naming(&output, flag, &args);
    }
}

#[tokio::test]
async fn a_reader_that_stops_early_ends_the_table_not_the_process() {
    let dir = workdir("simulate-closed-pipe");
    let mut command = shiftgate(&dir, &["simulate", "--runs", "5"]);
    command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let output = tokio::task::spawn_blocking(move || {
        let mut child = command.spawn().unwrap();
        // `shiftgate simulate | head -0`: the reader is gone before the table is written.
        drop(child.stdout.take());
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();

    let stderr = stderr_of(&output);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        matches!(output.status.code(), Some(0) | Some(1)),
        "{stderr}"
    );
}
