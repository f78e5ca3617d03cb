//! The evidence a rollback's incident carries: the failing revision's last error log entries, the
//! service's recent revisions and the commands that undo or retry the change, gathered within a bound.

pub mod redact;
mod render;

use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use crate::rollout::engine::Interrupt;
use crate::rollout::ports::{Platform, PortResult, RevisionInfo};

/// How many error entries an incident shows.
pub const ERROR_LINES: usize = 20;
/// How many characters of each entry's message are shown.
pub const MESSAGE_CHARS: usize = 200;
/// How many revisions an incident lists, newest first.
pub const REVISIONS_SHOWN: usize = 10;
/// All gathering together may take this long; what is not in by then is a note.
pub const GATHER_TIMEOUT: Duration = Duration::from_secs(15);

/// Which entries to read: one revision's errors since a time, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogQuery {
    pub service: String,
    pub revision: String,
    pub since: SystemTime,
    pub limit: usize,
}

/// One log entry as the incident shows it (before redaction and quoting).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// RFC 3339, as the log gave it.
    pub time: String,
    pub severity: String,
    /// The HTTP status of a request log entry.
    pub status: Option<u16>,
    pub message: String,
}

/// The entries a search found, and whether it stopped before it was done (Cloud Logging gave a
/// token to go on with when the pages or the time ran out).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ErrorEntries {
    pub lines: Vec<LogLine>,
    pub incomplete: bool,
}

/// Where error log entries come from (Cloud Logging; a fake in tests).
#[async_trait]
pub trait ErrorLogs: Send + Sync {
    /// The latest entries matching `query`, newest first, at most `query.limit`.
    async fn recent_errors(&self, query: &LogQuery) -> PortResult<ErrorEntries>;
}

/// What the rollout was asked to do, for the commands that undo or retry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retarget {
    /// `--env NAME` when the rollout named an environment, else the coordinates.
    pub environment: Option<String>,
    pub project: String,
    pub region: String,
    pub service: String,
    /// `--config FILE` when the rollout was given one.
    pub config: Option<String>,
    /// The environment names several regions (`regions = [...]`): a rollback and a rollout of one
    /// revision need `--region` with the one that failed.
    pub several_regions: bool,
}

/// A command to run and what it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remedy {
    pub purpose: String,
    pub command: String,
}

/// Everything gathered for one incident. A part that could not be had is the reason why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    pub stable: String,
    pub candidate: String,
    pub since: SystemTime,
    pub errors: Result<ErrorEntries, String>,
    pub revisions: Result<Vec<RevisionInfo>, String>,
    pub remedies: Vec<Remedy>,
    /// When the evidence was gathered (revision ages are counted to it).
    pub at: SystemTime,
    /// Secret values to take out of log lines wherever they appear (the tokens shiftgate holds).
    pub secrets: Vec<String>,
}

impl Evidence {
    /// The Markdown sections for the incident body.
    pub fn markdown(&self) -> String {
        render::markdown(self)
    }
}

/// The facts of the rolled-back change that gathering needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub stable: String,
    pub candidate: String,
    pub image: Option<String>,
    /// When the rollout began: entries before it are not this rollout's.
    pub since: SystemTime,
    pub target: Retarget,
}

/// Why a part is missing when the interrupt was already raised before gathering began.
pub const NOT_GATHERED: &str = "evidence not gathered: interrupted";
/// Why a part is missing when the interrupt arrived while it was being read.
pub const INTERRUPTED: &str = "interrupted before it was read";

/// `read` bounded by `timeout`, given up at once when the interrupt arrives.
async fn bounded<T>(
    read: impl Future<Output = PortResult<T>>,
    timeout: Duration,
    interrupt: &Interrupt,
) -> Result<T, String> {
    tokio::select! {
        biased;
        _ = interrupt.fired() => Err(INTERRUPTED.to_string()),
        answer = tokio::time::timeout(timeout, read) => match answer {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err(format!("no answer within {}s", timeout.as_secs())),
        },
    }
}

/// Reads the candidate's errors and the revisions at the same time, each bounded by `timeout`
/// (both together take no longer), and builds the commands. Never fails: a part that cannot be
/// had says why. A cancelled runner has seconds: when the interrupt is raised, reading stops at
/// once and what is in is kept; when it was raised before, nothing is read.
pub async fn gather(
    logs: &dyn ErrorLogs,
    platform: &dyn Platform,
    change: &Change,
    timeout: Duration,
    interrupt: &Interrupt,
    now: impl Fn() -> SystemTime,
) -> Evidence {
    let already = interrupt.is_set();
    let errors = async {
        if change.candidate.is_empty() {
            return Err("no candidate revision was created".to_string());
        }
        if already {
            return Err(NOT_GATHERED.to_string());
        }
        let query = LogQuery {
            service: change.target.service.clone(),
            revision: change.candidate.clone(),
            since: change.since,
            limit: ERROR_LINES,
        };
        bounded(logs.recent_errors(&query), timeout, interrupt).await
    };
    let revisions = async {
        if already {
            return Err(NOT_GATHERED.to_string());
        }
        bounded(platform.list_revisions(), timeout, interrupt).await
    };
    let (errors, revisions) = tokio::join!(errors, revisions);
    Evidence {
        stable: change.stable.clone(),
        candidate: change.candidate.clone(),
        since: change.since,
        errors,
        revisions,
        remedies: remedies(change),
        at: now(),
        secrets: crate::mask::TOKEN_VARIABLES
            .iter()
            .filter_map(|name| std::env::var(name).ok())
            .filter(|value| !value.trim().is_empty())
            .collect(),
    }
}

/// A word as a POSIX shell reads it: as is when it holds only safe characters, else single-quoted.
fn shell_word(word: &str) -> String {
    let safe = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@=+,%".contains(c));
    if safe {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The commands that undo the change (traffic back on stable) and retry it (the same revision,
/// or the same image as a new revision), addressed as the rollout was.
pub fn remedies(change: &Change) -> Vec<Remedy> {
    let target = &change.target;
    let mut address = String::new();
    if let Some(config) = &target.config {
        address.push_str(&format!(" --config {}", shell_word(config)));
    }
    match &target.environment {
        Some(environment) => address.push_str(&format!(" --env {}", shell_word(environment))),
        None => address.push_str(&format!(
            " --project {} --region {} --service {}",
            shell_word(&target.project),
            shell_word(&target.region),
            shell_word(&target.service)
        )),
    }
    // Revisions are per region: undoing or retrying one names the region it is in.
    let one_region = if target.environment.is_some() && target.several_regions {
        format!("{address} --region {}", shell_word(&target.region))
    } else {
        address.clone()
    };
    let mut remedies = Vec::new();
    if !change.stable.is_empty() {
        remedies.push(Remedy {
            purpose: format!("Undo: send all traffic to stable {}", change.stable),
            command: format!(
                "shiftgate rollback{one_region} --to {}",
                shell_word(&change.stable)
            ),
        });
    }
    if !change.candidate.is_empty() {
        remedies.push(Remedy {
            purpose: format!("Retry the same revision {}", change.candidate),
            command: format!(
                "shiftgate rollout{one_region} --revision {}",
                shell_word(&change.candidate)
            ),
        });
    }
    if let Some(image) = &change.image {
        let purpose = if target.environment.is_some() && target.several_regions {
            "Retry from the image, as a new revision (after a fix, with the new tag); \
             it re-runs the whole pipeline, every region in waves"
        } else {
            "Retry from the image, as a new revision (after a fix, with the new tag)"
        };
        remedies.push(Remedy {
            purpose: purpose.to_string(),
            command: format!("shiftgate rollout{address} --image {}", shell_word(image)),
        });
    }
    remedies
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::ports::PortError;

    fn change(environment: Option<&str>) -> Change {
        Change {
            stable: "app-00001-old".into(),
            candidate: "app-00002-new".into(),
            image: Some("registry/app:v1.1.0".into()),
            since: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            target: Retarget {
                environment: environment.map(str::to_string),
                project: "p-1".into(),
                region: "us-central1".into(),
                service: "app".into(),
                config: None,
                several_regions: false,
            },
        }
    }

    #[test]
    fn given_an_environment_then_the_commands_name_it_else_the_coordinates() {
        let commands = |change: &Change| -> Vec<String> {
            remedies(change).into_iter().map(|r| r.command).collect()
        };
        assert_eq!(
            commands(&change(Some("prod"))),
            vec![
                "shiftgate rollback --env prod --to app-00001-old",
                "shiftgate rollout --env prod --revision app-00002-new",
                "shiftgate rollout --env prod --image registry/app:v1.1.0",
            ]
        );
        let mut odd = change(None);
        odd.image = Some("img:$(rm -rf /)".into());
        odd.target.config = Some("my config.toml".into());
        assert_eq!(
            commands(&odd),
            vec![
                "shiftgate rollback --config 'my config.toml' --project p-1 --region us-central1 --service app --to app-00001-old",
                "shiftgate rollout --config 'my config.toml' --project p-1 --region us-central1 --service app --revision app-00002-new",
                "shiftgate rollout --config 'my config.toml' --project p-1 --region us-central1 --service app --image 'img:$(rm -rf /)'",
            ]
        );
    }

    #[test]
    fn given_an_environment_in_several_regions_then_undo_and_revision_retry_name_the_failed_region()
    {
        let mut waves = change(Some("prod"));
        waves.target.region = "europe-west1".into();
        waves.target.several_regions = true;
        let remedies = remedies(&waves);
        let commands: Vec<&str> = remedies.iter().map(|r| r.command.as_str()).collect();
        assert_eq!(
            commands,
            vec![
                "shiftgate rollback --env prod --region europe-west1 --to app-00001-old",
                "shiftgate rollout --env prod --region europe-west1 --revision app-00002-new",
                "shiftgate rollout --env prod --image registry/app:v1.1.0",
            ]
        );
        assert_eq!(
            remedies[2].purpose,
            "Retry from the image, as a new revision (after a fix, with the new tag); it re-runs \
             the whole pipeline, every region in waves"
        );
        // Addressed by coordinates, the region is there already, once.
        let mut coordinates = change(None);
        coordinates.target.several_regions = true;
        assert_eq!(
            remedies_of(&coordinates)[0],
            "shiftgate rollback --project p-1 --region us-central1 --service app --to app-00001-old"
        );
    }

    fn remedies_of(change: &Change) -> Vec<String> {
        remedies(change).into_iter().map(|r| r.command).collect()
    }

    struct Logs(Result<ErrorEntries, PortError>, Option<Duration>);

    #[async_trait]
    impl ErrorLogs for Logs {
        async fn recent_errors(&self, query: &LogQuery) -> PortResult<ErrorEntries> {
            assert_eq!(
                (query.revision.as_str(), query.limit),
                ("app-00002-new", ERROR_LINES)
            );
            if let Some(wait) = self.1 {
                tokio::time::sleep(wait).await;
            }
            self.0.clone()
        }
    }

    /// A platform that only lists revisions.
    struct Revisions(Vec<RevisionInfo>);

    #[async_trait]
    impl Platform for Revisions {
        async fn read_service(&self) -> PortResult<crate::rollout::ports::ServiceState> {
            unreachable!("evidence reads no service")
        }
        async fn read_revision(&self, _: &str) -> PortResult<RevisionInfo> {
            unreachable!("evidence reads no single revision")
        }
        async fn list_revisions(&self) -> PortResult<Vec<RevisionInfo>> {
            Ok(self.0.clone())
        }
        async fn create_revision(
            &self,
            _: &crate::rollout::ports::NewRevision,
            _: &str,
            _: Duration,
        ) -> PortResult<crate::rollout::ports::ServiceState> {
            unreachable!("evidence changes nothing")
        }
        async fn set_traffic(
            &self,
            _: &crate::rollout::ports::TrafficChange,
            _: &str,
            _: Duration,
        ) -> PortResult<crate::rollout::ports::ServiceState> {
            unreachable!("evidence changes nothing")
        }
    }

    fn platform() -> Revisions {
        Revisions(vec![RevisionInfo {
            name: "app-00001-old".into(),
            ready: true,
            image: Some("registry/app:v1.0.0".into()),
            ..RevisionInfo::default()
        }])
    }

    #[tokio::test(start_paused = true)]
    async fn given_logging_refuses_or_hangs_then_the_evidence_says_why_and_keeps_the_rest() {
        let platform = platform();
        let now = || SystemTime::UNIX_EPOCH;
        let denied = Logs(
            Err(PortError::Rejected {
                status: 403,
                message: "PERMISSION_DENIED".into(),
            }),
            None,
        );
        let never = Interrupt::never();
        let evidence = gather(
            &denied,
            &platform,
            &change(None),
            GATHER_TIMEOUT,
            &never,
            now,
        )
        .await;
        assert_eq!(
            evidence.errors,
            Err("rejected (403): PERMISSION_DENIED".to_string())
        );
        assert!(evidence.revisions.is_ok(), "{:?}", evidence.revisions);
        assert_eq!(evidence.remedies.len(), 3);

        let started = tokio::time::Instant::now();
        let hung = Logs(Ok(ErrorEntries::default()), Some(Duration::from_secs(3600)));
        let evidence = gather(&hung, &platform, &change(None), GATHER_TIMEOUT, &never, now).await;
        assert_eq!(evidence.errors, Err("no answer within 15s".to_string()));
        assert_eq!(started.elapsed(), GATHER_TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn given_an_interrupt_during_gathering_then_it_stops_at_once_and_keeps_what_is_in() {
        let platform = platform();
        let now = || SystemTime::UNIX_EPOCH;
        let hung = Logs(Ok(ErrorEntries::default()), Some(Duration::from_secs(3600)));
        let (trigger, interrupt) = Interrupt::channel();

        // When SIGTERM arrives 2 s into gathering, while Cloud Logging has not answered,
        let started = tokio::time::Instant::now();
        let change = change(None);
        let gathering = gather(&hung, &platform, &change, GATHER_TIMEOUT, &interrupt, now);
        let raise = async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            trigger.trigger();
        };
        let (evidence, ()) = tokio::join!(gathering, raise);

        // then gathering ends then, the revisions already read are kept, and the logs say why not.
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        assert_eq!(evidence.errors, Err(INTERRUPTED.to_string()));
        assert_eq!(evidence.revisions, Ok(platform.0.clone()));
        assert_eq!(evidence.remedies.len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn given_an_interrupt_raised_before_then_nothing_is_read() {
        struct Unreachable;
        #[async_trait]
        impl ErrorLogs for Unreachable {
            async fn recent_errors(&self, _: &LogQuery) -> PortResult<ErrorEntries> {
                unreachable!("an interrupted rollout reads no logs")
            }
        }
        let (trigger, interrupt) = Interrupt::channel();
        trigger.trigger();
        let started = tokio::time::Instant::now();
        let evidence = gather(
            &Unreachable,
            &Revisions(Vec::new()),
            &change(None),
            GATHER_TIMEOUT,
            &interrupt,
            || SystemTime::UNIX_EPOCH,
        )
        .await;
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert_eq!(evidence.errors, Err(NOT_GATHERED.to_string()));
        assert_eq!(evidence.revisions, Err(NOT_GATHERED.to_string()));
        assert_eq!(evidence.remedies.len(), 3);
    }
}
