//! kino-ingest (work in progress).
