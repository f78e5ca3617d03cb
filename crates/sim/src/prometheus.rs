//! The simulator's request counters and latency histograms in Prometheus text exposition format
//! (`GET /metrics`), named and labelled as Google Managed Prometheus shows Cloud Run's metrics, for a real Prometheus to scrape.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::distribution::Binned;
use crate::model::SimModel;
use crate::state::Hit;

pub const METRIC: &str = "run_googleapis_com:request_count";
pub const LATENCIES: &str = "run_googleapis_com:request_latencies";

/// Cumulative requests per service, revision and response class, and each revision's latency
/// histogram, of every simulated service, as far as ingested.
pub fn exposition(model: &SimModel) -> String {
    let state = model.state();
    let visible_until = state.clock.now().checked_sub(state.ingestion_lag);
    let visible = |hit: &&Hit| visible_until.is_some_and(|until| hit.at <= until);
    let mut counters = String::new();
    let mut histograms = String::new();
    let _ = writeln!(
        counters,
        "# HELP {METRIC} Requests served by each revision, by response class (simulated Cloud Run)."
    );
    let _ = writeln!(counters, "# TYPE {METRIC} counter");
    let _ = writeln!(
        histograms,
        "# HELP {LATENCIES} Request latencies of each revision in milliseconds (simulated Cloud Run)."
    );
    let _ = writeln!(histograms, "# TYPE {LATENCIES} histogram");
    for (key, service) in &state.services {
        for revision in &service.revisions {
            let Some(stats) = state.stats.get(&revision.name) else {
                continue;
            };
            let labels = format!(
                "project_id=\"{}\",location=\"{}\",service_name=\"{}\",revision_name=\"{}\"",
                key.project, key.region, key.service, revision.name
            );
            let mut by_class: BTreeMap<String, u64> = BTreeMap::new();
            for hit in stats.hits.iter().filter(visible) {
                *by_class.entry(format!("{}xx", hit.code / 100)).or_default() += 1;
            }
            for (class, count) in by_class {
                let _ = writeln!(
                    counters,
                    "{METRIC}{{{labels},response_code_class=\"{class}\"}} {count}"
                );
            }
            let binned = Binned::new(
                &state.latency_buckets,
                stats.hits.iter().filter(visible).map(|hit| hit.latency),
            );
            if binned.millis.is_empty() {
                continue;
            }
            // `le="b"` sums Google's buckets up to the one b closes, so it counts latencies
            // strictly below b (see `Binned`): the same binning as the Monitoring answer.
            let mut below = 0;
            for (bound, count) in binned.bounds.iter().zip(&binned.counts) {
                below += count;
                let _ = writeln!(
                    histograms,
                    "{LATENCIES}_bucket{{{labels},le=\"{bound}\"}} {below}"
                );
            }
            let total = binned.millis.len();
            let _ = writeln!(
                histograms,
                "{LATENCIES}_bucket{{{labels},le=\"+Inf\"}} {total}"
            );
            let _ = writeln!(histograms, "{LATENCIES}_sum{{{labels}}} {}", binned.sum());
            let _ = writeln!(histograms, "{LATENCIES}_count{{{labels}}} {total}");
        }
    }
    counters + &histograms
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LatencyBuckets;
    use shiftgate_clock::Clock;
    use std::time::Duration;

    #[test]
    fn counters_are_labelled_like_managed_prometheus() {
        let model = SimModel::new(Clock::new());
        let stable = model.add_service("p", "r", "app", "img:1");
        let now = model.clock().now();
        model.record(&stable, 200, now);
        model.record(&stable, 200, now);
        model.record(&stable, 503, now);
        let text = exposition(&model);
        assert!(text.contains("# TYPE run_googleapis_com:request_count counter"));
        assert!(text.contains(&format!(
            "run_googleapis_com:request_count{{project_id=\"p\",location=\"r\",service_name=\"app\",revision_name=\"{stable}\",response_code_class=\"2xx\"}} 2"
        )));
        assert!(text.contains("response_code_class=\"5xx\"} 1"));
    }

    #[tokio::test(start_paused = true)]
    async fn latencies_are_a_cumulative_histogram_in_the_layout_set_as_far_as_ingested() {
        let model = SimModel::new(Clock::new());
        let stable = model.add_service("p", "r", "app", "img:1");
        model.set_latency_buckets(LatencyBuckets::Explicit(vec![100.0, 200.0, 400.0]));
        model.set_ingestion_lag(Duration::from_secs(60));
        let ms = Duration::from_millis;
        // Given five requests a minute ago, one exactly on a bound, and one just now,
        let before = model.clock().now();
        for latency in [50, 100, 150, 399, 2000] {
            model.record_with_latency(&stable, 200, before, ms(latency));
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
        model.record_with_latency(&stable, 500, model.clock().now(), ms(10));

        // then the histogram holds the five ingested ones, each bucket counting those below it:
        let text = exposition(&model);
        let labels = format!(
            "project_id=\"p\",location=\"r\",service_name=\"app\",revision_name=\"{stable}\""
        );
        let histogram: Vec<&str> = text
            .lines()
            .skip_while(|line| !line.starts_with("# HELP run_googleapis_com:request_latencies"))
            .collect();
        let expected = [
            "# HELP run_googleapis_com:request_latencies Request latencies of each revision in milliseconds (simulated Cloud Run).".to_string(),
            "# TYPE run_googleapis_com:request_latencies histogram".to_string(),
            format!("run_googleapis_com:request_latencies_bucket{{{labels},le=\"100\"}} 1"),
            // 100 ms itself is in Google's [100, 200), so not below 100 but below 200.
            format!("run_googleapis_com:request_latencies_bucket{{{labels},le=\"200\"}} 3"),
            format!("run_googleapis_com:request_latencies_bucket{{{labels},le=\"400\"}} 4"),
            format!("run_googleapis_com:request_latencies_bucket{{{labels},le=\"+Inf\"}} 5"),
            format!("run_googleapis_com:request_latencies_sum{{{labels}}} 2699"),
            format!("run_googleapis_com:request_latencies_count{{{labels}}} 5"),
        ];
        assert_eq!(histogram, expected, "{text}");
        // The counter sees what the histogram sees.
        assert!(text.contains("response_code_class=\"2xx\"} 5"), "{text}");
        assert!(!text.contains("5xx"), "{text}");
    }

    #[test]
    fn a_revision_without_ingested_requests_has_no_histogram_lines() {
        let model = SimModel::new(Clock::new());
        model.add_service("p", "r", "app", "img:1");
        let text = exposition(&model);
        assert!(text.contains("# TYPE run_googleapis_com:request_latencies histogram"));
        assert!(!text.contains("request_latencies_bucket"), "{text}");
    }
}
