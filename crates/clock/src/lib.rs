//! Wall-clock time derived from tokio's clock, so that every timestamp the engine, the metrics
//! windows and the simulator use moves with tokio time (and stands still under a paused test clock).

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

/// Maps tokio instants to wall-clock time from one fixed origin. Cheap to copy; share one between
/// parts that compare timestamps (the engine and the simulator in tests).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    wall_origin: SystemTime,
    origin: Instant,
}

impl Clock {
    pub fn new() -> Self {
        Self {
            wall_origin: SystemTime::now(),
            origin: Instant::now(),
        }
    }

    /// The current wall-clock time, as tokio sees it.
    pub fn now(&self) -> SystemTime {
        self.wall_origin + self.origin.elapsed()
    }

    /// The wall-clock time of a tokio instant.
    pub fn wall(&self, instant: Instant) -> SystemTime {
        match instant.checked_duration_since(self.origin) {
            Some(after) => self.wall_origin + after,
            None => self.wall_origin - (self.origin - instant),
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.origin.elapsed()
    }

    /// The same clock, `by` ahead: a fake server's time moved on without anyone waiting.
    pub fn advanced(self, by: Duration) -> Self {
        Self {
            wall_origin: self.wall_origin + by,
            origin: self.origin,
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn wall_time_moves_with_the_paused_tokio_clock() {
        let clock = Clock::new();
        let before = Instant::now();
        let start = clock.now();
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!(
            clock.now().duration_since(start).unwrap(),
            Duration::from_secs(90)
        );
        assert_eq!(clock.elapsed(), Duration::from_secs(90));
        assert_eq!(clock.wall(Instant::now()), clock.now());
        assert!(clock.wall(before) <= start);
    }
}
