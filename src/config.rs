//! `shiftgate.toml`: named environments (project, region, service, public URL) and rollout policy,
//! validated once at load; and how command-line values, environment policy and defaults combine.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use semver::VersionReq;
use serde::Deserialize;

use crate::names;
use crate::notify::NotifyUrl;
use crate::rollout::health_judge::{Expectations, FieldRule};
use crate::rollout::hooks::GcsObject;
use crate::rollout::judge::JudgeKind;
use crate::rollout::latency::LatencyLimit;
use crate::rollout::limits::{self, parse_rate};
use crate::rollout::pause::PauseTimeoutAction;
use crate::rollout::plan::{Policy, Steps};

pub const DEFAULT_PATHS: [&str; 2] = ["shiftgate.toml", ".github/shiftgate.toml"];

/// A config problem, worded for the person who has to fix the file (exit 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The repository, OWNER/NAME: where incident issues go and `dispatch` runs workflows.
    pub repo: Option<String>,
    /// Policy for every environment.
    #[serde(default)]
    pub policy: PolicyFile,
    /// Webhooks told of every environment's rollouts (`rollout --notify`): URLs, or `${NAME}`
    /// to read one from the environment variable NAME (a webhook URL is a secret).
    pub notify: Option<Vec<String>>,
    #[serde(default)]
    pub environments: BTreeMap<String, Environment>,
    #[serde(skip)]
    pub path: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    pub project: Option<String>,
    pub region: Option<String>,
    /// Several regions of the same service, rolled out in waves in this order (`rollout`); other
    /// commands take one of them with `--region`.
    pub regions: Option<Vec<String>>,
    pub service: Option<String>,
    /// Public URL, probed by `shiftgate health`.
    pub url: Option<String>,
    /// This environment's webhooks, instead of the file's top-level `notify`.
    pub notify: Option<Vec<String>>,
    #[serde(default)]
    pub policy: PolicyFile,
}

/// A rate written as `0.05` or `"5%"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum RateValue {
    Number(f64),
    Text(String),
}

/// A value written as one string (which may be a comma list) or a list of strings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum TextOrList {
    Text(String),
    List(Vec<String>),
}

impl TextOrList {
    fn items(&self) -> Vec<&str> {
        match self {
            TextOrList::Text(text) => vec![text.as_str()],
            TextOrList::List(items) => items.iter().map(String::as_str).collect(),
        }
    }
}

/// Policy as written in the file; every field optional so layers can be merged.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    pub steps: Option<Vec<u8>>,
    pub bake: Option<String>,
    pub interval: Option<String>,
    pub max_error_rate: Option<RateValue>,
    pub min_requests: Option<u64>,
    pub metrics_delay: Option<String>,
    pub judge: Option<String>,
    pub margin: Option<RateValue>,
    pub early_pass: Option<bool>,
    /// `"p95=800ms"`, `"p95=800ms,p99=2s"` or `["p95=800ms", "p99=2s"]`.
    pub max_latency: Option<TextOrList>,
    pub health_path: Option<String>,
    pub health_expect: Option<Vec<String>>,
    pub expect_version: Option<String>,
    pub health_audience: Option<String>,
    /// Steps to hold after, e.g. `[50]`.
    pub pause_at: Option<Vec<u8>>,
    pub pause_timeout: Option<String>,
    /// `rollback` or `promote`.
    pub on_pause_timeout: Option<String>,
    /// `enforce` or `report-only`.
    pub gates: Option<String>,
    /// `gs://BUCKET/OBJECT` to copy before any traffic moves.
    pub backup: Option<String>,
    pub pre_job: Option<String>,
    pub post_job: Option<String>,
    pub on_rollback_job: Option<String>,
    pub hook_timeout: Option<String>,
    /// Steps of every region after the first (default `[100]`).
    pub wave_steps: Option<Vec<u8>>,
    /// Bake of every region after the first (default `"2m"`).
    pub wave_bake: Option<String>,
}

/// Which service to work on, as a command names it: an environment of the config file, and
/// coordinates that override the environment's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceSelector {
    pub environment: Option<String>,
    pub project: Option<String>,
    pub region: Option<String>,
    pub service: Option<String>,
}

/// Policy values given for one run (on the command line); each overrides the config's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyOverrides {
    pub steps: Option<Steps>,
    pub bake: Option<Duration>,
    pub interval: Option<Duration>,
    pub max_error_rate: Option<f64>,
    pub min_requests: Option<u64>,
    pub metrics_delay: Option<Duration>,
    pub judge: Option<JudgeKind>,
    pub margin: Option<f64>,
    pub early_pass: Option<bool>,
    /// Replaces the config's latency limits when given.
    pub latency: Option<Vec<LatencyLimit>>,
    pub health: HealthOverrides,
    /// Replaces the config's holds when given.
    pub pause_at: Option<Vec<u8>>,
    pub pause_timeout: Option<Duration>,
    pub on_pause_timeout: Option<PauseTimeoutAction>,
    pub report_only: Option<bool>,
    pub backup: Option<GcsObject>,
    pub pre_job: Option<String>,
    pub post_job: Option<String>,
    pub on_rollback_job: Option<String>,
    pub hook_timeout: Option<Duration>,
    pub wave_steps: Option<Steps>,
    pub wave_bake: Option<Duration>,
}

/// Health expectations given for one run; each overrides the config's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthOverrides {
    pub path: Option<String>,
    /// Replaces the config's field rules (and the default status rule) when not empty.
    pub expect: Vec<FieldRule>,
    pub version: Option<VersionReq>,
    pub audience: Option<String>,
}

/// The service a command works on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAddress {
    pub environment: Option<String>,
    pub project: String,
    pub region: String,
    pub service: String,
    pub url: Option<String>,
}

impl Environment {
    /// Validates the names that end up in request paths and the policy, naming the key.
    fn check(&self, section: &str) -> Result<(), ConfigError> {
        let named = |key: &str, value: &Option<String>, rule: fn(&str) -> Result<(), String>| {
            value
                .as_deref()
                .map_or(Ok(()), rule)
                .map_err(|message| ConfigError(format!("{section}.{key}: {message}")))
        };
        named("project", &self.project, names::check_project)?;
        named("region", &self.region, names::check_region)?;
        named("service", &self.service, names::check_service)?;
        if let Some(regions) = &self.regions {
            if self.region.is_some() {
                return Err(ConfigError(format!(
                    "{section}: give `region` or `regions`, not both"
                )));
            }
            if regions.is_empty() {
                return Err(ConfigError(format!(
                    "{section}.regions: name at least one region (e.g. [\"us-central1\", \"europe-west1\"])"
                )));
            }
            names::split_regions(&regions.join(","))
                .map_err(|message| ConfigError(format!("{section}.regions: {message}")))?;
        }
        check_notify(&format!("{section}.notify"), &self.notify)?;
        self.policy
            .check(&format!("{section}.policy"))
            .map_err(ConfigError)
    }
}

impl Config {
    /// Reads `explicit` (which must exist), else the first default path that exists, else an
    /// empty config.
    pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        let path = match explicit {
            Some(path) => {
                if !path.exists() {
                    return Err(ConfigError(format!(
                        "--config {}: no such file",
                        path.display()
                    )));
                }
                Some(path.to_path_buf())
            }
            None => DEFAULT_PATHS
                .iter()
                .map(PathBuf::from)
                .find(|candidate| candidate.is_file()),
        };
        let Some(path) = path else {
            return Ok(Config::default());
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|error| ConfigError(format!("{}: {error}", path.display())))?;
        let mut config = Config::parse(&text).map_err(|ConfigError(message)| {
            ConfigError(format!("{}: {message}", path.display()))
        })?;
        config.path = Some(path);
        Ok(config)
    }

    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config =
            toml::from_str(text).map_err(|error| ConfigError(error.to_string()))?;
        if let Some(repo) = &config.repo {
            names::check_repo(repo).map_err(|message| ConfigError(format!("repo: {message}")))?;
        }
        config.policy.check("policy").map_err(ConfigError)?;
        check_notify("notify", &config.notify)?;
        for (name, environment) in &config.environments {
            environment.check(&format!("environments.{name}"))?;
        }
        Ok(config)
    }

    /// The repository of incidents and dispatches: the flag, else the config's `repo`, else
    /// `$GITHUB_REPOSITORY` (set in every Actions job, so it must not shadow the file's choice).
    pub fn incident_repo(&self, flag: Option<&str>) -> Option<String> {
        flag.map(str::to_string)
            .or_else(|| self.repo.clone())
            .or_else(|| std::env::var("GITHUB_REPOSITORY").ok())
            .filter(|repo| !repo.trim().is_empty())
    }

    fn describe(&self) -> String {
        self.path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| {
                "no config file (looked for shiftgate.toml, .github/shiftgate.toml)".into()
            })
    }

    pub fn environment(&self, name: &str) -> Result<&Environment, ConfigError> {
        self.environments.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.environments.keys().map(String::as_str).collect();
            ConfigError(if known.is_empty() {
                format!(
                    "--env {name}: {} names no environments; add [environments.{name}] with project, region and service",
                    self.describe()
                )
            } else {
                format!(
                    "--env {name}: unknown environment in {}; known: {}",
                    self.describe(),
                    known.join(", ")
                )
            })
        })
    }

    /// Command-line coordinates win over the environment's.
    pub fn resolve_service(
        &self,
        wanted: impl Into<ServiceSelector>,
    ) -> Result<ServiceAddress, ConfigError> {
        let wanted: ServiceSelector = wanted.into();
        let environment = match &wanted.environment {
            Some(name) => Some(self.environment(name)?),
            None => None,
        };
        let pick = |flag: &Option<String>, from_env: Option<&Option<String>>, name: &str| {
            flag.clone()
                .or_else(|| from_env.and_then(|value| value.clone()))
                .filter(|value| !value.trim().is_empty())
                .ok_or_else(|| name.to_string())
        };
        let project = pick(
            &wanted.project,
            environment.map(|e| &e.project),
            "--project",
        );
        if let Some(list) = wanted.region.as_deref().filter(|r| r.contains(',')) {
            return Err(ConfigError(format!(
                "--region: {list} names several regions, which only `rollout` takes (as waves); \
                 give one region"
            )));
        }
        let only_region = environment.map(|e| match &e.regions {
            Some(regions) if regions.len() == 1 => Some(regions[0].clone()),
            _ => e.region.clone(),
        });
        if let (None, Some(name), Some(regions)) = (
            &wanted.region,
            &wanted.environment,
            environment.and_then(|e| e.regions.as_ref()),
        ) && regions.len() > 1
        {
            return Err(ConfigError(format!(
                "environment {name} is in several regions ({}); give --region with the one to \
                 work on (only `rollout` takes them all, as waves)",
                regions.join(", ")
            )));
        }
        let region = pick(&wanted.region, only_region.as_ref(), "--region");
        let service = pick(
            &wanted.service,
            environment.map(|e| &e.service),
            "--service",
        );
        match (project, region, service) {
            (Ok(project), Ok(region), Ok(service)) => {
                // Flags were checked by the parser and the file at load; this also covers
                // arguments built in code, before any of them reaches a request path.
                for (flag, value, rule) in [
                    ("--project", &project, names::check_project as fn(&str) -> _),
                    ("--region", &region, names::check_region),
                    ("--service", &service, names::check_service),
                ] {
                    rule(value).map_err(|message| ConfigError(format!("{flag}: {message}")))?;
                }
                Ok(ServiceAddress {
                    environment: wanted.environment.clone(),
                    project,
                    region,
                    service,
                    url: environment.and_then(|e| e.url.clone()),
                })
            }
            (project, region, service) => {
                let missing: Vec<String> = [project, region, service]
                    .into_iter()
                    .filter_map(Result::err)
                    .collect();
                Err(self.missing_coordinates(wanted.environment.as_deref(), &missing))
            }
        }
    }

    /// The services a rollout goes through, in order: one per region of `--region a,b` or of the
    /// environment's `regions`, else the one service `resolve_service` gives.
    pub fn resolve_waves(
        &self,
        wanted: impl Into<ServiceSelector>,
    ) -> Result<Vec<ServiceAddress>, ConfigError> {
        let wanted: ServiceSelector = wanted.into();
        let regions = match (&wanted.region, &wanted.environment) {
            (Some(list), _) => Some(
                names::split_regions(list)
                    .map_err(|message| ConfigError(format!("--region: {message}")))?,
            ),
            (None, Some(name)) => self.environment(name)?.regions.clone(),
            (None, None) => None,
        };
        match regions {
            None => Ok(vec![self.resolve_service(wanted)?]),
            Some(regions) => regions
                .into_iter()
                .map(|region| {
                    self.resolve_service(ServiceSelector {
                        region: Some(region),
                        ..wanted.clone()
                    })
                })
                .collect(),
        }
    }

    /// Says which of `--project`, `--region` and `--service` are missing, and where to give them.
    fn missing_coordinates(&self, environment: Option<&str>, missing: &[String]) -> ConfigError {
        ConfigError(match environment {
            Some(name) => format!(
                "environment {name} in {} does not give {}; add it there or pass it on the command line",
                self.describe(),
                missing.join(", ")
            ),
            None => format!(
                "missing {}: give --project, --region and --service, or --env NAME with a config file",
                missing.join(", ")
            ),
        })
    }

    /// Built-in defaults, then `[policy]`, then the environment's policy, then the command line.
    pub fn resolve_policy(
        &self,
        environment: Option<&str>,
        overrides: &PolicyOverrides,
        default_metrics_delay: Duration,
    ) -> Result<Policy, ConfigError> {
        let mut policy = Policy {
            metrics_delay: default_metrics_delay,
            ..Policy::default()
        };
        self.policy
            .apply(&mut policy, "policy")
            .map_err(ConfigError)?;
        if let Some(name) = environment {
            self.environment(name)?
                .policy
                .apply(&mut policy, &format!("environments.{name}.policy"))
                .map_err(ConfigError)?;
        }
        if let Some(steps) = &overrides.steps {
            policy.steps = steps.clone();
        }
        if let Some(bake) = overrides.bake {
            policy.bake = bake;
        }
        if let Some(interval) = overrides.interval {
            policy.interval = interval;
        }
        if let Some(rate) = overrides.max_error_rate {
            policy.max_error_rate = rate;
        }
        if let Some(min) = overrides.min_requests {
            policy.min_requests = min;
        }
        if let Some(delay) = overrides.metrics_delay {
            policy.metrics_delay = delay;
        }
        if let Some(judge) = overrides.judge {
            policy.judge = judge;
        }
        if let Some(margin) = overrides.margin {
            policy.margin = margin;
        }
        if let Some(early) = overrides.early_pass {
            policy.early_pass = early;
        }
        if let Some(latency) = &overrides.latency {
            policy.latency = latency.clone();
        }
        if let Some(at) = &overrides.pause_at {
            policy.pause.at = at.clone();
        }
        if let Some(timeout) = overrides.pause_timeout {
            policy.pause.timeout = timeout;
        }
        if let Some(action) = overrides.on_pause_timeout {
            policy.pause.on_timeout = action;
        }
        if let Some(report_only) = overrides.report_only {
            policy.report_only = report_only;
        }
        let hooks = &mut policy.hooks;
        if let Some(backup) = &overrides.backup {
            hooks.backup = Some(backup.clone());
        }
        for (set, given) in [
            (&mut hooks.pre_job, &overrides.pre_job),
            (&mut hooks.post_job, &overrides.post_job),
            (&mut hooks.on_rollback_job, &overrides.on_rollback_job),
        ] {
            if given.is_some() {
                set.clone_from(given);
            }
        }
        if let Some(timeout) = overrides.hook_timeout {
            hooks.timeout = timeout;
        }
        if let Some(steps) = &overrides.wave_steps {
            policy.wave.steps = steps.clone();
        }
        if let Some(bake) = overrides.wave_bake {
            policy.wave.bake = bake;
        }
        apply_health_overrides(&mut policy.health, &overrides.health);
        policy.validate().map_err(ConfigError)?;
        Ok(policy)
    }

    /// Health expectations for `environment`, with the command line on top.
    pub fn resolve_health(
        &self,
        environment: Option<&str>,
        overrides: &HealthOverrides,
    ) -> Result<Expectations, ConfigError> {
        let mut policy = Policy::default();
        self.policy
            .apply(&mut policy, "policy")
            .map_err(ConfigError)?;
        if let Some(name) = environment
            && let Some(env) = self.environments.get(name)
        {
            env.policy
                .apply(&mut policy, &format!("environments.{name}.policy"))
                .map_err(ConfigError)?;
        }
        apply_health_overrides(&mut policy.health, overrides);
        Ok(policy.health)
    }
}

/// A `notify` entry: a webhook URL, or the environment variable holding one.
#[derive(Debug, Clone, PartialEq, Eq)]
enum NotifyEntry {
    Url(NotifyUrl),
    Variable(String),
}

impl NotifyEntry {
    fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        match text
            .strip_prefix("${")
            .and_then(|rest| rest.strip_suffix('}'))
        {
            Some(name)
                if !name.is_empty()
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
            {
                Ok(NotifyEntry::Variable(name.to_string()))
            }
            Some(_) => {
                Err("`${NAME}` takes an environment variable name (letters, digits, _)".into())
            }
            None => NotifyUrl::parse(text).map(NotifyEntry::Url),
        }
    }
}

fn check_notify(key: &str, entries: &Option<Vec<String>>) -> Result<(), ConfigError> {
    for entry in entries.iter().flatten() {
        NotifyEntry::parse(entry).map_err(|message| ConfigError(format!("{key}: {message}")))?;
    }
    Ok(())
}

/// The webhooks of one rollout, and the `${NAME}` entries that named an unset variable (skipped:
/// a missing webhook is worth a warning, never a refused rollout).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotifyTargets {
    pub urls: Vec<NotifyUrl>,
    pub unset: Vec<String>,
}

impl Config {
    /// The command line's webhooks when given, else the environment's `notify`, else the file's.
    /// A `${NAME}` entry is read from `variable(NAME)`; a value there that is not a webhook URL is
    /// bad configuration, named by its key and variable.
    pub fn notify_targets(
        &self,
        environment: Option<&str>,
        flags: &[NotifyUrl],
        variable: impl Fn(&str) -> Option<String>,
    ) -> Result<NotifyTargets, ConfigError> {
        if !flags.is_empty() {
            return Ok(NotifyTargets {
                urls: flags.to_vec(),
                unset: Vec::new(),
            });
        }
        let from_environment = environment
            .and_then(|name| self.environments.get(name))
            .and_then(|env| env.notify.as_ref().map(|list| (env, list)));
        let (key, entries) = match (environment, from_environment) {
            (Some(name), Some((_, list))) => (format!("environments.{name}.notify"), list),
            _ => match &self.notify {
                Some(list) => ("notify".to_string(), list),
                None => return Ok(NotifyTargets::default()),
            },
        };
        let mut targets = NotifyTargets::default();
        for entry in entries {
            match NotifyEntry::parse(entry).map_err(|m| ConfigError(format!("{key}: {m}")))? {
                NotifyEntry::Url(url) => targets.urls.push(url),
                NotifyEntry::Variable(name) => {
                    match variable(&name).filter(|value| !value.trim().is_empty()) {
                        Some(value) => targets.urls.push(
                            NotifyUrl::parse(&value)
                                .map_err(|m| ConfigError(format!("{key}: ${{{name}}}: {m}")))?,
                        ),
                        None => targets.unset.push(format!("{key}: ${{{name}}} is not set")),
                    }
                }
            }
        }
        Ok(targets)
    }
}

fn apply_health_overrides(expectations: &mut Expectations, overrides: &HealthOverrides) {
    if let Some(path) = &overrides.path {
        expectations.path = path.clone();
    }
    if !overrides.expect.is_empty() {
        expectations.fields = overrides.expect.clone();
    }
    if let Some(requirement) = &overrides.version {
        expectations.version = Some(requirement.clone());
    }
    if let Some(audience) = &overrides.audience {
        expectations.audience = Some(audience.clone());
    }
}

impl PolicyFile {
    /// Validates every value, naming the key, without applying it.
    fn check(&self, section: &str) -> Result<(), String> {
        self.apply(&mut Policy::default(), section)
    }

    fn apply(&self, policy: &mut Policy, section: &str) -> Result<(), String> {
        let at = |key: &str, message: String| format!("{section}.{key}: {message}");
        if let Some(steps) = &self.steps {
            policy.steps = Steps::new(steps.clone()).map_err(|m| at("steps", m))?;
        }
        if let Some(bake) = &self.bake {
            policy.bake = limits::BAKE.parse(bake).map_err(|m| at("bake", m))?;
        }
        if let Some(interval) = &self.interval {
            policy.interval = limits::INTERVAL
                .parse(interval)
                .map_err(|m| at("interval", m))?;
        }
        if let Some(rate) = &self.max_error_rate {
            policy.max_error_rate = match rate {
                RateValue::Number(value) => parse_rate(&value.to_string()),
                RateValue::Text(text) => parse_rate(text),
            }
            .map_err(|m| at("max_error_rate", m))?;
        }
        if let Some(min) = self.min_requests {
            policy.min_requests =
                limits::parse_min_requests(&min.to_string()).map_err(|m| at("min_requests", m))?;
        }
        if let Some(delay) = &self.metrics_delay {
            policy.metrics_delay = limits::METRICS_DELAY
                .parse(delay)
                .map_err(|m| at("metrics_delay", m))?;
        }
        if let Some(judge) = &self.judge {
            policy.judge = limits::parse_judge(judge).map_err(|m| at("judge", m))?;
        }
        if let Some(margin) = &self.margin {
            policy.margin = match margin {
                RateValue::Number(value) => limits::parse_margin(&value.to_string()),
                RateValue::Text(text) => limits::parse_margin(text),
            }
            .map_err(|m| at("margin", m))?;
        }
        if let Some(early) = self.early_pass {
            policy.early_pass = early;
        }
        if let Some(latency) = &self.max_latency {
            policy.latency =
                LatencyLimit::parse_all(latency.items()).map_err(|m| at("max_latency", m))?;
        }
        if let Some(path) = &self.health_path {
            names::check_health_path(path).map_err(|m| at("health_path", m))?;
            policy.health.path = path.clone();
        }
        if let Some(rules) = &self.health_expect {
            policy.health.fields = rules
                .iter()
                .map(|rule| rule.parse::<FieldRule>())
                .collect::<Result<_, _>>()
                .map_err(|m| at("health_expect", m))?;
        }
        if let Some(requirement) = &self.expect_version {
            policy.health.version = Some(
                semver::VersionReq::parse(requirement)
                    .map_err(|e| at("expect_version", format!("{requirement:?}: {e}")))?,
            );
        }
        if let Some(at) = &self.pause_at {
            policy.pause.at = at.clone();
        }
        if let Some(timeout) = &self.pause_timeout {
            policy.pause.timeout = crate::rollout::limits::PAUSE_TIMEOUT
                .parse(timeout)
                .map_err(|m| at("pause_timeout", m))?;
        }
        if let Some(action) = &self.on_pause_timeout {
            policy.pause.on_timeout = match action.as_str() {
                "rollback" => PauseTimeoutAction::Rollback,
                "promote" => PauseTimeoutAction::Promote,
                other => {
                    return Err(at(
                        "on_pause_timeout",
                        format!("expected \"rollback\" or \"promote\", got {other:?}"),
                    ));
                }
            };
        }
        if let Some(gates) = &self.gates {
            policy.report_only = match gates.as_str() {
                "enforce" => false,
                "report-only" => true,
                other => {
                    return Err(at(
                        "gates",
                        format!("expected \"enforce\" or \"report-only\", got {other:?}"),
                    ));
                }
            };
        }
        if let Some(backup) = &self.backup {
            policy.hooks.backup = Some(GcsObject::parse(backup).map_err(|m| at("backup", m))?);
        }
        for (key, given, set) in [
            ("pre_job", &self.pre_job, &mut policy.hooks.pre_job),
            ("post_job", &self.post_job, &mut policy.hooks.post_job),
            (
                "on_rollback_job",
                &self.on_rollback_job,
                &mut policy.hooks.on_rollback_job,
            ),
        ] {
            if let Some(job) = given {
                names::check_service(job).map_err(|m| at(key, m))?;
                *set = Some(job.clone());
            }
        }
        if let Some(timeout) = &self.hook_timeout {
            policy.hooks.timeout = crate::rollout::limits::TIMEOUT
                .parse(timeout)
                .map_err(|m| at("hook_timeout", m))?;
        }
        if let Some(audience) = &self.health_audience {
            names::check_audience(audience).map_err(|m| at("health_audience", m))?;
            policy.health.audience = Some(audience.clone());
        }
        if let Some(steps) = &self.wave_steps {
            policy.wave.steps = Steps::new(steps.clone()).map_err(|m| at("wave_steps", m))?;
        }
        if let Some(bake) = &self.wave_bake {
            policy.wave.bake = limits::BAKE.parse(bake).map_err(|m| at("wave_bake", m))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
repo = "loopcloser/app"

[policy]
steps = [10, 25, 50, 100]
bake = "5m"
max_error_rate = "5%"

[environments.prod]
project = "loopcloser"
region = "us-central1"
service = "loopcloser-prod"
url = "https://app.loopcloser.example"

[environments.prod.policy]
bake = "10m"
min_requests = 200

[environments.dev]
project = "loopcloser"
region = "us-central1"
service = "loopcloser-dev"
"#;

    #[test]
    fn given_webhooks_in_the_file_then_the_environment_s_list_replaces_the_top_level_one_and_flags_replace_both()
     {
        let text = r#"
notify = ["https://hooks.slack.com/services/T/B/top"]
[environments.prod]
project = "loopcloser"
region = "us-central1"
service = "loopcloser-prod"
notify = ["${SLACK_PROD}", "${UNSET_HOOK}", "http://127.0.0.1:9/x"]
[environments.dev]
service = "loopcloser-dev"
"#;
        let config = Config::parse(text).unwrap();
        let variable = |name: &str| {
            (name == "SLACK_PROD").then(|| "https://hooks.slack.com/services/T/B/prod".to_string())
        };
        let shown = |targets: NotifyTargets| -> Vec<String> {
            targets
                .urls
                .iter()
                .map(|u| u.secret().to_string())
                .collect()
        };
        let prod = config.notify_targets(Some("prod"), &[], variable).unwrap();
        assert_eq!(
            prod.unset,
            ["environments.prod.notify: ${UNSET_HOOK} is not set"]
        );
        assert_eq!(
            shown(prod),
            [
                "https://hooks.slack.com/services/T/B/prod",
                "http://127.0.0.1:9/x"
            ]
        );
        let dev = config.notify_targets(Some("dev"), &[], variable).unwrap();
        assert_eq!(shown(dev), ["https://hooks.slack.com/services/T/B/top"]);
        let flag = NotifyUrl::parse("https://example.com/flag/x").unwrap();
        let flagged = config
            .notify_targets(Some("prod"), std::slice::from_ref(&flag), variable)
            .unwrap();
        assert_eq!(flagged.urls, [flag]);
        let bad_value =
            config.notify_targets(Some("prod"), &[], |_| Some("ftp://x/secret/y".into()));
        let message = bad_value.unwrap_err().0;
        assert!(
            message.contains("environments.prod.notify: ${SLACK_PROD}"),
            "{message}"
        );
        assert!(!message.contains("secret/y"), "{message}");
    }

    #[test]
    fn given_a_webhook_that_is_not_https_in_the_file_then_loading_fails_naming_the_key() {
        let text = "[environments.prod]\nnotify = [\"http://example.com/secret/path\"]\n";
        let message = Config::parse(text).unwrap_err().0;
        assert!(
            message.starts_with("environments.prod.notify: "),
            "{message}"
        );
        assert!(!message.contains("secret/path"), "{message}");
        let message = Config::parse("notify = [\"${no-dash}\"]").unwrap_err().0;
        assert!(message.starts_with("notify: "), "{message}");
    }

    fn environment(name: &str) -> ServiceSelector {
        ServiceSelector {
            environment: Some(name.into()),
            ..ServiceSelector::default()
        }
    }

    #[test]
    fn an_environment_names_its_service_and_layers_its_policy() {
        let config = Config::parse(EXAMPLE).unwrap();
        let address = config.resolve_service(environment("prod")).unwrap();
        assert_eq!(address.service, "loopcloser-prod");
        assert_eq!(
            address.url.as_deref(),
            Some("https://app.loopcloser.example")
        );
        let overrides = PolicyOverrides {
            min_requests: Some(50),
            ..PolicyOverrides::default()
        };
        let policy = config
            .resolve_policy(Some("prod"), &overrides, Duration::from_secs(180))
            .unwrap();
        assert_eq!(
            policy.bake,
            Duration::from_secs(600),
            "environment beats [policy]"
        );
        assert_eq!(
            policy.min_requests, 50,
            "command line beats the environment"
        );
        assert_eq!(policy.max_error_rate, 0.05);
    }

    #[test]
    fn latency_limits_come_as_a_string_or_a_list_and_the_command_line_replaces_them() {
        let text = "[policy]\nmax_latency = \"p95=800ms,p99=2s\"\n\
                    [environments.prod]\nproject = \"loopcloser\"\nregion = \"us-central1\"\nservice = \"web\"\n\
                    [environments.prod.policy]\nmax_latency = [\"p50=100ms\"]\n\
                    [environments.dev]\nproject = \"loopcloser\"\nregion = \"us-central1\"\nservice = \"web\"\n";
        let config = Config::parse(text).unwrap();
        let names = |policy: Policy| -> Vec<String> {
            policy.latency.iter().map(|l| l.to_string()).collect()
        };
        let none = PolicyOverrides::default();
        let dev = config.resolve_policy(Some("dev"), &none, Duration::ZERO);
        assert_eq!(names(dev.unwrap()), ["p95=800ms", "p99=2s"]);
        let prod = config.resolve_policy(Some("prod"), &none, Duration::ZERO);
        assert_eq!(names(prod.unwrap()), ["p50=100ms"]);
        let flag = PolicyOverrides {
            latency: Some(vec![LatencyLimit::parse("p99=3s").unwrap()]),
            ..PolicyOverrides::default()
        };
        let flagged = config.resolve_policy(Some("prod"), &flag, Duration::ZERO);
        assert_eq!(names(flagged.unwrap()), ["p99=3s"]);
        let bad = Config::parse("[policy]\nmax_latency = \"p90=1s\"\n").unwrap_err();
        assert!(bad.0.contains("max_latency"), "{}", bad.0);
    }

    #[test]
    fn unknown_environments_and_keys_are_named() {
        let config = Config::parse(EXAMPLE).unwrap();
        let error = config.resolve_service(environment("qa")).unwrap_err().0;
        assert!(
            error.contains("--env qa") && error.contains("dev, prod"),
            "{error}"
        );
        let typo = Config::parse("[policy]\nbake_time = \"5m\"\n")
            .unwrap_err()
            .0;
        assert!(typo.contains("bake_time"), "{typo}");
        let bad = Config::parse("[policy]\nsteps = [50, 10]\n").unwrap_err().0;
        assert!(bad.contains("policy.steps"), "{bad}");
    }

    #[test]
    fn without_an_environment_all_three_coordinates_are_required() {
        let config = Config::default();
        let coordinates = ServiceSelector {
            project: Some("loopcloser".into()),
            ..ServiceSelector::default()
        };
        let error = config.resolve_service(coordinates).unwrap_err().0;
        assert!(
            error.contains("--region") && error.contains("--service"),
            "{error}"
        );
    }

    #[test]
    fn given_a_file_whose_names_or_durations_break_the_rules_then_loading_fails_naming_the_key() {
        for (text, key) in [
            (
                "[environments.prod]\nservice = \"web?updateMask=traffic\"\n",
                "environments.prod.service",
            ),
            (
                "[environments.prod]\nproject = \"p/x\"\n",
                "environments.prod.project",
            ),
            (
                "[environments.prod]\nregion = \"us central1\"\n",
                "environments.prod.region",
            ),
            ("repo = \"a/b/c\"\n", "repo"),
            (
                "[policy]\nhealth_path = \"http://169.254.169.254/x\"\n",
                "policy.health_path",
            ),
            ("[policy]\nbake = \"9999999999999999999s\"\n", "policy.bake"),
            (
                "[environments.prod.policy]\nmetrics_delay = \"2h\"\n",
                "environments.prod.policy.metrics_delay",
            ),
            ("[policy]\ninterval = \"0s\"\n", "policy.interval"),
            ("[policy]\nmin_requests = 0\n", "policy.min_requests"),
            (
                "[policy]\nmin_requests = 2000000000\n",
                "policy.min_requests",
            ),
            ("[policy]\nmax_error_rate = 1.5\n", "policy.max_error_rate"),
        ] {
            let message = Config::parse(text).unwrap_err().0;
            assert!(message.starts_with(key), "{text}: {message}");
        }
    }

    #[test]
    fn given_service_args_built_in_code_with_a_bad_name_then_resolving_refuses_them() {
        let args = ServiceSelector {
            environment: None,
            project: Some("loopcloser".into()),
            region: Some("us-central1".into()),
            service: Some("nope/../web".into()),
        };
        let message = Config::default().resolve_service(args).unwrap_err().0;
        assert!(message.starts_with("--service"), "{message}");
    }
}
