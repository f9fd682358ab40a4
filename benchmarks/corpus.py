"""A cached, Common Voice-shaped benchmark corpus made with the bundled corpus's generator.

``tools.make_corpus.make_corpus`` grows a clip one sentence at a time until it lasts long enough, and
re-encodes the MP3 with ffmpeg after every sentence: for 2-12 s clips that is several ffmpeg runs a clip,
about 3-5 s a clip on a busy 2-core machine. :func:`make_corpus_fast` is the same loop (the same random
draws, sentences, voices, tsv rows and ffmpeg command, so the same files byte for byte; a test checks it)
that only runs espeak-ng while growing the clip and encodes the MP3 once at the end.

Large corpora are made in shards, one per core, each a ``make_corpus_fast`` run with its own seed, then
merged into one Common Voice locale folder (``clips/`` + ``train.tsv``/``dev.tsv``/``test.tsv``/
``validated.tsv``). The result is cached under ``benchmarks/work/``, keyed by clip count, seed and
durations, so reruns start at once.
"""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import soundfile as sf

from tools.make_corpus import Speaker, _speakers, _write_tsv, sentence

WORK_DIR = Path(__file__).resolve().parent / "work"
SPLITS = ("train", "dev", "test")
# A shard gives 5/8 of its clips to train, 1/8 to dev, 2/8 to test (speakers never cross splits), so a
# shard needs a few dozen clips for every split to get some; smaller corpora are made in one piece.
MIN_CLIPS_PER_SHARD = 32


def _speak_wav(text: str, language: str, speaker: Speaker, wav: Path) -> float:
    """espeak-ng only (tools.make_corpus.speak without the ffmpeg step); return the duration in seconds."""
    voice = ("si" if language == "si" else "en-us") + "+" + speaker.voice
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speaker.speed), "-p", str(speaker.pitch), "-w", str(wav),
                    text], check=True, capture_output=True)
    return sf.info(str(wav)).duration


def _encode_mp3(wav: Path, mp3_path: Path) -> None:
    """tools.make_corpus.speak's ffmpeg step, unchanged: 48 kHz mono 32 kb/s MP3 as Common Voice ships."""
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(wav), "-ar", "48000", "-ac", "1",
                    "-b:a", "32k", "-map_metadata", "-1", "-fflags", "+bitexact", str(mp3_path)],
                   check=True, capture_output=True)


def make_corpus_fast(out_dir: Path, locale: str = "si", n_clips: int = 96, seed: int = 0,
                     min_seconds: float = 0.0, max_seconds: float = 30.0, english_share: float = 1 / 3) -> Path:
    """``tools.make_corpus.make_corpus`` with one ffmpeg run per clip instead of one per sentence tried."""
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
    split_of = {s.client_id: ("train" if i < 5 else "dev" if i == 5 else "test") for i, s in enumerate(speakers)}
    rows: dict[str, list[dict]] = {"train": [], "dev": [], "test": []}
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(n_clips):
            speaker = speakers[index % len(speakers)]
            language = "en" if rng.random() < english_share else "si"
            target = rng.uniform(min_seconds, max_seconds) if min_seconds > 0 else 0.0
            parts = [sentence(rng, language)]
            name = f"common_voice_{locale}_{40_000_000 + seed * 100_000 + index}.mp3"
            wav = Path(tmp) / (Path(name).stem + ".wav")
            duration = _speak_wav(" ".join(parts), language, speaker, wav)
            while duration < target:
                parts.append(sentence(rng, language))
                duration = _speak_wav(" ".join(parts), language, speaker, wav)
            while duration > max_seconds and len(parts) > 1:
                parts.pop()
                duration = _speak_wav(" ".join(parts), language, speaker, wav)
            _encode_mp3(wav, clips_dir / name)
            wav.unlink()
            rows[split_of[speaker.client_id]].append(dict(
                client_id=speaker.client_id, path=name, sentence=" ".join(parts), up_votes=2, down_votes=0,
                age=speaker.age, gender=speaker.gender, accents="", variant="", locale=locale, segment=""))
    for split, split_rows in rows.items():
        _write_tsv(out_dir / f"{split}.tsv", split_rows)
    _write_tsv(out_dir / "validated.tsv", [r for split_rows in rows.values() for r in split_rows])
    return out_dir


def _shard(args: tuple[Path, int, int, float, float]) -> Path:
    out, n_clips, seed, min_seconds, max_seconds = args
    return make_corpus_fast(out, "si", n_clips, seed, min_seconds, max_seconds)


def read_rows(path: Path) -> list[dict]:
    """The rows of one tsv written by the generator."""
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\"))


def corpus_dir(n_clips: int, seed: int = 0, min_seconds: float = 2.0, max_seconds: float = 12.0,
               work_dir: Path = WORK_DIR) -> Path:
    """Where the corpus with these parameters is (or will be) cached."""
    return Path(work_dir) / f"cv-si-{n_clips}clips-seed{seed}-{min_seconds:g}-{max_seconds:g}s"


def ensure_corpus(
    n_clips: int, seed: int = 0, min_seconds: float = 2.0, max_seconds: float = 12.0, workers: int | None = None,
    work_dir: Path = WORK_DIR,
) -> Path:
    """Return a Common Voice locale folder with ``n_clips`` 48 kHz mono MP3 clips, making it once."""
    out = corpus_dir(n_clips, seed, min_seconds, max_seconds, work_dir)
    stamp = out / "corpus.json"
    params = {"n_clips": n_clips, "seed": seed, "min_seconds": min_seconds, "max_seconds": max_seconds}
    if stamp.is_file() and json.loads(stamp.read_text())["params"] == params:
        return out
    if out.exists():
        shutil.rmtree(out)  # a half-made corpus from an interrupted run
    workers = workers or os.cpu_count() or 1
    shards = max(1, min(workers, n_clips // MIN_CLIPS_PER_SHARD))
    sizes = [n_clips // shards + (1 if k < n_clips % shards else 0) for k in range(shards)]
    # Shard k uses seed (seed * 1000 + k): distinct clip names, speakers and sentences per shard.
    jobs = [(out / f"shard-{k}", size, seed * 1000 + k, min_seconds, max_seconds) for k, size in enumerate(sizes)]
    print(f"Making a {n_clips}-clip corpus in {out} ({shards} shard(s); once, then cached)", flush=True)
    if shards == 1:
        shard_dirs = [_shard(jobs[0])]
    else:
        with ProcessPoolExecutor(shards) as pool:
            shard_dirs = list(pool.map(_shard, jobs))
    (out / "clips").mkdir(parents=True, exist_ok=True)
    rows: dict[str, list[dict]] = {split: [] for split in SPLITS}
    for shard in shard_dirs:
        for clip in (shard / "clips").iterdir():
            clip.rename(out / "clips" / clip.name)
        for split in SPLITS:
            rows[split] += read_rows(shard / f"{split}.tsv")
        shutil.rmtree(shard)
    for split in SPLITS:
        _write_tsv(out / f"{split}.tsv", rows[split])
    _write_tsv(out / "validated.tsv", [row for split in SPLITS for row in rows[split]])
    stamp.write_text(json.dumps({"params": params, "splits": {s: len(r) for s, r in rows.items()}}, indent=2))
    return out
