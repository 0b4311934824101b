"""Which model files are present, missing or damaged, and the one line an operator reads about each.

A checkpoint is checked in full once (its zip CRCs, or a CPU load for the legacy pickle format) and then stamped
with its size and mtime under `<model dir>/.verified/`, so later checks (every start, `stembot models list`) are
a stat. A truncated download, a half-copied file or an HTML error page saved under the checkpoint's name shows
as damaged here, with a reason, instead of as four lines of library errors in every song.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import yaml

from .zoo import Ensemble, ModelSpec

STAMP_DIR = ".verified"
DOWNLOAD_HINT = "`stembot models download`"


class FileStatus(str, Enum):
    PRESENT = "present"
    MISSING = "missing"
    DAMAGED = "damaged"


@dataclass(frozen=True)
class FileState:
    model: str  # the ensemble member's name
    filename: str
    folder: Path
    status: FileStatus
    reason: str = ""  # why it is damaged

    @property
    def missing(self) -> bool:
        return self.status is FileStatus.MISSING

    @property
    def damaged(self) -> bool:
        return self.status is FileStatus.DAMAGED

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
    """The checkpoint's state, then the YAML's."""
    return [
        _state(spec, model_dir, spec.checkpoint, check_checkpoint),
        _state(spec, model_dir, spec.config, check_config),
    ]


def _state(spec: ModelSpec, model_dir: Path, filename: str, check) -> FileState:
    path = model_dir / filename
    if not path.is_file():
        return FileState(spec.name, filename, model_dir, FileStatus.MISSING)
    reason = check(path)
    status = FileStatus.DAMAGED if reason else FileStatus.PRESENT
    return FileState(spec.name, filename, model_dir, status, reason or "")


def check_config(path: Path) -> str | None:
    """None when the YAML parses into a mapping (with the zoo's !!python/tuple tags), else why not."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.load(fh, Loader=yaml.FullLoader)
    except (yaml.YAMLError, UnicodeDecodeError):
        return "the YAML does not parse"
    except OSError as exc:
        return f"unreadable: {exc.strerror}"
    return None if isinstance(data, dict) and data.get("model") is not None else "not a model config"


def check_checkpoint(path: Path) -> str | None:
    """None when the checkpoint reads back whole, else why not. Stamped once it passed."""
    if _stamp_matches(path):
        return None
    try:
        reason = _verify_checkpoint(path)
    except OSError as exc:
        return f"unreadable: {exc.strerror}"
    if reason is None:
        stamp(path)
    return reason


def _verify_checkpoint(path: Path) -> str | None:
    size = path.stat().st_size
    if size == 0:
        return "empty"
    if zipfile.is_zipfile(path):  # torch.save's format since 1.6: a CRC per tensor
        try:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
        except (zipfile.BadZipFile, EOFError, ValueError):
            return "truncated"
        return f"corrupt data in {bad}" if bad else None
    with open(path, "rb") as fh:
        head = fh.read(512)
    if head.startswith(b"PK"):
        return "truncated"  # a zip whose central directory (at the end) is gone
    if head.lstrip().lower().startswith((b"<!doctype", b"<html", b"{")):
        return "not a checkpoint (an error page or text)"
    import torch  # the legacy pickle format: only a load proves it whole

    try:
        torch.load(path, map_location="cpu", weights_only=False)
    except Exception:
        return "truncated or not a checkpoint"
    return None


def _stamp_path(path: Path) -> Path:
    return path.parent / STAMP_DIR / f"{path.name}.json"


def _fingerprint(path: Path) -> dict[str, int]:
    info = path.stat()
    return {"size": info.st_size, "mtime_ns": info.st_mtime_ns}


def stamp(path: Path) -> None:
    target = _stamp_path(path)
    try:
        target.parent.mkdir(exist_ok=True)
        temp = target.with_suffix(f".{os.getpid()}.tmp")
        temp.write_text(json.dumps(_fingerprint(path)))
        os.replace(temp, target)
    except OSError:
        pass  # a read-only model folder: the file is checked in full each time instead


def forget(path: Path) -> None:
    try:
        _stamp_path(path).unlink()
    except OSError:
        pass


def _stamp_matches(path: Path) -> bool:
    try:
        return json.loads(_stamp_path(path).read_text()) == _fingerprint(path)
    except (OSError, ValueError):
        return False
