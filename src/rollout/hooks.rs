//! The work a rollout does around its traffic steps: a backup copy and a job before any traffic
//! moves (either failing ends the rollout with nothing changed), a job after promotion or rollback.

use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::rollout::engine::{Engine, Stop};
use crate::rollout::timeline::{EventKind, seconds};

/// A Cloud Storage object, `gs://BUCKET/NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcsObject {
    pub bucket: String,
    pub name: String,
}

impl GcsObject {
    /// Parses `gs://BUCKET/OBJECT`, with Cloud Storage's naming rules for both parts.
    pub fn parse(text: &str) -> Result<Self, String> {
        let invalid = |why: &str| {
            format!(
                "{} is not a Cloud Storage object: {why} (for example gs://loopcloser-db/loopcloser.db)",
                crate::names::quote(text)
            )
        };
        let rest = text
            .strip_prefix("gs://")
            .ok_or_else(|| invalid("it must start with gs://"))?;
        let (bucket, name) = rest
            .split_once('/')
            .ok_or_else(|| invalid("it names a bucket but no object"))?;
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
            && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
            && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !bucket_ok {
            return Err(invalid(
                "a bucket name is 3-63 lowercase letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
            ));
        }
        if name.is_empty() || name.len() > 1000 || name.chars().any(char::is_control) {
            return Err(invalid(
                "an object name is 1-1000 bytes without control characters",
            ));
        }
        Ok(Self {
            bucket: bucket.to_string(),
            name: name.to_string(),
        })
    }

    /// The copy beside this object for a rollout started at `stamp` (`20261130T230000Z`).
    pub fn backup_copy(&self, stamp: &str) -> Self {
        Self {
            bucket: self.bucket.clone(),
            name: format!("{}.shiftgate-{stamp}", self.name),
        }
    }
}

impl std::fmt::Display for GcsObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "gs://{}/{}", self.bucket, self.name)
    }
}

/// The hooks of a rollout (`--backup`, `--pre-job`, `--post-job`, `--on-rollback-job`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookPlan {
    pub backup: Option<GcsObject>,
    pub pre_job: Option<String>,
    pub post_job: Option<String>,
    pub on_rollback_job: Option<String>,
    /// How long each hook may take (`--hook-timeout`).
    pub timeout: Duration,
}

/// Thirty minutes: a migration of a small team's database, with room.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(30 * 60);

impl Default for HookPlan {
    fn default() -> Self {
        Self {
            backup: None,
            pre_job: None,
            post_job: None,
            on_rollback_job: None,
            timeout: DEFAULT_HOOK_TIMEOUT,
        }
    }
}

impl HookPlan {
    pub fn is_empty(&self) -> bool {
        self.backup.is_none()
            && self.pre_job.is_none()
            && self.post_job.is_none()
            && self.on_rollback_job.is_none()
    }
}

/// Which hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HookKind {
    Backup,
    PreJob,
    PostJob,
    OnRollbackJob,
}

impl HookKind {
    pub fn flag(self) -> &'static str {
        match self {
            HookKind::Backup => "--backup",
            HookKind::PreJob => "--pre-job",
            HookKind::PostJob => "--post-job",
            HookKind::OnRollbackJob => "--on-rollback-job",
        }
    }
}

/// How one hook went, for the result and the incident.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HookReport {
    pub hook: HookKind,
    /// The object copied or the job run.
    pub target: String,
    pub ok: bool,
    /// The copy's name or the execution's; why it failed.
    pub detail: String,
    pub duration_s: f64,
}

impl Engine<'_> {
    /// Runs one hook with the plan's timeout; its start and end are in the timeline. `None`: a
    /// signal came first (the hook is left to itself: the runner has seconds left).
    pub(super) async fn run_hook(
        &mut self,
        hook: HookKind,
        target: String,
        plan: &HookPlan,
    ) -> Option<bool> {
        let Some(hooks) = self.hooks else {
            let report = HookReport {
                hook,
                target,
                ok: false,
                detail: "no hook runner was given to the engine".into(),
                duration_s: 0.0,
            };
            self.hook_reports.push(report);
            return Some(false);
        };
        self.emit(EventKind::HookStarted {
            hook,
            target: target.clone(),
        });
        let started = Instant::now();
        let stamp = humantime::format_rfc3339_seconds(self.clock.now())
            .to_string()
            .replace(['-', ':'], "");
        let work = async {
            match (hook, &plan.backup) {
                (HookKind::Backup, Some(source)) => {
                    let copy = source.backup_copy(&stamp);
                    hooks
                        .backup(source, &copy, plan.timeout)
                        .await
                        .map(|()| copy.to_string())
                }
                (HookKind::Backup, None) => Err("no object to back up".to_string()),
                _ => hooks.run_job(&target, plan.timeout).await,
            }
        };
        let finished = self.guard(work).await;
        let interrupted = finished.is_none();
        let outcome =
            finished.unwrap_or_else(|| Err("interrupted by a signal before it ended".to_string()));
        let ok = outcome.is_ok();
        let detail = match outcome {
            Ok(detail) | Err(detail) => detail,
        };
        self.emit(EventKind::HookFinished {
            hook,
            target: target.clone(),
            ok,
            detail: detail.clone(),
        });
        self.hook_reports.push(HookReport {
            hook,
            target,
            ok,
            detail,
            duration_s: seconds(started.elapsed()),
        });
        (!interrupted).then_some(ok)
    }

    /// The backup, then the pre-job, before anything changes (never again on `--resume`: the
    /// first run did them); `Err` says which failed and why.
    pub(super) async fn before_traffic(
        &mut self,
        plan: &HookPlan,
        resuming: bool,
    ) -> Result<(), Stop> {
        if resuming {
            return Ok(());
        }
        if let Some(source) = &plan.backup {
            match self
                .run_hook(HookKind::Backup, source.to_string(), plan)
                .await
            {
                None => return Err(Stop::Interrupted),
                Some(false) => return Err(Stop::Failed(self.hook_failure())),
                Some(true) => {}
            }
        }
        if let Some(job) = &plan.pre_job {
            // The gap between the plan's check and the first write is as long as the backup:
            // another rollout that took the service meanwhile must not get a second migration.
            self.not_taken_meanwhile().await?;
            match self.run_hook(HookKind::PreJob, job.clone(), plan).await {
                None => return Err(Stop::Interrupted),
                Some(false) => return Err(Stop::Failed(self.hook_failure())),
                Some(true) => {}
            }
        }
        Ok(())
    }

    /// Refuses to go on when a rollout record appeared on the service since the plan was made.
    async fn not_taken_meanwhile(&mut self) -> Result<(), Stop> {
        let platform = self.ports.platform;
        match self.guard(platform.read_service()).await {
            None => Err(Stop::Interrupted),
            Some(Ok(service)) => match service.rollout.as_ref().filter(|r| r.is_running()) {
                Some(record) => Err(Stop::Aborted(format!(
                    "another rollout took the service during the backup: {}",
                    crate::rollout::ownership::describe_owner(record)
                ))),
                None => Ok(()),
            },
            Some(Err(error)) => Err(Stop::Error(format!(
                "could not read the service before the pre-job: {error}"
            ))),
        }
    }

    fn hook_failure(&self) -> String {
        match self.hook_reports.last() {
            Some(report) => format!(
                "{} {} failed before the rollout changed the service: {}",
                report.hook.flag(),
                report.target,
                report.detail
            ),
            None => "a hook failed".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_is_a_bucket_and_a_name_and_its_backup_sits_beside_it() {
        let object = GcsObject::parse("gs://loopcloser-db/data/loopcloser.db").unwrap();
        assert_eq!(object.bucket, "loopcloser-db");
        assert_eq!(object.name, "data/loopcloser.db");
        assert_eq!(
            object.backup_copy("20261130T230000Z").to_string(),
            "gs://loopcloser-db/data/loopcloser.db.shiftgate-20261130T230000Z"
        );
        for bad in [
            "loopcloser-db/x",
            "gs://loopcloser-db",
            "gs://loopcloser-db/",
            "gs://Bad_Bucket/x",
            "gs://ab/x",
            "gs://-db/x",
        ] {
            let error = GcsObject::parse(bad).unwrap_err();
            assert!(
                error.contains("gs://loopcloser-db/loopcloser.db"),
                "{bad}: {error}"
            );
        }
    }
}
