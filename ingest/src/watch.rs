//! Folder watching: a start-up scan plus `notify` events, reporting video files once
//! they are stable (size and modification time unchanged for a settling period).
//!
//! Events go out through a bounded channel (backpressure: when the consumer is slow the
//! watcher waits; raw file-system events that overflow its own queue trigger a rescan,
//! so nothing is lost). A rename shows up as `Removed { old }` plus `Stable { new }`;
//! recognising it as a move (same content hash) is the consumer's job.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender};
use notify::{RecursiveMode, Watcher as _};

use crate::IngestError;

/// File extensions (lower case) that are treated as videos.
pub const VIDEO_EXTENSIONS: &[&str] = &[
    "mp4", "m4v", "mov", "qt", "mkv", "webm", "avi", "ts", "mts", "m2ts", "mpg", "mpeg", "wmv", "flv", "3gp", "3g2",
    "ogv", "vob", "asf", "divx", "f4v",
];

/// File extensions (lower case) of audio-only files (podcasts, calls, voice
/// notes): library items too, indexed from their speech.
pub const AUDIO_EXTENSIONS: &[&str] = &["mp3", "m4a", "wav", "flac", "ogg", "opus", "aac", "wma"];

/// Extensions of files still being written by browsers and download tools.
const TEMP_EXTENSIONS: &[&str] = &["part", "crdownload", "tmp", "temp", "download", "partial", "swp"];

/// What the watcher reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// A video file exists and has been unchanged for the settling period; sent again only
    /// when its size or modification time changes.
    Stable {
        /// The file.
        path: PathBuf,
        /// Size in bytes.
        size: u64,
        /// Modification time in ms since the Unix epoch.
        mtime_ms: i64,
    },
    /// A video file reported before is gone (deleted, or renamed/moved away).
    Removed {
        /// The file's former path.
        path: PathBuf,
    },
    /// The start-up scan is done: every file present at start has been reported.
    ScanComplete,
}

/// Watcher settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchOptions {
    /// How long size and mtime must stay unchanged before a file is reported (default 3 s).
    pub settle: Duration,
    /// Capacity of the event channel (default 1024).
    pub channel_capacity: usize,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            settle: Duration::from_secs(3),
            channel_capacity: 1024,
        }
    }
}

/// True when `path` names a media file the watcher reports: a video or audio extension
/// ([`VIDEO_EXTENSIONS`], [`AUDIO_EXTENSIONS`]), and no
/// hidden (dot) component or temporary-download suffix.
pub fn is_candidate(path: &Path) -> bool {
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().to_lowercase()) else {
        return false;
    };
    if name.starts_with('.') || name.ends_with('~') {
        return false;
    }
    let Some((_, ext)) = name.rsplit_once('.') else {
        return false;
    };
    if TEMP_EXTENSIONS.contains(&ext) {
        return false;
    }
    VIDEO_EXTENSIONS.contains(&ext) || AUDIO_EXTENSIONS.contains(&ext)
}

fn hidden_below(root: &Path, path: &Path) -> bool {
    path.strip_prefix(root)
        .map(|rel| {
            rel.components()
                .any(|c| c.as_os_str().to_string_lossy().starts_with('.'))
        })
        .unwrap_or(false)
}

/// A running watcher; stops (and joins its thread) when dropped.
pub struct Watcher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Watcher {
    /// Starts watching `roots` recursively. The returned channel first receives `Stable`
    /// for every video file already there (once settled) and `ScanComplete`, then events
    /// as files arrive, change or disappear.
    ///
    /// Errors: a root that does not exist or is not a folder, or the OS refusing to watch.
    pub fn start(roots: &[PathBuf], opts: WatchOptions) -> Result<(Watcher, Receiver<WatchEvent>), IngestError> {
        for r in roots {
            let meta = std::fs::metadata(r).map_err(|e| IngestError::io(r, e))?;
            if !meta.is_dir() {
                return Err(IngestError::Watch {
                    path: r.clone(),
                    detail: "not a folder".into(),
                });
            }
        }
        let roots: Vec<PathBuf> = roots
            .iter()
            .map(|r| r.canonicalize().unwrap_or_else(|_| r.clone()))
            .collect();
        let (raw_tx, raw_rx) = crossbeam_channel::bounded::<RawEvent>(8192);
        let overflow_tx = raw_tx.clone();
        let mut notifier = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let ev = match res {
                // Opening and reading files (our own scans included) changes nothing.
                Ok(ev) if matches!(ev.kind, notify::EventKind::Access(_)) => return,
                Ok(ev) if ev.need_rescan() => RawEvent::Rescan,
                Ok(ev) => RawEvent::Paths(ev.paths),
                Err(_) => RawEvent::Rescan,
            };
            if raw_tx.try_send(ev).is_err() {
                let _ = overflow_tx.try_send(RawEvent::Rescan);
            }
        })
        .map_err(|e| IngestError::Watch {
            path: roots.first().cloned().unwrap_or_default(),
            detail: e.to_string(),
        })?;
        for r in &roots {
            notifier
                .watch(r, RecursiveMode::Recursive)
                .map_err(|e| IngestError::Watch {
                    path: r.clone(),
                    detail: e.to_string(),
                })?;
        }
        let (tx, rx) = crossbeam_channel::bounded(opts.channel_capacity.max(1));
        let stop = Arc::new(AtomicBool::new(false));
        let mut state = State {
            roots,
            settle: opts.settle,
            tx,
            stop: stop.clone(),
            pending: HashMap::new(),
            known: HashMap::new(),
            scan_pending: HashSet::new(),
            scan_done_sent: false,
        };
        let thread = std::thread::Builder::new()
            .name("kino-watch".into())
            .spawn(move || {
                let _keep = notifier;
                state.run(raw_rx);
            })
            .map_err(|e| IngestError::Watch {
                path: PathBuf::new(),
                detail: e.to_string(),
            })?;
        Ok((
            Watcher {
                stop,
                thread: Some(thread),
            },
            rx,
        ))
    }

    /// Stops watching and waits for the watcher thread to end.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.shutdown();
    }
}

enum RawEvent {
    Paths(Vec<PathBuf>),
    Rescan,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Stat {
    size: u64,
    mtime_ms: i64,
}

struct Pending {
    stat: Stat,
    since: Instant,
}

struct State {
    roots: Vec<PathBuf>,
    settle: Duration,
    tx: Sender<WatchEvent>,
    stop: Arc<AtomicBool>,
    pending: HashMap<PathBuf, Pending>,
    /// Files reported as `Stable`, with what was reported.
    known: HashMap<PathBuf, Stat>,
    scan_pending: HashSet<PathBuf>,
    scan_done_sent: bool,
}

fn stat(path: &Path) -> Option<Stat> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() {
        return None;
    }
    let mtime_ms = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    Some(Stat {
        size: meta.len(),
        mtime_ms,
    })
}

impl State {
    fn run(&mut self, raw: Receiver<RawEvent>) {
        self.full_scan(true);
        let tick = (self.settle / 4).clamp(Duration::from_millis(20), Duration::from_millis(500));
        while !self.stop.load(Ordering::Relaxed) {
            match raw.recv_timeout(tick) {
                Ok(ev) => {
                    self.handle(ev);
                    // Take what else is queued (up to a limit) before checking settling.
                    for _ in 0..1024 {
                        match raw.try_recv() {
                            Ok(ev) => self.handle(ev),
                            Err(_) => break,
                        }
                    }
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
            }
            if !self.check_pending() {
                return;
            }
        }
    }

    fn handle(&mut self, ev: RawEvent) {
        match ev {
            RawEvent::Rescan => self.full_scan(false),
            RawEvent::Paths(paths) => {
                for p in paths {
                    self.touch(&p);
                }
            }
        }
    }

    fn in_roots(&self, path: &Path) -> bool {
        self.roots.iter().any(|r| path.starts_with(r) && !hidden_below(r, path))
    }

    /// A path changed: queue it, scan it (a folder), or forget it (gone).
    fn touch(&mut self, path: &Path) {
        if !self.in_roots(path) {
            return;
        }
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => {
                let mut files = Vec::new();
                walk(path, &mut files);
                for f in files {
                    self.queue(&f, false);
                }
            }
            Ok(_) => {
                if is_candidate(path) {
                    self.queue(path, false);
                }
            }
            Err(_) => {
                // Gone: the path itself, or a folder and everything below it.
                let gone: Vec<PathBuf> = self.known.keys().filter(|k| k.starts_with(path)).cloned().collect();
                for g in gone {
                    if stat(&g).is_none() {
                        self.known.remove(&g);
                        self.pending.remove(&g);
                        self.send(WatchEvent::Removed { path: g });
                    }
                }
                self.pending.retain(|k, _| !(k.starts_with(path) && stat(k).is_none()));
            }
        }
    }

    fn queue(&mut self, path: &Path, from_scan: bool) {
        let Some(st) = stat(path) else { return };
        if self.known.get(path) == Some(&st) {
            return; // unchanged since reported (e.g. a metadata-only event)
        }
        let now = Instant::now();
        match self.pending.get_mut(path) {
            Some(p) if p.stat == st => {}
            Some(p) => {
                p.stat = st;
                p.since = now;
            }
            None => {
                // A file found at start-up whose mtime is already older than the settling
                // period is stable now.
                let age = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_millis() as i64 - st.mtime_ms)
                    .unwrap_or(0);
                let since = if from_scan && age > self.settle.as_millis() as i64 {
                    now.checked_sub(self.settle).unwrap_or(now)
                } else {
                    now
                };
                self.pending.insert(path.to_owned(), Pending { stat: st, since });
            }
        }
        if from_scan {
            self.scan_pending.insert(path.to_owned());
        }
    }

    fn full_scan(&mut self, startup: bool) {
        let mut files = Vec::new();
        for r in self.roots.clone() {
            walk(&r, &mut files);
        }
        let present: HashSet<PathBuf> = files.iter().cloned().collect();
        if !startup {
            let gone: Vec<PathBuf> = self.known.keys().filter(|k| !present.contains(*k)).cloned().collect();
            for g in gone {
                self.known.remove(&g);
                self.send(WatchEvent::Removed { path: g });
            }
        }
        for f in files {
            self.queue(&f, startup);
        }
        if startup {
            self.check_pending();
        }
    }

    /// Reports settled files; returns false when the consumer is gone.
    fn check_pending(&mut self) -> bool {
        let now = Instant::now();
        let paths: Vec<PathBuf> = self.pending.keys().cloned().collect();
        let mut ready = Vec::new();
        for p in paths {
            let st = stat(&p);
            let entry = self.pending.get_mut(&p).expect("key listed above");
            match st {
                None => {
                    self.pending.remove(&p);
                    self.scan_pending.remove(&p);
                    if self.known.remove(&p).is_some() && !self.send(WatchEvent::Removed { path: p }) {
                        return false;
                    }
                }
                Some(st) if st != entry.stat => {
                    entry.stat = st;
                    entry.since = now;
                }
                Some(st) if now.duration_since(entry.since) >= self.settle => {
                    self.pending.remove(&p);
                    ready.push((p, st));
                }
                Some(_) => {}
            }
        }
        ready.sort();
        for (p, st) in ready {
            self.scan_pending.remove(&p);
            if self.known.get(&p) == Some(&st) {
                continue;
            }
            self.known.insert(p.clone(), st);
            if !self.send(WatchEvent::Stable {
                path: p,
                size: st.size,
                mtime_ms: st.mtime_ms,
            }) {
                return false;
            }
        }
        if !self.scan_done_sent && self.scan_pending.is_empty() {
            self.scan_done_sent = true;
            if !self.send(WatchEvent::ScanComplete) {
                return false;
            }
        }
        true
    }

    /// Sends with backpressure, giving up when stopped or when the receiver is gone.
    fn send(&self, ev: WatchEvent) -> bool {
        let mut ev = ev;
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return false;
            }
            match self.tx.send_timeout(ev, Duration::from_millis(100)) {
                Ok(()) => return true,
                Err(crossbeam_channel::SendTimeoutError::Timeout(back)) => ev = back,
                Err(crossbeam_channel::SendTimeoutError::Disconnected(_)) => return false,
            }
        }
    }
}

/// Every candidate video file below `dir` (hidden folders skipped; symlinked folders not followed).
fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let path = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if e.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if ft.is_dir() {
            walk(&path, out);
        } else if is_candidate(&path) && (ft.is_file() || path.is_file()) {
            out.push(path);
        }
    }
}
