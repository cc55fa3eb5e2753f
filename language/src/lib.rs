//! kino-language (work in progress).
