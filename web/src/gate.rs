//! Searches and questions take turns.
//!
//! A search is a few milliseconds of work on a core. When more arrive than
//! the cores can run, running them all at once interleaves them: each one
//! stretches by however many others happen to run beside it, and the
//! unlucky ones wait longest. The gate lets a set number of them run at
//! once and queues the rest in the order they came (tokio's semaphore is
//! fair), so a search waits for those that came before it, not for those
//! that came after. At most [`MAX_WAITING`] wait; past that a search is
//! answered 503 with `Retry-After`, rather than queueing without bound.
//! `/metrics` shows how many wait (`kino_searches_waiting`).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::http::StatusCode;
use metrics::Gauge;
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::error::ApiError;

/// Searches that may wait for a turn at most.
pub const MAX_WAITING: usize = 1024;

/// The turn-taking of the searches of one server.
#[derive(Debug)]
pub struct SearchGate {
    turns: Semaphore,
    waiting: AtomicUsize,
    /// `kino_searches_waiting` on `/metrics`.
    shown: Gauge,
}

impl SearchGate {
    /// A gate letting `permits` searches run at once (at least one).
    pub fn new(permits: usize) -> SearchGate {
        let shown = metrics::gauge!("kino_searches_waiting");
        shown.set(0.0);
        SearchGate {
            turns: Semaphore::new(permits.max(1)),
            waiting: AtomicUsize::new(0),
            shown,
        }
    }

    /// Searches waiting for a turn now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Runs `work` in its turn (the turn is given back as soon as it is
    /// done); 503 when [`MAX_WAITING`] wait already.
    pub async fn run<T>(&self, work: impl Future<Output = T>) -> Result<T, ApiError> {
        let _turn = self.enter().await?;
        Ok(work.await)
    }

    /// Waits for a turn.
    async fn enter(&self) -> Result<SemaphorePermit<'_>, ApiError> {
        if let Ok(turn) = self.turns.try_acquire() {
            return Ok(turn);
        }
        // Counted while waiting, also when the request is dropped meanwhile.
        struct Waiting<'a>(&'a SearchGate);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                let now = self.0.waiting.fetch_sub(1, Ordering::Relaxed).saturating_sub(1);
                self.0.shown.set(now as f64);
            }
        }
        let before = self.waiting.fetch_add(1, Ordering::Relaxed);
        if before >= MAX_WAITING {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{MAX_WAITING} searches are waiting already; try again in a second"),
            )
            .retry_after(1));
        }
        self.shown.set((before + 1) as f64);
        let _waiting = Waiting(self);
        self.turns
            .acquire()
            .await
            .map_err(|_| ApiError::internal("the search gate is closed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn turns_are_given_in_the_order_asked() {
        let gate = Arc::new(SearchGate::new(1));
        let first = gate.enter().await.expect("a free turn");
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..5 {
            let (g, order) = (gate.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _turn = g.enter().await.expect("a turn");
                order.lock().expect("order").push(i);
            }));
            // Each asks only once the one before it waits.
            while gate.waiting() < i + 1 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        assert_eq!(gate.waiting(), 5);
        drop(first);
        for t in tasks {
            t.await.expect("task");
        }
        assert_eq!(*order.lock().expect("order"), vec![0, 1, 2, 3, 4]);
        assert_eq!(gate.waiting(), 0);
    }

    #[tokio::test]
    async fn a_full_queue_is_answered_503_and_a_dropped_wait_is_uncounted() {
        let gate = Arc::new(SearchGate::new(1));
        let _held = gate.enter().await.expect("a free turn");
        let mut waiters = Vec::new();
        for _ in 0..MAX_WAITING {
            let gate = gate.clone();
            waiters.push(tokio::spawn(async move { gate.enter().await.map(|_| ()) }));
        }
        while gate.waiting() < MAX_WAITING {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let err = gate.enter().await.expect_err("the queue is full");
        assert_eq!(err.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(err.message.contains("waiting"), "{}", err.message);
        assert_eq!(err.retry_after, Some(1));
        for w in &waiters {
            w.abort();
        }
        for w in waiters {
            let _ = w.await;
        }
        assert_eq!(gate.waiting(), 0, "aborted waits are no longer counted");
    }
}
