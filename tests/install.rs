//! Getting shiftgate and starting with it: completions and the man page through the binary.
//! (No config, no credentials: these work in any directory.)

use crate::support::binary::{self, json_of, stderr_of};
use crate::support::world::{shiftgate, workdir};

fn stdout_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A directory whose shiftgate.toml does not load: commands that need no config must not read it.
fn workdir_with_a_broken_config(name: &str) -> std::path::PathBuf {
    let dir = workdir(name);
    std::fs::write(dir.join("shiftgate.toml"), "this is = = not toml\n").unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bash_completion_offers_the_commands_and_their_flags() {
    let dir = workdir_with_a_broken_config("completions-bash");

    let output = binary::run(shiftgate(&dir, &["completions", "bash"])).await;

    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let script = stdout_of(&output);
    assert!(script.contains("rollout"), "{script}");
    assert!(script.contains("--max-latency"), "{script}");
    assert!(
        script.contains("complete -F"),
        "a bash completion script: {script}"
    );
    assert_eq!(stderr_of(&output), "", "nothing but the script");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shell_gets_a_script() {
    let dir = workdir("completions-shells");
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let output = binary::run(shiftgate(&dir, &["completions", shell])).await;
        assert_eq!(
            output.status.code(),
            Some(0),
            "{shell}: {}",
            stderr_of(&output)
        );
        assert!(stdout_of(&output).contains("rollout"), "{shell}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_shell_exits_2_naming_the_valid_ones() {
    let output = binary::run(shiftgate(
        &workdir("completions-tcsh"),
        &["completions", "tcsh"],
    ))
    .await;

    assert_eq!(output.status.code(), Some(2));
    let stderr = stderr_of(&output);
    assert!(stderr.contains("tcsh"), "{stderr}");
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        assert!(stderr.contains(shell), "{shell} in {stderr}");
    }
    assert!(output.stdout.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_man_page_is_roff_for_shiftgate_and_lists_its_commands() {
    let dir = workdir_with_a_broken_config("man");

    let output = binary::run(shiftgate(&dir, &["man"])).await;

    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let page = stdout_of(&output);
    // roff: requests only (the apostrophe preamble clap_mangen writes) up to the title.
    let before_title: Vec<&str> = page
        .lines()
        .take_while(|line| !line.starts_with(".TH "))
        .collect();
    assert!(
        before_title.iter().all(|line| line.starts_with('.')),
        "{page}"
    );
    assert!(page.contains("\n.TH shiftgate 1 "), "{page}");
    assert!(page.contains("\n.SH NAME\n"), "{page}");
    assert!(page.contains("rollout"), "{page}");
    assert!(page.contains("completions"), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commands_man_page_documents_its_options() {
    let output = binary::run(shiftgate(&workdir("man-rollout"), &["man", "rollout"])).await;

    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let page = stdout_of(&output);
    assert!(page.contains("\n.TH shiftgate-rollout 1 "), "{page}");
    assert!(page.contains("max\\-latency"), "{page}");

    let unknown = binary::run(shiftgate(&workdir("man-unknown"), &["man", "deploy"])).await;
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        stderr_of(&unknown).contains("rollout"),
        "{}",
        stderr_of(&unknown)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_json_the_script_is_the_text_of_one_result_object() {
    let output = binary::run(shiftgate(
        &workdir("completions-json"),
        &["completions", "zsh", "--json"],
    ))
    .await;

    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let result = json_of(&output);
    assert_eq!(result["command"], "completions");
    assert_eq!(result["outcome"], "done");
    assert_eq!(result["name"], "zsh");
    assert!(
        result["text"]
            .as_str()
            .unwrap()
            .contains("#compdef shiftgate")
    );
}
