"""Which model files are present, missing or damaged, and the one line an operator reads about each.

A checkpoint is checked in full once (its zip CRCs, or a CPU load for the legacy pickle format) and then stamped
with its size, mtime and sha256 under `<model dir>/.verified/`, so later checks (every start, `stembot models
list`) are a stat. A truncated download, a half-copied file or an HTML error page saved under the checkpoint's
name shows as damaged here, with a reason, instead of as a page of library errors in every song. YAMLs are small:
they are parsed every time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import zipfile
import zlib
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import yaml

from .zoo import Ensemble, ModelSpec

STAMP_DIR = ".verified"
STAMP_VERSION = 1  # bump when the checks change, so older verdicts are not trusted
DOWNLOAD_HINT = "`stembot models download`"
_READ = 1 << 20


class FileStatus(str, Enum):
    PRESENT = "present"
    MISSING = "missing"
    DAMAGED = "damaged"


class FileKind(str, Enum):
    CHECKPOINT = "checkpoint"
    CONFIG = "config"


@dataclass(frozen=True)
class ModelFile:
    """One file a model needs, under its zoo filename."""

    model: str  # the ensemble member's name
    filename: str
    kind: FileKind


def model_files(spec: ModelSpec) -> tuple[ModelFile, ModelFile]:
    """The checkpoint, then the YAML."""
    return (ModelFile(spec.name, spec.checkpoint, FileKind.CHECKPOINT), ModelFile(spec.name, spec.config, FileKind.CONFIG))


@dataclass(frozen=True)
class FileState:
    model: str  # the ensemble member's name
    filename: str
    folder: Path
    status: FileStatus
    reason: str = ""  # why it is damaged
    kind: FileKind = FileKind.CHECKPOINT

    @property
    def present(self) -> bool:
        return self.status is FileStatus.PRESENT

    @property
    def missing(self) -> bool:
        return self.status is FileStatus.MISSING

    @property
    def damaged(self) -> bool:
        return self.status is FileStatus.DAMAGED

    @property
    def path(self) -> Path:
        return self.folder / self.filename

    def label(self) -> str:
        return f"damaged: {self.reason}" if self.damaged else self.status.value

    def problem_line(self) -> str:
        if self.damaged:
            return (f"{self.model}: {self.filename} in {self.folder} is damaged ({self.reason}): "
                    f"run {DOWNLOAD_HINT} to fetch it again")
        return f"{self.model}: {self.filename} is missing from {self.folder}: run {DOWNLOAD_HINT}"


def survey(ensemble: Ensemble, model_dir: Path) -> list[FileState]:
    return [state for spec in ensemble.members for state in files_of(spec, model_dir)]


def files_of(spec: ModelSpec, model_dir: Path) -> list[FileState]:
    """The checkpoint's state, then the YAML's (under whichever of its published names is there)."""
    return [state_of(file, model_dir) for file in model_files(located(spec, model_dir))]


def located(spec: ModelSpec, model_dir: Path) -> ModelSpec:
    """The spec with the YAML name found in `model_dir`: its zoo name, else the first alias present (a config
    copied from the model's author or another mirror); the zoo name when none is (what a download fetches)."""
    if (model_dir / spec.config).is_file():
        return spec
    alias = next((name for name in spec.config_aliases if (model_dir / name).is_file()), None)
    return dataclasses.replace(spec, config=alias) if alias else spec


def state_of(file: ModelFile, model_dir: Path) -> FileState:
    path = model_dir / file.filename
    if not path.is_file():
        return FileState(file.model, file.filename, model_dir, FileStatus.MISSING, kind=file.kind)
    reason = check_checkpoint(path) if file.kind is FileKind.CHECKPOINT else check_config(path)
    status = FileStatus.DAMAGED if reason else FileStatus.PRESENT
    return FileState(file.model, file.filename, model_dir, status, reason or "", file.kind)


def verify(path: Path, kind: FileKind) -> str | None:
    """The full check of one file, stamp or not: None when sound, else a short reason."""
    return verify_checkpoint(path) if kind is FileKind.CHECKPOINT else check_config(path)


def check_config(path: Path) -> str | None:
    """None when the YAML parses into a model config (with the zoo's !!python/tuple tags), else why not."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.load(fh, Loader=yaml.FullLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        return f"YAML does not parse at line {mark.line + 1}" if mark else "YAML does not parse"
    except (yaml.YAMLError, UnicodeDecodeError):
        return "YAML does not parse"
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    if data is None:
        return "empty"
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        return "not a model config (no `model:` section)"
    return None


def check_checkpoint(path: Path) -> str | None:
    """None when the checkpoint reads back whole, else why not: a stat when its stamp matches, else the full check
    (whose verdict is then stamped)."""
    stamped = _read_stamp(path)
    if stamped is not None:
        return stamped.get("problem")
    try:
        reason = verify_checkpoint(path)
        digest = sha256_of(path)
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    stamp(path, digest, reason)
    return reason


def verify_checkpoint(path: Path) -> str | None:
    """torch.save's zip format (since torch 1.6): the central directory and every member's CRC; the legacy pickle
    format: a CPU load with torch's weights-only unpickler (as the loaders load it), which runs no code from it."""
    with open(path, "rb") as fh:
        head = fh.read(512)
    if not head:
        return "empty"
    if head.startswith(b"PK\x03\x04"):
        return _verify_zip(path)
    if head[0] == 0x80:  # a pickle's PROTO opcode: the legacy format
        return _verify_legacy(path)
    start = head.lstrip()[:15].lower()
    if start.startswith((b"<!doctype", b"<html", b"<?xml", b"<")):
        return "not a checkpoint (an HTML page)"  # a portal's or an error page saved under the model's name
    if _looks_like_text(head):
        return "not a checkpoint (text)"
    return "not a checkpoint"


def _verify_zip(path: Path) -> str | None:
    if not zipfile.is_zipfile(path):
        return "truncated"  # its central directory, written last, is gone
    try:
        with zipfile.ZipFile(path) as archive:
            if not any(name.endswith("data.pkl") for name in archive.namelist()):
                return "not a torch checkpoint (a zip without data.pkl)"
            bad = archive.testzip()
    except (zipfile.BadZipFile, EOFError, ValueError, zlib.error, NotImplementedError):
        return "corrupt (its zip structure does not read back)"
    return f"corrupt (CRC mismatch in {bad})" if bad else None


def _verify_legacy(path: Path) -> str | None:
    import torch  # only for this rare, old format

    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except EOFError:
        return "truncated"
    except Exception as exc:  # noqa: BLE001 (any failure to read it back is the verdict)
        text = str(exc).lower()
        if "eof" in text or "truncated" in text or "ran out of input" in text:
            return "truncated"
        return f"not a readable checkpoint ({type(exc).__name__})"
    return None


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(char.isprintable() or char.isspace() for char in text)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_READ):
            digest.update(block)
    return digest.hexdigest()


# Stamps: {"version", "size", "mtime_ns", "sha256", "problem"} per checkpoint. A file changed in any way a stat
# sees (rewritten, truncated, copied over) no longer matches its stamp and is checked in full again.


def _stamp_path(path: Path) -> Path:
    return path.parent / STAMP_DIR / f"{path.name}.json"


def _fingerprint(path: Path) -> dict[str, int]:
    info = path.stat()
    return {"size": info.st_size, "mtime_ns": info.st_mtime_ns}


def stamp(path: Path, sha256: str, problem: str | None = None) -> None:
    """Record the verdict on `path` as it is now; `problem` None: sound."""
    target = _stamp_path(path)
    try:
        record = {"version": STAMP_VERSION, **_fingerprint(path), "sha256": sha256, "problem": problem}
        target.parent.mkdir(exist_ok=True)
        temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        temp.write_text(json.dumps(record), encoding="utf-8")
        os.replace(temp, target)
    except OSError:
        pass  # a read-only model folder: the file is checked in full each time instead


def mark_damaged(path: Path, reason: str) -> None:
    """A checkpoint that reads back whole but does not load (e.g. not this architecture's weights): damaged, so
    `stembot models list` says so and `stembot models download` replaces it."""
    record = _read_stamp(path)
    try:
        digest = record["sha256"] if record else sha256_of(path)
    except OSError:
        return
    stamp(path, digest, reason)


def forget(path: Path) -> None:
    try:
        _stamp_path(path).unlink()
    except OSError:
        pass


def stamp_of(path: Path) -> dict | None:
    """The stamp recorded for `path`, if it still matches the file."""
    return _read_stamp(path)


def _read_stamp(path: Path) -> dict | None:
    try:
        record = json.loads(_stamp_path(path).read_text(encoding="utf-8"))
        current = _fingerprint(path)
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("version") != STAMP_VERSION:
        return None
    if any(record.get(key) != value for key, value in current.items()):
        return None
    return record
