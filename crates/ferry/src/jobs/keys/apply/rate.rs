//! `--rate`: at most that many keys per second, whatever the size of the batches.

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultDirectRateLimiter, Quota};

/// Spaces batches so that at most `rate` keys per second are handled.
///
/// A GCRA bucket ([`governor`]) refills `rate` cells a second and holds one second's worth; a
/// batch of n keys takes n cells, in pieces of at most the bucket's capacity when it is bigger.
/// The bucket starts empty, so the first batch waits its share like every later one: t seconds
/// after the start at most `rate × t` keys have been let through. A pause (a slow batch) earns
/// at most one second's worth of keys let through at once.
#[derive(Debug, Clone)]
pub(super) struct RateLimiter {
    cells: Arc<DefaultDirectRateLimiter>,
    /// The bucket's capacity: `rate` cells (at least 1).
    capacity: NonZeroU32,
}

impl RateLimiter {
    /// A limiter of `rate` keys per second (0 counts as 1), starting now with an empty bucket.
    pub(super) fn new(rate: u64) -> Self {
        let capacity =
            NonZeroU32::new(u32::try_from(rate).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN);
        let cells = DefaultDirectRateLimiter::direct(Quota::per_second(capacity));
        // Empties the new bucket (the whole capacity conforms on a fresh limiter).
        let _ = cells.check_n(capacity);
        Self {
            cells: Arc::new(cells),
            capacity,
        }
    }

    /// Waits until `n` more keys may be handled.
    pub(super) async fn wait(&self, n: u64) {
        let mut left = n;
        while let Some(cells) = NonZeroU32::new(left.min(u64::from(self.capacity.get())) as u32) {
            self.cells
                .until_n_ready(cells)
                .await
                .expect("never more cells than the capacity");
            left -= u64::from(cells.get());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::RateLimiter;

    #[tokio::test]
    async fn the_first_batch_waits_and_a_batch_above_the_capacity_is_let_through_in_pieces() {
        let limiter = RateLimiter::new(1_000);
        let start = Instant::now();
        limiter.wait(1_200).await;
        assert!(start.elapsed() >= Duration::from_millis(1_150));
        limiter.wait(0).await;
        limiter.wait(300).await;
        assert!(start.elapsed() >= Duration::from_millis(1_450));
    }
}
