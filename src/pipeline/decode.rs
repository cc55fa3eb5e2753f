//! The decode stage: one thread per video sampling frames, handing them to
//! the vision service (or straight back when vision is off), and putting
//! replies back in frame order.

use super::screen::ScreenReader;
use super::vision::VisionRequest;
use super::*;

/// Items numbered 0, 1, 2, … that arrive in any order, handed on in order:
/// each waits here until the ones before it have come.
#[derive(Debug)]
pub(super) struct InOrder<T> {
    next: u64,
    waiting: BTreeMap<u64, T>,
}

impl<T> Default for InOrder<T> {
    fn default() -> Self {
        InOrder {
            next: 0,
            waiting: BTreeMap::new(),
        }
    }
}

impl<T> InOrder<T> {
    /// Item number `seq` has arrived.
    pub(super) fn push(&mut self, seq: u64, item: T) {
        self.waiting.insert(seq, item);
    }

    /// The next item in order, if it has arrived.
    pub(super) fn next(&mut self) -> Option<T> {
        let item = self.waiting.remove(&self.next)?;
        self.next += 1;
        Some(item)
    }
}

/// Samples `path`'s frames and sends each on: to the vision service
/// (resized by its preprocessor) or straight back. With `screen`, each frame
/// (decoded at the OCR size) is first shown to the on-screen text stage,
/// which reads it where the picture changed.
pub(super) fn decode_loop(
    path: &Path,
    opts: &SampleOptions,
    vision: Option<(Sender<VisionRequest>, kino_vision::Preprocessor)>,
    mut screen: Option<ScreenReader>,
    reply: Sender<Reply>,
    stop: &AtomicBool,
) {
    let mut sampler = match FrameSampler::open(path, opts) {
        Ok(s) => s,
        Err(e) => {
            let _ = reply.send(Reply::DecodeError(e));
            return;
        }
    };
    for (seq, frame) in (0u64..).zip(sampler.by_ref()) {
        let t = Instant::now();
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                let _ = reply.send(Reply::DecodeError(e));
                return;
            }
        };
        metrics::histogram!("kino_stage_seconds", "stage" => "decode").record(t.elapsed().as_secs_f64());
        let read = screen.as_mut().and_then(|s| s.frame(frame.pts_ms, &frame.image));
        let sent = match &vision {
            Some((v, pre)) => {
                // A frame the preprocessor refuses (no pixels) goes on as it
                // is; the vision stage reports the error for its batch.
                let image = pre.resize(&frame.image).unwrap_or(frame.image);
                v.send(VisionRequest {
                    seq,
                    pts_ms: frame.pts_ms,
                    thumbnail: frame.thumbnail_jpeg,
                    image,
                    screen: read,
                    reply: reply.clone(),
                })
                .is_ok()
            }
            None => reply
                .send(Reply::Frame(ProcessedFrame {
                    seq,
                    pts_ms: frame.pts_ms,
                    thumbnail: frame.thumbnail_jpeg,
                    features: None,
                    screen: read,
                }))
                .is_ok(),
        };
        if !sent || stop.load(Ordering::Relaxed) {
            return;
        }
    }
    if let Some(s) = screen {
        let _ = reply.send(Reply::Screen {
            reads: s.reads,
            warning: s.warning,
        });
    }
    let w = sampler.warnings().to_vec();
    if !w.is_empty() {
        let _ = reply.send(Reply::Warnings(w));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_hands_items_on_in_their_order_whatever_the_arrival() {
        let mut q = InOrder::default();
        let mut out = Vec::new();
        for seq in [2u64, 0, 1, 5, 3, 4, 7, 6] {
            q.push(seq, seq * 10);
            while let Some(v) = q.next() {
                out.push(v);
            }
            // Nothing is handed on before all that comes before it.
            assert!(out.iter().enumerate().all(|(i, &v)| v == i as u64 * 10), "{out:?}");
        }
        assert_eq!(out, [0, 10, 20, 30, 40, 50, 60, 70]);
        assert!(q.waiting.is_empty());
    }
}
