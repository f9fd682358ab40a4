"""Make a small speech corpus in the shape Common Voice ships today, reproducibly and offline.

    python tools/make_corpus.py                          # the bundled corpus, data/cv-mini/si
    python tools/make_corpus.py --out /tmp/cv --clips 300 --min-seconds 2 --max-seconds 12   # benchmarks
    python tools/make_corpus.py --subset-of data/cv-mini/si --keep si --out ~/.cache/whisper-course/cv-mini-sinhala

espeak-ng speaks sentences built from a small Sinhala vocabulary (Sinhala is espeak-ng's closest stand-in
for Dhivehi and uses the same kind of combining vowel signs) and a third of them in English; every
"speaker" has its own voice variant, speed and pitch. ffmpeg turns them into 48 kHz mono MP3 files, as
Common Voice publishes them, and the tsv files carry Common Voice's real columns. Speakers never cross
splits, as in Common Voice. The same seed gives the same sentences, voices and splits.

The vocabulary is small on purpose: a tiny model trained for a few dozen steps can learn it, so the smoke
profile shows a falling WER instead of noise.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import random
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "data" / "cv-mini" / "si"
CV_COLUMNS = ["client_id", "path", "sentence", "up_votes", "down_votes", "age", "gender", "accents", "variant",
              "locale", "segment"]

# subject, time, place/object, verb: every combination is a grammatical Sinhala sentence.
SINHALA = {
    "subject": ["මම", "ඔබ", "අපි", "අම්මා", "තාත්තා", "ළමයා"],
    "time": ["අද", "හෙට", "ඊයේ", "උදේ", "රෑ"],
    "place": ["ගෙදර", "පාසලට", "කොළඹ", "මුහුදට", "නගරයට", "කඩේට"],
    "verb": ["යනවා", "එනවා", "දුවනවා", "ඇවිදිනවා"],
}
ENGLISH = {
    "subject": ["the child", "my mother", "our teacher", "the farmer", "a doctor"],
    "time": ["today", "tomorrow", "every morning", "at night"],
    "verb": ["walks to", "drives to", "runs to", "goes to"],
    "place": ["the sea", "the market", "the school", "the city", "the river"],
}
# (espeak-ng variant, age, gender) per speaker; speed and pitch are drawn per speaker from the seed.
VOICES = [("m1", "twenties", "male_masculine"), ("f2", "thirties", "female_feminine"),
          ("m3", "forties", "male_masculine"), ("f4", "twenties", "female_feminine"),
          ("m7", "fifties", "male_masculine"), ("f5", "teens", "female_feminine"),
          ("m2", "thirties", "male_masculine"), ("f1", "sixties", "female_feminine")]


@dataclass
class Speaker:
    client_id: str
    voice: str
    speed: int
    pitch: int
    age: str
    gender: str


def sentence(rng: random.Random, language: str) -> str:
    """One sentence from the small vocabulary of ``language`` ("si" or "en")."""
    if language == "si":
        words = [rng.choice(SINHALA[k]) for k in ("subject", "time", "place", "verb")]
        return " ".join(words) + "."
    words = [rng.choice(ENGLISH[k]) for k in ("subject", "verb", "place", "time")]
    return (" ".join(words) + ".").capitalize()


def speak(text: str, language: str, speaker: Speaker, wav: Path) -> float:
    """Synthesise ``text`` to a WAV file with ``speaker``'s voice, speed and pitch; return its duration in seconds."""
    voice = ("si" if language == "si" else "en-us") + "+" + speaker.voice
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speaker.speed), "-p", str(speaker.pitch), "-w", str(wav),
                    text], check=True, capture_output=True)
    return sf.info(str(wav)).duration


def encode_mp3(wav: Path, mp3_path: Path) -> None:
    """48 kHz mono MP3 as Common Voice ships it; bit-exact flags so the same WAV gives the same bytes."""
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(wav), "-ar", "48000", "-ac", "1",
                    "-b:a", "32k", "-map_metadata", "-1", "-fflags", "+bitexact", str(mp3_path)],
                   check=True, capture_output=True)


def _speakers(rng: random.Random, count: int) -> list[Speaker]:
    speakers = []
    for i in range(count):
        voice, age, gender = VOICES[i % len(VOICES)]
        client = hashlib.sha512(f"speaker-{i}-{rng.random()}".encode()).hexdigest()
        speakers.append(Speaker(client, voice, rng.randint(130, 190), rng.randint(30, 75), age, gender))
    return speakers


def make_corpus(out_dir: Path = DEFAULT_OUT, locale: str = "si", n_clips: int = 96, seed: int = 0,
                min_seconds: float = 0.0, max_seconds: float = 30.0, english_share: float = 1 / 3) -> Path:
    """Write ``n_clips`` clips and Common Voice's tsv files to ``out_dir``; return ``out_dir``.

    With ``min_seconds`` above a sentence's length, sentences are joined until the clip lasts at least a
    duration drawn between ``min_seconds`` and ``max_seconds`` (the benchmark's 2-12 s clips).
    """
    for tool in ("espeak-ng", "ffmpeg"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is needed to make the corpus: apt-get install espeak-ng ffmpeg")
    rng = random.Random(seed)
    out_dir = Path(out_dir)
    clips_dir = out_dir / "clips"
    if clips_dir.exists():
        shutil.rmtree(clips_dir)
    clips_dir.mkdir(parents=True)
    speakers = _speakers(rng, 8)
    # Common Voice keeps each speaker in one split: 5 speakers train, 1 dev, 2 test.
    split_of = {s.client_id: ("train" if i < 5 else "dev" if i == 5 else "test") for i, s in enumerate(speakers)}
    rows: dict[str, list[dict]] = {"train": [], "dev": [], "test": []}
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(n_clips):
            speaker = speakers[index % len(speakers)]
            language = "en" if rng.random() < english_share else "si"
            target = rng.uniform(min_seconds, max_seconds) if min_seconds > 0 else 0.0
            parts = [sentence(rng, language)]
            name = f"common_voice_{locale}_{40_000_000 + seed * 100_000 + index}.mp3"
            wav = Path(tmp) / "clip.wav"
            duration = speak(" ".join(parts), language, speaker, wav)
            while duration < target:
                parts.append(sentence(rng, language))
                duration = speak(" ".join(parts), language, speaker, wav)
            while duration > max_seconds and len(parts) > 1:
                parts.pop()
                duration = speak(" ".join(parts), language, speaker, wav)
            encode_mp3(wav, clips_dir / name)  # once per clip: ffmpeg costs far more than espeak-ng
            rows[split_of[speaker.client_id]].append(dict(
                client_id=speaker.client_id, path=name, sentence=" ".join(parts), up_votes=2, down_votes=0,
                age=speaker.age, gender=speaker.gender, accents="", variant="", locale=locale, segment=""))
    for split, split_rows in rows.items():
        _write_tsv(out_dir / f"{split}.tsv", split_rows)
    _write_tsv(out_dir / "validated.tsv", [r for split_rows in rows.values() for r in split_rows])
    return out_dir


def language_subset(corpus: Path, out_dir: Path, keep: str) -> Path:
    """Copy ``corpus`` to ``out_dir`` with only its ``keep`` ("si" or "en") clips, in Common Voice's shape.

    The sentences are told apart by their script (English ones are ASCII). Rewritten from scratch each time.
    """
    if keep not in ("si", "en"):
        raise ValueError(f"keep must be 'si' or 'en', not {keep!r}")
    corpus, out_dir = Path(corpus), Path(out_dir)
    if out_dir.resolve() == corpus.resolve():
        raise ValueError(f"{out_dir} is the corpus itself: give another --out")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    (out_dir / "clips").mkdir(parents=True)
    for split in ("train", "dev", "test", "validated"):
        header, *rows = (corpus / f"{split}.tsv").read_text(encoding="utf-8").splitlines()
        rows = [row for row in rows if row.split("\t")[2].isascii() == (keep == "en")]
        (out_dir / f"{split}.tsv").write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
        for row in rows:
            shutil.copy(corpus / "clips" / row.split("\t")[1], out_dir / "clips")
    return out_dir


def _write_tsv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CV_COLUMNS, delimiter="\t", lineterminator="\n",
                                quoting=csv.QUOTE_NONE, escapechar="\\")
        writer.writeheader()
        writer.writerows(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="locale folder to write (default: bundled)")
    parser.add_argument("--locale", default="si")
    parser.add_argument("--clips", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-seconds", type=float, default=0.0)
    parser.add_argument("--max-seconds", type=float, default=30.0)
    parser.add_argument("--subset-of", type=Path, metavar="CORPUS",
                        help="instead of speaking clips, copy CORPUS's clips in one language (--keep) to --out")
    parser.add_argument("--keep", choices=["si", "en"], default="si", help="with --subset-of: the language kept")
    args = parser.parse_args(argv)
    if args.subset_of:
        out = language_subset(args.subset_of, args.out, args.keep)
        print(f"Wrote the {args.keep} clips of {args.subset_of} to {out}")
        return
    out = make_corpus(args.out, args.locale, args.clips, args.seed, args.min_seconds, args.max_seconds)
    print(f"Wrote {args.clips} clips to {out}")


if __name__ == "__main__":
    main()
