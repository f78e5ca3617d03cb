//! Bytes → a health answer (two bytes of HTTP status, then the body) → a verdict under the
//! default rule, `--health-expect` rules and a version requirement: never a panic, and a
//! non-2xx is never a pass.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shiftgate::Expectations;
use shiftgate::ports::HealthResponse;

fuzz_target!(|data: &[u8]| {
    let Some((status, body)) = data.split_first_chunk::<2>() else {
        return;
    };
    let response = HealthResponse {
        status: u16::from_be_bytes(*status) % 1000,
        body: String::from_utf8_lossy(body).into_owned(),
    };
    let strict = Expectations {
        fields: vec![
            "status=ok".parse().unwrap(),
            "checks.db=up".parse().unwrap(),
        ],
        version: Some(">=1.4.0".parse().unwrap()),
        ..Expectations::default()
    };
    for expectations in [Expectations::default(), strict] {
        let verdict = expectations.judge(&response);
        if verdict.is_pass() {
            assert!((200..300).contains(&response.status), "{response:?}");
        }
    }
});
