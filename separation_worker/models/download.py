"""Model downloads that never leave a partial or damaged file under a model's name.

Each file streams into `<model dir>/.<name>.part` (the same filesystem, so the final rename is atomic), is checked
(the size the server announced; a published hash where there is one; the checkpoint reads back whole, the YAML
parses) and only then renamed into place and stamped (inventory.py). A failure deletes the part file and raises
one line. Two workers sharing a model dir take turns per file (a lock beside the stamps), so the second finds the
first's file instead of fetching it again.

The sources are the zoo's own hosts, in the order audio-separator's downloader tries them (UVR's public model
repository, then audio-separator's own release assets; the MDX-C/Roformer YAMLs under UVR's `mdx_c_configs/`),
or STEMBOT_MODEL_MIRROR: any http(s):// or file:// base holding the files under the same names.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit

from ..contract.errors import ModelError
from ..contract.network_errors import network_cause
from . import inventory
from .inventory import FileKind, FileState, ModelFile
from .zoo import ModelSpec

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; downloads stay atomic, only not deduplicated
    fcntl = None  # type: ignore[assignment]

UVR_MODEL_REPO = "https://github.com/TRvlvr/model_repo/releases/download/all_public_uvr_models"
AUDIO_SEPARATOR_REPO = "https://github.com/nomadkaraoke/python-audio-separator/releases/download/model-configs"

# UVR identifies models by the md5 of their last 10,000 KiB (its model_data JSONs are keyed by it). The model data
# audio-separator 0.47.1 ships (model-data.json, models.json) holds no hash for our three files: Roformer and MDX-C
# models are described by their YAML, and audio-separator looks hashes up only for MDX/VR models. An entry here
# (filename -> hash) is checked after a download; none is known, so the checks below are size and content.
PUBLISHED_MD5: dict[str, str] = {}
UVR_HASH_BYTES = 10_000 * 1024

CHUNK = 1 << 20
TIMEOUT_S = 30.0  # per connect and per read: a silent firewall fails in half a minute (audio-separator: 300 s)
USER_AGENT = "stembot (model download)"

# (file, bytes so far, bytes announced or None); called with 0 when a transfer starts.
ByteProgress = Callable[[ModelFile, int, "int | None"], None]


class DownloadFailed(ModelError):
    """A model file could not be fetched or failed its checks; `str()` is the one line `load` shows."""

    def __init__(self, file: ModelFile, folder: Path, source: str, reason: str, local: bool = False):
        self.file, self.folder, self.source, self.reason = file, folder, source, reason
        self.local = local  # the model dir, not the network, is at fault (not writable, full)
        if local:
            line = (f"{file.model}: {file.filename} is missing from {folder} and could not be saved there ({reason}): "
                    f"{self._writable_hint()}, or copy the file there")
        else:
            line = (f"{file.model}: {file.filename} is missing from {folder} and could not be downloaded from {source} "
                    f"({reason}): run `stembot models download` where the model host is reachable, or copy the file "
                    "there")
        super().__init__(line)

    def download_line(self, mirrored: bool = True) -> str:
        """The line `stembot models download` prints for it."""
        if self.local:
            return (f"{self.file.model}: {self.file.filename} could not be saved into {self.folder} ({self.reason}): "
                    f"{self._writable_hint()}")
        other = "" if mirrored else " (or set STEMBOT_MODEL_MIRROR to a server holding the files)"
        return (f"{self.file.model}: {self.file.filename} could not be downloaded from {self.source} into "
                f"{self.folder} ({self.reason}): check that {self.source} is reachable{other}, or copy the file there")

    def _writable_hint(self) -> str:
        return f"make {self.folder} writable with free space, or set STEMBOT_MODEL_DIR to a folder that is"


def sources(file: ModelFile, mirror: str = "") -> list[str]:
    """Where a file is fetched from, in order."""
    name = quote(file.filename)
    if mirror:
        return [f"{mirror.rstrip('/')}/{name}"]
    if file.kind is FileKind.CONFIG:
        return [f"{UVR_MODEL_REPO}/mdx_model_data/mdx_c_configs/{name}", f"{AUDIO_SEPARATOR_REPO}/{name}"]
    return [f"{UVR_MODEL_REPO}/{name}", f"{AUDIO_SEPARATOR_REPO}/{name}"]


def source_name(url: str) -> str:
    """A URL's host (and port), or a file:// URL's folder: never its credentials or full path."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        return str(Path(parts.path).parent)
    return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)


def download(
    spec: ModelSpec, model_dir: Path, mirror: str = "", progress: ByteProgress | None = None
) -> list[FileState]:
    """Fetch each of the model's files that is missing or damaged (replacing it); DownloadFailed at the first
    that fails. Returns the files' states afterwards."""
    states = []
    for file in inventory.model_files(spec):
        state = inventory.state_of(file, model_dir)
        states.append(state if state.present else fetch_file(file, model_dir, mirror, progress))
    return states


def fetch_file(
    file: ModelFile,
    model_dir: Path,
    mirror: str = "",
    progress: ByteProgress | None = None,
    expected_md5: str | None = None,
) -> FileState:
    """Download one file into place, checked; DownloadFailed (one line) when it can't be."""
    urls = sources(file, mirror)
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
        with _lock(model_dir, file.filename):
            return _fetch_locked(file, model_dir, urls, progress, expected_md5 or PUBLISHED_MD5.get(file.filename))
    except OSError as exc:  # the model dir is not writable (or not a folder), ...
        raise DownloadFailed(file, model_dir, source_name(urls[0]), _local_reason(exc), local=True) from None


def _fetch_locked(
    file: ModelFile, model_dir: Path, urls: list[str], progress: ByteProgress | None, expected_md5: str | None
) -> FileState:
    state = inventory.state_of(file, model_dir)
    if state.present:  # another process fetched it while this one waited for the lock
        return state
    target = model_dir / file.filename
    part = model_dir / f".{file.filename}.part"
    try:
        url, sha256 = _transfer_first(file, urls, part, model_dir, progress)
        problem = inventory.verify(part, file.kind)
        if problem is None and expected_md5 and _uvr_hash(part) != expected_md5.lower():
            problem = "its checksum does not match the published one"
        if problem:
            raise DownloadFailed(file, model_dir, source_name(url), f"the downloaded file is damaged: {problem}")
        inventory.forget(target)
        os.replace(part, target)
    finally:
        with contextlib.suppress(OSError):
            part.unlink()
    _sync_folder(model_dir)
    if file.kind is FileKind.CHECKPOINT:
        inventory.stamp(target, sha256)
    return inventory.state_of(file, model_dir)


def _transfer_first(
    file: ModelFile, urls: list[str], part: Path, folder: Path, progress: ByteProgress | None
) -> tuple[str, str]:
    """Stream the first source that answers into `part`: (its URL, the sha256 of what came)."""
    refused: DownloadFailed | None = None
    for url in urls:
        try:
            return url, _transfer(file, url, part, progress)
        except urllib.error.HTTPError as exc:  # this host hasn't it: the next one may (as audio-separator tries)
            refused = DownloadFailed(file, folder, source_name(url), f"HTTP {exc.code} {exc.reason}".strip())
        except _CutShort as exc:
            raise DownloadFailed(file, folder, source_name(url), str(exc)) from None
        except _LocalError as exc:  # writing the part file: the disk is full, ...
            raise DownloadFailed(file, folder, source_name(url), _local_reason(exc.error), local=True) from None
        except (OSError, http.client.HTTPException, ValueError) as exc:  # offline, DNS, firewall, TLS, disk
            raise DownloadFailed(file, folder, source_name(url), _reason(exc)) from None
    assert refused is not None
    raise refused


class _CutShort(Exception):
    pass


class _LocalError(Exception):
    def __init__(self, error: OSError):
        super().__init__(str(error))
        self.error = error


def _transfer(file: ModelFile, url: str, part: Path, progress: ByteProgress | None) -> str:
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    digest = hashlib.sha256()
    received = 0
    # The operator's mirror or the zoo's fixed hosts, never a user's URL (file:// is a mirror folder).
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310
        announced = _content_length(response.headers.get("Content-Length"))
        if progress:
            progress(file, 0, announced)
        try:
            out = open(part, "wb")
        except OSError as exc:
            raise _LocalError(exc) from None
        with out:
            while True:
                try:
                    chunk = response.read(CHUNK)
                except http.client.IncompleteRead as exc:  # a chunked body cut off
                    raise _CutShort(f"the transfer stopped after {received + len(exc.partial)} bytes") from None
                if not chunk:
                    break
                try:
                    out.write(chunk)
                except OSError as exc:
                    raise _LocalError(exc) from None
                digest.update(chunk)
                received += len(chunk)
                if progress:
                    progress(file, received, announced)
            try:
                out.flush()
                os.fsync(out.fileno())  # on disk before the rename makes it the model's file
            except OSError as exc:
                raise _LocalError(exc) from None
    # http.client ends a body silently when the connection closes early: only the count tells.
    if announced is not None and received != announced:
        raise _CutShort(f"the transfer stopped after {received} of {announced} bytes")
    return digest.hexdigest()


def _content_length(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _uvr_hash(path: Path) -> str:
    """UVR's model hash: the md5 of the last 10,000 KiB (of the whole file when smaller)."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        fh.seek(max(0, size - UVR_HASH_BYTES))
        return hashlib.md5(fh.read()).hexdigest()  # noqa: S324 (UVR's identifier, not a security check)


def _local_reason(exc: OSError) -> str:
    if isinstance(exc, (FileExistsError, NotADirectoryError)):  # mkdir over a file
        return "not a folder"
    return exc.strerror or _reason(exc)


def _reason(exc: BaseException) -> str:
    cause = network_cause(exc)
    if cause:
        return cause
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


@contextlib.contextmanager
def _lock(model_dir: Path, filename: str) -> Iterator[None]:
    if fcntl is None:
        yield
        return
    folder = model_dir / inventory.STAMP_DIR
    folder.mkdir(exist_ok=True)
    with open(folder / f"{filename}.lock", "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _sync_folder(folder: Path) -> None:
    # The rename itself durable too (POSIX); not possible everywhere, and only a power cut would show it.
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
