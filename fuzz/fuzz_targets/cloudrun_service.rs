//! Bytes → a Cloud Run v2 Service (and Revision) answer → the engine's state: never a panic, and
//! never a split that cannot be.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shiftgate::wire::cloudrun::{ListRevisionsResponse, Operation, Revision, Service};

fuzz_target!(|data: &[u8]| {
    if let Ok(service) = serde_json::from_slice::<Service>(data) {
        let state = service.to_state();
        let sum: u32 = state.traffic.iter().map(|t| u32::from(t.percent)).sum();
        assert!(sum <= 100, "a split of {sum}% was accepted");
        let serving: u32 = state.serving().iter().map(|(_, p)| u32::from(*p)).sum();
        assert_eq!(serving, sum);
        for target in &state.traffic {
            assert!(state.percent_of(&target.revision) <= 100);
        }
    }
    if let Ok(revision) = serde_json::from_slice::<Revision>(data) {
        let info = revision.to_info();
        assert_eq!(info.ready, info.reason.is_none());
    }
    if let Ok(listing) = serde_json::from_slice::<ListRevisionsResponse>(data) {
        listing.revisions.iter().for_each(|r| drop(r.to_info()));
    }
    let _ = serde_json::from_slice::<Operation>(data);
});
