"""Decoding real and odd audio files to 16 kHz mono float32, and refusing broken ones with a reason."""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

from helpers.audio import DECODE_REASONS, SAMPLING_RATE, AudioDecodeError, load_audio


def tone(frequency: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def peak_frequencies(wave: np.ndarray, rate: int, count: int = 1) -> list[float]:
    """The ``count`` strongest frequencies of ``wave`` (Hann window, 0.5 Hz resolution on 2 s)."""
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    bins = np.fft.rfftfreq(len(wave), 1 / rate)
    strongest = []
    for index in np.argsort(spectrum)[::-1]:
        if all(abs(bins[index] - f) > 20 for f in strongest):
            strongest.append(float(bins[index]))
        if len(strongest) == count:
            break
    return sorted(strongest)


def rms(wave: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(wave, dtype=np.float64))))


def reason_of(path) -> str:
    with pytest.raises(AudioDecodeError) as caught:
        load_audio(path)
    assert caught.value.reason in DECODE_REASONS
    return caught.value.reason


def test_bundled_mp3_decodes_to_16k_mono_float32_speech(corpus):
    clips = sorted((corpus / "clips").glob("*.mp3"))[:6]
    for clip in clips:
        info = sf.info(str(clip))
        assert info.samplerate == 48_000 and info.channels == 1  # what Common Voice ships
        wave = load_audio(str(clip))
        assert wave.dtype == np.float32 and wave.ndim == 1
        # 48 kHz -> 16 kHz keeps the duration: a third of the samples, give or take the filter's edge.
        assert abs(len(wave) - info.frames / 3) <= 2
        assert 0.5 < len(wave) / SAMPLING_RATE < 30
        assert 0.01 < rms(wave) < 0.5 and np.abs(wave).max() <= 1.0  # speech, neither silent nor clipped
        # espeak-ng's voice has its energy below 4 kHz; resampling must not add noise near Nyquist.
        spectrum = np.abs(np.fft.rfft(wave)) ** 2
        freqs = np.fft.rfftfreq(len(wave), 1 / SAMPLING_RATE)
        assert spectrum[freqs < 4000].sum() > 20 * spectrum[freqs > 7000].sum()


def test_audio_given_as_datasets_dict_path_or_bytes_is_the_same(corpus):
    clip = sorted((corpus / "clips").glob("*.mp3"))[0]
    from_path = load_audio(str(clip))
    assert np.array_equal(load_audio({"path": str(clip), "bytes": None}), from_path)
    assert np.array_equal(load_audio({"path": "whatever.mp3", "bytes": clip.read_bytes()}), from_path)
    assert np.array_equal(load_audio(clip.read_bytes()), from_path)


@pytest.mark.parametrize("rate, subtype, suffix", [(8_000, "PCM_16", ".wav"), (44_100, "PCM_16", ".wav"),
                                                   (22_050, "PCM_24", ".flac"), (48_000, "FLOAT", ".wav")])
def test_sine_frequency_and_length_survive_resampling(tmp_path, rate, subtype, suffix):
    path = tmp_path / f"tone_{rate}{suffix}"
    sf.write(str(path), tone(440.0, 2.0, rate), rate, subtype=subtype)
    wave = load_audio(str(path))
    assert wave.dtype == np.float32
    assert abs(len(wave) - 2 * SAMPLING_RATE) <= 2
    assert peak_frequencies(wave, SAMPLING_RATE) == pytest.approx([440.0], abs=1.0)
    assert rms(wave) == pytest.approx(0.5 / np.sqrt(2), rel=0.02)


def test_stereo_44k_wav_is_mixed_to_mono(tmp_path):
    path = tmp_path / "stereo.wav"
    stereo = np.stack([tone(440, 2.0, 44_100, 0.6), tone(1000, 2.0, 44_100, 0.6)], axis=1)
    sf.write(str(path), stereo, 44_100, subtype="PCM_16")
    wave = load_audio(str(path))
    assert wave.ndim == 1 and abs(len(wave) - 2 * SAMPLING_RATE) <= 2
    # Both channels end up in the mix, each at half its amplitude.
    assert peak_frequencies(wave, SAMPLING_RATE, count=2) == pytest.approx([440.0, 1000.0], abs=1.0)
    assert rms(wave) == pytest.approx(np.sqrt(2 * (0.3**2) / 2), rel=0.03)


def test_tone_above_8k_is_filtered_not_aliased(tmp_path):
    """A 10 kHz tone cannot exist at 16 kHz; a good resampler removes it instead of folding it to 6 kHz."""
    path = tmp_path / "high.wav"
    sf.write(str(path), tone(10_000, 1.0, 48_000) + tone(1000, 1.0, 48_000), 48_000, subtype="FLOAT")
    wave = load_audio(str(path))
    spectrum = np.abs(np.fft.rfft(wave))
    freqs = np.fft.rfftfreq(len(wave), 1 / SAMPLING_RATE)
    assert spectrum[np.abs(freqs - 6000) < 20].max() < 0.001 * spectrum[np.abs(freqs - 1000) < 20].max()


def test_silence_is_valid_audio(tmp_path):
    path = tmp_path / "silence.wav"
    sf.write(str(path), np.zeros(16_000 * 2, np.float32), 16_000)
    wave = load_audio(str(path))
    assert len(wave) == 32_000 and not wave.any()


def test_missing_empty_and_non_audio_files_are_refused_with_reasons(tmp_path):
    (tmp_path / "empty.mp3").write_bytes(b"")
    (tmp_path / "text.mp3").write_text("this is a text file with an .mp3 name\n" * 20)
    (tmp_path / "noise.mp3").write_bytes(np.random.default_rng(0).bytes(4000))
    assert reason_of(tmp_path / "missing.mp3") == "file_not_found"
    assert reason_of(str(tmp_path / "empty.mp3")) == "empty_file"
    assert reason_of({"path": str(tmp_path / "empty.mp3"), "bytes": None}) == "empty_file"
    assert reason_of(str(tmp_path / "text.mp3")) == "undecodable_audio"
    assert reason_of(str(tmp_path / "noise.mp3")) == "undecodable_audio"
    assert reason_of({"path": None, "bytes": None}) == "file_not_found"


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.8])
def test_truncated_mp3_is_refused(tmp_path, corpus, keep):
    clip = sorted((corpus / "clips").glob("*.mp3"))[3]
    data = clip.read_bytes()
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(data[: int(len(data) * keep)])
    assert reason_of(str(cut)) == "truncated_audio"
    assert reason_of(data[: int(len(data) * keep)]) == "truncated_audio"  # the same from bytes (Hub datasets)


def test_truncated_wav_is_refused_but_flac_cut_is_undecodable(tmp_path):
    for suffix in (".wav", ".flac"):
        whole = tmp_path / f"whole{suffix}"
        sf.write(str(whole), tone(300, 3.0, 16_000), 16_000, subtype="PCM_16")
        data = whole.read_bytes()
        (tmp_path / f"cut{suffix}").write_bytes(data[: len(data) // 2])
        assert len(load_audio(str(whole))) == 48_000
    assert reason_of(str(tmp_path / "cut.wav")) == "truncated_audio"
    assert reason_of(str(tmp_path / "cut.flac")) == "undecodable_audio"


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
def test_no_false_truncation_for_mp3_without_xing_header_or_streamed_wav(tmp_path):
    """Files whose headers cannot know their length (CBR MP3 without a Xing tag, a WAV written to a pipe)."""
    source = tmp_path / "tone.wav"
    sf.write(str(source), tone(500, 3.0, 16_000), 16_000, subtype="PCM_16")
    run = dict(check=True, capture_output=True)
    subprocess.run(["ffmpeg", "-nostdin", "-y", "-i", str(source), "-write_xing", "0", "-b:a", "32k",
                    str(tmp_path / "noxing.mp3")], **run)
    with open(tmp_path / "piped.wav", "wb") as out:  # ffmpeg cannot seek back to fill in the sizes
        subprocess.run(["ffmpeg", "-nostdin", "-i", str(source), "-f", "wav", "-"], stdout=out, stderr=subprocess.DEVNULL,
                       check=True)
    for name in ("noxing.mp3", "piped.wav"):
        wave = load_audio(str(tmp_path / name))
        assert abs(len(wave) - 48_000) < 2_000, name
        assert peak_frequencies(wave, SAMPLING_RATE) == pytest.approx([500.0], abs=1.0)


def test_nan_samples_are_refused(tmp_path):
    path = tmp_path / "nan.wav"
    wave = tone(440, 1.0, 16_000)
    wave[100] = np.nan
    sf.write(str(path), wave, 16_000, subtype="FLOAT")
    assert reason_of(str(path)) == "invalid_samples"


def test_decoder_noise_about_broken_mp3s_stays_off_the_terminal(tmp_path, corpus, capfd):
    """libmpg123 writes warnings about damaged MP3s straight to fd 2; a broken corpus must not bury the report."""
    data = sorted((corpus / "clips").glob("*.mp3"))[3].read_bytes()
    (tmp_path / "cut.mp3").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.mp3").write_text("not audio\n")
    for name in ("cut.mp3", "text.mp3"):
        with pytest.raises(AudioDecodeError):
            load_audio(str(tmp_path / name))
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""
    # fd 2 works again afterwards.
    os.write(2, b"still here\n")
    assert "still here" in capfd.readouterr().err



@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
def test_m4a_and_webm_are_decoded_by_ffmpeg_and_a_cut_m4a_is_refused(tmp_path):
    source = tmp_path / "tone.wav"
    sf.write(str(source), tone(440, 2.0, 44_100), 44_100, subtype="PCM_16")
    for name, codec in (("tone.m4a", "aac"), ("tone.webm", "libopus")):
        subprocess.run(["ffmpeg", "-nostdin", "-y", "-i", str(source), "-c:a", codec, str(tmp_path / name)],
                       check=True, capture_output=True)
        wave = load_audio(str(tmp_path / name))
        assert wave.dtype == np.float32 and abs(len(wave) - 2 * SAMPLING_RATE) < 1_600, name  # codec padding
        assert peak_frequencies(wave, SAMPLING_RATE) == pytest.approx([440.0], abs=1.0), name
    data = (tmp_path / "tone.m4a").read_bytes()
    assert np.array_equal(load_audio(data), load_audio(str(tmp_path / "tone.m4a")))  # bytes go through a pipe
    (tmp_path / "cut.m4a").write_bytes(data[: len(data) // 2])
    assert reason_of(str(tmp_path / "cut.m4a")) == "undecodable_audio"


def test_m4a_without_ffmpeg_is_refused_as_unsupported(tmp_path, monkeypatch):
    import helpers.audio

    (tmp_path / "clip.m4a").write_bytes(b"\x00\x00\x00\x1cftypM4A \x00\x00\x02\x00M4A isomiso2" + bytes(200))
    monkeypatch.setattr(helpers.audio.shutil, "which", lambda name: None)
    assert reason_of(str(tmp_path / "clip.m4a")) == "unsupported_format"
    assert "ffmpeg" in DECODE_REASONS["unsupported_format"]


def test_file_named_mp3_holding_a_wav_is_read_by_its_content(tmp_path):
    path = tmp_path / "really_a_wav.mp3"
    sf.write(str(path), tone(440, 1.0, 22_050), 22_050, format="WAV", subtype="PCM_16")
    wave = load_audio(str(path))
    assert abs(len(wave) - SAMPLING_RATE) <= 2
    assert peak_frequencies(wave, SAMPLING_RATE) == pytest.approx([440.0], abs=1.0)
