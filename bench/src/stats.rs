//! Percentiles of timed samples, and the generated tables of `BENCHMARKS.md`.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Samples of one measurement, sorted once.
#[derive(Debug, Clone)]
pub struct Samples(Vec<Duration>);

impl Samples {
    pub fn new(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        Self(samples)
    }

    /// The `p`th percentile (nearest rank), `p` in 0..=100.
    pub fn percentile(&self, p: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * self.0.len() as f64).ceil() as usize;
        self.0[rank.clamp(1, self.0.len()) - 1]
    }

    pub fn median(&self) -> Duration {
        self.percentile(50.0)
    }

    pub fn max(&self) -> Duration {
        self.0.last().copied().unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A duration for a table: µs below 1 ms, ms below 1 s, else s.
pub fn human(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1_000.0 {
        format!("{us:.1} µs")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

/// Where a bench leaves its table for `bench/run.sh` to put into `BENCHMARKS.md`.
pub fn table_path(name: &str) -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("bench-tables").join(format!("{name}.md"))
}

/// Writes `markdown` to [`table_path`] and prints it.
pub fn publish(name: &str, markdown: &str) -> std::io::Result<()> {
    println!("\n{markdown}");
    let path = table_path(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, markdown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples = Samples::new((1..=100).rev().map(Duration::from_micros).collect());
        assert_eq!(samples.median(), Duration::from_micros(50));
        assert_eq!(samples.percentile(90.0), Duration::from_micros(90));
        assert_eq!(samples.percentile(99.0), Duration::from_micros(99));
        assert_eq!(samples.max(), Duration::from_micros(100));
        assert_eq!(Samples::new(vec![]).median(), Duration::ZERO);
    }
}
