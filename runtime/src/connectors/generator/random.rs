//! The draws the scenario is made of: a uniform pick, a weighted pick and a duration skewed
//! towards short, all from the generator's seeded RNG so a seed fixes the whole stream.
//!
//! It knows nothing about contacts; what is drawn, and in which order, is the scenario's.

use rand::Rng;
use rand::rngs::SmallRng;

/// Uniform pick; the slices passed are non-empty constants.
pub(super) fn pick<'a>(rng: &mut SmallRng, items: &[&'a str]) -> &'a str {
    if items.is_empty() {
        return "";
    }
    items[rng.random_range(0..items.len())]
}

/// Picks the first element of a weighted `(value, weight)` list.
pub(super) fn weighted(rng: &mut SmallRng, items: &[(usize, u32)]) -> usize {
    let total: u32 = items.iter().map(|&(_, w)| w).sum();
    if total == 0 {
        return items.first().map_or(0, |&(v, _)| v);
    }
    let mut r = rng.random_range(0..total);
    for &(v, w) in items {
        if r < w {
            return v;
        }
        r -= w;
    }
    items.last().map_or(0, |&(v, _)| v)
}

/// A duration in `lo..=hi` skewed towards `lo` (u² distribution): most waits and calls are
/// short, a few are long.
pub(super) fn skewed(rng: &mut SmallRng, lo: i64, hi: i64) -> i64 {
    if hi <= lo {
        return lo;
    }
    let u: i64 = rng.random_range(0..=1000);
    lo + (hi - lo) * u * u / 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn weighted_follows_the_weights() {
        let mut rng = SmallRng::seed_from_u64(3);
        let mut counts = [0u32; 3];
        for _ in 0..10_000 {
            counts[weighted(&mut rng, &[(0, 10), (1, 0), (2, 30)])] += 1;
        }
        assert_eq!(counts[1], 0);
        let share = f64::from(counts[2]) / 10_000.0;
        assert!((0.72..=0.78).contains(&share), "{share}");
        assert_eq!(weighted(&mut rng, &[(7, 0)]), 7);
    }

    #[test]
    fn skewed_stays_in_range_and_leans_short() {
        let mut rng = SmallRng::seed_from_u64(4);
        let draws: Vec<i64> = (0..10_000).map(|_| skewed(&mut rng, 10, 110)).collect();
        assert!(draws.iter().all(|d| (10..=110).contains(d)));
        // P(u² < 1/4) = 1/2: half the draws fall in the first quarter of the range.
        let short = draws.iter().filter(|&&d| d < 35).count();
        assert!((4_700..=5_300).contains(&short), "{short}");
        assert_eq!(skewed(&mut rng, 5, 5), 5);
        assert_eq!(pick(&mut rng, &[]), "");
    }
}
