//! Getting shiftgate and starting with it: completions and the man page through the binary, and
//! the release assets, Cargo.toml's binstall metadata and README's Install section naming the same files.

use std::path::Path;
use std::process::Command;

use crate::support::binary::{self, json_of, stderr_of};
use crate::support::world::{shiftgate, workdir};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap()
}

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

// --- The release assets, as three places name them ---

/// What release.yml says about its assets.
struct ReleaseWorkflow {
    targets: Vec<String>,
    /// The asset's file name with `$TAG` and `$TARGET` in it, as the build step copies it.
    asset_template: String,
    /// The shell line that writes SHA256SUMS.
    checksums_line: String,
}

impl ReleaseWorkflow {
    fn read() -> Self {
        let workflow = read(".github/workflows/release.yml");
        assert!(
            workflow.contains(r#"tags: ["v*.*.*"]"#),
            "releases are cut from vX.Y.Z tags"
        );
        let targets = workflow
            .lines()
            .filter_map(|line| line.trim().strip_prefix("- target: "))
            .map(str::to_string)
            .collect();
        let asset_template = workflow
            .lines()
            .find_map(|line| {
                line.trim()
                    .strip_prefix(r#"cp "target/$TARGET/release/shiftgate" "dist/"#)
            })
            .expect("the build step copies the binary into dist/")
            .trim_end_matches('"')
            .to_string();
        let checksums_line = workflow
            .lines()
            .map(str::trim)
            .find(|line| line.ends_with("> SHA256SUMS"))
            .expect("the release job writes SHA256SUMS")
            .to_string();
        assert!(
            workflow.contains("gh release create \"$TAG\"")
                && workflow.trim_end().ends_with("dist/*"),
            "every file in dist/, SHA256SUMS included, is a release asset"
        );
        Self {
            targets,
            asset_template,
            checksums_line,
        }
    }

    fn asset(&self, tag: &str, target: &str) -> String {
        self.asset_template
            .replace("$TAG", tag)
            .replace("$TARGET", target)
    }
}

fn package() -> toml::Table {
    read("Cargo.toml").parse::<toml::Table>().unwrap()["package"]
        .as_table()
        .unwrap()
        .clone()
}

/// binstall's template language, for the variables a non-Windows target uses.
fn render_binstall(template: &str, package: &toml::Table, target: &str) -> String {
    let rendered = template
        .replace("{ repo }", package["repository"].as_str().unwrap())
        .replace("{ version }", package["version"].as_str().unwrap())
        .replace("{ name }", package["name"].as_str().unwrap())
        .replace("{ bin }", "shiftgate")
        .replace("{ target }", target)
        .replace("{ binary-ext }", "");
    assert!(
        !rendered.contains('{'),
        "unknown template variable: {rendered}"
    );
    rendered
}

#[test]
fn binstall_metadata_points_at_the_release_assets_the_workflow_publishes() {
    let workflow = ReleaseWorkflow::read();
    assert_eq!(
        workflow.targets,
        [
            "x86_64-unknown-linux-musl",
            "aarch64-unknown-linux-musl",
            "aarch64-apple-darwin"
        ]
    );
    let package = package();
    let binstall = package["metadata"]["binstall"].as_table().unwrap();
    let repository = package["repository"].as_str().unwrap();
    let tag = format!("v{}", package["version"].as_str().unwrap());
    // The workflow uploads the bare binary, so binstall must not look for an archive.
    assert_eq!(binstall["pkg-fmt"].as_str(), Some("bin"));
    for target in &workflow.targets {
        assert_eq!(
            render_binstall(binstall["pkg-url"].as_str().unwrap(), &package, target),
            format!(
                "{repository}/releases/download/{tag}/{}",
                workflow.asset(&tag, target)
            )
        );
        assert_eq!(
            render_binstall(binstall["bin-dir"].as_str().unwrap(), &package, target),
            "shiftgate"
        );
    }
}

/// The Install section of README.md.
fn readme_install() -> String {
    let readme = read("README.md");
    let section = readme
        .split("\n## Install\n")
        .nth(1)
        .expect("README has an Install section");
    section.split("\n## ").next().unwrap().to_string()
}

/// The value of `NAME=...` / `NAME="..."` in the Install section's download script.
fn script_value(install: &str, name: &str) -> String {
    install
        .lines()
        .flat_map(|line| line.split_whitespace())
        .find_map(|word| word.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("{name}= in {install}"))
        .trim_matches('"')
        .to_string()
}

#[test]
fn the_readme_downloads_the_assets_the_workflow_publishes_for_this_version() {
    let readme = read("README.md");
    assert!(
        readme.starts_with(
            "# shiftgate\n\n```\ncargo run --release -- demo     # watch a full rollout on a \
             built-in simulated Cloud Run (about 40 s)\ncargo test                      # run the \
             tests (no network, no cloud account needed)\n```\n\n## Install\n"
        ),
        "the first two commands come first, then Install"
    );
    let install = readme_install();
    let workflow = ReleaseWorkflow::read();
    let package = package();
    let repository = package["repository"].as_str().unwrap();
    let tag = format!("v{}", package["version"].as_str().unwrap());

    assert_eq!(script_value(&install, "version"), tag);
    for target in &workflow.targets {
        assert!(install.contains(target.as_str()), "{target} in {install}");
        let url = format!(
            "{}/{}",
            script_value(&install, "base"),
            script_value(&install, "asset")
        )
        .replace("$version", &tag)
        .replace("$target", target);
        assert_eq!(
            url,
            format!(
                "{repository}/releases/download/{tag}/{}",
                workflow.asset(&tag, target)
            )
        );
    }
    assert!(install.contains("\"$base/SHA256SUMS\""), "{install}");
    assert!(install.contains(&format!(
        "cargo install --locked --git {repository} shiftgate"
    )));
    assert!(install.contains("cargo binstall shiftgate"));
    assert!(install.contains("shiftgate completions bash"));
    assert!(install.contains("shiftgate man"));
}

#[test]
fn the_readme_check_accepts_the_workflows_sha256sums_and_refuses_a_changed_binary() {
    let install = readme_install();
    let workflow = ReleaseWorkflow::read();
    let tag = script_value(&install, "version");
    let check = install
        .lines()
        .find(|line| line.starts_with("grep ") && line.contains("sha256sum -c"))
        .expect("the README checks the download with sha256sum -c");
    let check = check.split(" #").next().unwrap();

    // The release job's dist/: every target's binary, then its own checksums line.
    let dist = workdir("install-sha256sums");
    for target in &workflow.targets {
        std::fs::write(dist.join(workflow.asset(&tag, target)), target.as_bytes()).unwrap();
    }
    let sums = Command::new("bash")
        .args(["-c", &workflow.checksums_line])
        .current_dir(&dist)
        .status()
        .unwrap();
    assert!(sums.success());

    let run_check = |target: &str| {
        Command::new("bash")
            .arg("-c")
            .arg(format!(
                "set -o pipefail\nversion={tag} target={target}\nasset=\"{}\"\n{check}",
                script_value(&install, "asset")
            ))
            .current_dir(&dist)
            .output()
            .unwrap()
    };
    let target = &workflow.targets[0];
    let ok = run_check(target);
    assert!(ok.status.success(), "{}", stderr_of(&ok));
    assert_eq!(
        stdout_of(&ok),
        format!("{}: OK\n", workflow.asset(&tag, target))
    );

    std::fs::write(dist.join(workflow.asset(&tag, target)), b"tampered").unwrap();
    let refused = run_check(target);
    assert!(
        !refused.status.success(),
        "a changed binary fails the check"
    );
}
