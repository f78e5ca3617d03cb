//! Bytes → a Prometheus instant-query answer → per-revision counts: never a panic, and never
//! more 5xx than requests.
#![no_main]

use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use shiftgate::ports::Window;
use shiftgate::wire::prometheus;

fuzz_target!(|data: &[u8]| {
    let Ok(answer) = serde_json::from_slice(data) else {
        return;
    };
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let window = Window {
        start,
        end: start + Duration::from_secs(300),
    };
    if let Ok(counts) = prometheus::read_answer(answer, window) {
        for c in counts.values() {
            assert!(c.server_errors <= c.total, "{c:?}");
        }
    }
});
