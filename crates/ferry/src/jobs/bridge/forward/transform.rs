//! Turning records into entries: at once, or on every core for frames.

use super::*;

impl Forward<'_> {
    /// The entry of one record, here and now.
    pub(super) fn transform_now(&self, msg: &OwnedMessage) -> Outgoing {
        let o = self.options;
        to_entry(msg, &o.stream, o.transform, &o.image)
    }
}

/// A transformed batch: its entries, records read, when its handling started and how long the
/// transform took.
pub(super) type Transformed = (Vec<Outgoing>, u64, Instant, Duration);

/// A batch being transformed: at once, or on the blocking pool with rayon (frames).
pub(super) enum InFlight {
    Done(Transformed),
    Spawned(tokio::task::JoinHandle<Transformed>),
}

impl InFlight {
    pub(super) fn start(
        batch: Vec<OwnedMessage>,
        transform: impl Fn(&OwnedMessage) -> Outgoing,
    ) -> Self {
        let started = Instant::now();
        let out: Vec<Outgoing> = batch.iter().map(transform).collect();
        InFlight::Done((out, batch.len() as u64, started, started.elapsed()))
    }

    pub(super) fn spawn(batch: Vec<OwnedMessage>, o: &BridgeOptions) -> Self {
        let (stream, image, transform) = (o.stream.clone(), o.image, o.transform);
        InFlight::Spawned(tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let out: Vec<Outgoing> = batch
                .par_iter()
                .map(|m| to_entry(m, &stream, transform, &image))
                .collect();
            (out, batch.len() as u64, started, started.elapsed())
        }))
    }

    pub(super) async fn await_output(self) -> Result<Transformed, BridgeError> {
        match self {
            InFlight::Done(t) => Ok(t),
            InFlight::Spawned(h) => h
                .await
                .map_err(|e| BridgeError::Internal(format!("a frame transform panicked: {e}"))),
        }
    }
}
