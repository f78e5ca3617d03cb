//! GitHub Actions workflow commands (`::name key=value::message`): whether a runner reads them
//! here, the escaping rules for their text, and writing one to the log.

use std::io::Write as _;

/// True inside a GitHub Actions job, where the runner reads workflow commands from the log.
pub fn is_actions() -> bool {
    std::env::var("GITHUB_ACTIONS").is_ok_and(|value| value == "true")
}

/// Escapes a workflow command's message: `%`, `\r`, `\n`.
pub fn escape_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a workflow command's property value: the data rules plus `:` and `,`.
pub fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

/// One workflow command line: `::name key=value,key=value::message`.
pub fn workflow_command(name: &str, properties: &[(&str, &str)], message: &str) -> String {
    let properties = properties
        .iter()
        .map(|(key, value)| format!("{key}={}", escape_property(value)))
        .collect::<Vec<_>>()
        .join(",");
    let separator = if properties.is_empty() { "" } else { " " };
    format!("::{name}{separator}{properties}::{}", escape_data(message))
}

/// Writes one workflow command (made by [`workflow_command`]) to stderr as it is: the runner reads
/// commands from both streams, and stdout is kept for the `--json` result. Write errors are
/// ignored: a closed stderr must never end a rollout half-way.
pub fn emit(command: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{command}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_and_properties_are_escaped_per_the_workflow_command_rules() {
        assert_eq!(escape_data("50% done\r\nnext"), "50%25 done%0D%0Anext");
        assert_eq!(escape_property("a:b,c%\n"), "a%3Ab%2Cc%25%0A");
        assert_eq!(
            workflow_command(
                "error",
                &[("title", "step 1: gate, failed")],
                "5% > 1%\nrolled"
            ),
            "::error title=step 1%3A gate%2C failed::5%25 > 1%25%0Arolled"
        );
        assert_eq!(workflow_command("endgroup", &[], ""), "::endgroup::");
    }
}
