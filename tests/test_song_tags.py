"""The song's artist and title, from its tags (or its page), into the stems' own tags: what players and chats show.

Every tag is read back with the real ffprobe, as a player would read the ID3 frames, Vorbis comments or RIFF INFO.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from separation_worker import audio_io
from separation_worker.contract.manifest import Manifest
from separation_worker.fetch import _song_names
from separation_worker.pipeline import separate_song
from storage.files import MANIFEST_FILE
from tests.conftest import music, stembot_exe, write_audio

TAGGED = ("-metadata", "title=Night Drive", "-metadata", "artist=The Midnight")


def tags_of(path: Path) -> dict[str, str]:
    """The file's tags as ffprobe lists them (container and first stream), lower-cased names, no encoder tag."""
    info = json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(path)],
        capture_output=True, check=True,
    ).stdout)
    found: dict[str, str] = {}
    for tags in [info["format"].get("tags", {}), *(s.get("tags", {}) for s in info["streams"][:1])]:
        for key, value in tags.items():
            found.setdefault(key.lower(), value)
    found.pop("encoder", None)
    return found


@pytest.mark.parametrize("fmt", ["mp3", "flac", "wav"])
def test_stems_carry_the_songs_artist_and_title(tmp_path, engine, settings, fmt):
    song = write_audio(tmp_path / "upload.mp3", music(2.0), extra_args=TAGGED)
    out = tmp_path / "out"
    manifest = separate_song(str(song), out, engine, settings, fmt=fmt, keep_original=True)
    assert (manifest.title, manifest.artist, manifest.track) == ("The Midnight - Night Drive", "The Midnight", "Night Drive")
    for stem, label in (("vocals", "Vocals"), ("instrumental", "Instrumental")):
        entry = manifest.stem(stem).primary
        assert entry.file == f"The Midnight - Night Drive ({label}).{fmt}"  # file names as before
        assert tags_of(out / entry.file) == {"artist": "The Midnight", "title": f"Night Drive ({label})",
                                             "album": "Night Drive"}
    assert tags_of(out / manifest.original.file) == {"artist": "The Midnight", "title": "Night Drive",
                                                     "album": "Night Drive"}
    assert Manifest.from_json((out / MANIFEST_FILE).read_text(encoding="utf-8")) == manifest


def test_an_untagged_song_is_named_by_its_file_and_has_no_artist(tmp_path, engine, settings):
    song = write_audio(tmp_path / "demo take 3.wav", music(1.5))
    manifest = separate_song(str(song), tmp_path / "out", engine, settings, fmt="flac")
    assert (manifest.title, manifest.artist, manifest.track) == ("demo take 3", None, None)
    assert tags_of(tmp_path / "out" / manifest.stem("vocals").primary.file) == {
        "title": "demo take 3 (Vocals)", "album": "demo take 3"}  # no artist tag rather than a made-up one
    assert "artist" not in json.loads((tmp_path / "out" / MANIFEST_FILE).read_text(encoding="utf-8"))


def test_ogg_tags_live_on_the_stream_and_album_artist_stands_in(tmp_path):
    """Opus/Vorbis in Ogg (Telegram's voice notes, many downloads) keep Vorbis comments on the stream, not the
    container; an album artist names the artist when no track artist is tagged."""
    song = write_audio(tmp_path / "a.ogg", music(1.0), extra_args=(
        "-c:a", "libopus", "-metadata", "TITLE=Sunset", "-metadata", "ALBUM_ARTIST=FM-84"))
    audio = audio_io.decode(song, 60)
    assert (audio.title, audio.artist, audio.track) == ("FM-84 - Sunset", "FM-84", "Sunset")


def test_hostile_tags_are_cleaned_and_bounded(tmp_path):
    """A tag is text a stranger wrote: control characters go, and a huge one can't become an unpassable
    ffmpeg argument (or a NUL, which no argument may hold)."""
    title = "Line one\nLine\ttwo\x7f" + "x" * 5000
    song = write_audio(tmp_path / "crafted.flac", music(1.0), extra_args=("-metadata", f"title={title}",
                                                                          "-metadata", "artist=A\rB"))
    audio = audio_io.decode(song, 60)
    assert audio.artist == "A B" and audio.track.startswith("Line one Line two x")
    assert len(audio.track) == audio_io.MAX_TAG_CHARS
    out = audio_io.encode(music(0.5), tmp_path / "stem.flac", "flac",
                          audio_io.Tags(title=f"{audio.track}\0 (Vocals)", artist=audio.artist))
    written = tags_of(out)
    assert written["artist"] == "A B" and "\0" not in written["title"] and len(written["title"]) <= audio_io.MAX_TAG_CHARS


def test_page_metadata_names_the_song_only_when_the_site_does():
    """yt-dlp's `artist`/`artists` and `track` (YouTube Music, Bandcamp…); a page title alone names neither."""
    assert _song_names({"title": "The Midnight - Night Drive (Official Video)", "artist": "The Midnight",
                        "track": "Night Drive"}) == ("The Midnight", "Night Drive")
    assert _song_names({"artists": ["Daft Punk", "Pharrell Williams"], "track": "Get Lucky"}) == (
        "Daft Punk, Pharrell Williams", "Get Lucky")
    assert _song_names({"title": "my vlog", "uploader": "someone"}) == (None, None)


def test_a_direct_links_file_is_named_by_its_tags(tmp_path, engine, settings, http_server):
    root, base = http_server
    write_audio(root / "download.mp3", music(1.5), extra_args=TAGGED)
    out = tmp_path / "out"
    manifest = separate_song(f"{base}/download.mp3", out, engine, settings, fmt="mp3")
    assert (manifest.artist, manifest.track) == ("The Midnight", "Night Drive")
    assert tags_of(out / manifest.stem("instrumental").primary.file)["title"] == "Night Drive (Instrumental)"


def test_the_cli_writes_the_same_tags(tmp_path, cli_env):
    song = write_audio(tmp_path / "in.mp3", music(2.0, level=0.5), extra_args=TAGGED)
    out = tmp_path / "stems"
    proc = subprocess.run([stembot_exe(), "separate", str(song), "--out", str(out), "--format", "flac", "--preset", "fast"],
                          env=cli_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    vocals = out / "The Midnight - Night Drive (Vocals).flac"
    assert tags_of(vocals) == {"artist": "The Midnight", "title": "Night Drive (Vocals)", "album": "Night Drive"}
    result = json.loads((out / MANIFEST_FILE).read_text(encoding="utf-8"))
    assert (result["artist"], result["track"]) == ("The Midnight", "Night Drive")
