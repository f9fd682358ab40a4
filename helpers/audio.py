"""Audio decoding without torchcodec: soundfile reads the file (MP3 included), soxr resamples.

``datasets`` >= 4 decodes audio through torchcodec, which does not load beside a CPU-only torch; we keep
audio columns undecoded (``Audio(decode=False)``) and decode here, so Colab, laptops and CI run the same
code.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SAMPLING_RATE = 16_000


class AudioDecodeError(ValueError):
    """A clip that cannot be read as audio; ``reason`` is a short code used in preprocessing reports."""

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
        return io.BytesIO(audio), "<bytes>"
    return str(audio), str(audio)


def load_audio(audio: dict | str | Path | bytes, sampling_rate: int = SAMPLING_RATE) -> np.ndarray:
    """Decode one clip to mono float32 at ``sampling_rate`` (16 kHz, what Whisper's features expect).

    Raises ``AudioDecodeError`` with the reason when the clip cannot be decoded.
    """
    source, name = _source(audio)
    if isinstance(source, str) and not Path(source).is_file():
        raise AudioDecodeError(f"file not found: {name}", "file_not_found")
    if isinstance(source, str) and Path(source).stat().st_size == 0:
        raise AudioDecodeError(f"empty file (0 bytes): {name}", "empty_file")
    try:
        data, rate = sf.read(source, dtype="float32", always_2d=True)
    except Exception as error:  # soundfile raises several types for broken files
        raise AudioDecodeError(f"not readable as audio ({type(error).__name__}): {name}") from error
    if data.size == 0:
        raise AudioDecodeError(f"no audio samples: {name}", "empty_audio")
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if rate != sampling_rate:
        # soxr's "HQ" quality is a band-limited resampler, far better than linear interpolation and fast.
        mono = soxr.resample(mono, rate, sampling_rate, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)


def to_int16(samples: np.ndarray) -> np.ndarray:
    """Store audio as 16-bit PCM: a quarter of float32 features' bytes per second, lossless for CD-like audio."""
    return (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype(np.int16)


def from_int16(samples) -> np.ndarray:
    """Inverse of :func:`to_int16`."""
    return np.asarray(samples, dtype=np.float32) / 32767.0
