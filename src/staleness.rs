//! The one staleness rule: whether a video must be (re)indexed, and from
//! which stage.
//!
//! Every stage a video went through records the version of what it used
//! (`videos.stage_versions`, written with the segments in one transaction):
//! the decoder's sampling settings, the vision model, the text model, the
//! fusion weights. [`stale_stage`] compares those with the versions the
//! pipeline would use now and returns the earliest stage whose inputs
//! changed. `kino ingest`, `kino reindex --stale`, `kino serve`'s library
//! scan and watcher, the web reindex button's stale mode and serve's
//! model hot-reload all ask this function and nothing else.
//!
//! A video stale for speech alone ([`only_speech_stale`]) is refreshed from
//! its stored segments without decoding (`pipeline/refresh.rs`), one stale
//! for its document alone ([`only_document_stale`]) from its stored cues;
//! one stale for its fusion weights alone and with kept visual features is
//! re-fused from them (`pipeline/refuse.rs`); for any other stale stage the
//! pipeline reruns the whole video. The stage
//! returned tells what changed first; callers use it for "needs indexing or
//! not" and for logging.

use kino_store::{IndexVersions, Video, VideoStatus};

/// A stage of the indexing pipeline, in pipeline order: a change to one
/// makes that stage and every later one stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// Decoding and sampling frames (fps, frame size, segment window).
    Decode,
    /// The vision model (Swin) over the sampled frames.
    Vision,
    /// Speech recognition (Whisper) over the audio: its model and the
    /// `speech` setting.
    Speech,
    /// On-screen text (PP-OCR) over the sampled frames: its models and the
    /// frame size it reads.
    Ocr,
    /// The text encoder over subtitles and labels.
    Text,
    /// Cross-attention fusion into segment vectors.
    Fusion,
    /// The whole-video document: the video's whole text through the text
    /// encoder's sliding windows, and its summary. Stale alone, it is
    /// rebuilt from the stored cues (no decoding).
    Document,
}

impl Stage {
    /// Every stage, in pipeline order.
    pub const ALL: [Stage; 7] = [
        Stage::Decode,
        Stage::Vision,
        Stage::Speech,
        Stage::Ocr,
        Stage::Text,
        Stage::Fusion,
        Stage::Document,
    ];

    /// The stage's name as stored in `videos.stage_versions`.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::Vision => "vision",
            Stage::Speech => "speech",
            Stage::Ocr => "ocr",
            Stage::Text => "text",
            Stage::Fusion => "fusion",
            Stage::Document => "document",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The versions an index built now would record, per stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versions {
    /// Decoder settings (`fps=1,side=448,seg=10000`).
    pub decode: String,
    /// Vision model (`None`: no weights, the vision branch is off).
    pub vision: Option<String>,
    /// Speech model and setting (`None`: no model, or speech is off).
    pub speech: Option<String>,
    /// On-screen text models (`None`: no models or runtime, or `ocr` is off).
    pub ocr: Option<String>,
    /// Text model.
    pub text: String,
    /// Fusion module.
    pub fusion: String,
    /// Whole-video document (text model and window settings).
    pub document: String,
}

impl Versions {
    /// The current version of `stage` (`None`: the stage does not run).
    pub fn get(&self, stage: Stage) -> Option<&str> {
        match stage {
            Stage::Decode => Some(&self.decode),
            Stage::Vision => self.vision.as_deref(),
            Stage::Speech => self.speech.as_deref(),
            Stage::Ocr => self.ocr.as_deref(),
            Stage::Text => Some(&self.text),
            Stage::Fusion => Some(&self.fusion),
            Stage::Document => Some(&self.document),
        }
    }

    /// The speech stage's version for a video whose speech language is
    /// `language` (its override; `None`: detected): the model and setting,
    /// plus the language when one is set, so that changing a video's
    /// language makes it stale for speech.
    pub fn speech_for(&self, language: Option<&str>) -> Option<String> {
        self.speech.as_ref().map(|s| match language {
            Some(l) => format!("{s},lang={l}"),
            None => s.clone(),
        })
    }

    /// [`Versions::recorded`] for a video whose speech language is
    /// `language` (see [`Versions::speech_for`]).
    pub fn recorded_for(&self, vision_ran: bool, language: Option<&str>) -> IndexVersions {
        let v = self.recorded(vision_ran);
        match self.speech_for(language) {
            Some(speech) => v.with(Stage::Speech.name(), speech),
            None => v,
        }
    }

    /// One string for segment rows and stored queries (the models only).
    pub fn combined(&self) -> String {
        format!(
            "{}|{}|{}",
            self.text,
            self.vision.as_deref().unwrap_or("no-vision"),
            self.fusion
        )
    }

    /// What an index built with these versions records: every stage that
    /// ran (`vision_ran`: the vision stage saw every frame; without weights
    /// or with its circuit open it did not). The speech stage counts as run
    /// whenever it is on with a model (a file without audio, or whose audio
    /// is unreadable, has been heard as far as it can be).
    pub fn recorded(&self, vision_ran: bool) -> IndexVersions {
        Stage::ALL
            .into_iter()
            .filter(|s| *s != Stage::Vision || vision_ran)
            .filter_map(|s| Some((s, self.get(s)?)))
            .fold(IndexVersions::default(), |acc, (s, v)| acc.with(s.name(), v))
    }
}

/// What the caller knows beyond the video's row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ask {
    /// The file is new, or its content changed since the row's index.
    pub content_changed: bool,
    /// Failed videos count as stale (an explicit `kino ingest` or
    /// `reindex --stale`; the library scan leaves them alone).
    pub retry_failed: bool,
}

/// The earliest stale stage of `video` against the `current` versions, or
/// `None` when its index is fresh.
///
/// - New or changed content, and videos whose indexing never finished
///   (queued, indexing): stale from [`Stage::Decode`].
/// - Failed: stale from decode only when `ask.retry_failed`.
/// - Duplicates and missing files: never.
/// - Done: each stage's recorded version against the current one, in
///   pipeline order. The vision stage is fresh when there are no vision
///   weights now (whether or not it ran before: losing the weights does not
///   throw visual vectors away), and stale when there are and it did not run
///   or ran another model.
///
/// Rows indexed before per-stage versions were recorded (an empty
/// `stage_versions`) are judged by their `text_model`, `vision_model` and
/// `fusion_model` columns; their decode settings are taken as current (they
/// have not changed since), so migrating a library does not make it stale.
pub fn stale_stage(video: &Video, current: &Versions, ask: Ask) -> Option<Stage> {
    if ask.content_changed {
        return Some(Stage::Decode);
    }
    match video.status {
        VideoStatus::Queued | VideoStatus::Indexing => return Some(Stage::Decode),
        VideoStatus::Failed => return ask.retry_failed.then_some(Stage::Decode),
        VideoStatus::Duplicate | VideoStatus::Missing => return None,
        VideoStatus::Done => {}
    }
    let legacy = video.stage_versions.is_empty();
    let recorded = |stage: Stage| -> Option<&str> {
        if !legacy {
            return video.stage_versions.get(stage.name()).map(String::as_str);
        }
        match stage {
            Stage::Decode => current.get(Stage::Decode),
            Stage::Vision => video.vision_model.as_deref(),
            // Rows from before stage versions were never heard nor read.
            Stage::Speech | Stage::Ocr => None,
            Stage::Text => video.text_model.as_deref(),
            Stage::Fusion => video.fusion_model.as_deref(),
            // Rows from before stage versions have no document.
            Stage::Document => None,
        }
    };
    let speech_now = current.speech_for(video.language.as_deref());
    Stage::ALL.into_iter().find(|&stage| match (stage, current.get(stage)) {
        // No vision weights (speech model, OCR models) now: nothing to add or redo.
        (Stage::Vision | Stage::Speech | Stage::Ocr, None) => false,
        (Stage::Speech, Some(_)) => recorded(stage) != speech_now.as_deref(),
        (_, now) => recorded(stage) != now,
    })
}

/// Whether `video`'s index differs from what `current` would make only in
/// its speech stage: every other stage recorded with its current version
/// (vision as recorded: ran with the current model, or did not run and
/// there is none). Such a video can be refreshed from its stored segments
/// without decoding or seeing its frames again. Legacy rows (no recorded
/// stage versions) never qualify.
pub fn only_speech_stale(video: &Video, current: &Versions) -> bool {
    let recorded = &video.stage_versions;
    if recorded.is_empty() {
        return false;
    }
    let same = |stage: Stage| recorded.get(stage.name()).map(String::as_str) == current.get(stage);
    let vision_fresh = match (recorded.get(Stage::Vision.name()), current.get(Stage::Vision)) {
        (Some(r), Some(c)) => r == c,
        (None, None) => true,
        _ => false,
    };
    // On-screen text as recorded, or none to read now.
    let ocr_fresh = current.ocr.is_none() || same(Stage::Ocr);
    let speech_now = current.speech_for(video.language.as_deref());
    let speech_stale = speech_now.is_some() && recorded.get(Stage::Speech.name()) != speech_now.as_ref();
    same(Stage::Decode) && vision_fresh && ocr_fresh && same(Stage::Text) && same(Stage::Fusion) && speech_stale
}

/// Whether `video` is stale for its whole-video document alone (every
/// stage before it current, by [`stale_stage`]'s rule): its document can be
/// rebuilt from its stored cues, without decoding or re-fusing anything.
/// Legacy rows (indexed before stage versions) qualify when their model
/// columns are current: they gain a document without being indexed again.
pub fn only_document_stale(video: &Video, current: &Versions) -> bool {
    stale_stage(video, current, Ask::default()) == Some(Stage::Document)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn current(vision: Option<&str>) -> Versions {
        Versions {
            decode: "fps=1,side=448,seg=10000".into(),
            vision: vision.map(String::from),
            speech: None,
            ocr: None,
            text: "text-1".into(),
            fusion: "fusion-1".into(),
            document: "doc-1".into(),
        }
    }

    fn video(status: VideoStatus, stages: &[(&str, &str)]) -> Video {
        Video {
            id: 1,
            path: "/lib/a.mp4".into(),
            content_hash: Some("h".into()),
            size_bytes: 1,
            mtime_ms: 1,
            facts: Default::default(),
            status,
            error: None,
            duplicate_of: None,
            text_model: None,
            vision_model: None,
            fusion_model: None,
            needs_vision: false,
            stage_versions: stages.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            language: None,
            warnings: Vec::new(),
            missing_since_ms: None,
            indexed_ms: Some(1),
            created_ms: 1,
            updated_ms: 1,
        }
    }

    /// A done video as indexed with `v` (`vision_ran` as in [`Versions::recorded`]).
    fn indexed_with(v: &Versions, vision_ran: bool) -> Video {
        let mut row = video(VideoStatus::Done, &[]);
        row.stage_versions = v.recorded(vision_ran).stages;
        row
    }

    const SCAN: Ask = Ask {
        content_changed: false,
        retry_failed: false,
    };
    const EXPLICIT: Ask = Ask {
        content_changed: false,
        retry_failed: true,
    };

    #[test]
    fn stages_are_ordered_and_named() {
        assert!(Stage::Decode < Stage::Vision && Stage::Vision < Stage::Speech);
        assert!(Stage::Speech < Stage::Ocr && Stage::Ocr < Stage::Text && Stage::Text < Stage::Fusion);
        let names: Vec<_> = Stage::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(
            names,
            ["decode", "vision", "speech", "ocr", "text", "fusion", "document"]
        );
        assert!(Stage::Fusion < Stage::Document);
        assert_eq!(Stage::Vision.to_string(), "vision");
        let mut sorted = Stage::ALL;
        sorted.sort();
        assert_eq!(sorted, Stage::ALL);
    }

    #[test]
    fn a_video_indexed_with_the_current_versions_is_fresh() {
        for vision in [None, Some("swin-1")] {
            let now = current(vision);
            let row = indexed_with(&now, vision.is_some());
            assert_eq!(stale_stage(&row, &now, SCAN), None, "vision {vision:?}");
            assert_eq!(stale_stage(&row, &now, EXPLICIT), None, "vision {vision:?}");
        }
    }

    #[test]
    fn new_or_changed_content_is_stale_from_decode_whatever_the_row_says() {
        let now = current(Some("swin-1"));
        let ask = Ask {
            content_changed: true,
            retry_failed: false,
        };
        for status in [
            VideoStatus::Done,
            VideoStatus::Queued,
            VideoStatus::Failed,
            VideoStatus::Missing,
            VideoStatus::Duplicate,
        ] {
            let mut row = indexed_with(&now, true);
            row.status = status;
            assert_eq!(stale_stage(&row, &now, ask), Some(Stage::Decode), "{status:?}");
        }
    }

    #[test]
    fn unfinished_videos_are_stale_from_decode() {
        let now = current(None);
        for status in [VideoStatus::Queued, VideoStatus::Indexing] {
            let mut row = indexed_with(&now, false);
            row.status = status;
            assert_eq!(stale_stage(&row, &now, SCAN), Some(Stage::Decode), "{status:?}");
            // Even a row that never recorded anything.
            assert_eq!(
                stale_stage(&video(status, &[]), &now, SCAN),
                Some(Stage::Decode),
                "{status:?}"
            );
        }
    }

    #[test]
    fn failed_videos_are_stale_only_when_the_caller_retries_them() {
        let now = current(None);
        let row = video(VideoStatus::Failed, &[]);
        assert_eq!(stale_stage(&row, &now, SCAN), None);
        assert_eq!(stale_stage(&row, &now, EXPLICIT), Some(Stage::Decode));
    }

    #[test]
    fn duplicates_and_missing_files_are_never_stale() {
        let now = current(Some("swin-2"));
        for status in [VideoStatus::Duplicate, VideoStatus::Missing] {
            // Even with every recorded version out of date.
            let row = video(status, &[("decode", "old"), ("text", "old"), ("fusion", "old")]);
            assert_eq!(stale_stage(&row, &now, SCAN), None, "{status:?}");
            assert_eq!(stale_stage(&row, &now, EXPLICIT), None, "{status:?}");
        }
    }

    #[test]
    fn vision_weights_arriving_make_videos_indexed_without_them_stale_at_vision() {
        let before = current(None);
        let row = indexed_with(&before, false);
        assert!(!row.stage_versions.contains_key("vision"));
        assert_eq!(stale_stage(&row, &before, SCAN), None, "no weights: nothing to add");
        assert_eq!(stale_stage(&row, &current(Some("swin-1")), SCAN), Some(Stage::Vision));
    }

    #[test]
    fn a_vision_stage_that_did_not_run_is_stale_once_weights_exist() {
        // Weights present but the circuit was open: vision absent from the row.
        let now = current(Some("swin-1"));
        let row = indexed_with(&now, false);
        assert_eq!(stale_stage(&row, &now, SCAN), Some(Stage::Vision));
    }

    #[test]
    fn another_vision_model_is_stale_at_vision() {
        let row = indexed_with(&current(Some("swin-1")), true);
        assert_eq!(stale_stage(&row, &current(Some("swin-2")), SCAN), Some(Stage::Vision));
    }

    #[test]
    fn weights_removed_keep_an_index_with_visual_vectors_fresh() {
        let row = indexed_with(&current(Some("swin-1")), true);
        assert_eq!(stale_stage(&row, &current(None), SCAN), None);
    }

    #[test]
    fn the_earliest_changed_stage_is_returned() {
        let old = current(Some("swin-1"));
        let row = indexed_with(&old, true);
        let mut now = old.clone();
        now.fusion = "fusion-2".into();
        assert_eq!(stale_stage(&row, &now, SCAN), Some(Stage::Fusion));
        now.text = "text-2".into();
        assert_eq!(stale_stage(&row, &now, SCAN), Some(Stage::Text));
        now.vision = Some("swin-2".into());
        assert_eq!(stale_stage(&row, &now, SCAN), Some(Stage::Vision));
        now.decode = "fps=2,side=448,seg=10000".into();
        assert_eq!(stale_stage(&row, &now, SCAN), Some(Stage::Decode));
    }

    #[test]
    fn a_stage_missing_from_a_recorded_map_is_stale() {
        let now = current(None);
        let row = video(VideoStatus::Done, &[("decode", &now.decode), ("text", &now.text)]);
        assert_eq!(stale_stage(&row, &now, SCAN), Some(Stage::Fusion));
        let row = video(VideoStatus::Done, &[("text", &now.text), ("fusion", &now.fusion)]);
        assert_eq!(stale_stage(&row, &now, SCAN), Some(Stage::Decode));
    }

    #[test]
    fn rows_from_before_stage_versions_fall_back_to_the_model_columns() {
        let now = current(None);
        let mut legacy = video(VideoStatus::Done, &[]);
        legacy.text_model = Some(now.text.clone());
        legacy.fusion_model = Some(now.fusion.clone());
        legacy.needs_vision = true;
        assert_eq!(
            stale_stage(&legacy, &now, SCAN),
            Some(Stage::Document),
            "a migrated library is stale only for its new documents"
        );
        assert!(only_document_stale(&legacy, &now));
        // The old rules still hold through the columns.
        assert_eq!(
            stale_stage(&legacy, &current(Some("swin-1")), SCAN),
            Some(Stage::Vision)
        );
        let mut other_text = now.clone();
        other_text.text = "text-2".into();
        assert_eq!(stale_stage(&legacy, &other_text, SCAN), Some(Stage::Text));
        legacy.vision_model = Some("swin-1".into());
        legacy.needs_vision = false;
        assert_eq!(
            stale_stage(&legacy, &current(Some("swin-1")), SCAN),
            Some(Stage::Document)
        );
        assert_eq!(
            stale_stage(&legacy, &current(Some("swin-2")), SCAN),
            Some(Stage::Vision)
        );
    }

    #[test]
    fn the_rule_does_not_read_needs_vision() {
        let now = current(Some("swin-1"));
        let mut row = indexed_with(&now, true);
        row.needs_vision = true; // stale display flag, say
        assert_eq!(stale_stage(&row, &now, SCAN), None);
        let mut row = indexed_with(&now, false);
        row.needs_vision = false;
        assert_eq!(stale_stage(&row, &now, SCAN), Some(Stage::Vision));
    }

    #[test]
    fn recorded_versions_hold_every_stage_that_ran() {
        let now = current(Some("swin-1"));
        let all: BTreeMap<String, String> = [
            ("decode", "fps=1,side=448,seg=10000"),
            ("vision", "swin-1"),
            ("text", "text-1"),
            ("fusion", "fusion-1"),
            ("document", "doc-1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(now.recorded(true).stages, all);
        let mut no_vision = all.clone();
        no_vision.remove("vision");
        assert_eq!(now.recorded(false).stages, no_vision);
        // Without weights the vision stage is absent whatever the caller says.
        assert_eq!(current(None).recorded(true).stages, no_vision);
    }

    #[test]
    fn a_speech_model_arriving_makes_videos_heard_without_it_stale_at_speech() {
        let before = current(Some("swin-1"));
        let row = indexed_with(&before, true);
        assert_eq!(stale_stage(&row, &before, Ask::default()), None);
        let mut now = before.clone();
        now.speech = Some("whisper-base@d01c3014,auto".into());
        assert_eq!(stale_stage(&row, &now, Ask::default()), Some(Stage::Speech));
        // Heard with it: fresh; with another model or setting: stale again.
        let heard = indexed_with(&now, true);
        assert_eq!(stale_stage(&heard, &now, Ask::default()), None);
        let mut always = now.clone();
        always.speech = Some("whisper-base@d01c3014,always".into());
        assert_eq!(stale_stage(&heard, &always, Ask::default()), Some(Stage::Speech));
        // Turning speech off (or losing the model) keeps the index.
        assert_eq!(stale_stage(&heard, &before, Ask::default()), None);
        // A language set on the video: stale for speech until heard in it.
        let mut german = heard.clone();
        german.language = Some("de".into());
        assert_eq!(stale_stage(&german, &now, Ask::default()), Some(Stage::Speech));
        assert!(only_speech_stale(&german, &now));
        german.stage_versions = now.recorded_for(true, Some("de")).stages;
        assert_eq!(stale_stage(&german, &now, Ask::default()), None);
        assert_eq!(
            german.stage_versions.get("speech").map(String::as_str),
            Some("whisper-base@d01c3014,auto,lang=de")
        );
        // Legacy rows were never heard.
        let mut legacy = video(VideoStatus::Done, &[]);
        legacy.text_model = Some("text-1".into());
        legacy.vision_model = Some("swin-1".into());
        legacy.fusion_model = Some("fusion-1".into());
        assert_eq!(stale_stage(&legacy, &before, Ask::default()), Some(Stage::Document));
        assert_eq!(stale_stage(&legacy, &now, Ask::default()), Some(Stage::Speech));
    }

    #[test]
    fn only_speech_stale_needs_every_other_stage_current() {
        let before = current(Some("swin-1"));
        let mut now = before.clone();
        now.speech = Some("whisper@abc,auto".into());
        let row = indexed_with(&before, true);
        assert!(only_speech_stale(&row, &now));
        assert!(!only_speech_stale(&row, &before), "nothing stale");
        let mut other_text = now.clone();
        other_text.text = "text-2".into();
        assert!(!only_speech_stale(&row, &other_text));
        // Indexed without vision while weights exist now: vision is stale too.
        assert!(!only_speech_stale(&indexed_with(&before, false), &now));
        let no_vision = current(None);
        let mut heard = no_vision.clone();
        heard.speech = now.speech.clone();
        assert!(only_speech_stale(&indexed_with(&no_vision, false), &heard));
        assert!(!only_speech_stale(&video(VideoStatus::Done, &[]), &now), "legacy rows");
    }

    #[test]
    fn another_document_version_is_stale_only_at_document() {
        let old = current(Some("swin-1"));
        let row = indexed_with(&old, true);
        let mut now = old.clone();
        now.document = "doc-2".into();
        assert_eq!(stale_stage(&row, &now, SCAN), Some(Stage::Document));
        assert!(only_document_stale(&row, &now));
        assert!(!only_speech_stale(&row, &now));
        // Anything earlier stale as well: not a document refresh.
        now.fusion = "fusion-2".into();
        assert_eq!(stale_stage(&row, &now, SCAN), Some(Stage::Fusion));
        assert!(!only_document_stale(&row, &now));
        assert!(!only_document_stale(&row, &old), "nothing stale");
    }

    #[test]
    fn combined_keeps_its_format() {
        assert_eq!(current(None).combined(), "text-1|no-vision|fusion-1");
        assert_eq!(current(Some("swin-1")).combined(), "text-1|swin-1|fusion-1");
    }

    #[test]
    fn ocr_models_arriving_make_videos_read_without_them_stale_at_ocr() {
        let before = current(None);
        let row = indexed_with(&before, false);
        let mut now = before.clone();
        now.ocr = Some("rapidocr/PP-OCRv6@a.b.c,side=960".into());
        assert_eq!(stale_stage(&row, &now, SCAN), Some(Stage::Ocr));
        // Read with them: fresh; other models: stale again.
        let read = indexed_with(&now, false);
        assert_eq!(stale_stage(&read, &now, SCAN), None);
        let mut other = now.clone();
        other.ocr = Some("rapidocr/PP-OCRv6@d.e.f,side=960".into());
        assert_eq!(stale_stage(&read, &other, SCAN), Some(Stage::Ocr));
        // Turning OCR off (or losing the models) keeps the index.
        assert_eq!(stale_stage(&read, &before, SCAN), None);
        // Legacy rows were never read.
        let mut legacy = video(VideoStatus::Done, &[]);
        legacy.text_model = Some("text-1".into());
        legacy.fusion_model = Some("fusion-1".into());
        assert_eq!(stale_stage(&legacy, &now, SCAN), Some(Stage::Ocr));
        // A video stale for speech and for OCR is not a speech refresh.
        let mut heard = now.clone();
        heard.speech = Some("whisper@abc,auto".into());
        assert!(!only_speech_stale(&row, &heard));
        assert!(only_speech_stale(&read, &heard));
    }
}
