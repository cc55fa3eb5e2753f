//! Named fault points (see [`kino_fault`]): the binary's own points are
//! `train-step:<N>` and `train-stage2-step:<N>`.

pub use kino_fault::point;
