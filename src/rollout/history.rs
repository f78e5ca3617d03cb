//! A service's rollout history: one compact entry per ended rollout or manual rollback, kept newest
//! last in the `shiftgate.dev/history` annotation, bounded in count and size; pure functions only.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::rollout::timeline::{Event, EventKind};

/// The service annotation that holds the history (a JSON array, newest last).
pub const HISTORY_ANNOTATION: &str = "shiftgate.dev/history";
/// At most this many entries are kept; the oldest go first.
pub const MAX_ENTRIES: usize = 50;
/// The annotation's value stays under this many bytes (Cloud Run allows 256 KiB for all of a
/// service's annotations together; the history takes a small, fixed part of that).
pub const MAX_BYTES: usize = 16 * 1024;
/// A reason is cut to this many characters (the rollout's own result has the whole text).
pub const MAX_REASON_CHARS: usize = 160;
/// Any other text field (names, owner) is cut to this many characters.
const MAX_FIELD_CHARS: usize = 200;

/// One ended rollout (or a person's rollback) as the history keeps it. Times are RFC 3339 (UTC,
/// whole seconds).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The rollout record's id; a manual rollback with no rollout in progress gets its own.
    pub id: String,
    pub candidate: String,
    pub stable: String,
    /// `promoted`, `rolled_back`, `failed`, `interrupted` or `aborted`.
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub started: String,
    pub ended: String,
    /// The step's percent when a gate failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_percent: Option<u8>,
    /// When the candidate first received traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_at: Option<String>,
    /// When the failing verdict was reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detected_at: Option<String>,
    /// When the write that restored stable was sent (the entry is part of that write, so it
    /// exists only when the write landed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_at: Option<String>,
    /// Who: the rollout's owner (Actions run URL, else host and pid).
    #[serde(default)]
    pub who: String,
    /// A person's `rollback` or `abort`, not the rollout's own decision.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub manual: bool,
}

/// RFC 3339 in whole seconds, as the history writes times.
pub fn time_text(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

fn parse_time(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(text.trim().trim_end_matches('Z')).ok()
}

impl HistoryEntry {
    pub fn ended_at(&self) -> Option<SystemTime> {
        parse_time(&self.ended)
    }

    /// The failing verdict's time minus the candidate's first traffic.
    pub fn time_to_detect(&self) -> Option<Duration> {
        let from = parse_time(self.traffic_at.as_deref()?)?;
        let to = parse_time(self.detected_at.as_deref()?)?;
        to.duration_since(from).ok()
    }

    /// The restoring write's time minus the failing verdict's.
    pub fn time_to_restore(&self) -> Option<Duration> {
        let from = parse_time(self.detected_at.as_deref()?)?;
        let to = parse_time(self.restored_at.as_deref()?)?;
        to.duration_since(from).ok()
    }

    /// Every text cut to its bound, so that one entry can never fill the annotation.
    fn bounded(mut self) -> Self {
        self.reason = self
            .reason
            .map(|reason| cut(&reason, MAX_REASON_CHARS))
            .filter(|reason| !reason.is_empty());
        for field in [
            &mut self.id,
            &mut self.candidate,
            &mut self.stable,
            &mut self.outcome,
            &mut self.started,
            &mut self.ended,
            &mut self.who,
        ] {
            *field = cut(field, MAX_FIELD_CHARS);
        }
        for text in [
            &mut self.traffic_at,
            &mut self.detected_at,
            &mut self.restored_at,
        ]
        .into_iter()
        .flatten()
        {
            *text = cut(text, MAX_FIELD_CHARS);
        }
        self
    }
}

/// `text` on one line, cut to `max` characters (an ellipsis marks a cut).
fn cut(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let flat = flat.trim();
    if flat.chars().count() <= max {
        return flat.to_string();
    }
    let mut out: String = flat.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The history as read from the annotation: its entries, oldest first, and why any of it was
/// left out.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct History {
    pub entries: Vec<HistoryEntry>,
    /// Set when the annotation (or some entries of it) could not be read and was left out.
    pub unreadable: Option<String>,
    /// How many items the annotation's array holds, entries or not (all count toward the bounds).
    pub items: usize,
    /// The annotation's length in bytes.
    pub bytes: usize,
}

impl History {
    /// Whether the history is at or near its bounds, so that older entries may have been dropped:
    /// [`MAX_ENTRIES`] items, or its size plus one more item of its average size is over
    /// [`MAX_BYTES`].
    pub fn near_bound(&self) -> bool {
        self.items >= MAX_ENTRIES
            || (self.items > 0 && self.bytes + self.bytes / self.items > MAX_BYTES)
    }
}

/// The annotation's array items, verbatim, or why the value is not an array.
fn items_of(text: &str) -> Result<Vec<Value>, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(items)) => Ok(items),
        Ok(_) => Err(format!(
            "{HISTORY_ANNOTATION} is not a JSON array; it was ignored"
        )),
        Err(error) => Err(format!(
            "{HISTORY_ANNOTATION} is not JSON ({error}); it was ignored"
        )),
    }
}

/// Reads the annotation's value. Never fails: a value that is not a JSON array is left out whole,
/// an array item that is not an entry is left out alone (it is kept in the annotation: another
/// version of shiftgate may have written it), and `unreadable` says so.
pub fn parse(text: Option<&str>) -> History {
    let Some(text) = text else {
        return History::default();
    };
    let items = match items_of(text) {
        Ok(items) => items,
        Err(why) => {
            return History {
                unreadable: Some(why),
                bytes: text.len(),
                ..History::default()
            };
        }
    };
    let total = items.len();
    let entries: Vec<HistoryEntry> = items
        .into_iter()
        .filter_map(|item| serde_json::from_value(item).ok())
        .collect();
    let skipped = total - entries.len();
    History {
        unreadable: (skipped > 0).then(|| {
            format!("{skipped} of {total} entries of {HISTORY_ANNOTATION} are not entries; they were ignored")
        }),
        entries,
        items: total,
        bytes: text.len(),
    }
}

/// What [`append`] made: the annotation's new value, and what it left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub value: String,
    /// Why the existing value was dropped as unreadable (it was not a JSON array).
    pub unreadable: Option<String>,
    /// How many old items were dropped to stay within the bounds.
    pub dropped: usize,
}

/// The annotation's value with `entry` added as the newest: at most [`MAX_ENTRIES`] items and
/// [`MAX_BYTES`] bytes, the oldest dropped first. Existing items are kept verbatim, whether this
/// version reads them or not (another version's entries, fields it does not know), so that one
/// version's write never erases another's. A value that is not a JSON array never stops the
/// append: it starts a new list.
pub fn append(existing: Option<&str>, entry: HistoryEntry) -> Appended {
    let (mut items, unreadable) = match existing.map(items_of) {
        None => (Vec::new(), None),
        Some(Ok(items)) => (items, None),
        Some(Err(why)) => (Vec::new(), Some(why)),
    };
    items.push(serde_json::to_value(entry.bounded()).expect("history entries serialize"));
    let mut dropped = items.len().saturating_sub(MAX_ENTRIES);
    items.drain(..dropped);
    let mut value = serde_json::to_string(&items).expect("history items serialize");
    while value.len() > MAX_BYTES && items.len() > 1 {
        // Drop as many of the oldest as the excess needs at once (each item is at least 2 bytes
        // with its comma), then measure again.
        let excess = value.len() - MAX_BYTES;
        let mut freed = 0;
        let mut count = 0;
        while freed < excess && count < items.len() - 1 {
            freed += serde_json::to_string(&items[count])
                .map(|text| text.len() + 1)
                .unwrap_or(1);
            count += 1;
        }
        items.drain(..count);
        dropped += count;
        value = serde_json::to_string(&items).expect("history items serialize");
    }
    Appended {
        value,
        unreadable,
        dropped,
    }
}

/// What a rollout's timeline says about its candidate's exposure and the failure: when the
/// candidate first got traffic, when (and at which percent) a gate failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Instants {
    pub traffic_at: Option<SystemTime>,
    pub detected_at: Option<SystemTime>,
    pub failed_percent: Option<u8>,
}

/// Reads [`Instants`] from `timeline`. The first traffic is the first split written with a
/// non-zero share for `candidate`; detection is the first failed step (a rollout stopped by an
/// API failure, an interrupt or a person detected nothing).
///
/// A `resumed` rollout (`--resume`) gave its candidate traffic in an earlier process, at a time
/// nobody recorded: its first traffic is unknown, and left out (so is its time to detect). The
/// record's start is no stand-in: it comes before the candidate was deployed and, for a paused
/// rollout, before a hold of up to hours, which would swamp the median of the report.
pub fn instants(timeline: &[Event], candidate: &str, resumed: bool) -> Instants {
    let first_traffic = timeline.iter().find_map(|event| match &event.kind {
        EventKind::TrafficSet { traffic, .. }
            if traffic
                .iter()
                .any(|t| t.revision == candidate && t.percent > 0) =>
        {
            Some(event.at)
        }
        _ => None,
    });
    // Known only when this process gave the candidate its first traffic.
    let traffic_at = first_traffic.filter(|_| !resumed);
    let failed = timeline.iter().find_map(|event| match &event.kind {
        EventKind::StepFailed { percent, .. } => Some((event.at, *percent)),
        _ => None,
    });
    Instants {
        traffic_at,
        detected_at: failed.map(|(at, _)| at),
        failed_percent: failed.map(|(_, percent)| percent),
    }
}

/// The median and the maximum of `values` (the median of an even count is the mean of the two
/// middle ones); `None` for none.
pub fn median_and_max(values: &[Duration]) -> Option<(Duration, Duration)> {
    let mut sorted = values.to_vec();
    sorted.sort();
    let max = *sorted.last()?;
    let middle = sorted.len() / 2;
    let median = if sorted.len() % 2 == 1 {
        sorted[middle]
    } else {
        (sorted[middle - 1] + sorted[middle]) / 2
    };
    Some((median, max))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::ports::TrafficTarget;

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000 + seconds)
    }

    fn entry(n: usize) -> HistoryEntry {
        HistoryEntry {
            id: format!("id-{n}"),
            candidate: format!("web-{n:05}-new"),
            stable: format!("web-{n:05}-old"),
            outcome: "promoted".into(),
            reason: None,
            started: time_text(at(n as u64 * 100)),
            ended: time_text(at(n as u64 * 100 + 60)),
            who: "https://github.com/o/r/actions/runs/1/attempts/1".into(),
            ..HistoryEntry::default()
        }
    }

    fn ids(value: &str) -> Vec<String> {
        parse(Some(value))
            .entries
            .into_iter()
            .map(|entry| entry.id)
            .collect()
    }

    #[test]
    fn given_no_annotation_when_an_entry_is_appended_then_the_history_holds_just_it() {
        let appended = append(None, entry(1));
        assert_eq!(ids(&appended.value), ["id-1"]);
        assert_eq!(appended.unreadable, None);
        assert_eq!(appended.dropped, 0);
    }

    #[test]
    fn given_a_history_when_an_entry_is_appended_then_it_is_the_newest_and_the_rest_are_kept() {
        let first = append(None, entry(1)).value;
        let second = append(Some(&first), entry(2)).value;
        assert_eq!(ids(&second), ["id-1", "id-2"]);
        assert_eq!(parse(Some(&second)).entries[1], entry(2));
    }

    #[test]
    fn given_a_full_history_when_an_entry_is_appended_then_the_oldest_goes_and_50_stay() {
        let mut value = None;
        for n in 0..MAX_ENTRIES {
            value = Some(append(value.as_deref(), entry(n)).value);
        }
        let appended = append(value.as_deref(), entry(MAX_ENTRIES));
        let kept = ids(&appended.value);
        assert_eq!(kept.len(), MAX_ENTRIES);
        assert_eq!(kept.first().unwrap(), "id-1");
        assert_eq!(kept.last().unwrap(), &format!("id-{MAX_ENTRIES}"));
        assert_eq!(appended.dropped, 1);
        assert!(appended.value.len() <= MAX_BYTES);
    }

    #[test]
    fn given_long_entries_when_appended_then_the_value_stays_within_16_kib_dropping_the_oldest() {
        let long = |n: usize| HistoryEntry {
            reason: Some("x".repeat(5_000)),
            who: "w".repeat(5_000),
            ..entry(n)
        };
        let mut value: Option<String> = None;
        let mut dropped = 0;
        for n in 0..60 {
            let appended = append(value.as_deref(), long(n));
            assert!(
                appended.value.len() <= MAX_BYTES,
                "{}",
                appended.value.len()
            );
            dropped += appended.dropped;
            value = Some(appended.value);
        }
        let history = parse(value.as_deref());
        let kept = history.entries.len();
        assert!(kept < MAX_ENTRIES, "{kept} entries kept");
        assert_eq!(kept + dropped, 60);
        // Newest last, and contiguous: only the oldest were dropped.
        assert_eq!(history.entries.last().unwrap().id, "id-59");
        assert_eq!(history.entries[0].id, format!("id-{}", 60 - kept));
        let reason = history.entries[0].reason.as_deref().unwrap();
        assert_eq!(reason.chars().count(), MAX_REASON_CHARS);
        assert!(reason.ends_with('…'));
        assert_eq!(history.entries[0].who.chars().count(), MAX_FIELD_CHARS);
    }

    #[test]
    fn given_a_malformed_or_foreign_annotation_when_appended_then_a_new_list_starts_and_says_why() {
        for foreign in ["not json", "{\"a\":1}", "42", "\"text\""] {
            let appended = append(Some(foreign), entry(7));
            assert_eq!(ids(&appended.value), ["id-7"], "{foreign}");
            let why = appended.unreadable.unwrap_or_default();
            assert!(why.contains(HISTORY_ANNOTATION), "{foreign}: {why}");
        }
        // An array of items this version cannot read is another version's history: kept.
        let appended = append(Some("[1, 2]"), entry(7));
        assert!(appended.value.starts_with("[1,2,{"), "{}", appended.value);
        assert_eq!(appended.unreadable, None);
    }

    #[test]
    fn given_one_foreign_item_among_entries_then_only_it_is_left_out() {
        let good = serde_json::to_value(entry(1)).unwrap();
        let mixed = serde_json::json!([{"what": "else"}, good]).to_string();
        let history = parse(Some(&mixed));
        assert_eq!(history.entries, vec![entry(1)]);
        assert_eq!((history.items, history.bytes), (2, mixed.len()));
        assert!(history.unreadable.unwrap().contains("1 of 2"));
        let appended = append(Some(&mixed), entry(2));
        assert_eq!(ids(&appended.value), ["id-1", "id-2"]);
    }

    #[test]
    fn given_items_another_version_wrote_when_an_entry_is_appended_then_they_are_kept_verbatim() {
        // Given a history with an item this version cannot read (a future shape) and an entry
        // with a field it does not know,
        let foreign = serde_json::json!({"v": 2, "rollout": {"id": "x", "regions": ["eu"]}});
        let mut extended = serde_json::to_value(entry(1)).unwrap();
        extended["region"] = "europe-west1".into();
        let existing = serde_json::json!([foreign, extended]).to_string();

        // when this version appends its entry,
        let appended = append(Some(&existing), entry(2));

        // then both are still there, byte for byte, before the new entry,
        let items: Vec<Value> = serde_json::from_str(&appended.value).unwrap();
        assert_eq!(
            items,
            vec![foreign, extended, serde_json::to_value(entry(2)).unwrap()]
        );
        assert_eq!(appended.unreadable, None);
        // and the reader still leaves the foreign item out, saying so, and counts it.
        let history = parse(Some(&appended.value));
        assert_eq!(ids(&appended.value), ["id-1", "id-2"]);
        assert_eq!(history.items, 3);
        assert!(history.unreadable.unwrap().contains("1 of 3"));
    }

    #[test]
    fn given_a_full_history_with_foreign_items_then_they_count_toward_the_bound_oldest_first() {
        let mut items = vec![serde_json::json!({"v": 2})];
        items.extend((0..MAX_ENTRIES - 1).map(|n| serde_json::to_value(entry(n)).unwrap()));
        let existing = Value::Array(items).to_string();
        let appended = append(Some(&existing), entry(99));
        let kept: Vec<Value> = serde_json::from_str(&appended.value).unwrap();
        assert_eq!(kept.len(), MAX_ENTRIES);
        assert_eq!(appended.dropped, 1);
        assert_eq!(kept[0]["id"], "id-0", "the foreign item was the oldest");
        assert!(parse(Some(&appended.value)).near_bound());
        assert!(!parse(Some(&append(None, entry(1)).value)).near_bound());
    }

    #[test]
    fn given_an_entry_from_a_newer_version_with_more_fields_then_it_is_read() {
        let mut value = serde_json::to_value(entry(3)).unwrap();
        value["region"] = "europe-west1".into();
        let history = parse(Some(&serde_json::json!([value]).to_string()));
        assert_eq!(history.entries, vec![entry(3)]);
        assert_eq!(history.unreadable, None);
    }

    #[test]
    fn a_reason_with_line_breaks_is_kept_on_one_line() {
        let appended = append(
            None,
            HistoryEntry {
                reason: Some("5xx 40%\n::error::x".into()),
                ..entry(1)
            },
        );
        let reason = parse(Some(&appended.value)).entries[0].reason.clone();
        assert_eq!(reason.as_deref(), Some("5xx 40% ::error::x"));
    }

    #[test]
    fn time_to_detect_and_to_restore_come_from_the_recorded_instants() {
        let rolled_back = HistoryEntry {
            outcome: "rolled_back".into(),
            traffic_at: Some(time_text(at(10))),
            detected_at: Some(time_text(at(100))),
            restored_at: Some(time_text(at(103))),
            ..entry(1)
        };
        assert_eq!(rolled_back.time_to_detect(), Some(Duration::from_secs(90)));
        assert_eq!(rolled_back.time_to_restore(), Some(Duration::from_secs(3)));
        // A promotion detected nothing; a manual rollback knows no first traffic.
        assert_eq!(entry(1).time_to_detect(), None);
        let manual = HistoryEntry {
            manual: true,
            restored_at: Some(time_text(at(5))),
            ..entry(1)
        };
        assert_eq!(manual.time_to_detect(), None);
        assert_eq!(manual.time_to_restore(), None);
        // Instants out of order (a clock step) give nothing rather than a wrapped duration.
        let backwards = HistoryEntry {
            traffic_at: Some(time_text(at(100))),
            detected_at: Some(time_text(at(10))),
            ..entry(1)
        };
        assert_eq!(backwards.time_to_detect(), None);
    }

    fn event(seconds: u64, kind: EventKind) -> Event {
        Event {
            at: at(seconds),
            elapsed_s: seconds as f64,
            kind,
        }
    }

    #[test]
    fn the_timeline_gives_first_traffic_and_the_failing_verdict() {
        let timeline = vec![
            event(
                0,
                EventKind::TrafficSet {
                    step: None,
                    traffic: vec![
                        TrafficTarget::new("web-1", 100),
                        TrafficTarget::tagged("web-2", 0, "candidate"),
                    ],
                },
            ),
            event(
                5,
                EventKind::TrafficSet {
                    step: Some(0),
                    traffic: vec![
                        TrafficTarget::new("web-1", 90),
                        TrafficTarget::tagged("web-2", 10, "candidate"),
                    ],
                },
            ),
            event(
                65,
                EventKind::StepPassed {
                    step: 0,
                    percent: 10,
                },
            ),
            event(
                70,
                EventKind::TrafficSet {
                    step: Some(1),
                    traffic: vec![
                        TrafficTarget::new("web-1", 50),
                        TrafficTarget::tagged("web-2", 50, "candidate"),
                    ],
                },
            ),
            event(
                95,
                EventKind::StepFailed {
                    step: 1,
                    percent: 50,
                    reason: "5xx".into(),
                },
            ),
        ];
        assert_eq!(
            instants(&timeline, "web-2", false),
            Instants {
                traffic_at: Some(at(5)),
                detected_at: Some(at(95)),
                failed_percent: Some(50),
            }
        );
        assert_eq!(
            instants(&timeline[..3], "web-2", false),
            Instants {
                traffic_at: Some(at(5)),
                ..Instants::default()
            }
        );
        assert_eq!(
            instants(&timeline, "web-9", false),
            Instants {
                traffic_at: None,
                detected_at: Some(at(95)),
                failed_percent: Some(50),
            }
        );
    }

    #[test]
    fn given_a_resumed_rollout_then_its_first_traffic_and_time_to_detect_are_left_out() {
        // A rollout resumed at 25% (its earlier process gave the candidate traffic at an unknown
        // time) moves on to 50% at 200 s and fails there at 260 s.
        let timeline = vec![
            event(
                200,
                EventKind::TrafficSet {
                    step: Some(2),
                    traffic: vec![
                        TrafficTarget::new("web-1", 50),
                        TrafficTarget::tagged("web-2", 50, "candidate"),
                    ],
                },
            ),
            event(
                260,
                EventKind::StepFailed {
                    step: 2,
                    percent: 50,
                    reason: "5xx".into(),
                },
            ),
        ];
        let resumed = instants(&timeline, "web-2", true);
        assert_eq!(
            resumed,
            Instants {
                traffic_at: None,
                detected_at: Some(at(260)),
                failed_percent: Some(50),
            }
        );
        let entry = HistoryEntry {
            traffic_at: resumed.traffic_at.map(time_text),
            detected_at: resumed.detected_at.map(time_text),
            restored_at: Some(time_text(at(262))),
            ..entry(1)
        };
        assert_eq!(
            entry.time_to_detect(),
            None,
            "not 60 s from the resumed step"
        );
        assert_eq!(entry.time_to_restore(), Some(Duration::from_secs(2)));
    }

    #[test]
    fn median_and_max_of_durations() {
        let s = Duration::from_secs;
        assert_eq!(median_and_max(&[]), None);
        assert_eq!(median_and_max(&[s(7)]), Some((s(7), s(7))));
        assert_eq!(median_and_max(&[s(9), s(1), s(5)]), Some((s(5), s(9))));
        assert_eq!(
            median_and_max(&[s(4), s(1), s(2), s(9)]),
            Some((s(3), s(9)))
        );
    }
}
