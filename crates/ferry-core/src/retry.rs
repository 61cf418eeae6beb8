//! Pauses between attempts at something that may succeed later (a server coming back, a lock
//! being freed): exponential backoff from a minimum to a maximum, for as long as it takes, built
//! on the `backon` crate.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// The pauses between failed attempts: `min`, then doubling after each failure up to `max`,
/// with no limit on the number of attempts and no jitter. [`Backoff::reset`] after a success
/// starts again from `min`. (`backon` doubles in `f32`, so a pause may be a few nanoseconds
/// off its nominal value; whole seconds double exactly.)
///
/// ```
/// use std::time::Duration;
/// use ferry_core::retry::Backoff;
///
/// let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
/// assert_eq!(backoff.next().as_millis(), 100);
/// assert_eq!(backoff.next().as_millis(), 200);
/// backoff.reset();
/// assert_eq!(backoff.next().as_millis(), 100);
/// ```
#[derive(Debug)]
pub struct Backoff {
    builder: ExponentialBuilder,
    delays: <ExponentialBuilder as BackoffBuilder>::Backoff,
    max: Duration,
}

impl Backoff {
    /// Pauses from `min` doubling up to `max`; a `max` below `min` is raised to `min` (every
    /// pause is then `min`).
    pub fn new(min: Duration, max: Duration) -> Self {
        let max = max.max(min);
        let builder = ExponentialBuilder::default()
            .with_min_delay(min)
            .with_max_delay(max)
            .without_max_times();
        Backoff {
            builder,
            delays: builder.build(),
            max,
        }
    }

    /// The pause before the next attempt (after a failure).
    /// The pauses between attempts at a service that is down (Redis, PostgreSQL): 100 ms,
    /// doubling up to 5 s.
    pub fn for_services() -> Self {
        Backoff::new(Duration::from_millis(100), Duration::from_secs(5))
    }

    #[allow(clippy::should_implement_trait)] // never runs out: a pause, not an `Option`
    pub fn next(&mut self) -> Duration {
        // Without a limit on attempts the delays never run out; `max` is there for safety.
        self.delays.next().unwrap_or(self.max)
    }

    /// Starts over from the minimum (after a success).
    pub fn reset(&mut self) {
        self.delays = self.builder.build();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(backoff: &mut Backoff, n: usize) -> Vec<u128> {
        (0..n).map(|_| backoff.next().as_millis()).collect()
    }

    #[test]
    fn doubles_from_the_minimum_up_to_the_maximum_for_ever() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        assert_eq!(
            millis(&mut backoff, 9),
            [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]
        );
        for _ in 0..10_000 {
            backoff.next();
        }
        assert_eq!(backoff.next(), Duration::from_secs(5));
    }

    #[test]
    fn reset_starts_over_from_the_minimum() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        millis(&mut backoff, 4);
        backoff.reset();
        assert_eq!(millis(&mut backoff, 3), [100, 200, 400]);
    }

    #[test]
    fn a_maximum_below_the_minimum_pauses_the_minimum_every_time() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_millis(500));
        assert_eq!(millis(&mut backoff, 4), [1000, 1000, 1000, 1000]);
    }

    #[test]
    fn whole_seconds_double_exactly() {
        // The tier scheduler: 1 s doubling up to its interval, which need not be a power of 2.
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
        let secs: Vec<Duration> = (0..11).map(|_| backoff.next()).collect();
        let expected: Vec<Duration> = [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
            .map(Duration::from_secs)
            .into();
        assert_eq!(secs, expected);
    }
}
