//! kino-fusion (work in progress).
