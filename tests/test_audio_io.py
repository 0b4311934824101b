"""Decoding anything ffmpeg reads to float stereo 44.1 kHz; clear errors for everything else."""

import subprocess

import numpy as np
import pytest

from separation_worker import audio_io
from separation_worker.contract.errors import InputError
from tests.conftest import SR, music, write_audio


def test_mono_is_duplicated_and_rates_are_resampled(tmp_path):
    t = np.arange(22050 * 2) / 22050
    mono = (0.5 * np.sin(2 * np.pi * 440 * t))[None].astype(np.float32)
    audio = audio_io.decode(write_audio(tmp_path / "mono.flac", mono, sample_rate=22050), 60)
    assert audio.samples.shape == (2, SR * 2)
    assert audio.samples.dtype == np.float32
    np.testing.assert_array_equal(audio.samples[0], audio.samples[1])
    spectrum = np.abs(np.fft.rfft(audio.samples[0]))
    assert np.argmax(spectrum) * SR / audio.samples.shape[1] == pytest.approx(440, abs=1)


def test_video_with_audio_track(tmp_path):
    video = tmp_path / "clip.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x64:rate=10:duration=2",
         "-f", "lavfi", "-i", "sine=frequency=330:duration=2", "-shortest", "-c:v", "mpeg4", "-c:a", "aac", str(video)],
        check=True,
    )
    audio = audio_io.decode(video, 60)
    assert audio.samples.shape[0] == 2
    assert audio.duration == pytest.approx(2.0, abs=0.1)
    assert audio.title == "clip"


def test_title_comes_from_tags(tmp_path):
    path = write_audio(tmp_path / "x.mp3", music(1.0), extra_args=("-metadata", "title=Song", "-metadata", "artist=Band"))
    assert audio_io.decode(path, 60).title == "Band - Song"


@pytest.mark.parametrize(
    "content, message",
    [(b"", "empty"), (b"this is not audio at all" * 100, "isn't audio"), (b"ID3\x03\x00\x00\x00" + bytes(4000), None)],
    ids=["empty", "text", "corrupt-mp3"],
)
def test_bad_files_raise_input_error(tmp_path, content, message):
    path = tmp_path / "bad.mp3"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        audio_io.decode(path, 60)


def test_video_without_audio(tmp_path):
    video = tmp_path / "silent.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x64:rate=10:duration=1", "-c:v", "mpeg4", str(video)],
        check=True,
    )
    with pytest.raises(InputError, match="no audio"):
        audio_io.decode(video, 60)


def test_too_long(tmp_path):
    path = write_audio(tmp_path / "long.flac", music(3.0))
    with pytest.raises(InputError, match="limit is 0:02"):
        audio_io.decode(path, max_duration_seconds=2)


@pytest.mark.parametrize("fmt", ["mp3", "flac", "wav"])
def test_encode_round_trip(tmp_path, fmt):
    x = music(2.0)
    tags = audio_io.Tags(title="Night Drive (Vocals)", artist="The Midnight", album="Night Drive")
    path = audio_io.encode(x, tmp_path / f"out.{fmt}", fmt, tags)
    # ID3, Vorbis comments or RIFF INFO, read back by ffprobe as players read them
    assert audio_io.song_tags(audio_io.probe(path)) == ("The Midnight", "Night Drive (Vocals)")
    y = audio_io.decode(path, 60).samples
    assert y.shape == x.shape
    error = y[:, 2000:-2000] - x[:, 2000:-2000]
    snr_db = 10 * np.log10(np.sum(x[:, 2000:-2000] ** 2) / np.sum(error**2))
    assert snr_db > (15 if fmt == "mp3" else 90)  # mp3 is perceptual: waveform SNR is modest
