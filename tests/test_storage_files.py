"""The file store: layout, path safety, atomic writes."""

from __future__ import annotations

import os

import pytest

from storage import FileStore, InvalidName, safe_filename
from storage.files import TEMP_PREFIX


@pytest.fixture
def store(tmp_path) -> FileStore:
    return FileStore.in_data_dir(tmp_path / "data")


def _all_names(root) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


def test_layout(store, tmp_path):
    assert store.root == tmp_path / "data" / "files"
    assert store.job_dir("job-1") == store.root / "job-1"
    assert not store.job_dir("job-1").exists()  # asking for the path creates nothing
    assert store.job_dir("job-1", create=True).is_dir()
    assert store.path_of("job-1", "Song (Vocals).mp3") == store.root / "job-1" / "Song (Vocals).mp3"
    assert store.path_of("job-1", "out/Söng — ライブ.flac") == store.root / "job-1" / "out" / "Söng — ライブ.flac"


@pytest.mark.parametrize("job_id", ["", "..", ".", "../x", "a/b", "/abs", "a b", "a.b", "x\x00", "é", "x" * 129])
def test_bad_job_ids_are_refused(store, job_id):
    with pytest.raises(InvalidName):
        store.job_dir(job_id)
    with pytest.raises(InvalidName):
        store.path_of(job_id, "file.mp3")


@pytest.mark.parametrize(
    "name",
    [
        "../x",
        "../../etc/passwd",
        "/etc/passwd",
        "/abs/in/store",
        "a/../../b",
        "a/../b",
        "..",
        ".",
        "",
        "./a",
        "a//b",
        "a/",
        "..\\x",
        "a\\..\\..\\b",
        "nul\x00byte",
        f"{TEMP_PREFIX}sneaky",
        f"incoming/{TEMP_PREFIX}sneaky",
    ],
)
def test_unsafe_names_are_refused(store, name):
    with pytest.raises(InvalidName):
        store.path_of("job-1", name)
    with pytest.raises(InvalidName):
        store.atomic_write("job-1", name, b"x")
    with pytest.raises(InvalidName):
        store.incoming_path("job-1", name)


def test_symlinks_out_of_the_job_folder_are_refused(store, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    folder = store.job_dir("job-1", create=True)
    (folder / "escape").symlink_to(outside)
    with pytest.raises(InvalidName):
        store.path_of("job-1", "escape/secret.txt")
    with pytest.raises(InvalidName):
        store.atomic_write("job-1", "escape/secret.txt", b"x")
    assert list(outside.iterdir()) == []


def test_atomic_write_leaves_only_the_final_file(store):
    path = store.atomic_write("job-1", "result.json", b'{"ok": true}')
    assert path == store.path_of("job-1", "result.json") and path.read_bytes() == b'{"ok": true}'
    store.atomic_write("job-1", "result.json", b"{}")  # replaces
    store.atomic_write("job-1", "stems/Song (Vocals).mp3", b"ID3")
    assert path.read_bytes() == b"{}"
    assert _all_names(store.root) == [
        "job-1",
        "job-1/result.json",
        "job-1/stems",
        "job-1/stems/Song (Vocals).mp3",
    ]
    assert store.list_files("job-1") == ["result.json", "stems/Song (Vocals).mp3"]


def test_writing_renames_on_success(store):
    with store.writing("job-1", "Song (Instrumental).mp3") as temp:
        assert temp.parent == store.job_dir("job-1")
        assert temp.name.startswith(TEMP_PREFIX) and temp.suffix == ".mp3"  # tools pick the format by extension
        temp.write_bytes(b"audio")
        assert store.list_files("job-1") == []  # not visible while being written
    assert store.path_of("job-1", "Song (Instrumental).mp3").read_bytes() == b"audio"
    assert store.list_files("job-1") == ["Song (Instrumental).mp3"]
    assert not any(name.startswith(TEMP_PREFIX) for name in os.listdir(store.job_dir("job-1")))


def test_writing_removes_the_temp_file_on_error(store):
    with pytest.raises(RuntimeError), store.writing("job-1", "partial.wav") as temp:
        temp.write_bytes(b"half")
        raise RuntimeError("ffmpeg died")
    assert os.listdir(store.job_dir("job-1")) == []


def test_incoming_path_is_inside_the_job_folder(store):
    path = store.incoming_path("job-1", "upload.m4a")
    assert path == store.job_dir("job-1") / "incoming" / "upload.m4a"
    assert path.parent.is_dir() and not path.exists()


def test_delete_and_list_job_dirs(store):
    assert store.list_job_dirs() == []  # no root yet
    store.atomic_write("b", "x.bin", b"1")
    store.atomic_write("a", "incoming/y.bin", b"2")
    (store.root / "not a job id").mkdir()  # ignored
    (store.root / "stray-file").write_bytes(b"")  # ignored: not a folder
    assert [d.job_id for d in store.list_job_dirs()] == ["a", "b"]
    assert store.delete_job_files("a") is True
    assert store.delete_job_files("a") is False
    assert [d.job_id for d in store.list_job_dirs()] == ["b"]
    assert store.list_files("a") == []


def test_modified_at_sees_files_deep_inside(store):
    store.atomic_write("a", "incoming/y.bin", b"2")
    folder = store.job_dir("a")
    for path in (folder, folder / "incoming"):
        os.utime(path, (1_000_000, 1_000_000))
    [job_dir] = store.list_job_dirs()
    assert job_dir.modified_at.timestamp() > 1_000_000  # the file itself is recent


def test_delete_a_symlinked_job_folder_removes_only_the_link(store, tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "keep.txt").write_text("keep")
    store.root.mkdir(parents=True)
    (store.root / "job-1").symlink_to(target)
    with pytest.raises(InvalidName):
        store.path_of("job-1", "keep.txt")  # the job's folder itself leads out of the store
    assert store.delete_job_files("job-1") is True
    assert (target / "keep.txt").exists()


@pytest.mark.parametrize(
    ("untrusted", "expected"),
    [
        ("song.mp3", "song.mp3"),
        ("../../My Song?.mp3", "My Song_.mp3"),
        ("C:\\Users\\x\\track (1).wav", "track (1).wav"),
        (".hidden", "hidden"),
        ("..", "file"),
        ("", "file"),
        ("Söng ライブ.flac", "Söng ライブ.flac"),
    ],
)
def test_safe_filename(untrusted, expected):
    assert safe_filename(untrusted) == expected


def test_safe_filename_caps_the_length_and_keeps_the_suffix():
    name = safe_filename("ü" * 300 + ".mp3")
    assert name.endswith(".mp3") and len(name.encode()) <= 200
