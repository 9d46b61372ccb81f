//! Time on the one thread: the single way anything here waits with a limit.

use futures_lite::FutureExt;
use futures_util::FutureExt as _;
use smol::Timer;
use std::time::Duration;

/// `Some(value)` when `fut` finishes within `d`, `None` when the time ran out first (and
/// `fut` is dropped). Combinators, not an `async fn`: a future handed to an `async fn` is
/// stored twice in its state (as the argument and as what it awaits), and a connection's
/// task nests several of these.
pub fn timeout<F: Future>(d: Duration, fut: F) -> impl Future<Output = Option<F::Output>> {
    fut.map(Some).or(Timer::after(d).map(|_| None))
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
