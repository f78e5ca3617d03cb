//! The verdict of one measurement (a health answer, a window of error counts): Pass, Fail or
//! Inconclusive, with its reason. "No data" is never a pass.

use serde::Serialize;

/// The outcome of one check. "No data" is never a pass: it is `Inconclusive`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", content = "reason", rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail(String),
    Inconclusive(String),
}

impl Verdict {
    pub fn is_pass(&self) -> bool {
        matches!(self, Verdict::Pass)
    }

    pub fn is_fail(&self) -> bool {
        matches!(self, Verdict::Fail(_))
    }

    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail(_) => "fail",
            Verdict::Inconclusive(_) => "inconclusive",
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            Verdict::Pass => None,
            Verdict::Fail(reason) | Verdict::Inconclusive(reason) => Some(reason),
        }
    }
}
