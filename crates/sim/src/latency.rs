//! How long a simulated revision takes to answer: the median and p95 a behaviour asks for, and the
//! deterministic log-normal draws that give request n of a revision its latency.

use std::time::Duration;

/// A revision's request latency: a log-normal distribution with this median and 95th percentile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latency {
    pub median: Duration,
    /// A p95 at or below the median makes every request take the median.
    pub p95: Duration,
}

impl Latency {
    /// What a revision takes unless its behaviour says otherwise.
    pub const DEFAULT: Latency = Latency {
        median: Duration::from_millis(30),
        p95: Duration::from_millis(90),
    };

    /// The latency of a revision's request `n` (counted from 1): the distribution's quantile at
    /// `frac(n / golden ratio)`. That sequence fills (0, 1) evenly in any prefix, so the share of
    /// requests above the p95 is 5% up to a few requests, with no randomness to make tests flaky.
    pub(crate) fn nth(&self, n: u64) -> Duration {
        self.quantile(golden_point(n))
    }

    /// The latency below which a share `u` (in (0, 1)) of requests stay.
    pub(crate) fn quantile(&self, u: f64) -> Duration {
        let median = self.median.as_secs_f64();
        let spread = self.p95.as_secs_f64() / median;
        if median == 0.0 || spread.is_nan() || spread <= 1.0 {
            return self.median;
        }
        // The same function fits sigma and draws, so the quantile at 0.95 is the p95 up to a
        // rounding, and "above p95" means exactly "drawn above 0.95".
        let sigma = spread.ln() / normal_quantile(0.95);
        let seconds = median * (sigma * normal_quantile(u)).exp();
        Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX)
    }
}

impl Default for Latency {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// `frac(n * 0.6180339887…)`, from the 64-bit fixed-point golden ratio so it stays exact for any
/// `n`; half a step is added so the point is never 0.
fn golden_point(n: u64) -> f64 {
    const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;
    let top = n.wrapping_mul(GOLDEN) >> 11;
    (top as f64 + 0.5) / (1u64 << 53) as f64
}

/// The standard normal quantile, by Acklam's rational approximation (relative error below
/// 1.2e-9, far finer than the nanoseconds a latency is kept in). Written out because neither
/// crate the workspace has (`rand_distr`, `libm`) offers an inverse normal CDF, and the
/// simulator does not need a statistics library for one function.
fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    const LOW: f64 = 0.02425;
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    let p = p.clamp(f64::MIN_POSITIVE, 1.0 - f64::EPSILON / 2.0);
    if p < LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p <= 1.0 - LOW {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_normal_quantile_matches_the_tables() {
        for (p, z) in [
            (0.5, 0.0),
            (0.95, 1.644_853_626_951_472_2),
            (0.975, 1.959_963_984_540_054),
            (0.999, 3.090_232_306_167_813_5),
            (0.01, -2.326_347_874_040_841),
        ] {
            let got = normal_quantile(p);
            assert!((got - z).abs() < 1e-8, "p={p}: {got} vs {z}");
            assert!(
                (normal_quantile(1.0 - p) + z).abs() < 1e-8,
                "symmetric at {p}"
            );
        }
    }

    #[test]
    fn golden_points_fill_the_unit_interval_evenly() {
        let points: Vec<f64> = (1..=1000).map(golden_point).collect();
        assert!(points.iter().all(|u| *u > 0.0 && *u < 1.0));
        assert!((points[0] - 0.618_033_988_749_894_8).abs() < 1e-15);
        for decile in 0..10 {
            let low = f64::from(decile) / 10.0;
            let inside = points
                .iter()
                .filter(|u| **u >= low && **u < low + 0.1)
                .count();
            assert!(inside.abs_diff(100) <= 2, "decile {decile}: {inside}");
        }
    }

    #[test]
    fn given_median_200ms_and_p95_800ms_then_one_request_in_twenty_is_slower_than_800ms() {
        let latency = Latency {
            median: ms(200),
            p95: ms(800),
        };
        let draws: Vec<Duration> = (1..=1000).map(|n| latency.nth(n)).collect();
        let slow = draws.iter().filter(|d| **d > ms(800)).count();
        let fast = draws.iter().filter(|d| **d < ms(200)).count();
        // The same 1000 points every run: exactly 5% above the p95, half below the median,
        assert_eq!((slow, fast), (50, 500));
        // and no prefix strays more than two requests from 5%.
        let mut above = 0.0;
        for (i, draw) in draws.iter().enumerate() {
            above += f64::from(u8::from(*draw > ms(800)));
            let expected = 0.05 * (i + 1) as f64;
            assert!((above - expected).abs() <= 2.0, "after {}: {above}", i + 1);
        }
        let again: Vec<Duration> = (1..=1000).map(|n| latency.nth(n)).collect();
        assert_eq!(draws, again);
        assert_eq!(latency.quantile(0.5), ms(200));
        assert!(latency.quantile(0.95).abs_diff(ms(800)) < Duration::from_nanos(2));
    }

    #[test]
    fn a_p95_at_or_below_the_median_or_a_zero_median_is_a_constant_latency() {
        for (median, p95) in [(ms(250), ms(250)), (ms(250), ms(100)), (ms(0), ms(50))] {
            let latency = Latency { median, p95 };
            assert!((1..=50).all(|n| latency.nth(n) == median), "{latency:?}");
        }
        assert_eq!(Latency::default(), Latency::DEFAULT);
        assert_eq!(Latency::default().quantile(0.5), ms(30));
    }
}
