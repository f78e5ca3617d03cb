//! Regions in waves through the real binary: the first region with the whole policy, the next
//! straight to 100% after a short bake, and a failure in any region taking back every region the
//! rollout promoted before it.

use serde_json::Value;
use shiftgate::{CloudRunService, Credentials, GoogleRest};
use shiftgate_sim::{Behavior, JobBehavior, LoadHandle};

use crate::support::binary::{self, json_of, stderr_of};
use crate::support::webhook::{Answer, Webhook};
use crate::support::world::{
    BAD_CANDIDATE_ROLLOUT, BinaryWorld, CANDIDATE_IMAGE, PROJECT, QUICK_ROLLOUT, REGION, SERVICE,
    SERVICE_ARGS, STABLE_IMAGE, expect_refused_naming,
};

/// The second region of the world's service.
const EU: &str = "europe-west1";
const BOTH: &str = "us-central1,europe-west1";

/// The world's service in two regions, with traffic on both.
struct TwoRegions {
    world: BinaryWorld,
    eu_stable: String,
    _load: (LoadHandle, LoadHandle),
}

impl TwoRegions {
    async fn start(label: &str) -> Self {
        let world = BinaryWorld::start(label).await;
        let eu_stable = world.sim.add_service(PROJECT, EU, SERVICE, STABLE_IMAGE);
        let load = (
            world.start_load(40.0),
            world.sim.start_load(PROJECT, EU, SERVICE, 40.0),
        );
        Self {
            world,
            eu_stable,
            _load: load,
        }
    }

    /// `shiftgate ARGS --project P --service S --region us-central1,europe-west1`.
    async fn run_in_both(&self, args: &[&str]) -> std::process::Output {
        let mut command = self.world.command(args);
        command.args(["--project", PROJECT, "--service", SERVICE, "--region", BOTH]);
        binary::run(command).await
    }

    /// Each distinct split a region's service went through, in order.
    fn splits(&self, region: &str) -> Vec<Vec<(String, u8)>> {
        let mut folded: Vec<Vec<(String, u8)>> = Vec::new();
        for split in self
            .world
            .sim
            .model()
            .traffic_history(PROJECT, region, SERVICE)
        {
            if folded.last() != Some(&split) {
                folded.push(split);
            }
        }
        folded
    }

    fn split(&self, region: &str) -> Vec<(String, u8)> {
        self.world
            .sim
            .model()
            .current_split(PROJECT, region, SERVICE)
    }
}

fn wave_flags(rollout: &[&'static str]) -> Vec<&'static str> {
    let mut args = rollout.to_vec();
    if !args.contains(&"--json") {
        args.push("--json");
    }
    args.extend(["--wave-bake", "1s"]);
    args
}

fn percents(split: &[Vec<(String, u8)>], revision: &str) -> Vec<u8> {
    split
        .iter()
        .map(|targets| {
            targets
                .iter()
                .find(|(name, _)| name == revision)
                .map_or(0, |(_, percent)| *percent)
        })
        .collect()
}

fn region(result: &Value, index: usize) -> &Value {
    &result["regions"][index]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_two_regions_when_the_candidate_is_good_in_both_then_the_first_takes_every_step_and_the_second_goes_straight_to_100()
 {
    let regions = TwoRegions::start("waves-good").await;

    let output = regions.run_in_both(&wave_flags(QUICK_ROLLOUT)).await;

    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let result = json_of(&output);
    assert_eq!(result["outcome"], "promoted");
    let (us, eu) = (region(&result, 0), region(&result, 1));
    assert_eq!(
        (&us["region"], &eu["region"]),
        (&"us-central1".into(), &EU.into())
    );
    assert_eq!(us["steps"], serde_json::json!([50, 100]));
    assert_eq!(eu["steps"], serde_json::json!([100]));
    assert_eq!(
        (&us["outcome"], &eu["outcome"]),
        (&"promoted".into(), &"promoted".into())
    );
    // Each region made its own revision of the image, and serves only it now.
    let us_candidate = us["candidate"].as_str().unwrap().to_string();
    let eu_candidate = eu["candidate"].as_str().unwrap().to_string();
    assert_ne!(us_candidate, eu_candidate);
    assert_eq!(regions.split(REGION), [(us_candidate.clone(), 100)]);
    assert_eq!(regions.split(EU), [(eu_candidate.clone(), 100)]);
    // The first region's traffic went 0 → 50 → 100; the second's 0 → 100, only after the first
    // was promoted.
    let us_splits = regions.splits(REGION);
    let eu_splits = regions.splits(EU);
    assert_eq!(percents(&us_splits, &us_candidate), [0, 50, 100]);
    assert_eq!(percents(&eu_splits, &eu_candidate), [0, 100]);
    assert_eq!(percents(&eu_splits, &regions.eu_stable), [100, 0]);
    let log = stderr_of(&output);
    let first_eu = log.find("region 2 of 2: europe-west1").expect(&log);
    assert!(log[..first_eu].contains("promoted"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_two_regions_when_the_candidate_fails_in_the_second_then_both_serve_stable_again() {
    let regions = TwoRegions::start("waves-second-fails").await;
    // Healthy everywhere but the second region, where 40% of its answers are 500s.
    regions
        .world
        .sim
        .register_image_in(EU, CANDIDATE_IMAGE, Behavior::erroring("1.1.0", 0.4));
    let summary = regions.world.workdir.join("summary.md");
    let hook = Webhook::start(Answer::Slack).await;

    let mut command = regions.world.command(&wave_flags(BAD_CANDIDATE_ROLLOUT));
    command
        .args(["--project", PROJECT, "--service", SERVICE, "--region", BOTH])
        .args(["--notify", &hook.url])
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_OUTPUT", regions.world.workdir.join("outputs"))
        .env("GITHUB_STEP_SUMMARY", &summary);
    let output = binary::run(command).await;

    // Then the rollout ends rolled back, exit 1, and says which region failed and what it undid.
    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    let result = json_of(&output);
    assert_eq!(result["outcome"], "rolled_back");
    let reason = result["reason"].as_str().unwrap();
    assert!(reason.starts_with("region europe-west1: "), "{reason}");
    assert!(
        reason.contains(&format!(
            "us-central1 was rolled back too (100% on {})",
            regions.world.stable
        )),
        "{reason}"
    );
    let (us, eu) = (region(&result, 0), region(&result, 1));
    assert_eq!(us["outcome"], "promoted");
    assert_eq!(us["undone"], "rolled_back");
    eprintln!("waves: undo of us-central1 took {}s", us["undo_s"]);
    assert!(us["undo_s"].as_f64().is_some(), "{us}");
    assert_eq!(eu["outcome"], "rolled_back");
    assert!(eu.get("undone").is_none(), "{eu}");
    // Both regions serve their stable revision alone; the first went 0 → 50 → 100 → 0.
    assert_eq!(regions.split(REGION), regions.world.stable_only());
    assert_eq!(regions.split(EU), [(regions.eu_stable.clone(), 100)]);
    let us_candidate = us["candidate"].as_str().unwrap();
    assert_eq!(
        percents(&regions.splits(REGION), us_candidate),
        [0, 50, 100, 0]
    );
    assert_eq!(
        us["final_traffic"][0]["revision"],
        regions.world.stable.as_str()
    );
    // The step summary has a row per region.
    let shown = std::fs::read_to_string(&summary).unwrap();
    assert!(shown.contains("| region | steps | outcome |"), "{shown}");
    assert!(shown.contains("`us-central1` | 50% → 100% |"), "{shown}");
    assert!(shown.contains("promoted, then rolled back"), "{shown}");
    assert!(shown.contains("`europe-west1` | 100% |"), "{shown}");
    // The first region's history has one rollout: promoted, then rolled back for the second's
    // sake (the undo's entry carries the rollout's id, so `report` counts it once).
    let report = regions
        .world
        .run_on_service(&["--json", "report", "--since", "1h"])
        .await;
    assert_eq!(report.status.code(), Some(0), "{}", stderr_of(&report));
    let report = json_of(&report);
    let rows = &report["rollouts"];
    assert_eq!(report["totals"]["rollouts"], 1, "{rows}");
    assert_eq!(report["totals"]["rolled_back"], 1, "{rows}");
    assert_eq!(rows[0]["candidate"], us["candidate"], "{rows}");
    assert!(
        rows[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("europe-west1 failed after this region's promotion"),
        "{rows}"
    );
    // The channel hears each region start, the first promoted, the second rolled back, and the
    // first rolled back because of the second.
    let texts = hook.texts();
    let said: Vec<(&str, &str)> = texts
        .iter()
        .map(|text| {
            let what = ["started", "promoted", "rolled back"]
                .into_iter()
                .find(|word| text.contains(word))
                .unwrap_or("?");
            let region = [REGION, EU]
                .into_iter()
                .find(|region| text.contains(region))
                .unwrap_or("?");
            (what, region)
        })
        .collect();
    assert_eq!(
        said,
        [
            ("started", REGION),
            ("promoted", REGION),
            ("started", EU),
            ("rolled back", EU),
            ("rolled back", REGION),
        ],
        "{texts:#?}"
    );
    assert!(
        texts[4].contains("europe-west1 failed after this region's promotion"),
        "{}",
        texts[4]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_regions_in_the_config_when_the_first_fails_then_the_second_is_never_touched() {
    let regions = TwoRegions::start("waves-config").await;
    regions.world.candidate_fails(0.4);
    regions.write_prod("\n[environments.prod.policy]\nwave_bake = \"1s\"\n");
    let mut args = BAD_CANDIDATE_ROLLOUT.to_vec();
    args.extend(["--env", "prod"]);

    let output = regions.world.run(&args).await;

    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    let result = json_of(&output);
    assert_eq!(result["outcome"], "rolled_back");
    assert_eq!(region(&result, 0)["outcome"], "rolled_back");
    assert_eq!(region(&result, 1)["outcome"], "not_started");
    assert_eq!(regions.splits(EU), [vec![(regions.eu_stable.clone(), 100)]]);
    assert_eq!(regions.split(REGION), regions.world.stable_only());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_second_region_without_the_service_then_nothing_changes_in_the_first() {
    let world = BinaryWorld::start("waves-missing").await;
    let _load = world.start_load(20.0);
    let mut args = QUICK_ROLLOUT.to_vec();
    args.extend(["--project", PROJECT, "--service", SERVICE, "--region", BOTH]);

    let output = world.run(&args).await;

    assert_eq!(output.status.code(), Some(2), "{}", stderr_of(&output));
    let log = stderr_of(&output);
    assert!(
        log.contains("--region europe-west1") && log.contains("not found"),
        "{log}"
    );
    assert_eq!(
        world
            .sim
            .model()
            .traffic_history(PROJECT, REGION, SERVICE)
            .len(),
        1
    );
    assert_eq!(world.split(), world.stable_only());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_promotion_someone_changed_since_then_undoing_it_leaves_the_service_alone() {
    // Given a rollout promoted in one region...
    let world = BinaryWorld::start("waves-undo").await;
    let _load = world.start_load(40.0);
    let mut first = vec!["--json"];
    first.extend(QUICK_ROLLOUT);
    let promoted = world.run_on_service(&first).await;
    assert_eq!(promoted.status.code(), Some(0), "{}", stderr_of(&promoted));
    let promoted_split = split_of(&json_of(&promoted));
    let platform = CloudRunService::new(
        GoogleRest::new(&world.sim.cloud_run_url(), Credentials::None),
        PROJECT,
        REGION,
        SERVICE,
    );
    let back = vec![shiftgate::ports::TrafficTarget::new(
        world.stable.as_str(),
        100,
    )];
    let quiet = |_: &str| {};
    // ...when another rollout promoted something else since, the undo leaves it as it is...
    world
        .sim
        .register_image("registry/app:v1.2.0", Behavior::healthy("1.2.0"));
    let mut second = vec!["--json"];
    second.extend(QUICK_ROLLOUT);
    second[3] = "registry/app:v1.2.0";
    let newer = world.run_on_service(&second).await;
    assert_eq!(newer.status.code(), Some(0), "{}", stderr_of(&newer));
    let now = world.split();
    let undone = shiftgate::undo_promotion(
        &platform,
        &back,
        &promoted_split,
        None,
        std::time::Duration::from_secs(10),
        &quiet,
    )
    .await;
    assert!(
        matches!(&undone, Err(shiftgate::NotForced::Ended(reason)) if reason.contains("changed since it was promoted")),
        "{undone:?}"
    );
    assert_eq!(world.split(), now);
    // ...and an undo of the promotion it does serve puts stable back.
    let newer_split = split_of(&json_of(&newer));
    shiftgate::undo_promotion(
        &platform,
        &back,
        &newer_split,
        None,
        std::time::Duration::from_secs(10),
        &quiet,
    )
    .await
    .unwrap();
    assert_eq!(world.split(), world.stable_only());
}

fn split_of(result: &Value) -> Vec<shiftgate::ports::TrafficTarget> {
    result["final_traffic"]
        .as_array()
        .unwrap()
        .iter()
        .map(|share| {
            shiftgate::ports::TrafficTarget::new(
                share["revision"].as_str().unwrap(),
                share["percent"].as_u64().unwrap() as u8,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_waves_bad_input_is_refused_naming_the_flag_and_nothing_changes() {
    let world = BinaryWorld::start("waves-input").await;
    world.sim.add_service(PROJECT, EU, SERVICE, STABLE_IMAGE);
    let service = ["--project", PROJECT, "--service", SERVICE];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["rollout", "--region", BOTH, "--revision", "web-1"],
            "--revision",
        ),
        (vec!["rollout", "--region", BOTH, "--resume"], "--resume"),
        (vec!["rollout", "--region", BOTH], "--image"),
        (
            vec![
                "rollout",
                "--region",
                "us-central1,us-central1",
                "--image",
                "x",
            ],
            "--region",
        ),
        (
            vec!["rollout", "--region", "us-central1,Europe", "--image", "x"],
            "--region",
        ),
        (
            vec![
                "rollout",
                "--region",
                BOTH,
                "--image",
                "x",
                "--wave-steps",
                "50",
            ],
            "--wave-steps",
        ),
        (
            vec![
                "rollout",
                "--region",
                BOTH,
                "--image",
                "x",
                "--wave-bake",
                "2d",
            ],
            "--wave-bake",
        ),
        (
            vec![
                "rollout",
                "--region",
                BOTH,
                "--image",
                "x",
                "--interval",
                "30s",
                "--wave-bake",
                "10s",
            ],
            "--wave-bake",
        ),
        (vec!["status", "--region", BOTH], "--region"),
        (vec!["rollback", "--region", BOTH, "--to", "x"], "--region"),
    ];
    for (args, flag) in cases {
        let mut command = world.command(&args);
        command.args(service);
        let output = binary::run(command).await;
        expect_refused_naming(&output, flag, &args);
    }
    // A config that gives both `region` and `regions`, and an environment in two regions named
    // without --region by a command that works on one.
    std::fs::write(
        world.workdir.join("shiftgate.toml"),
        format!(
            "[environments.prod]\nproject = \"{PROJECT}\"\nregions = [\"{REGION}\", \"{EU}\"]\n\
             service = \"{SERVICE}\"\n"
        ),
    )
    .unwrap();
    let status = world.run(&["status", "--env", "prod"]).await;
    expect_refused_naming(&status, "--region", &"status --env prod");
    std::fs::write(
        world.workdir.join("shiftgate.toml"),
        format!(
            "[environments.prod]\nproject = \"{PROJECT}\"\nregion = \"{REGION}\"\n\
             regions = [\"{EU}\"]\nservice = \"{SERVICE}\"\n"
        ),
    )
    .unwrap();
    let both = world.run(&["status", "--env", "prod"]).await;
    expect_refused_naming(&both, "regions", &"region and regions");
    assert_eq!(world.sim.model().write_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_hooks_when_the_second_region_fails_then_they_ran_once_around_the_first_and_the_rollback_job_ran_after_the_undo()
 {
    let regions = TwoRegions::start("waves-hooks").await;
    let model = regions.world.sim.model();
    model.put_object("loopcloser-db", "loopcloser.db", 4096);
    for job in ["migrate", "restore-notes"] {
        model.add_job(
            PROJECT,
            REGION,
            job,
            JobBehavior::succeeding(std::time::Duration::from_millis(100)),
        );
    }
    regions
        .world
        .sim
        .register_image_in(EU, CANDIDATE_IMAGE, Behavior::erroring("1.1.0", 0.4));
    let mut args = wave_flags(BAD_CANDIDATE_ROLLOUT);
    args.extend([
        "--backup",
        "gs://loopcloser-db/loopcloser.db",
        "--pre-job",
        "migrate",
        "--on-rollback-job",
        "restore-notes",
    ]);
    let mut command = regions.world.command(&args);
    command
        .args(["--project", PROJECT, "--service", SERVICE, "--region", BOTH])
        .env("SHIFTGATE_STORAGE_URL", regions.world.sim.storage_url())
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_OUTPUT", regions.world.workdir.join("outputs"))
        .env(
            "GITHUB_STEP_SUMMARY",
            regions.world.workdir.join("summary.md"),
        );

    let output = binary::run(command).await;

    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    let result = json_of(&output);
    assert_eq!(region(&result, 0)["undone"], "rolled_back");
    // One backup and one migration, before the first region moved; the rollback job once, after
    // the first region was put back, in that region.
    assert_eq!(model.objects("loopcloser-db").len(), 2);
    assert_eq!(model.job_runs("migrate"), 1);
    assert_eq!(model.job_runs("restore-notes"), 1);
    let hooks: Vec<(&str, bool)> = result["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|hook| {
            (
                hook["hook"].as_str().unwrap(),
                hook["ok"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        hooks,
        [
            ("backup", true),
            ("pre_job", true),
            ("on_rollback_job", true)
        ]
    );
    assert_eq!(regions.split(REGION), regions.world.stable_only());
    // The step summary lists each hook.
    let summary = std::fs::read_to_string(regions.world.workdir.join("summary.md")).unwrap();
    for line in [
        "- Backup before the rollout: `gs://loopcloser-db/loopcloser.db` done",
        "- Job before the rollout: `migrate` done",
        "- Job after the rollback: `restore-notes` done",
    ] {
        assert!(summary.contains(line), "{line}: {summary}");
    }
}

impl TwoRegions {
    /// Polls (as any other process would) until `region` serves only a revision other than its
    /// first one: its rollout was promoted there.
    async fn until_promoted(&self, region: &str, stable: &str) -> String {
        for _ in 0..600 {
            if let [(revision, 100)] = self.split(region).as_slice()
                && revision != stable
            {
                return revision.clone();
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("{region} was never promoted");
    }

    /// Polls until `region` gives a revision other than `stable` all its traffic: its wave is
    /// baking at 100%.
    async fn until_wave_bakes(&self, region: &str, stable: &str) {
        for _ in 0..600 {
            if self
                .split(region)
                .iter()
                .any(|(revision, percent)| *percent == 100 && revision != stable)
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("{region} never took its wave");
    }

    /// Polls until `region` has a candidate (its split gained a revision): the first region's
    /// rollout has ended.
    async fn until_wave_starts(&self, region: &str) {
        for _ in 0..600 {
            if self.splits(region).len() >= 2 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("{region} never started its wave");
    }

    /// A shiftgate.toml whose `prod` is the service in both regions, then `rest`.
    fn write_prod(&self, rest: &str) {
        std::fs::write(
            self.world.workdir.join("shiftgate.toml"),
            format!(
                "[environments.prod]\nproject = \"{PROJECT}\"\nregions = [\"{REGION}\", \"{EU}\"]\n\
                 service = \"{SERVICE}\"\n{rest}"
            ),
        )
        .unwrap();
    }

    fn rollout_in_both(&self, rollout: &[&'static str]) -> std::process::Command {
        let mut command = self.world.command(rollout);
        command.args(["--project", PROJECT, "--service", SERVICE, "--region", BOTH]);
        command
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_person_rolled_the_first_region_back_when_the_second_fails_then_the_first_is_left_as_the_person_set_it()
 {
    let regions = TwoRegions::start("waves-person-first").await;
    let mut args = BAD_CANDIDATE_ROLLOUT.to_vec();
    args.extend(["--wave-bake", "5s"]);
    let rollout = binary::run(regions.rollout_in_both(&args));
    let person = async {
        // Once us-central1 is promoted, a person puts it back by hand; then the candidate turns
        // bad in europe-west1, whose wave is baking.
        regions.until_promoted(REGION, &regions.world.stable).await;
        regions.until_wave_starts(EU).await;
        let mut command = regions
            .world
            .command(&["rollback", "--to", &regions.world.stable]);
        command.args(SERVICE_ARGS);
        let back = binary::run(command).await;
        assert_eq!(back.status.code(), Some(0), "{}", stderr_of(&back));
        regions
            .world
            .sim
            .register_image_in(EU, CANDIDATE_IMAGE, Behavior::erroring("1.1.0", 0.4));
    };

    let (output, ()) = tokio::join!(rollout, person);

    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    let result = json_of(&output);
    assert_eq!(result["outcome"], "rolled_back");
    let us = region(&result, 0);
    // The person's change is left as it is, said, and the split shown is the one read after.
    assert_eq!(us["undone"], "left", "{us}");
    assert!(
        us["reason"]
            .as_str()
            .unwrap()
            .contains("changed since it was promoted"),
        "{us}"
    );
    assert_eq!(
        us["final_traffic"][0]["revision"],
        regions.world.stable.as_str()
    );
    assert_eq!(us["final_traffic_confirmed"], true);
    assert_eq!(regions.split(REGION), regions.world.stable_only());
    // Nobody else wrote to us-central1 after the person: the last write was theirs.
    let us_splits = regions.splits(REGION);
    assert_eq!(us_splits.last().unwrap(), &regions.world.stable_only());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_person_aborts_the_second_region_then_the_first_keeps_its_promotion() {
    let regions = TwoRegions::start("waves-abort-second").await;
    let mut args = QUICK_ROLLOUT.to_vec();
    args.extend(["--json", "--wave-bake", "5s"]);
    let rollout = binary::run(regions.rollout_in_both(&args));
    let person = async {
        regions.until_wave_bakes(EU, &regions.eu_stable).await;
        let mut command = regions.world.command(&["abort"]);
        command.args(["--project", PROJECT, "--service", SERVICE, "--region", EU]);
        let aborted = binary::run(command).await;
        assert_eq!(aborted.status.code(), Some(0), "{}", stderr_of(&aborted));
    };

    let (output, ()) = tokio::join!(rollout, person);

    // The rollout stops without writing again, anywhere: us-central1 keeps the candidate it
    // promoted, europe-west1 is on stable by the person's abort.
    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    let result = json_of(&output);
    assert_eq!(result["outcome"], "aborted");
    let us = region(&result, 0);
    assert_eq!(us["outcome"], "promoted");
    assert!(us.get("undone").is_none(), "{us}");
    let us_candidate = us["candidate"].as_str().unwrap();
    assert_eq!(regions.split(REGION), [(us_candidate.to_string(), 100)]);
    assert_eq!(regions.split(EU), [(regions.eu_stable.clone(), 100)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_an_environment_in_two_regions_with_a_public_url_then_health_probes_that_url_without_a_region()
 {
    let regions = TwoRegions::start("waves-health").await;
    let url = regions
        .world
        .sim
        .service_url(PROJECT, REGION, SERVICE)
        .unwrap();
    regions.write_prod(&format!("url = \"{url}\"\n"));

    let output = regions
        .world
        .run(&["--json", "health", "--env", "prod"])
        .await;

    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let result = json_of(&output);
    assert_eq!(result["outcome"], "healthy");
    assert_eq!(result["results"][0]["url"], format!("{url}/health"));
    // Other commands, which work on one region's service, still ask which.
    let status = regions.world.run(&["status", "--env", "prod"]).await;
    expect_refused_naming(&status, "--region", &"status --env prod");
}
