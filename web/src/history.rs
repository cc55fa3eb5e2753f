//! Storing the searches made through the web UI and the API, as the CLI
//! stores its own.
//!
//! Every search is written before its response is sent. Concurrent searches
//! share commits: handlers hand their record to one writer task through a
//! bounded channel (a full channel makes the handler wait, never drops a
//! record) and the writer stores whatever has queued up in one transaction.

use std::sync::OnceLock;

use kino_store::{NewQuery, Store};
use tokio::sync::{mpsc, oneshot};

use crate::error::ApiError;

/// Searches waiting for the writer at most.
const QUEUE: usize = 1024;
/// Searches written in one transaction at most.
const BATCH: usize = 256;

type Reply = oneshot::Sender<Result<i64, String>>;

/// The history writer of one server (started on first use).
#[derive(Default)]
pub struct History {
    tx: OnceLock<mpsc::Sender<(NewQuery, Reply)>>,
}

impl History {
    /// Stores `q` (kind `search`); returns its id once it is committed.
    pub async fn record(&self, store: &Store, q: NewQuery) -> Result<i64, ApiError> {
        let tx = self.tx.get_or_init(|| start(store.clone()));
        let (reply, answer) = oneshot::channel();
        tx.send((q, reply))
            .await
            .map_err(|_| ApiError::internal("the search history writer has stopped"))?;
        match answer.await {
            Ok(Ok(id)) => Ok(id),
            Ok(Err(e)) => Err(ApiError::internal(format!("the search was not stored: {e}"))),
            Err(_) => Err(ApiError::internal("the search history writer has stopped")),
        }
    }
}

fn start(store: Store) -> mpsc::Sender<(NewQuery, Reply)> {
    let (tx, mut rx) = mpsc::channel::<(NewQuery, Reply)>(QUEUE);
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(BATCH);
        while rx.recv_many(&mut batch, BATCH).await > 0 {
            let (queries, replies): (Vec<NewQuery>, Vec<Reply>) = batch.drain(..).unzip();
            match store.record_queries(&queries).await {
                Ok(ids) => {
                    for (reply, id) in replies.into_iter().zip(ids) {
                        let _ = reply.send(Ok(id));
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, searches = queries.len(), "searches not stored");
                    for reply in replies {
                        let _ = reply.send(Err(e.to_string()));
                    }
                }
            }
        }
    });
    tx
}
