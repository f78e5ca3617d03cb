//! Bytes → a Cloud Monitoring `timeSeries.list` answer → per-revision counts: never a panic, and
//! never more 5xx than requests.
#![no_main]

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use shiftgate::ports::Window;
use shiftgate::wire::monitoring;

fuzz_target!(|data: &[u8]| {
    let Ok(answer) = serde_json::from_slice(data) else {
        return;
    };
    // The window of the seed corpus: 2027-01-15T08:00:00Z for five minutes.
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let window = Window {
        start,
        end: start + Duration::from_secs(300),
    };
    let mut counts = BTreeMap::new();
    if monitoring::read_answer(&mut counts, answer, window).is_ok() {
        for c in counts.values() {
            assert!(c.server_errors <= c.total, "{c:?}");
            assert!(c.total <= i64::MAX as u64);
        }
    }
});
