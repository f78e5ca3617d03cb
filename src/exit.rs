//! The process exit codes every command shares, each meaning written down once (DESIGN.md's table).
//! Results carry one; `--json` shows it as its number, and `main` hands it to the OS.

use serde::{Serialize, Serializer};

/// How a command ended, as the process sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ExitCode {
    /// Done: promoted, run succeeded, issue filed, all healthy.
    Ok = 0,
    /// The thing checked failed: a gate failed and traffic went back to stable, a run concluded
    /// other than success, an environment is unhealthy, or a person took the service over.
    CheckFailed = 1,
    /// Bad input or configuration; nothing was changed.
    BadInput = 2,
    /// An API failed; traffic was restored to stable where possible, and the result says the
    /// final split.
    ApiFailed = 3,
    /// Restoring traffic failed: the service needs a person (a SEV-1 incident is filed).
    RollbackFailed = 4,
    /// Interrupted (SIGINT, SIGTERM, SIGHUP); a rollout restores stable traffic before exiting.
    Interrupted = 130,
}

impl ExitCode {
    /// The number the process exits with.
    pub fn number(self) -> u8 {
        self as u8
    }
}

impl Serialize for ExitCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u8(self.number())
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        std::process::ExitCode::from(code.number())
    }
}

impl std::fmt::Display for ExitCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.number())
    }
}

/// Scripts and tests speak of exit codes as numbers: `assert_eq!(report.exit_code(), 1)`.
impl PartialEq<i32> for ExitCode {
    fn eq(&self, number: &i32) -> bool {
        i32::from(self.number()) == *number
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_code_is_the_number_design_md_gives_it_in_json_and_for_the_process() {
        for (code, number) in [
            (ExitCode::Ok, 0),
            (ExitCode::CheckFailed, 1),
            (ExitCode::BadInput, 2),
            (ExitCode::ApiFailed, 3),
            (ExitCode::RollbackFailed, 4),
            (ExitCode::Interrupted, 130),
        ] {
            assert_eq!(code, number);
            assert_eq!(serde_json::to_string(&code).unwrap(), number.to_string());
            assert_eq!(
                std::process::ExitCode::from(code),
                std::process::ExitCode::from(number as u8)
            );
        }
    }
}
