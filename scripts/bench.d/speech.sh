#!/usr/bin/env bash
# Speech: audio seconds transcribed per second, kino (Whisper base on its own
# CPU kernels) against faster-whisper (CTranslate2, CPU, same threads) in
# compute types float32 and int8, on the same model folder and the same
# deterministic ~2.8-minute espeak-ng clip: greedy (beam 1), temperature 0
# without fallback, no VAD, condition_on_previous_text, language given.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${KINO_REF_PYTHON:?set by scripts/bench}"
: "${KINO_BENCH_DIR:?set by scripts/bench}"
KINO_HOME="${KINO_HOME:-${XDG_DATA_HOME:-$HOME/.local/share}/kino}"
MODEL="${KINO_TEST_SPEECH_MODEL:-${KINO_MODELS:-$KINO_HOME/models}/Systran/faster-whisper-base}"
THREADS="${KINO_BENCH_THREADS:-$(nproc)}"
REPEATS="${KINO_BENCH_REPEATS:-1}"
dir="$KINO_BENCH_DIR/speech"
mkdir -p "$dir"
text="$dir/speech.txt"
clip="$dir/speech.wav"

# The clip: sentences from a fixed list in an order drawn with a fixed seed,
# read by espeak-ng (fixed voice, speed and pitch), 16 kHz mono 16-bit.
"$KINO_REF_PYTHON" - "$text" <<'PY'
import random, sys
rng = random.Random(20261202)
sentences = """The morning train to the coast was late again, and nobody on the platform seemed surprised.
She opened the old kitchen window and listened to the rain falling on the market square.
A small red boat drifted slowly past the harbour wall while the fishermen mended their nets.
The camera followed the children as they ran across the bridge towards the forest.
He wrote a long letter to his brother but never found the courage to send it.
In the evening the city lights came on one by one along the river.
The storm had passed, yet the streets were still full of broken branches and leaves.
Our guide explained that the castle was built more than eight hundred years ago.
The music from the station hall could be heard from the other side of the street.
Every Sunday the family gathered around the big table to share a simple meal.
The scientist checked the results twice before she called the rest of the team.
A quiet voice on the phone told him that the meeting had been moved to Friday.
The dog waited patiently by the door until its owner came home from work.
They climbed the mountain path in silence, stopping only to drink some water.
The last scene of the film shows the ship disappearing into the fog.
Nobody knew who had left the blue bicycle leaning against the library wall.
The teacher asked the students to read the first chapter before the next lesson.
Snow covered the village overnight, and the roads were closed until noon.
He bought fresh bread, a piece of cheese and two apples at the corner shop.
The orchestra played the final notes, and the audience rose to its feet.""".splitlines()
order = []
while len(order) < 36:
    batch = sentences[:]
    rng.shuffle(batch)
    order.extend(batch)
open(sys.argv[1], "w").write(" ".join(order[:36]) + "\n")
PY
if [ ! -s "$clip" ] || [ "$text" -nt "$clip" ]; then
  espeak-ng -v en-us -s 165 -p 50 -w "$dir/speech-22k.wav" -f "$text"
  ffmpeg -loglevel error -y -i "$dir/speech-22k.wav" -ac 1 -ar 16000 -c:a pcm_s16le "$clip"
fi

cargo build --release --quiet -p kino-speech --example speech_bench
kino_json="$(RAYON_NUM_THREADS="$THREADS" target/release/examples/speech_bench "$MODEL" "$clip" en "$REPEATS")"
kino8_json="$(KINO_BENCH_PRECISION=int8 RAYON_NUM_THREADS="$THREADS" target/release/examples/speech_bench "$MODEL" "$clip" en "$REPEATS")"

peer() {
  "$KINO_REF_PYTHON" - "$MODEL" "$clip" "$THREADS" "$1" "$REPEATS" <<'PY'
import json, sys, time, wave
import numpy as np
from faster_whisper import WhisperModel
model_dir, clip, threads, compute_type, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
with wave.open(clip) as w:
    assert w.getframerate() == 16000 and w.getnchannels() == 1 and w.getsampwidth() == 2
    audio = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768.0
model = WhisperModel(model_dir, device="cpu", compute_type=compute_type, cpu_threads=threads, num_workers=1)
opts = dict(language="en", beam_size=1, best_of=1, temperature=[0.0], vad_filter=False,
            condition_on_previous_text=True, without_timestamps=False, word_timestamps=False)
list(model.transcribe(audio[:5 * 16000], **opts)[0])  # warm-up
best, text, n = float("inf"), "", 0
for _ in range(repeats):
    t = time.perf_counter()
    segments = list(model.transcribe(audio, **opts)[0])
    best = min(best, time.perf_counter() - t)
    text, n = "".join(s.text for s in segments).strip(), len(segments)
secs = len(audio) / 16000
print(json.dumps({"audio_s": secs, "wall_s": round(best, 3), "audio_s_per_s": round(secs / best, 2),
                  "threads": threads, "compute_type": compute_type, "segments": n, "text": text}))
PY
}
f32_json="$(peer float32)"
int8_json="$(peer int8)"

"$KINO_REF_PYTHON" - "$kino_json" "$f32_json" "$int8_json" "$kino8_json" <<'PY'
import difflib, json, sys
k, f, i, k8 = (json.loads(a) for a in sys.argv[1:5])
print(f"speech, Whisper base, {k['audio_s']:.1f} s espeak-ng clip, greedy, language en, {k['threads']} threads")
print(f"  kino (own f32 kernels)         {k['audio_s_per_s']:7.2f} audio-s/s  ({k['wall_s']:.2f} s, {k['segments']} segments)")
print(f"  kino (encoder int8)            {k8['audio_s_per_s']:7.2f} audio-s/s  ({k8['wall_s']:.2f} s, {k8['segments']} segments)")
for p, label in ((f, "faster-whisper float32"), (i, "faster-whisper int8   ")):
    print(f"  {label}         {p['audio_s_per_s']:7.2f} audio-s/s  ({p['wall_s']:.2f} s, {p['segments']} segments)")
for p, label in ((f, "float32"), (i, "int8")):
    same = difflib.SequenceMatcher(None, k["text"].split(), p["text"].split()).ratio()
    print(f"  ratio kino/faster-whisper {label:8} {k['audio_s_per_s'] / p['audio_s_per_s']:5.2f}x"
          f"  (transcripts {'identical' if k['text'] == p['text'] else f'{same:.1%} same words'})")
same = difflib.SequenceMatcher(None, k["text"].split(), k8["text"].split()).ratio()
print(f"  ratio kino int8/kino f32       {k8['audio_s_per_s'] / k['audio_s_per_s']:5.2f}x"
      f"  (transcripts {'identical' if k['text'] == k8['text'] else f'{same:.1%} same words'})")
print(f"  ratio kino int8/faster-whisper int8 {k8['audio_s_per_s'] / i['audio_s_per_s']:5.2f}x")
PY

# What silence and noise cost: the pipeline's stream (energy gate on) over ten
# minutes of talk (the clip repeated), of silence and of -40 dBFS noise.
cargo build --release --quiet -p kino-speech --example speech_cost
cost_json="$(RAYON_NUM_THREADS="$THREADS" target/release/examples/speech_cost "$MODEL" "$clip")"
"$KINO_REF_PYTHON" - "$cost_json" <<'PY'
import json, sys
c = json.loads(sys.argv[1])
print("speech stage (energy gate on), ten minutes each:")
for k in ("talk", "silence", "noise"):
    r = c[k]
    print(f"  {k:8} {r['seconds']:7.2f} s  ({r['windows']} windows decoded, {r['segments']} segments)")
print(f"  silence costs {c['silence_fraction']:.2%} of the talk's time, -40 dBFS noise {c['noise_fraction']:.2%}")
PY
