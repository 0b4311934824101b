"""The file store: each job's files in their own folder, `<root>/<job_id>/`, written atomically.

Paths are built only from a validated job id and a validated relative name, and checked again after resolving
symlinks, so no name (`../x`, `/etc/passwd`, `a/../../b`) can reach outside the job's folder. Files appear under
their final name only once complete (written to a hidden temp name in the same folder, then `os.replace`d), so a
reader, e.g. the web server, never serves a half-written file.

With an object store (STEMBOT_STORAGE_URL=s3://…) the bucket is the record of every job's files, shared by
machines that share nothing else, and the local folder is this machine's working copy: uploads and results are
published to the bucket (a result's manifest last, so a reader that finds it finds every file it names), files
missing here are fetched on first use, and deletions go to both.

The methods are synchronous (plain file operations, or requests to the store); async callers run them with
`asyncio.to_thread`.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Protocol

from storage.clock import UTC
from storage.errors import InvalidName
from storage.models import validate_job_id
from storage.objects import ObjectStore, parse_storage_url

TEMP_PREFIX = ".tmp-"  # unfinished writes; never a valid name, never listed
INCOMING = "incoming"  # each job's staging folder for uploads and downloads
STAGING_PREFIX = ".staging-"  # uploads on their way in, before they have a job (same filesystem: moved, not copied)
MANIFEST_FILE = "result.json"  # each finished job's manifest, written last: once it exists, every file it names does


@dataclass(frozen=True)
class JobDir:
    job_id: str
    path: Path
    modified_at: datetime  # newest modification time of the folder or anything in it


class FileStore:
    def __init__(self, root: str | Path, remote: ObjectStore | None = None) -> None:
        self.root = Path(root)
        self.remote = remote  # the shared object store, when there is one; `root` is then this machine's copy

    @classmethod
    def in_data_dir(cls, data_dir: str | Path) -> FileStore:
        """The store at `<data_dir>/files` (`data_dir` is Settings.data_dir)."""
        return cls(Path(data_dir) / "files")

    @classmethod
    def for_settings(cls, settings: _HasStorage) -> FileStore:
        """The store STEMBOT_STORAGE_URL names: a local folder (default `<data_dir>/files`), or an S3 bucket (at
        STEMBOT_S3_ENDPOINT_URL when not AWS) with `<data_dir>/files` as the working copy."""
        local = Path(settings.data_dir) / "files"
        location = parse_storage_url(settings.storage_url, local)
        if location.kind == "local":
            return cls(location.path or local)
        return cls(local, ObjectStore.from_location(location, endpoint_url=settings.s3_endpoint_url or None))

    # -- the shared object store ---------------------------------------------------------------------------------

    def publish(self, job_id: str, names: list[str]) -> None:
        """Copy these files of the job (relative names, in this order) to the object store; nothing without one."""
        if self.remote is None:
            return
        for name in names:
            self.remote.put_file(_key(job_id, name), self.path_of(job_id, name))

    def publish_outputs(self, job_id: str) -> None:
        """Copy the job's results to the object store, the manifest last (its presence means all are there)."""
        names = [n for n in self._local_files(job_id) if "/" not in n]
        self.publish(job_id, sorted(names, key=lambda n: n == MANIFEST_FILE))

    def drop_local_copy(self, job_id: str) -> None:
        """Forget this machine's copy of a job whose files are in the object store (a worker's, once published)."""
        if self.remote is not None:
            self._delete_local(job_id)

    def prepare(self) -> None:
        """Make sure the object store's bucket exists (a fresh MinIO has none); nothing for a local store."""
        if self.remote is not None:
            self.remote.ensure_bucket()

    def trim_local_copies(self, older_than: datetime) -> int:
        """Drop this machine's copies of jobs untouched since `older_than` (the object store keeps the files, and
        its janitor deletes them): a front end with no worker beside it runs no janitor. Returns how many."""
        if self.remote is None:
            return 0
        return sum(1 for d in self._local_job_dirs() if d.modified_at < older_than and self._delete_local(d.job_id))

    def _fetch(self, job_id: str, name: str) -> bool:
        """Bring the job's file `name` from the object store into the local copy; False if it isn't there."""
        if self.remote is None:
            return False
        path = self.path_of(job_id, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        return self.remote.get_file(_key(job_id, name), path)

    def job_dir(self, job_id: str, create: bool = False) -> Path:
        """The job's folder (created, with the store root, when `create`)."""
        path = self.root / validate_job_id(job_id)
        if create:
            path.mkdir(parents=True, exist_ok=True)
        return path

    def path_of(self, job_id: str, name: str) -> Path:
        """The path of file `name` (relative, may contain folders: "incoming/song.mp3") in the job's folder.

        Raises InvalidName for anything that is absolute, has empty, "." or ".." parts, backslashes or NULs, or
        that resolves (through symlinks, the job's folder itself included) outside the job's folder in the store.
        The file need not exist.
        """
        _validate_name(name)
        path = self.job_dir(job_id) / name
        folder = self.root.resolve() / job_id  # where the job's folder must really be: the store's own subfolder
        resolved = path.resolve()
        if resolved == folder or not resolved.is_relative_to(folder):
            raise InvalidName(f"file name {name!r} leads outside the job's folder")
        return path

    def incoming_path(self, job_id: str, name: str) -> Path:
        """Where to put an upload or download for the job (`incoming/<name>`); its folder is created."""
        path = self.path_of(job_id, f"{INCOMING}/{name}")
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    @contextmanager
    def writing(self, job_id: str, name: str) -> Iterator[Path]:
        """Yield a temporary path next to the final one; on success it is renamed to `name`, on error removed.

        The temp name keeps the final suffix, so tools that pick a format by extension (ffmpeg) still work.
        """
        final = self.path_of(job_id, name)
        final.parent.mkdir(parents=True, exist_ok=True)
        with _replacing(final) as temp:
            yield temp

    def atomic_write(self, job_id: str, name: str, data: bytes) -> Path:
        """Write `data` to the job's file `name` atomically (and durably); returns its path."""
        with self.writing(job_id, name) as temp:
            _write_durably(temp, data)
        return self.path_of(job_id, name)

    # -- what the worker writes and the web server serves ------------------------------------------------------

    def outputs(self, job_id: str) -> OutputFolder:
        """The job's folder as the place its results are written (created)."""
        return OutputFolder(self.job_dir(job_id, create=True))

    def manifest_path(self, job_id: str) -> Path:
        return self.path_of(job_id, MANIFEST_FILE)

    def read_manifest(self, job_id: str) -> str | None:
        """The text of the job's manifest, or None when it (or the job's folder) is gone or unreadable."""
        path = self.result_file(job_id, MANIFEST_FILE)
        try:
            return path.read_text(encoding="utf-8") if path else None
        except (OSError, UnicodeDecodeError):
            return None

    def result_file(self, job_id: str, name: str) -> Path | None:
        """The job's finished output file `name` (a manifest entry's `file`), or None.

        Only a regular file directly in the job's folder counts: never an input (`incoming/`), a temp file, a
        folder, a bad job id or name, or anything a symlink leads to outside the folder.
        """
        if "/" in name:
            return None
        try:
            path = self.path_of(job_id, name)
            if not path.exists() and not path.is_symlink():
                self._fetch(job_id, name)
            resolved = path.resolve(strict=True)
        except (InvalidName, OSError, RuntimeError):  # bad name, missing, unreadable, a symlink loop
            return None
        if resolved.parent != self.root.resolve() / job_id or not resolved.is_file():
            return None
        return path

    def input_file(self, job_id: str, name: str | None) -> Path | None:
        """The job's upload `incoming/<name>`, or None; with no name (jobs from before names were recorded),
        the one file in `incoming/`."""
        if name is None:
            uploads = [n for n in self.list_files(job_id) if n.startswith(f"{INCOMING}/")]
            if not uploads:
                return None
            name = uploads[0][len(INCOMING) + 1 :]
        path = self.path_of(job_id, f"{INCOMING}/{name}")
        if not path.is_file():
            self._fetch(job_id, f"{INCOMING}/{name}")
        return path if path.is_file() else None

    def remove_inputs(self, job_id: str) -> None:
        """Delete the job's uploads and downloads (`incoming/`), once its results exist."""
        folder = self.path_of(job_id, INCOMING)
        if folder.is_dir() and not folder.is_symlink():
            shutil.rmtree(folder, ignore_errors=True)
        if self.remote is not None:
            self.remote.delete_prefix(_key(job_id, INCOMING))

    def remove_outputs(self, job_id: str) -> None:
        """Delete the job's result files (what a failed attempt left), keeping its inputs for the next one."""
        folder = self.job_dir(job_id)
        if folder.is_dir() and not folder.is_symlink():
            for entry in os.scandir(folder):
                if entry.is_file(follow_symlinks=False) or entry.is_symlink():
                    os.unlink(entry.path)
        if self.remote is not None:
            self.remote.delete([o.key for o in self.remote.list(job_id) if o.key.count("/") == 1])

    @contextmanager
    def staging(self) -> Iterator[Path]:
        """A fresh private folder in the store for an upload that has no job yet; removed on exit.

        It lies on the store's filesystem, so `adopt` moves the file into its job instead of copying it.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(dir=self.root, prefix=STAGING_PREFIX))
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def adopt(self, job_id: str, name: str, source: Path) -> Path:
        """Move `source` into the job as file `name` (a rename within the store; a copy from elsewhere)."""
        with self.writing(job_id, name) as temp:
            try:
                os.replace(source, temp)
            except OSError:  # another filesystem
                shutil.copyfile(source, temp)
        return self.path_of(job_id, name)

    def sweep_staging(self, older_than: datetime) -> int:
        """Delete staging folders left by a front end that died mid-upload; returns how many."""
        if not self.root.is_dir():
            return 0
        removed = 0
        for entry in os.scandir(self.root):
            if not entry.name.startswith(STAGING_PREFIX):
                continue
            if datetime.fromtimestamp(entry.stat(follow_symlinks=False).st_mtime, UTC) >= older_than:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.unlink(entry.path)
            removed += 1
        return removed

    def list_files(self, job_id: str) -> list[str]:
        """The job's complete files, here or in the object store, as sorted relative names ("incoming/song.mp3");
        temp files left out."""
        names = set(self._local_files(job_id))
        if self.remote is not None:
            names.update(o.key.split("/", 1)[1] for o in self.remote.list(validate_job_id(job_id)))
        return sorted(names)

    def _local_files(self, job_id: str) -> list[str]:
        folder = self.job_dir(job_id)
        if not folder.is_dir():
            return []
        names = []
        for path in folder.rglob("*"):
            relative = path.relative_to(folder)
            if path.is_file() and not any(part.startswith(TEMP_PREFIX) for part in relative.parts):
                names.append(relative.as_posix())
        return sorted(names)

    def delete_job_files(self, job_id: str) -> bool:
        """Delete the job's folder and everything in it (here and in the object store). True if there was one."""
        removed = self.remote.delete_prefix(validate_job_id(job_id)) > 0 if self.remote is not None else False
        return self._delete_local(job_id) or removed

    def _delete_local(self, job_id: str) -> bool:
        folder = self.job_dir(job_id)
        if folder.is_symlink():  # never follow a link out of the store; just drop the link
            folder.unlink()
            return True
        if not folder.exists():
            return False
        for _ in range(2):
            try:
                shutil.rmtree(folder)
                return True
            except FileNotFoundError:  # another janitor is deleting the same folder: something vanished under us
                if not folder.exists():
                    return True
        shutil.rmtree(folder)  # a last try, whose errors are the caller's
        return True

    def list_job_dirs(self) -> list[JobDir]:
        """Every job folder in the store, here or in the object store (entries whose names are not job ids are
        ignored), sorted by job id; `modified_at` is the newest of both."""
        found = {d.job_id: d for d in self._local_job_dirs()}
        if self.remote is not None:
            for obj in self.remote.list():
                job_id = obj.key.split("/", 1)[0]
                if not _is_job_id(job_id):
                    continue
                known = found.get(job_id)
                if known is None or known.modified_at < obj.modified_at:
                    found[job_id] = JobDir(job_id, self.root / job_id, obj.modified_at)
        return [found[job_id] for job_id in sorted(found)]

    def _local_job_dirs(self) -> list[JobDir]:
        if not self.root.is_dir():
            return []
        return [
            JobDir(entry.name, Path(entry.path), _newest_mtime(Path(entry.path)))
            for entry in os.scandir(self.root)
            if entry.is_dir(follow_symlinks=False) and _is_job_id(entry.name)
        ]


class _HasStorage(Protocol):  # Settings, read-only
    @property
    def data_dir(self) -> Path: ...
    @property
    def storage_url(self) -> str: ...
    @property
    def s3_endpoint_url(self) -> str: ...


def _key(job_id: str, name: str) -> str:
    return f"{validate_job_id(job_id)}/{name}"


@dataclass(frozen=True)
class OutputFolder:
    """A folder whose files appear only complete (a job's folder in the store, or `stembot separate --out`).

    Each file is written under a hidden temp name beside its final one and renamed when done, so a reader never
    sees half a file; `all_or_nothing` removes everything a failed block wrote.
    """

    path: Path

    def file(self, name: str) -> Path:
        """The path of output file `name`: one plain file name in the folder."""
        _validate_name(name)
        if "/" in name:
            raise InvalidName(f"output file name {name!r} has folders")
        return self.path / name

    @contextmanager
    def writing(self, name: str) -> Iterator[Path]:
        """A temp path (with the final suffix, for ffmpeg) renamed to `name` on success, removed on error."""
        final = self.file(name)
        self.path.mkdir(parents=True, exist_ok=True)
        with _replacing(final) as temp:
            yield temp

    def write_text(self, name: str, text: str) -> Path:
        """Write `text` (UTF-8) to `name` atomically and durably."""
        with self.writing(name) as temp:
            _write_durably(temp, text.encode("utf-8"))
        return self.file(name)

    @contextmanager
    def all_or_nothing(self) -> Iterator[OutputFolder]:
        """On error, remove the files the block added (and the folder, if the block created it)."""
        existed = self.path.exists()
        before = {e.name for e in os.scandir(self.path)} if existed else set()
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            yield self
        except BaseException:
            if not existed:
                shutil.rmtree(self.path, ignore_errors=True)
            else:
                for entry in os.scandir(self.path):
                    if entry.name not in before:
                        shutil.rmtree(entry.path) if entry.is_dir(follow_symlinks=False) else os.unlink(entry.path)
            raise


@contextmanager
def _replacing(final: Path) -> Iterator[Path]:
    fd, temp_name = tempfile.mkstemp(dir=final.parent, prefix=TEMP_PREFIX, suffix=final.suffix)
    os.close(fd)
    temp = Path(temp_name)
    try:
        yield temp
        os.replace(temp, final)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _write_durably(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def safe_filename(untrusted: str, default: str = "file") -> str:
    """A single safe file name made from a user-supplied one ("../../My Song?.mp3" → "My Song_.mp3").

    Keeps letters (any script), digits, spaces and ._-()[]; drops folders and leading dots; caps the length.
    """
    base = re.split(r"[/\\]", untrusted)[-1]
    cleaned = re.sub(r"[^\w .()\[\]-]", "_", base).strip().lstrip(".")
    if len(cleaned.encode()) > 200:  # most filesystems allow 255 bytes per name; leave room for temp affixes
        stem, dot, suffix = cleaned.rpartition(".")
        if not dot or len(suffix) > 10:
            stem, suffix = cleaned, ""
        stem = stem.encode()[: 200 - len(suffix) - 1].decode(errors="ignore")
        cleaned = f"{stem}.{suffix}" if suffix else stem
    return cleaned or default


def _validate_name(name: str) -> None:
    if not isinstance(name, str) or not name:
        raise InvalidName("a file name is required")
    if "\x00" in name or "\\" in name:
        raise InvalidName(f"file name {name!r} contains a NUL or a backslash")
    if PurePosixPath(name).is_absolute() or os.path.isabs(name):
        raise InvalidName(f"file name {name!r} is absolute")
    for part in name.split("/"):
        if part in ("", ".", ".."):
            raise InvalidName(f"file name {name!r} has an empty, '.' or '..' part")
        if part.startswith(TEMP_PREFIX):
            raise InvalidName(f"file name {name!r} uses the reserved prefix {TEMP_PREFIX}")


def _is_job_id(name: str) -> bool:
    try:
        validate_job_id(name)
    except InvalidName:
        return False
    return True


def _newest_mtime(folder: Path) -> datetime:
    # The folder's own mtime only changes when entries are added or removed; a file still being written
    # into a subfolder makes the folder "recent" only if we look inside.
    newest = folder.lstat().st_mtime
    for current, dirs, files in os.walk(folder):
        for name in dirs + files:
            try:
                newest = max(newest, os.lstat(os.path.join(current, name)).st_mtime)
            except FileNotFoundError:  # removed while we walked
                continue
    return datetime.fromtimestamp(newest, UTC)
