"""Audio decoding without torchcodec: soundfile reads the file (MP3 included), soxr resamples.

``datasets`` >= 4 decodes audio through torchcodec, which does not load beside a CPU-only torch; we keep
audio columns undecoded (``Audio(decode=False)``) and decode here, so Colab, laptops and CI run the same
code.

Real corpora hold odd files. ``load_audio`` accepts any rate and channel count libsndfile reads (MP3,
WAV, FLAC, OGG; 8 kHz telephone audio, 44.1 kHz stereo) and turns it into 16 kHz mono float32. What it
cannot use it refuses with an ``AudioDecodeError`` whose ``reason`` is one of ``DECODE_REASONS``, so
preprocessing can skip the clip and count it: missing and empty files, files that are not audio, files
cut short (an MP3 or WAV holding fewer samples than its header announces, as after an interrupted copy)
and samples that are not finite numbers. Containers libsndfile does not read (M4A/AAC, WebM, WMA) are
decoded by ffmpeg when it is installed, as it is in Colab.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from helpers.runtime.errors import first_line

SAMPLING_RATE = 16_000

# Short codes used in preprocessing reports, with the words a person reads.
DECODE_REASONS = {
    "file_not_found": "the clip named in the tsv does not exist",
    "empty_file": "the clip is an empty (0-byte) file",
    "undecodable_audio": "the clip is not audio that can be decoded (another kind of file, or corrupt)",
    "truncated_audio": "the clip is cut short: it holds fewer samples than its header announces",
    "empty_audio": "the clip holds no audio samples",
    "invalid_samples": "the clip's samples are not finite numbers (NaN or infinity)",
    "unsupported_format": "the clip is audio in a format that cannot be read here (M4A, AAC, WebM or WMA "
    "need ffmpeg installed)",
}

# A file is called truncated only when this much of what its header announces is missing: encoders and
# decoders disagree by a frame or two (an MP3 frame is 1152 samples), and that costs no words.
_TRUNCATION_TOLERANCE = 0.01
_TRUNCATION_MIN_SECONDS = 0.1


class AudioDecodeError(ValueError):
    """A clip that cannot be used as audio; ``reason`` is a key of ``DECODE_REASONS``."""

    def __init__(self, message: str, reason: str = "undecodable_audio"):
        super().__init__(message)
        self.reason = reason


def _source(audio: dict | str | Path | bytes) -> tuple[object, str]:
    """Turn a datasets ``Audio(decode=False)`` value, a path or raw bytes into something soundfile reads."""
    if isinstance(audio, dict):
        if audio.get("bytes"):
            return io.BytesIO(audio["bytes"]), audio.get("path") or "<bytes>"
        if audio.get("path"):
            return audio["path"], audio["path"]
        raise AudioDecodeError("audio entry has neither bytes nor a path", "file_not_found")
    if isinstance(audio, (bytes, bytearray)):
        return io.BytesIO(bytes(audio)), "<bytes>"
    if audio is None or str(audio) == "":
        raise AudioDecodeError("no clip named", "file_not_found")
    return str(audio), str(audio)


# libmpg123 (inside libsndfile) prints warnings about damaged MP3s straight to file descriptor 2, a few
# lines per file, which Python cannot catch; a corpus with many such files would bury the report under
# them. While any thread decodes, fd 2 points at /dev/null (the report says what happened to each clip).
_stderr_lock = threading.Lock()
_stderr_depth = 0
_stderr_saved: int | None = None


@contextmanager
def quiet_native_stderr():
    """Hide what C libraries write to fd 2 inside the block (nestable, thread-safe, a no-op without fd 2)."""
    global _stderr_depth, _stderr_saved
    with _stderr_lock:
        if _stderr_depth == 0:
            try:
                sys.stderr.flush()
                saved = os.dup(2)
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 2)
                os.close(devnull)
                _stderr_saved = saved
            except (OSError, ValueError, AttributeError):
                _stderr_saved = None  # no usable fd 2 (some notebook kernels): nothing to hide
        _stderr_depth += 1
    try:
        yield
    finally:
        with _stderr_lock:
            _stderr_depth -= 1
            if _stderr_depth == 0 and _stderr_saved is not None:
                os.dup2(_stderr_saved, 2)
                os.close(_stderr_saved)
                _stderr_saved = None


def _head(source: object, size: int = 16) -> bytes:
    try:
        if isinstance(source, io.BytesIO):
            return source.getvalue()[:size]
        with open(source, "rb") as handle:
            return handle.read(size)
    except OSError:
        return b""


def _mp3_has_frame_count(source: object) -> bool:
    """Whether an MP3 carries a Xing/Info/VBRI header, whose frame count is exact rather than estimated.

    Without one, libsndfile estimates the length from the file size, so a shorter decode proves nothing.
    """
    try:
        if isinstance(source, io.BytesIO):
            handle = io.BytesIO(source.getvalue())
        else:
            handle = open(source, "rb")  # noqa: SIM115 - closed below
        with handle:
            head = handle.read(10)
            offset = 0
            if head[:3] == b"ID3" and len(head) == 10:  # skip an ID3v2 tag: 4 "syncsafe" 7-bit size bytes
                size = (head[6] << 21) | (head[7] << 14) | (head[8] << 7) | head[9]
                offset = 10 + size + (10 if head[5] & 0x10 else 0)
            handle.seek(offset)
            first_frame = handle.read(400)
    except OSError:
        return False
    return any(tag in first_frame for tag in (b"Xing", b"Info", b"VBRI"))


_WAV_DATA_SIZE = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)


def _announced_frames(info: sf.SoundFile, source: object, decoded: int) -> int | None:
    """How many frames the file's header promises, where that is known exactly and exceeds ``decoded``.

    ``None`` when the header cannot tell (an MP3 without a frame count, FLAC and OGG, which fail loudly
    when cut and are reported as undecodable) or when nothing is missing: the extra checks only run then.
    """
    if info.format in ("MP3", "MPEG"):
        # Without a Xing/Info/VBRI tag libsndfile's frame count is an estimate from the file size.
        return info.frames if decoded < info.frames and _mp3_has_frame_count(source) else None
    if info.format in ("WAV", "WAVEX", "RF64", "W64"):
        # libsndfile trims the frame count of a cut WAV to what is there and logs the header's claim.
        match = _WAV_DATA_SIZE.search(info.extra_info)
        if match and info.frames:
            claimed, present = int(match.group(1)), int(match.group(2))
            # Streaming writers (ffmpeg to a pipe) leave 0 or 0xFFFFFFFF there: unknown, not truncated.
            if 0 < claimed < 0xFFFFFFF0 and claimed > present:
                bytes_per_frame = max(1, present // info.frames)
                return info.frames + (claimed - present) // bytes_per_frame
    return None


def _foreign_format(head: bytes) -> str | None:
    """The name of an audio container libsndfile cannot read but ffmpeg can, from the file's first bytes."""
    if head[4:8] == b"ftyp":
        return "MP4/M4A"
    if head[:4] == b"\x1aE\xdf\xa3":
        return "WebM/Matroska"
    if head[:4] == b"\x30\x26\xb2\x75":
        return "WMA/ASF"
    if head[:5] == b"#!AMR":
        return "AMR"
    if len(head) > 1 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0:  # ADTS sync word, layer 0 (MP3 is 1)
        return "AAC"
    return None


def _decode_with_ffmpeg(source: object, name: str, kind: str, sampling_rate: int) -> np.ndarray:
    """Decode a container libsndfile does not read with ffmpeg, straight to mono at ``sampling_rate``."""
    if shutil.which("ffmpeg") is None:
        raise AudioDecodeError(f"{kind} audio needs ffmpeg, which is not installed: {name}", "unsupported_format")
    data = source.getvalue() if isinstance(source, io.BytesIO) else None
    command = ["ffmpeg", "-nostdin", "-v", "error", "-i", "pipe:0" if data is not None else str(source),
               "-map", "0:a:0", "-ac", "1", "-ar", str(sampling_rate), "-f", "f32le", "pipe:1"]
    try:
        result = subprocess.run(command, input=data, capture_output=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise AudioDecodeError(f"ffmpeg could not decode {kind} ({first_line(error)}): {name}") from error
    # Any error ffmpeg reports (a missing index, a partial file) means the clip is damaged.
    if result.returncode != 0 or result.stderr.strip():
        said = result.stderr.decode("utf-8", "replace").strip().splitlines()
        raise AudioDecodeError(f"damaged {kind} file ({said[0] if said else f'exit code {result.returncode}'}): {name}")
    return np.frombuffer(result.stdout, dtype=np.float32).copy()


def load_audio(audio: dict | str | Path | bytes, sampling_rate: int = SAMPLING_RATE) -> np.ndarray:
    """Decode one clip to mono float32 at ``sampling_rate`` (16 kHz, what Whisper's features expect).

    Any sampling rate and channel count is accepted (channels are averaged, the rate converted with
    soxr). Raises ``AudioDecodeError`` with a ``DECODE_REASONS`` key when the clip cannot be used.
    """
    source, name = _source(audio)
    if isinstance(source, str):
        if not Path(source).is_file():
            raise AudioDecodeError(f"file not found: {name}", "file_not_found")
        if Path(source).stat().st_size == 0:
            raise AudioDecodeError(f"empty file (0 bytes): {name}", "empty_file")
    elif isinstance(source, io.BytesIO) and not source.getbuffer().nbytes:
        raise AudioDecodeError(f"empty file (0 bytes): {name}", "empty_file")
    try:
        with quiet_native_stderr(), sf.SoundFile(source) as handle:
            rate = handle.samplerate
            data = handle.read(dtype="float32", always_2d=True)
            announced = _announced_frames(handle, source, data.shape[0])
    # libsndfile's refusals (not audio, lost sync, cut short) all arrive as SoundFileError; anything else,
    # such as a TypeError from our own code above, is a bug and must keep its traceback.
    except sf.SoundFileError as error:
        kind = _foreign_format(_head(source))
        if kind is None:
            raise AudioDecodeError(f"not readable as audio ({first_line(error)}): {name}") from error
        data, rate = _decode_with_ffmpeg(source, name, kind, sampling_rate)[:, None], sampling_rate
        announced = None
    if data.shape[0] == 0:
        raise AudioDecodeError(f"no audio samples: {name}", "empty_audio")
    if announced:
        missing = announced - data.shape[0]
        if missing > max(_TRUNCATION_TOLERANCE * announced, _TRUNCATION_MIN_SECONDS * rate):
            raise AudioDecodeError(
                f"truncated: {data.shape[0]} of {announced} samples present: {name}", "truncated_audio"
            )
    if not np.isfinite(data).all():
        raise AudioDecodeError(f"samples are NaN or infinite: {name}", "invalid_samples")
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if rate != sampling_rate:
        # soxr's "HQ" quality is a band-limited resampler, far better than linear interpolation and fast.
        mono = soxr.resample(mono, rate, sampling_rate, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)


def to_int16(samples: np.ndarray) -> np.ndarray:
    """16-bit PCM samples (full scale 32767): what preprocessing stores, as FLAC (:func:`to_flac`).

    Not lossless: each sample is rounded to the nearest of 65535 levels, an error of at most 1/65534 of full
    scale (about -96 dB, below an MP3's own coding noise; 0.026 at most in log-mel on the benchmark's
    clips), and samples beyond +-1 are clipped. Half the bytes of float32 audio.
    """
    return (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype(np.int16)


def to_flac(samples: np.ndarray, sampling_rate: int = SAMPLING_RATE) -> bytes:
    """Store audio as FLAC bytes: :func:`to_int16`'s samples exactly, losslessly compressed.

    Speech takes about 60 % of raw 16-bit PCM's bytes (``benchmarks/`` measures it), and a batch reads
    back faster than int16 lists do, since ``datasets`` hands out bytes as one object, not one per sample.
    """
    pcm = samples if samples.dtype == np.int16 else to_int16(samples)
    buffer = io.BytesIO()
    sf.write(buffer, pcm, sampling_rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def from_int16(samples) -> np.ndarray:
    """Inverse of :func:`to_int16` and :func:`to_flac`: float32 samples from stored int16 values or FLAC bytes."""
    if isinstance(samples, (bytes, bytearray, memoryview)):
        if not len(samples):
            return np.zeros(0, np.float32)
        samples = sf.read(io.BytesIO(bytes(samples)), dtype="int16")[0]  # int16, so the scale is ours (32767)
    return np.asarray(samples, dtype=np.float32) / 32767.0
