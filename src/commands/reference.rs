//! `shiftgate completions` and `shiftgate man`: shell completion scripts and roff man pages,
//! generated from the clap definition in cli.rs so they always describe this binary's flags.

use clap::CommandFactory;
use serde::Serialize;

use crate::actions::ResultFacts;
use crate::cli::{Cli, CompletionsArgs, ManArgs};
use crate::commands::result::CommandResult;
use crate::commands::{CommandError, Context};
use crate::exit::ExitCode;
use crate::output::print_text;

/// `shiftgate completions --json` / `shiftgate man --json`: the generated text, as it would have
/// been printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReferenceResult {
    pub outcome: &'static str,
    /// `bash`, `zsh`, … for completions; the page's file name (`shiftgate-rollout.1`) for man.
    pub name: String,
    pub text: String,
    pub exit_code: ExitCode,
}

impl ReferenceResult {
    fn done(name: String, text: String) -> Self {
        Self {
            outcome: "done",
            name,
            text,
            exit_code: ExitCode::Ok,
        }
    }

    pub fn facts<'a>(&'a self, command: &'a str) -> ResultFacts<'a> {
        ResultFacts::new(command, self.outcome, self.exit_code)
    }
}

/// The completion script for `shell`.
pub fn completion_script(shell: clap_complete::Shell) -> String {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "shiftgate", &mut script);
    String::from_utf8(script).expect("clap_complete writes UTF-8")
}

/// The man page of shiftgate (`None`) or of one command, and its file name.
pub fn man_page(command: Option<&str>) -> Result<(String, String), CommandError> {
    // Built, so that a command's page is titled and named `shiftgate-COMMAND` and its synopsis
    // reads `shiftgate COMMAND`.
    let mut cli = Cli::command().disable_help_subcommand(true);
    cli.build();
    let page = match command {
        None => cli,
        Some(name) => cli.find_subcommand(name).cloned().ok_or_else(|| {
            CommandError::bad_input(format!("shiftgate has no command {name:?} to show"))
        })?,
    };
    // No date (the page must not change with the day it is printed), but an explicit empty one:
    // roff does not quote an empty argument, and without it the source would read as the date.
    let man = clap_mangen::Man::new(page)
        .date("\"\"")
        .source(format!("shiftgate {}", env!("CARGO_PKG_VERSION")))
        .manual("shiftgate manual");
    let mut roff = Vec::new();
    man.render(&mut roff)
        .map_err(|error| CommandError::bad_input(format!("rendering the man page: {error}")))?;
    let roff = String::from_utf8(roff).expect("clap_mangen writes UTF-8");
    Ok((man.get_filename(), roff))
}

pub async fn completions(
    context: &Context,
    args: CompletionsArgs,
) -> Result<CommandResult, CommandError> {
    let result = ReferenceResult::done(args.shell.to_string(), completion_script(args.shell));
    print_unless_json(context, &result);
    Ok(CommandResult::Completions(result))
}

pub async fn man(context: &Context, args: ManArgs) -> Result<CommandResult, CommandError> {
    let (file_name, roff) = man_page(args.command.as_deref())?;
    let result = ReferenceResult::done(file_name, roff);
    print_unless_json(context, &result);
    Ok(CommandResult::Man(result))
}

/// Without `--json` the text itself is the output, so that `shiftgate man > shiftgate.1` and
/// `source <(shiftgate completions bash)` work.
fn print_unless_json(context: &Context, result: &ReferenceResult) {
    if !context.json {
        print_text(&result.text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shell_gets_a_script_naming_the_commands() {
        use clap::ValueEnum;
        for shell in clap_complete::Shell::value_variants() {
            let script = completion_script(*shell);
            assert!(script.contains("rollout"), "{shell}: {script}");
        }
    }

    #[test]
    fn a_command_page_is_titled_with_the_command() {
        let (file_name, roff) = man_page(Some("rollout")).unwrap();
        assert_eq!(file_name, "shiftgate-rollout.1");
        assert!(roff.starts_with(".ie"), "{roff}");
        let title = format!(
            "\n.TH shiftgate-rollout 1 \"\" \"shiftgate {}\" \"shiftgate manual\"\n",
            env!("CARGO_PKG_VERSION")
        );
        assert!(roff.contains(&title), "{roff}");
        assert!(roff.contains("max\\-latency"), "{roff}");
    }
}
