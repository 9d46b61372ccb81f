//! Time on the one thread: the single way anything here waits with a limit.

use futures_lite::FutureExt;
use smol::Timer;
use std::time::Duration;

/// `Some(value)` when `fut` finishes within `d`, `None` when the time ran out first (and
/// `fut` is dropped).
pub async fn timeout<T>(d: Duration, fut: impl Future<Output = T>) -> Option<T> {
    async { Some(fut.await) }
        .or(async {
            Timer::after(d).await;
            None
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finishes_or_gives_up() {
        smol::block_on(async {
            assert_eq!(timeout(Duration::from_secs(5), async { 7 }).await, Some(7));
            let never = futures_lite::future::pending::<()>();
            assert_eq!(timeout(Duration::from_millis(10), never).await, None);
        });
    }
}
