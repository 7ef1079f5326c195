//! The summary of a run's rounds: medians, pooled ratios and bootstrap intervals against health.

use super::*;

/// Median and range across rounds, per phase: throughput, p99, and the gRPC phases'
/// throughput relative to the health floor of the same round.
pub(super) fn summary(rounds: &[Vec<PhaseReport>]) -> String {
    fn median_range(mut values: Vec<f64>) -> (f64, f64, f64) {
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let median = if n % 2 == 1 {
            values[n / 2]
        } else {
            (values[n / 2 - 1] + values[n / 2]) / 2.0
        };
        (median, values[0], values[n - 1])
    }
    let Some(first) = rounds.first() else {
        return String::new();
    };
    let mut out = format!(
        "summary over {} round(s), each starting one phase later: median (min–max)\n",
        rounds.len()
    );
    for (i, report) in first.iter().enumerate() {
        let of = |f: &dyn Fn(&PhaseReport) -> f64| {
            median_range(rounds.iter().filter_map(|r| r.get(i)).map(f).collect())
        };
        let (rate, rate_lo, rate_hi) = of(&|r| r.rate());
        let (p99, p99_lo, p99_hi) = of(&|r| r.histogram.value_at_quantile(0.99) as f64);
        out += &format!(
            "{:<8} {rate:>9.0} req/s ({rate_lo:.0}–{rate_hi:.0})  p99 {p99:.0} µs ({p99_lo:.0}–{p99_hi:.0})",
            report.name
        );
        if report.name == "verify" || report.name == "check" {
            let ratios = rounds
                .iter()
                .filter_map(|round| {
                    let health = round.iter().find(|p| p.name == "health")?;
                    Some(round.get(i)?.rate() / health.rate())
                })
                .collect();
            let (ratio, lo, hi) = median_range(ratios);
            let pooled = pooled_ratio(rounds.iter(), &report.name);
            out += &format!("  {ratio:.2} × health ({lo:.2}–{hi:.2}), pooled {pooled:.3}");
            if let Some((lo, hi)) = pooled_interval(rounds, &report.name) {
                out += &format!(" (95 % {lo:.3}–{hi:.3})");
            }
        }
        out += "\n";
    }
    out
}

/// The phase's rate over the health floor's, pooled: all the rounds' requests over all their
/// time, of the phase and of the floor, so the machine's moments of noise weigh by their
/// length instead of a round apiece.
pub(super) fn pooled_ratio<'r>(
    rounds: impl Iterator<Item = &'r Vec<PhaseReport>> + Clone,
    name: &str,
) -> f64 {
    let rate = |name: &str| {
        let reports = rounds.clone().flatten().filter(|p| p.name == name);
        let (requests, secs) = reports.fold((0.0, 0.0), |(n, t), p| {
            (n + p.requests as f64, t + p.elapsed.as_secs_f64())
        });
        requests / secs
    };
    rate(name) / rate("health")
}

/// How many times the rounds are resampled for [`pooled_interval`].
pub(super) const RESAMPLES: usize = 2000;

/// The 95 % interval of [`pooled_ratio`]: a percentile bootstrap, the rounds drawn with
/// replacement [`RESAMPLES`] times (seeded, so the same rounds give the same interval). On a
/// noisy machine it says how far the pooled ratio could move from one run to the next;
/// `None` for fewer than 5 rounds, too few to resample.
pub(super) fn pooled_interval(rounds: &[Vec<PhaseReport>], name: &str) -> Option<(f64, f64)> {
    use rand::{Rng as _, SeedableRng as _};
    if rounds.len() < 5 {
        return None;
    }
    let mut rng = rand::rngs::SmallRng::seed_from_u64(0x6b65_7977_6172_6400);
    let mut ratios: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            let drawn: Vec<&Vec<PhaseReport>> = (0..rounds.len())
                .map(|_| &rounds[rng.random_range(0..rounds.len())])
                .collect();
            pooled_ratio(drawn.into_iter(), name)
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    Some((
        ratios[RESAMPLES / 40],
        ratios[RESAMPLES - 1 - RESAMPLES / 40],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A round of a face and the floor: `face` and `health` requests, each in one second.
    fn round(face: u64, health: u64) -> Vec<PhaseReport> {
        let report = |name: &str, requests| PhaseReport {
            name: name.to_owned(),
            requests,
            errors: 0,
            elapsed: Duration::from_secs(1),
            histogram: Histogram::new(3).unwrap(),
            valid: Histogram::new(3).unwrap(),
        };
        vec![report("check", face), report("health", health)]
    }

    #[test]
    fn the_pooled_ratio_weighs_rounds_by_their_requests() {
        let rounds = [round(90, 100), round(180, 100)];
        assert!((pooled_ratio(rounds.iter(), "check") - 1.35).abs() < 1e-9);
    }

    #[test]
    fn the_interval_holds_the_pooled_ratio_and_narrows_with_agreeing_rounds() {
        let noisy: Vec<_> = (0..20)
            .map(|i| round(if i % 2 == 0 { 80 } else { 100 }, 100))
            .collect();
        let (lo, hi) = pooled_interval(&noisy, "check").unwrap();
        let pooled = pooled_ratio(noisy.iter(), "check");
        assert!(lo < pooled && pooled < hi, "{lo} {pooled} {hi}");
        assert!(
            lo >= 0.8 && hi <= 1.0,
            "within the rounds' own range: {lo}–{hi}"
        );
        // Rounds that all agree leave nothing to vary.
        let steady: Vec<_> = (0..20).map(|_| round(90, 100)).collect();
        let (lo, hi) = pooled_interval(&steady, "check").unwrap();
        assert!(
            (lo - 0.9).abs() < 1e-9 && (hi - 0.9).abs() < 1e-9,
            "{lo}–{hi}"
        );
        // The same rounds give the same interval.
        assert_eq!(
            pooled_interval(&noisy, "check"),
            pooled_interval(&noisy, "check")
        );
    }

    #[test]
    fn too_few_rounds_give_no_interval() {
        let rounds: Vec<_> = (0..4).map(|_| round(90, 100)).collect();
        assert_eq!(pooled_interval(&rounds, "check"), None);
    }
}
