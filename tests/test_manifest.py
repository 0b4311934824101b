"""The result manifest (separation_worker.contract.manifest): one writer, one reader, result.json's layout kept."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from separation_worker import audio_io
from separation_worker.contract.manifest import (
    FileEntry,
    LoudnessReport,
    Manifest,
    ManifestError,
    ModelInfo,
    StemEntry,
    Timings,
)
from separation_worker.pipeline import separate_song
from storage.files import MANIFEST_FILE, TEMP_PREFIX, FileStore, OutputFolder
from tests.conftest import music

# What the writer before the manifest produced (no `version`), byte for byte as a reader would find it.
OLD_RESULT_JSON = """{
  "title": "Déjà Vu",
  "source": "https://example.com/song",
  "duration": 201.5,
  "sample_rate": 44100,
  "format": "mp3",
  "stems": {
    "vocals": {
      "file": "Déjà Vu (Vocals).mp3",
      "size_bytes": 8000,
      "files": {
        "mp3": {"file": "Déjà Vu (Vocals).mp3", "size_bytes": 8000},
        "flac": {"file": "Déjà Vu (Vocals).flac", "size_bytes": 30000}
      },
      "silent": false,
      "loudness": {"lufs_before": -20.1, "lufs_after": -14.0, "true_peak_before_dbtp": -3.2,
                   "true_peak_after_dbtp": -1.0, "gain_db": 6.1, "limited": true, "silent": false}
    },
    "instrumental": {
      "file": "Déjà Vu (Instrumental).mp3",
      "size_bytes": 9000,
      "files": {
        "mp3": {"file": "Déjà Vu (Instrumental).mp3", "size_bytes": 9000},
        "flac": {"file": "Déjà Vu (Instrumental).flac", "size_bytes": 31000}
      },
      "silent": false,
      "loudness": {"lufs_before": -12.0, "lufs_after": -14.0, "true_peak_before_dbtp": 0.3,
                   "true_peak_after_dbtp": -1.0, "gain_db": -2.0, "limited": false, "silent": false}
    }
  },
  "models": [{"name": "BS-Roformer", "checkpoint": "model_bs_roformer_ep_317_sdr_12.9755.ckpt", "weight": 0.4}],
  "device": "cuda:0",
  "precision": "fp16",
  "timings": {"fetch": 1.2, "decode": 0.4, "separate": 10.5, "separate.BS-Roformer": 10.4, "loudness": 0.8,
              "analyze": 1.1, "encode": 2.0, "total": 16.0},
  "original": {"file": "Déjà Vu (Original).mp3", "size_bytes": 7000},
  "bpm": 128.0,
  "bpm_confidence": 0.91,
  "key": "A minor",
  "camelot": "8A",
  "key_confidence": 0.77
}
"""


def sample() -> Manifest:
    report = LoudnessReport(-20.0, -14.0, -3.0, -1.0, 6.0, False, False)
    return Manifest(
        title="Song", source="upload", duration=3.0, sample_rate=44100, format="mp3",
        stems=(
            StemEntry("vocals", {"mp3": FileEntry("Song (Vocals).mp3", 10), "flac": FileEntry("Song (Vocals).flac", 20)},
                      silent=False, loudness=report),
            StemEntry("instrumental", {"mp3": FileEntry("Song (Instrumental).mp3", 11)}, silent=True,
                      loudness=dataclasses.replace(report, silent=True)),
        ),
        models=(ModelInfo("A", "a.ckpt", 0.6), ModelInfo("B", "b.ckpt", 0.4)),
        device="cpu", precision="fp32",
        timings=Timings(decode=0.1, separate=1.0, loudness=0.2, analyze=0.3, encode=0.4, total=2.0,
                        per_model={"A": 0.6, "B": 0.4}),
        bpm=97.5, bpm_confidence=0.5, key="F# major", camelot="2B", key_confidence=0.4,
        original=FileEntry("Song (Original).mp3", 12),
    )


def test_round_trip_through_json():
    manifest = sample()
    assert Manifest.from_json(manifest.to_json()) == manifest
    assert Manifest.from_dict(json.loads(manifest.to_json())) == manifest


def test_json_layout_is_result_jsons():
    data = json.loads(sample().to_json())
    assert data["version"] == 1
    # The keys every reader of result.json relies on, with their meaning.
    assert list(data["stems"]) == ["vocals", "instrumental"]  # keyed by name, in stem order
    vocals = data["stems"]["vocals"]
    assert vocals["file"] == "Song (Vocals).mp3" and vocals["size_bytes"] == 10  # the primary file
    assert vocals["files"]["flac"] == {"file": "Song (Vocals).flac", "size_bytes": 20}
    assert vocals["loudness"]["lufs_after"] == -14.0 and data["stems"]["instrumental"]["silent"] is True
    assert list(data["timings"]) == ["decode", "separate", "separate.A", "separate.B", "loudness", "analyze",
                                     "encode", "total"]
    assert [m["weight"] for m in data["models"]] == [0.6, 0.4]
    assert (data["bpm"], data["bpm_confidence"], data["key"], data["camelot"], data["key_confidence"]) == (
        97.5, 0.5, "F# major", "2B", 0.4)
    assert data["duration"] == 3.0 and data["original"] == {"file": "Song (Original).mp3", "size_bytes": 12}


def test_reads_a_result_json_written_before_the_manifest():
    manifest = Manifest.from_json(OLD_RESULT_JSON)
    assert manifest.version == 1
    assert [s.name for s in manifest.stems] == ["vocals", "instrumental"]
    vocals = manifest.stem("vocals")
    assert vocals.primary == FileEntry("Déjà Vu (Vocals).mp3", 8000)
    assert vocals.file("flac") == FileEntry("Déjà Vu (Vocals).flac", 30000)
    assert vocals.loudness.limited and vocals.loudness.lufs_after == -14.0
    assert manifest.timings.fetch == 1.2 and manifest.timings.per_model == {"BS-Roformer": 10.4}
    assert manifest.analysis.summary() == "128 BPM · A minor (8A)"
    assert manifest.models[0].checkpoint.endswith(".ckpt") and manifest.device == "cuda:0"
    # Written again, it says the same: the old keys and values, plus the version, the mode (written before modes:
    # vocals), raw, and each stem's label.
    old, new = json.loads(OLD_RESULT_JSON), json.loads(manifest.to_json())
    assert new.pop("version") == 1
    assert (new.pop("mode"), new.pop("raw")) == ("vocals", False)
    assert [stem.pop("label") for stem in new["stems"].values()] == ["Vocals", "Instrumental"]
    assert new == old


def test_the_songs_artist_and_track_round_trip_and_are_optional():
    tagged = dataclasses.replace(sample(), title="The Midnight - Night Drive", artist="The Midnight", track="Night Drive")
    data = json.loads(tagged.to_json())
    assert (data["title"], data["artist"], data["track"]) == ("The Midnight - Night Drive", "The Midnight", "Night Drive")
    assert Manifest.from_json(tagged.to_json()) == tagged
    assert tagged.stem_title("vocals") == "Night Drive (Vocals)"  # the stem's title tag: the track, not the title
    # Unknown: not written (result.json keeps the layout it had), read back as None; blank is unknown too.
    assert "artist" not in json.loads(sample().to_json()) and "track" not in json.loads(sample().to_json())
    old = Manifest.from_json(OLD_RESULT_JSON)
    assert (old.artist, old.track, old.stem_title("instrumental")) == (None, None, "Déjà Vu (Instrumental)")
    assert dataclasses.replace(sample(), artist="  ", track="") == sample()


def test_an_ambiguous_tempo_round_trips_and_is_optional():
    ambiguous = dataclasses.replace(sample(), bpm=75.0, bpm_alternative=150.0)
    assert json.loads(ambiguous.to_json())["bpm_alternative"] == 150.0
    assert Manifest.from_json(ambiguous.to_json()) == ambiguous
    assert ambiguous.analysis.summary() == "75 BPM (or 150) · F# major (2B)"
    assert "bpm_alternative" not in json.loads(sample().to_json())  # a clear tempo: the layout it had
    assert Manifest.from_json(OLD_RESULT_JSON).bpm_alternative is None


def test_reads_older_shapes_and_a_stem_list():
    old = json.loads(OLD_RESULT_JSON)
    # A stem that named only its primary file (before `files`), and missing analysis (unknown).
    old["stems"]["vocals"] = {"file": "v.flac", "size_bytes": 5, "silent": True, "loudness": None}
    for key in ("bpm", "key", "camelot"):
        old[key] = None
    manifest = Manifest.from_dict(old)
    assert dict(manifest.stem("vocals").files) == {"flac": FileEntry("v.flac", 5)}
    assert manifest.stem("vocals").silent and manifest.analysis.summary() == "BPM unknown · key unknown"
    # `stems` as a list of {name, ...}: the layout a later version may write.
    as_list = json.loads(OLD_RESULT_JSON)
    as_list["stems"] = [{"name": name, **stem} for name, stem in as_list["stems"].items()]
    assert Manifest.from_dict(as_list) == Manifest.from_json(OLD_RESULT_JSON)


@pytest.mark.parametrize("text", [
    "not json", "[]", '{"stems": 3}', '{"version": 99, "stems": {}}', '{"stems": {"v": {"files": {}}}}',
    '{"stems": {}, "duration": "long"}', '{"stems": {"v": {"file": "a.mp3", "size_bytes": -1}}}',
])
def test_malformed_manifests_raise_one_error(text):
    with pytest.raises(ManifestError):
        Manifest.from_json(text)


def test_frozen_all_the_way_down():
    manifest = sample()
    with pytest.raises(dataclasses.FrozenInstanceError):
        manifest.title = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        manifest.stems[0].files["wav"] = FileEntry("x.wav", 1)  # type: ignore[index]
    with pytest.raises(TypeError):
        manifest.timings.per_model["C"] = 1.0  # type: ignore[index]


def test_files_lists_each_output_once():
    assert [e.file for e in sample().files()] == [
        "Song (Vocals).mp3", "Song (Vocals).flac", "Song (Instrumental).mp3", "Song (Original).mp3"]


# -- atomic outputs ------------------------------------------------------------------------------------------


def test_output_folder_writes_atomically(tmp_path):
    folder = OutputFolder(tmp_path / "out")
    with pytest.raises(RuntimeError):
        with folder.writing("a.mp3") as temp:
            assert temp.parent == folder.path and temp.name.startswith(TEMP_PREFIX) and temp.suffix == ".mp3"
            temp.write_bytes(b"half")
            assert not folder.file("a.mp3").exists()  # invisible under its name until complete
            raise RuntimeError("encoder died")
    assert list(folder.path.iterdir()) == []  # no partial file, no temp left
    folder.write_text(MANIFEST_FILE, "{}")
    assert [p.name for p in folder.path.iterdir()] == [MANIFEST_FILE]


def test_all_or_nothing_removes_what_a_failed_block_wrote(tmp_path):
    fresh = OutputFolder(tmp_path / "new")
    with pytest.raises(ValueError), fresh.all_or_nothing():
        fresh.write_text("a.txt", "x")
        raise ValueError
    assert not fresh.path.exists()  # it created the folder, so the folder goes too
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "mine.txt").write_text("the user's")
    kept = OutputFolder(tmp_path / "kept")
    with pytest.raises(ValueError), kept.all_or_nothing():
        kept.write_text("b.txt", "x")
        raise ValueError
    assert [p.name for p in kept.path.iterdir()] == ["mine.txt"]


def test_file_store_is_the_authority_on_result_paths(tmp_path):
    store = FileStore(tmp_path / "files")
    outputs = store.outputs("job1")
    outputs.write_text(MANIFEST_FILE, sample().to_json())
    outputs.write_text("Song (Vocals).mp3", "mp3")
    (outputs.path / f"{TEMP_PREFIX}half.mp3").write_text("partial")
    (tmp_path / "secret.txt").write_text("secret")
    (outputs.path / "link.mp3").symlink_to(tmp_path / "secret.txt")
    upload = store.incoming_path("job1", "up.mp3")
    upload.write_bytes(b"upload")

    assert store.manifest_path("job1") == outputs.file(MANIFEST_FILE)
    assert Manifest.from_json(store.read_manifest("job1")) == sample()
    assert store.result_file("job1", "Song (Vocals).mp3") == outputs.file("Song (Vocals).mp3")
    for name in (f"{TEMP_PREFIX}half.mp3", "link.mp3", "incoming/up.mp3", "incoming", "../secret.txt", "missing.mp3"):
        assert store.result_file("job1", name) is None, name
    assert store.result_file("../x", MANIFEST_FILE) is None and store.read_manifest("other") is None
    assert store.input_file("job1", "up.mp3") == upload and store.input_file("job1", None) == upload
    assert store.input_file("job1", "gone.mp3") is None

    store.remove_inputs("job1")
    assert store.input_file("job1", None) is None and not (outputs.path / "incoming").exists()
    store.remove_outputs("job1")
    assert list(outputs.path.iterdir()) == [] and (tmp_path / "secret.txt").exists()


# -- the pipeline writes it ----------------------------------------------------------------------------------


def test_pipeline_writes_the_manifest_last_and_nothing_partial(tmp_path, engine, settings, monkeypatch):
    out = tmp_path / "out"
    real_encode = audio_io.encode
    seen: list[set[str]] = []

    def encode(samples, path: Path, fmt, title=None):
        seen.append({p.name for p in out.iterdir()})
        assert path.name.startswith(TEMP_PREFIX)  # encoders write temp files, never the final names
        return real_encode(samples, path, fmt, title)

    monkeypatch.setattr(audio_io, "encode", encode)
    song = audio_io.DecodedAudio(music(2.0), "Tiny")
    manifest = separate_song(song, out, engine, settings, fmt=["mp3", "flac"], keep_original=True)
    assert all(MANIFEST_FILE not in names and not any("(" in n for n in names) for names in seen)
    assert Manifest.from_json((out / MANIFEST_FILE).read_text(encoding="utf-8")) == manifest
    assert sorted(p.name for p in out.iterdir()) == sorted([MANIFEST_FILE, *(e.file for e in manifest.files())])
    for entry in manifest.files():
        assert (out / entry.file).stat().st_size == entry.size_bytes > 0
    assert [s.name for s in manifest.stems] == ["vocals", "instrumental"] and manifest.timings.total > 0


def test_a_failed_encode_leaves_nothing(tmp_path, engine, settings, monkeypatch):
    real_encode = audio_io.encode

    def encode(samples, path, fmt, tags=None):
        if "Instrumental" in (tags.title if tags else ""):
            raise RuntimeError("ffmpeg could not encode")
        return real_encode(samples, path, fmt, tags)

    monkeypatch.setattr(audio_io, "encode", encode)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        separate_song(audio_io.DecodedAudio(music(1.0), "Tiny"), out, engine, settings)
    assert not out.exists()  # neither the vocals that did encode, nor a temp file, nor result.json


# -- the service reads it ------------------------------------------------------------------------------------


async def test_service_result_reads_the_manifest_sqlite_keeps(tmp_path, db):
    from bot.service import SeparationService
    from stembot.settings import Settings
    from storage import create_job, finish_job, get_or_create_user, start_job

    settings = Settings(model_dir=tmp_path / "models", data_dir=tmp_path / "data",
                        public_url="http://files.test", secret_key="k" * 32)
    service = SeparationService(settings, db, FileStore.in_data_dir(settings.data_dir), None, db.clock)
    user = await get_or_create_user(db, "telegram", "1")
    await create_job(db, "old-job", user.id, "link")
    await start_job(db, "old-job")
    await finish_job(db, "old-job", json.loads(OLD_RESULT_JSON))  # a job finished before the manifest existed

    result = await service.result("old-job")
    assert result.manifest == Manifest.from_json(OLD_RESULT_JSON)
    assert (result.title, result.duration, result.bpm, result.key, result.camelot) == (
        "Déjà Vu", 201.5, 128.0, "A minor", "8A")
    assert result.summary == "128 BPM · A minor (8A)"
    vocals, instrumental = result.stems
    assert (vocals.name, vocals.filename, vocals.size_bytes) == ("vocals", "Déjà Vu (Vocals).mp3", 8000)
    assert vocals.path == service.files.path_of("old-job", "Déjà Vu (Vocals).mp3")
    assert vocals.lossless_url and "/d/old-job/" in vocals.lossless_url and vocals.loudness.lufs_after == -14.0
    assert result.raw["stems"]["instrumental"]["size_bytes"] == 9000 and instrumental.silent is False
    assert result.models == [{"name": "BS-Roformer", "checkpoint": "model_bs_roformer_ep_317_sdr_12.9755.ckpt", "weight": 0.4}]
