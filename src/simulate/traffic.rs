//! Seeded synthetic traffic for `simulate`: requests per second, split by the traffic share of the
//! moment, failing at each revision's rate; the same seed draws the same traffic for every judge.

use rand::SeedableRng;
use rand::rngs::SmallRng;
use rand_distr::{Binomial, Distribution, Poisson};

use crate::rollout::ports::RequestCounts;

/// What the service does while a policy rolls a candidate out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Traffic {
    /// Requests per second to the whole service.
    pub rate: f64,
    /// Stable's 5xx share.
    pub stable_errors: f64,
    /// The candidate's 5xx share.
    pub candidate_errors: f64,
    /// After each traffic increase the candidate fails this much more often for this long (new
    /// instances starting cold); `None`: no bursts.
    pub cold_start: Option<ColdStart>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ColdStart {
    pub seconds: u64,
    /// Added to the candidate's 5xx share during the burst (capped at 100%).
    pub extra_errors: f64,
}

/// One second of traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Second {
    candidate: RequestCounts,
    stable: RequestCounts,
}

/// The traffic of one simulated rollout, drawn second by second as the rollout reaches it, with
/// running totals so any window's counts are two lookups.
pub struct Draw {
    traffic: Traffic,
    seed: u64,
    run: u64,
    /// Totals of the seconds before index i (`totals[0]` is zero).
    totals: Vec<Second>,
    /// Stable's hour before the rollout.
    pub baseline: RequestCounts,
    /// When the candidate's share last went up, for the cold-start bursts.
    last_increase: u64,
    share: f64,
}

impl Draw {
    /// Run `run` of a scenario under `seed`; `history_seconds` of stable traffic come first.
    pub fn new(traffic: Traffic, seed: u64, run: u64, history_seconds: u64) -> Self {
        let mut rng = rng_for(seed, run, u64::MAX);
        let requests = poisson(&mut rng, traffic.rate * history_seconds as f64);
        let baseline = RequestCounts {
            total: requests,
            server_errors: binomial(&mut rng, requests, traffic.stable_errors),
        };
        Draw {
            traffic,
            seed,
            run,
            totals: vec![Second::default()],
            baseline,
            last_increase: 0,
            share: 0.0,
        }
    }

    /// Sets the candidate's share of traffic from second `at` on (seconds before are drawn first).
    pub fn set_share(&mut self, at: u64, percent: u8) {
        self.draw_until(at);
        let share = f64::from(percent) / 100.0;
        if share > self.share {
            self.last_increase = at;
        }
        self.share = share;
    }

    /// Counts of the seconds `[from, to)`: the candidate's and stable's.
    pub fn window(&mut self, from: u64, to: u64) -> (RequestCounts, RequestCounts) {
        self.draw_until(to);
        let to = to as usize;
        let from = (from as usize).min(to);
        let (a, b) = (self.totals[from], self.totals[to]);
        (minus(b.candidate, a.candidate), minus(b.stable, a.stable))
    }

    fn draw_until(&mut self, until: u64) {
        while (self.totals.len() as u64) <= until {
            let second = self.totals.len() as u64 - 1;
            let drawn = self.draw_second(second);
            let last = *self.totals.last().expect("starts with a zero");
            self.totals.push(Second {
                candidate: last.candidate.plus(drawn.candidate),
                stable: last.stable.plus(drawn.stable),
            });
        }
    }

    /// One second, from a generator seeded by the second itself: two judges that split traffic
    /// alike see the same requests (common random numbers).
    fn draw_second(&self, second: u64) -> Second {
        let mut rng = rng_for(self.seed, self.run, second);
        let requests = poisson(&mut rng, self.traffic.rate);
        let to_candidate = binomial(&mut rng, requests, self.share);
        let mut candidate_rate = self.traffic.candidate_errors;
        if let Some(cold) = self.traffic.cold_start
            && second < self.last_increase + cold.seconds
        {
            candidate_rate = (candidate_rate + cold.extra_errors).min(1.0);
        }
        let to_stable = requests - to_candidate;
        Second {
            candidate: RequestCounts {
                total: to_candidate,
                server_errors: binomial(&mut rng, to_candidate, candidate_rate),
            },
            stable: RequestCounts {
                total: to_stable,
                server_errors: binomial(&mut rng, to_stable, self.traffic.stable_errors),
            },
        }
    }
}

fn rng_for(seed: u64, run: u64, second: u64) -> SmallRng {
    // SplitMix64's finaliser spreads nearby (seed, run, second) triples over the whole state.
    let mut x =
        seed ^ run.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ second.wrapping_mul(0xD1B5_4A32_D192_ED03);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    SmallRng::seed_from_u64(x ^ (x >> 31))
}

fn poisson(rng: &mut SmallRng, mean: f64) -> u64 {
    if mean <= 0.0 || !mean.is_finite() {
        return 0;
    }
    Poisson::new(mean).map_or(0, |d| d.sample(rng) as u64)
}

fn binomial(rng: &mut SmallRng, trials: u64, p: f64) -> u64 {
    if trials == 0 || p <= 0.0 {
        return 0;
    }
    if p >= 1.0 {
        return trials;
    }
    Binomial::new(trials, p).map_or(0, |d| d.sample(rng))
}

fn minus(after: RequestCounts, before: RequestCounts) -> RequestCounts {
    RequestCounts {
        total: after.total - before.total,
        server_errors: after.server_errors - before.server_errors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEADY: Traffic = Traffic {
        rate: 50.0,
        stable_errors: 0.01,
        candidate_errors: 0.05,
        cold_start: None,
    };

    #[test]
    fn the_same_seed_draws_the_same_traffic() {
        let mut a = Draw::new(STEADY, 7, 3, 3600);
        let mut b = Draw::new(STEADY, 7, 3, 3600);
        a.set_share(0, 10);
        b.set_share(0, 10);
        assert_eq!(a.baseline, b.baseline);
        assert_eq!(a.window(0, 600), b.window(0, 600));
        let mut other = Draw::new(STEADY, 8, 3, 3600);
        other.set_share(0, 10);
        assert_ne!(a.window(0, 600), other.window(0, 600));
    }

    #[test]
    fn shares_and_rates_come_out_near_what_was_asked() {
        let mut draw = Draw::new(STEADY, 1, 0, 3600);
        draw.set_share(0, 25);
        let (candidate, stable) = draw.window(0, 4000);
        let total = (candidate.total + stable.total) as f64;
        assert!((total / 4000.0 - 50.0).abs() < 1.0, "{total}");
        assert!((candidate.total as f64 / total - 0.25).abs() < 0.01);
        assert!((candidate.error_rate().unwrap() - 0.05).abs() < 0.01);
        assert!((stable.error_rate().unwrap() - 0.01).abs() < 0.003);
        let baseline = draw.baseline.total as f64 / 3600.0;
        assert!((baseline - 50.0).abs() < 1.0, "{baseline}");
    }

    #[test]
    fn a_cold_start_burst_follows_each_increase() {
        let bursty = Traffic {
            cold_start: Some(ColdStart {
                seconds: 60,
                extra_errors: 0.5,
            }),
            ..STEADY
        };
        let mut draw = Draw::new(bursty, 1, 0, 0);
        draw.set_share(0, 100);
        let (burst, _) = draw.window(0, 60);
        let (after, _) = draw.window(60, 600);
        assert!(burst.error_rate().unwrap() > 0.4, "{burst:?}");
        assert!(after.error_rate().unwrap() < 0.1, "{after:?}");
    }
}
