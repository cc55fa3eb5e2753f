//! kino-vision (work in progress).
