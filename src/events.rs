//! Core operations report progress through a channel of typed events; the CLI prints them and the
//! console renders them. This runs an operation while a consumer takes its events in order.

use std::future::Future;

use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

/// Runs `op` with a sender for its events while `on` takes each event as it arrives; returns
/// once the operation is done and every event it sent has been handled.
pub async fn with_events<E, T, F, Fut>(mut on: impl FnMut(E), op: F) -> T
where
    F: FnOnce(UnboundedSender<E>) -> Fut,
    Fut: Future<Output = T>,
{
    let (tx, mut rx) = unbounded_channel();
    // The operation owns the only sender, so the channel closes when it finishes.
    let work = op(tx);
    let drain = async {
        while let Some(event) = rx.recv().await {
            on(event);
        }
    };
    let (out, ()) = futures_util::future::join(work, drain).await;
    out
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn every_event_is_handled_in_order_before_it_returns() {
        let mut seen = Vec::new();
        let out = super::with_events(
            |e: u32| seen.push(e),
            |tx| async move {
                for i in 0..5 {
                    tx.send(i).unwrap();
                    tokio::task::yield_now().await;
                }
                "done"
            },
        )
        .await;
        assert_eq!((out, seen), ("done", vec![0, 1, 2, 3, 4]));
    }
}
