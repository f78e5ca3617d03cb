//! The Prometheus metrics backend end to end: a real Prometheus server (Debian's `prometheus`
//! package) scrapes the simulator's counters and latency histograms, and the binary gates a rollout on PromQL answers.

use crate::support::binary;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use binary::{json_of, run, stderr_of};
use futures_util::StreamExt;
use serde_json::Value;
use shiftgate::clock::Clock;
use shiftgate_sim::{Behavior, ServiceKey, Sim};

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

/// Debian's Prometheus, or `None` off CI (the test then says it skipped); CI must have it.
fn prometheus_or_skip() -> Option<PathBuf> {
    let binary = prometheus_binary();
    if binary.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install Debian's prometheus package (.ci/run does)"
        );
        eprintln!(
            "SKIPPED: no Prometheus server here (apt-get install prometheus); CI runs this test"
        );
    }
    binary
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
            // Stable answers with a 90 ms p95: the gate is read from the histogram every time.
            "--max-latency",
            "p95=400ms",
        ])
        .env_clear()
        .env("SHIFTGATE_CLOUD_RUN_URL", sim.cloud_run_url())
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null());
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_real_prometheus_when_candidates_roll_out_then_the_good_one_is_promoted_and_the_bad_and_slow_ones_rolled_back()
 {
    let Some(binary) = prometheus_or_skip() else {
        return;
    };
    let sim = Sim::start(Clock::new()).await.unwrap();
    sim.set_operation_delay(Duration::from_millis(50));
    let good_stable = sim.add_service("sim-project", "us-central1", "good", "registry/app:v1.0.0");
    let bad_stable = sim.add_service("sim-project", "us-central1", "bad", "registry/app:v1.0.0");
    let slow_stable = sim.add_service("sim-project", "us-central1", "slow", "registry/app:v1.0.0");
    sim.register_image("registry/app:v1.1.0-bad", Behavior::erroring("1.1.0", 0.4));
    sim.register_image(
        "registry/app:v1.1.0-slow",
        Behavior::healthy("1.1.0")
            .with_latency(Duration::from_millis(800), Duration::from_millis(1500)),
    );
    let _good_load = sim.start_load("sim-project", "us-central1", "good", 20.0);
    let _bad_load = sim.start_load("sim-project", "us-central1", "bad", 20.0);
    let _slow_load = sim.start_load("sim-project", "us-central1", "slow", 20.0);
    let prometheus = start_prometheus(binary, &sim.metrics_url()).await;

    let (good, bad, slow) = tokio::join!(
        run(rollout(&sim, &prometheus, "good", "registry/app:v1.1.0")),
        run(rollout(&sim, &prometheus, "bad", "registry/app:v1.1.0-bad")),
        run(rollout(
            &sim,
            &prometheus,
            "slow",
            "registry/app:v1.1.0-slow"
        )),
    );

    assert_eq!(good.status.code(), Some(0), "{}", stderr_of(&good));
    let promoted = json_of(&good);
    assert_eq!(promoted["outcome"], "promoted");
    let steps = promoted["steps"].as_array().unwrap();
    for step in steps {
        assert_eq!(step["candidate_5xx"], 0);
    }
    // Each step reports its own requests: the last one alone carries the floor at 100%.
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

    assert_eq!(slow.status.code(), Some(1), "{}", stderr_of(&slow));
    let too_slow = json_of(&slow);
    assert_eq!(too_slow["outcome"], "rolled_back");
    let reason = too_slow["reason"].as_str().unwrap();
    assert!(reason.contains("candidate p95"), "{too_slow}");
    assert_eq!(
        sim.model()
            .current_split("sim-project", "us-central1", "slow"),
        vec![(slow_stable, 100)]
    );
    // The good candidate passed the same gate on the histogram, not for want of data.
    let looked = &steps.last().unwrap()["latency"][0];
    assert!(
        looked["candidate_requests"].as_u64().unwrap() > 0,
        "{looked}"
    );
}

/// An instant PromQL query: each series of the answer by its labels, with its value.
async fn query(
    client: &reqwest::Client,
    prometheus: &Prometheus,
    promql: &str,
) -> Vec<(BTreeMap<String, String>, f64)> {
    let answer: Value = client
        .get(format!("{}/api/v1/query", prometheus.url))
        .query(&[("query", promql)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["status"], "success", "{promql}: {answer}");
    answer["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|series| {
            let labels = serde_json::from_value(series["metric"].clone()).unwrap();
            let value = series["value"][1].as_str().unwrap().parse().unwrap();
            (labels, value)
        })
        .collect()
}

/// Polls `promql` until its one series' value passes `done` (Prometheus scrapes every second).
async fn wait_for_value(
    client: &reqwest::Client,
    prometheus: &Prometheus,
    promql: &str,
    done: impl Fn(f64) -> bool,
) {
    for _ in 0..600 {
        if let [(_, value)] = query(client, prometheus, promql).await.as_slice()
            && done(*value)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{promql} did not reach the expected value within 60 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_real_prometheus_then_the_increase_of_each_latency_bucket_is_what_the_data_plane_served()
 {
    let Some(binary) = prometheus_or_skip() else {
        return;
    };
    let started = std::time::Instant::now();
    let sim = Sim::start(Clock::new()).await.unwrap();
    let ms = Duration::from_millis;
    sim.register_image(
        "registry/app:slow",
        Behavior::healthy("1.0.0").with_latency(ms(20), ms(80)),
    );
    let revision = sim.add_service("sim-project", "us-central1", "latency", "registry/app:slow");
    let url = sim
        .service_url("sim-project", "us-central1", "latency")
        .unwrap();
    let client = shiftgate::client_builder().build().unwrap();
    // One request before the first scrape, so every bucket series exists before the batch and
    // the batch is all increase.
    let answer = client.get(format!("{url}/")).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    let prometheus = start_prometheus(binary, &sim.metrics_url()).await;
    let count = "run_googleapis_com:request_latencies_count{service_name=\"latency\"}";
    wait_for_value(&client, &prometheus, count, |v| v == 1.0).await;

    // When 200 requests go through the data plane, 20 at a time, each waiting its latency,
    let before = sim.model().clock().now();
    let statuses: Vec<u16> = futures_util::stream::iter(0..200)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            async move {
                client
                    .get(format!("{url}/"))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }
        })
        .buffer_unordered(20)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 200));
    let key = ServiceKey::new("sim-project", "us-central1", "latency");
    let served = sim
        .model()
        .latencies_between(&key, before, sim.model().clock().now())
        .remove(&revision)
        .unwrap();
    assert_eq!(served.len(), 200);
    // and Prometheus has scraped the final state a few times,
    wait_for_value(&client, &prometheus, count, |v| v == 201.0).await;
    let samples = format!("count_over_time({count}[1h])");
    let scraped = query(&client, &prometheus, &samples).await[0].1;
    wait_for_value(&client, &prometheus, &samples, |n| n >= scraped + 5.0).await;

    // then the increase of each bucket over everything scraped is the batch's latencies below
    // its `le`, give or take increase()'s extrapolation: at most half an average scrape interval
    // before the first sample and 1.1 of one after the last, never less than the counted increase.
    let range = format!("{}ms", started.elapsed().as_millis() + 5_000);
    let samples = query(
        &client,
        &prometheus,
        &format!("count_over_time({count}[{range}])"),
    )
    .await[0]
        .1;
    let most = 1.0 + 1.6 / (samples - 1.0);
    let increases = query(
        &client,
        &prometheus,
        &format!(
            "sum by (revision_name, le) (increase(run_googleapis_com:request_latencies_bucket{{service_name=\"latency\"}}[{range}]))"
        ),
    )
    .await;
    assert_eq!(
        increases.len(),
        42,
        "41 bounds of the default layout and +Inf"
    );
    for (labels, increase) in &increases {
        assert_eq!(labels["revision_name"], revision);
        let le: f64 = labels["le"].parse().unwrap();
        let below = served
            .iter()
            .filter(|l| (l.as_nanos() as f64) / 1e6 < le)
            .count() as f64;
        assert!(
            below <= *increase + 1e-9 && *increase <= below * most + 1e-9,
            "le={}: Prometheus says {increase}, the data plane served {below} below it (extrapolation up to ×{most:.3})",
            labels["le"]
        );
    }
}
