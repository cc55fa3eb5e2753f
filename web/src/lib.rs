//! kino-web (work in progress).
