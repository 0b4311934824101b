"""`stembot separate` end to end through the console script, on files and on a local URL."""

import json
import subprocess

import numpy as np
import pytest

from separation_worker import audio_io, loudness
from tests.conftest import SR, music, stembot_exe, write_audio


def run_cli(args, env, timeout=300):
    return subprocess.run([stembot_exe(), *args], env=env, capture_output=True, text=True, timeout=timeout)


def assert_stems(out_dir, title, fmt, duration, weights=(0.4, 0.35, 0.25)):
    files = sorted(p.name for p in out_dir.iterdir())
    assert files == sorted([f"{title} (Instrumental).{fmt}", f"{title} (Vocals).{fmt}", "result.json"])
    result = json.loads((out_dir / "result.json").read_text())
    assert result["duration"] == pytest.approx(duration, abs=0.05)
    assert [m["weight"] for m in result["models"]] == list(weights)
    assert set(result["stems"]) == {"vocals", "instrumental"}
    for stem in result["stems"].values():
        decoded = audio_io.decode(out_dir / stem["file"], 60).samples
        assert decoded.shape[0] == 2
        assert decoded.shape[1] / SR == pytest.approx(duration, abs=0.05)
        report = stem["loudness"]
        assert {"lufs_before", "lufs_after", "true_peak_after_dbtp"} <= set(report)
        if not stem["silent"]:
            # On target, unless reaching it would take more than the 30 dB gain cap.
            assert report["lufs_after"] == pytest.approx(min(-14.0, report["lufs_before"] + 30), abs=0.5)
            assert loudness.true_peak_dbtp(decoded) <= -1.0 + 0.1
    for stage in ("decode", "separate", "loudness", "analyze", "encode", "total"):
        assert stage in result["timings"]
    for key in ("bpm", "bpm_confidence", "key", "camelot", "key_confidence", "device", "precision"):
        assert key in result
    return result


def test_separate_a_file(tmp_path, cli_env):
    song = write_audio(tmp_path / "My Song.wav", music(4.5, level=0.5))
    out = tmp_path / "stems"
    proc = run_cli(["separate", str(song), "--out", str(out)], cli_env)
    assert proc.returncode == 0, proc.stderr
    assert_stems(out, "My Song", "mp3", 4.5)
    assert "My Song (Vocals).mp3" in proc.stdout


def test_separate_a_url_as_flac(tmp_path, cli_env, http_server):
    root, base = http_server
    write_audio(root / "track.mp3", music(3.0, seed=2), extra_args=("-metadata", "title=Served Track"))
    out = tmp_path / "from-url"
    proc = run_cli(["separate", f"{base}/track.mp3", "--out", str(out), "--format", "flac", "--preset", "fast"],
                   cli_env)
    assert proc.returncode == 0, proc.stderr
    assert_stems(out, "Served Track", "flac", 3.0, weights=(1.0,))  # the fast preset: one model


def test_raw_stems_are_the_separations_and_null_against_the_input(tmp_path, cli_env, quick_engine):
    x = music(3.0, level=0.05)
    song = write_audio(tmp_path / "quiet.wav", x)
    out = tmp_path / "sum"
    proc = run_cli(["separate", str(song), "--out", str(out), "--format", "wav", "--raw", "--preset", "fast"], cli_env)
    assert proc.returncode == 0, proc.stderr
    vocals = audio_io.decode(out / "quiet (Vocals).wav", 60).samples
    instrumental = audio_io.decode(out / "quiet (Instrumental).wav", 60).samples
    original = audio_io.decode(song, 60).samples
    expected = quick_engine.separate(original)
    assert np.abs(vocals - expected.stems["vocals"]).max() < 1e-4  # 24-bit quantization only
    assert np.abs(instrumental - expected.stems["instrumental"]).max() < 1e-4
    assert np.abs(vocals + instrumental - original).max() < 1e-4
    result = json.loads((out / "result.json").read_text())
    assert result["raw"] is True and result["stems"]["vocals"]["loudness"]["gain_db"] == 0.0


@pytest.mark.parametrize(
    "name, content",
    [("empty.mp3", b""), ("notes.txt", b"just some text, not audio\n" * 50), ("broken.wav", b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(100))],
    ids=["empty", "text", "corrupt"],
)
def test_bad_input_is_one_line_and_leaves_nothing(tmp_path, cli_env, name, content):
    bad = tmp_path / name
    bad.write_bytes(content)
    out = tmp_path / "out"
    proc = run_cli(["separate", str(bad), "--out", str(out)], cli_env)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists() or not any(out.iterdir())


def test_missing_file_and_bad_links(tmp_path, cli_env, http_server):
    root, base = http_server
    (root / "page.html").write_text("<html><body>no media here</body></html>")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    for target in [str(tmp_path / "nope.mp3"), f"{base}/missing.mp3", f"{base}/page.html"]:
        proc = run_cli(["separate", target, "--out", str(out)], cli_env)
        assert proc.returncode != 0, target
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_playlist_links_are_refused(tmp_path, cli_env, http_server):
    root, base = http_server
    for name in ("a.mp3", "b.mp3"):
        write_audio(root / name, music(1.0))
    (root / "album.html").write_text('<html><body><audio src="a.mp3"></audio><audio src="b.mp3"></audio></body></html>')
    out = tmp_path / "out"
    proc = run_cli(["separate", f"{base}/album.html", "--out", str(out)], cli_env)
    assert proc.returncode != 0
    assert "playlist" in proc.stderr
    assert not out.exists()


def test_help_lists_the_commands(cli_env):
    proc = run_cli(["--help"], cli_env)
    assert proc.returncode == 0
    for command in ("separate", "analyze", "models"):
        assert command in proc.stdout


def test_models_list_shows_the_ensemble(cli_env):
    proc = run_cli(["models", "list"], cli_env)
    assert proc.returncode == 0
    assert proc.stdout.count("[present]") == 3


def test_models_download_uses_files_already_there(cli_env):
    proc = run_cli(["models", "download"], cli_env)  # no network: it must not need any
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("already in") == 3


def test_analyze_prints_the_fields_as_json(tmp_path, cli_env):
    from tests import synth_music

    clip = synth_music.click_track(128.0, 12.0, sample_rate=22050)
    path = write_audio(tmp_path / "click.wav", np.stack([clip, clip]), sample_rate=22050)
    proc = run_cli(["analyze", str(path), "--json"], cli_env)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert set(data) == {"bpm", "bpm_confidence", "key", "camelot", "key_confidence"}
    assert data["bpm"] == pytest.approx(128.0, rel=0.04)
    plain = run_cli(["analyze", str(path)], cli_env)
    assert plain.returncode == 0 and "BPM" in plain.stdout


def test_analyze_bad_file(tmp_path, cli_env):
    bad = tmp_path / "x.mp3"
    bad.write_bytes(b"nope" * 10)
    proc = run_cli(["analyze", str(bad), "--json"], cli_env)
    assert proc.returncode != 0 and len(proc.stderr.strip().splitlines()) == 1


def test_models_list_in_an_empty_folder_fails_and_says_what_to_run(tmp_path, cli_env):
    proc = run_cli(["models", "list"], {**cli_env, "STEMBOT_MODEL_DIR": str(tmp_path / "none")})
    assert proc.returncode == 1
    assert proc.stdout.count("[missing]") == 3
    assert proc.stdout.splitlines()[-1] == "3 of 3 models are missing or damaged: run `stembot models download`"


def test_separate_with_no_models_and_no_network_is_one_line(tmp_path, cli_env):
    from tests.service_support import free_port

    song = write_audio(tmp_path / "song.wav", music(2.0))
    empty = tmp_path / "no-models"
    env = {**cli_env, "STEMBOT_MODEL_DIR": str(empty), "STEMBOT_MODEL_MIRROR": f"http://127.0.0.1:{free_port()}"}
    proc = run_cli(["separate", str(song), "--out", str(tmp_path / "out")], env)
    assert proc.returncode != 0
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert "model_bs_roformer_ep_317_sdr_12.9755.ckpt is missing from" in lines[0]
    assert str(empty) in lines[0] and "`stembot models download`" in lines[0] and "Connection refused" in lines[0]
    assert not any(p.name.endswith(".part") for p in empty.iterdir())
