//! The simulator's request counters in Prometheus text exposition format (`GET /metrics`), named and
//! labelled as Google Managed Prometheus shows Cloud Run's `request_count`, for a real Prometheus to scrape.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::model::SimModel;

pub const METRIC: &str = "run_googleapis_com:request_count";

/// Cumulative requests per service, revision and response class, of every simulated service.
pub fn exposition(model: &SimModel) -> String {
    let state = model.state();
    let visible_until = state.clock.now().checked_sub(state.ingestion_lag);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP {METRIC} Requests served by each revision, by response class (simulated Cloud Run)."
    );
    let _ = writeln!(out, "# TYPE {METRIC} counter");
    for (key, service) in &state.services {
        for revision in &service.revisions {
            let Some(stats) = state.stats.get(&revision.name) else {
                continue;
            };
            let mut by_class: BTreeMap<String, u64> = BTreeMap::new();
            for hit in stats
                .hits
                .iter()
                .filter(|hit| visible_until.is_some_and(|until| hit.at <= until))
            {
                *by_class.entry(format!("{}xx", hit.code / 100)).or_default() += 1;
            }
            for (class, count) in by_class {
                let _ = writeln!(
                    out,
                    "{METRIC}{{project_id=\"{}\",location=\"{}\",service_name=\"{}\",revision_name=\"{}\",response_code_class=\"{class}\"}} {count}",
                    key.project, key.region, key.service, revision.name
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use shiftgate_clock::Clock;

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
}
