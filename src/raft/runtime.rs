//! The openraft `AsyncRuntime` used by every oxetcd node.
//!
//! It goes through the `tokio` name of this crate, which is madsim-tokio: on a normal build that
//! is real tokio, and under `--cfg madsim` the simulator's executor and virtual clock. openraft's
//! own `TokioRuntime` would call the real tokio crate directly and escape the simulator.
//!
//! Invariant: nothing in here touches a real clock, thread or random source under `cfg(madsim)`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use openraft::{AsyncRuntime, OptionalSend, TokioInstant};

/// Runs `work` off the async workers (tokio's blocking pool). Under `--cfg madsim` the
/// simulator runs it as one more simulated task, deterministically; madsim marks its
/// `spawn_blocking` deprecated to flag real blocking calls, and every closure given here is
/// CPU work on in-memory state (hashing, scans, encoding), never a wait on the outside world.
pub fn spawn_blocking<F, R>(work: F) -> tokio::task::JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    #[allow(deprecated)]
    tokio::task::spawn_blocking(work)
}

/// Runtime marker type handed to openraft through the type config.
#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
pub struct OxRuntime;

/// A future that fails with [`Elapsed`] when its sleep fires first.
pub struct Timeout<F> {
    future: Pin<Box<F>>,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

/// The error of a [`Timeout`] whose deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline has elapsed")
    }
}

impl std::error::Error for Elapsed {}

impl<R, F: Future<Output = R>> Future for Timeout<F> {
    type Output = Result<R, Elapsed>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(v) = self.future.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Oneshot sender wrapper: openraft wants its own send trait on it.
pub struct OneshotTx<T>(tokio::sync::oneshot::Sender<T>);

impl<T> fmt::Debug for OneshotTx<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OneshotTx")
    }
}

impl<T: OptionalSend> openraft::async_runtime::AsyncOneshotSendExt<T> for OneshotTx<T> {
    fn send(self, t: T) -> Result<(), T> {
        self.0.send(t)
    }
}

impl AsyncRuntime for OxRuntime {
    type JoinError = tokio::task::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = tokio::task::JoinHandle<T>;
    type Sleep = tokio::time::Sleep;
    type Instant = TokioInstant;
    type TimeoutError = Elapsed;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = Timeout<T>;
    #[cfg(madsim)]
    type ThreadLocalRng = madsim::rand::GlobalRng;
    #[cfg(not(madsim))]
    type ThreadLocalRng = rand::rngs::ThreadRng;
    type OneshotSender<T: OptionalSend> = OneshotTx<T>;
    type OneshotReceiverError = tokio::sync::oneshot::error::RecvError;
    type OneshotReceiver<T: OptionalSend> = tokio::sync::oneshot::Receiver<T>;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        tokio::spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        tokio::time::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        tokio::time::sleep(deadline.saturating_duration_since(TokioInstant::now()))
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        Timeout {
            future: Box::pin(future),
            sleep: Box::pin(tokio::time::sleep(duration)),
        }
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        Self::timeout(
            deadline.saturating_duration_since(TokioInstant::now()),
            future,
        )
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        join_error.is_panic()
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        #[cfg(madsim)]
        {
            madsim::rand::thread_rng()
        }
        #[cfg(not(madsim))]
        {
            rand::thread_rng()
        }
    }

    fn oneshot<T>() -> (Self::OneshotSender<T>, Self::OneshotReceiver<T>)
    where
        T: OptionalSend,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (OneshotTx(tx), rx)
    }
}
