"""Model downloads that never leave a partial file under a model's name.

Files are fetched into a staging folder inside the model dir (same filesystem, so the final rename is atomic),
checked (the size the server announced; the checkpoint reads back whole; the YAML parses), and only then renamed
into place. From the zoo's own hosts audio-separator's downloader fetches them; STEMBOT_MODEL_MIRROR points at
any server (or file:// folder) holding them under the same filenames.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

from ..contract.errors import ModelError
from . import inventory
from .zoo import ModelSpec

CHUNK = 1 << 20
TIMEOUT_S = 60.0


class DownloadError(Exception):
    """A transfer failed; the message is short (a cause, not a connection-pool dump)."""


def download(spec: ModelSpec, model_dir: Path, mirror: str = "") -> None:
    """Fetch the model's checkpoint and YAML, replacing missing or damaged ones; ModelError in one line."""
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=model_dir))
    try:
        try:
            if mirror:
                for filename in (spec.checkpoint, spec.config):
                    _fetch(f"{mirror}/{filename}", staging / filename)
            else:
                _fetch_from_zoo(spec, staging)
        except Exception as exc:  # offline, DNS, a firewall, 404, a cut transfer
            raise ModelError(f"{spec.name}: {spec.checkpoint} could not be downloaded into {model_dir} "
                             f"({_reason(exc)}): run `stembot models download` where the model host is reachable, "
                             f"or copy the file there") from None
        for filename, check in ((spec.checkpoint, inventory.check_checkpoint), (spec.config, inventory.check_config)):
            staged = staging / filename
            reason = check(staged) if staged.is_file() else "the download produced no file"
            if reason:
                raise ModelError(f"{spec.name}: the downloaded {filename} is damaged ({reason}): "
                                 "run `stembot models download` again")
        for filename in (spec.checkpoint, spec.config):
            inventory.forget(model_dir / filename)
            os.replace(staging / filename, model_dir / filename)
        inventory.stamp(model_dir / spec.checkpoint)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _fetch(url: str, target: Path) -> None:
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:  # noqa: S310 (the operator's mirror)
        announced = response.headers.get("Content-Length")
        received = 0
        with open(target, "wb") as out:
            while chunk := response.read(CHUNK):
                out.write(chunk)
                received += len(chunk)
    if announced is not None and received != int(announced):
        raise DownloadError(f"the transfer stopped after {received} of {announced} bytes")


def _fetch_from_zoo(spec: ModelSpec, staging: Path) -> None:
    from audio_separator.separator import Separator  # its downloader knows the zoo's hosts

    separator = Separator(model_file_dir=str(staging), info_only=True, log_level=logging.ERROR)
    separator.download_model_files(spec.checkpoint)


def _reason(exc: BaseException) -> str:
    from stembot.startup import network_reason  # walks the chain down to the socket error

    if isinstance(exc, DownloadError):
        return str(exc)
    status = getattr(exc, "code", None) or getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(status, int) and status >= 400:
        return f"HTTP {status}"
    return network_reason(exc)
