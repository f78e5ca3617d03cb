//! The Prometheus metrics backend end to end: a real Prometheus server (Debian's `prometheus`
//! package) scrapes the simulator's counters, and the binary gates a rollout on PromQL answers.

use crate::support::binary;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use binary::{json_of, run, stderr_of};
use shiftgate::clock::Clock;
use shiftgate_sim::{Behavior, Sim};

/// A Prometheus server on loopback with its own data directory; killed on drop.
struct Prometheus {
    child: Child,
    url: String,
    dir: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn prometheus_binary() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("SHIFTGATE_TEST_PROMETHEUS").map(PathBuf::from),
        Some(PathBuf::from("/usr/bin/prometheus")),
    ];
    candidates.into_iter().flatten().find(|path| path.is_file())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_prometheus(binary: PathBuf, scrape: &str) -> Prometheus {
    let target = scrape
        .trim_start_matches("http://")
        .trim_end_matches("/metrics");
    let dir = std::env::temp_dir().join(format!(
        "shiftgate-prometheus-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: simulated-cloud-run\n    static_configs:\n      - targets: [\"{target}\"]\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let child = Command::new(binary)
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus starts");
    let prometheus = Prometheus {
        child,
        url: format!("http://127.0.0.1:{port}"),
        dir,
    };
    let client = shiftgate::client_builder().build().unwrap();
    for _ in 0..300 {
        let ready = client
            .get(format!("{}/-/ready", prometheus.url))
            .send()
            .await
            .is_ok_and(|response| response.status().is_success());
        if ready {
            return prometheus;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("prometheus did not become ready within 30 s");
}

fn rollout(sim: &Sim, prometheus: &Prometheus, service: &str, image: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shiftgate"));
    command
        .args([
            "rollout",
            "--json",
            "--no-incident",
            "--project",
            "sim-project",
            "--region",
            "us-central1",
            "--service",
            service,
            "--image",
            image,
            "--prometheus-url",
            &prometheus.url,
            "--steps",
            "50,100",
            "--bake",
            "5s",
            "--interval",
            "1s",
            "--min-requests",
            "20",
            // One scrape interval plus one evaluation: when a request is queryable.
            "--metrics-delay",
            "2s",
        ])
        .env_clear()
        .env("SHIFTGATE_CLOUD_RUN_URL", sim.cloud_run_url())
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null());
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_real_prometheus_when_candidates_roll_out_then_the_good_one_is_promoted_and_the_bad_one_rolled_back()
 {
    let Some(binary) = prometheus_binary() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install Debian's prometheus package (.ci/run does)"
        );
        eprintln!(
            "SKIPPED: no Prometheus server here (apt-get install prometheus); CI runs this test"
        );
        return;
    };
    let sim = Sim::start(Clock::new()).await.unwrap();
    sim.set_operation_delay(Duration::from_millis(50));
    let good_stable = sim.add_service("sim-project", "us-central1", "good", "registry/app:v1.0.0");
    let bad_stable = sim.add_service("sim-project", "us-central1", "bad", "registry/app:v1.0.0");
    sim.register_image("registry/app:v1.1.0-bad", Behavior::erroring("1.1.0", 0.4));
    let _good_load = sim.start_load("sim-project", "us-central1", "good", 20.0);
    let _bad_load = sim.start_load("sim-project", "us-central1", "bad", 20.0);
    let prometheus = start_prometheus(binary, &sim.metrics_url()).await;

    let (good, bad) = tokio::join!(
        run(rollout(&sim, &prometheus, "good", "registry/app:v1.1.0")),
        run(rollout(&sim, &prometheus, "bad", "registry/app:v1.1.0-bad")),
    );

    assert_eq!(good.status.code(), Some(0), "{}", stderr_of(&good));
    let promoted = json_of(&good);
    assert_eq!(promoted["outcome"], "promoted");
    let steps = promoted["steps"].as_array().unwrap();
    for step in steps {
        assert_eq!(step["candidate_5xx"], 0);
    }
    // The sequential test counts from the rollout's start: the last step has seen the floor.
    let last = steps.last().unwrap();
    assert!(
        last["candidate_requests"].as_u64().unwrap() >= 20,
        "judged on Prometheus' counts: {last}"
    );
    assert_eq!(
        sim.model()
            .current_split("sim-project", "us-central1", "good"),
        vec![(promoted["candidate"].as_str().unwrap().to_string(), 100)]
    );
    assert_ne!(promoted["candidate"], good_stable.as_str());

    assert_eq!(bad.status.code(), Some(1), "{}", stderr_of(&bad));
    let rolled_back = json_of(&bad);
    assert_eq!(rolled_back["outcome"], "rolled_back");
    assert!(
        rolled_back["reason"]
            .as_str()
            .unwrap()
            .contains("candidate 5xx"),
        "{rolled_back}"
    );
    assert_eq!(
        sim.model()
            .current_split("sim-project", "us-central1", "bad"),
        vec![(bad_stable, 100)]
    );
}
