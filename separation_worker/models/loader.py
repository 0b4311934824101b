"""Finding, downloading and building the zoo's models with audio-separator's own classes.

A checkpoint + YAML already in the model dir under the zoo's filenames is used as is,
with no network access (once checked sound); otherwise they are downloaded first (models/download.py).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from ..contract.errors import ModelError
from . import inventory
from .download import download
from .roles import OutputRoles, output_names, resolve_roles
from .zoo import ModelSpec

log = logging.getLogger(__name__)

ROFORMER_FAMILIES = ("bs_roformer", "mel_band_roformer")


@dataclass(frozen=True)
class ChunkingParams:
    """How audio-separator chunks this model: the defaults of its YAML's inference section."""

    chunk_size: int  # samples per forward pass
    overlap: int  # windows covering each sample; step = chunk_size // overlap
    window: str  # "hamming" (Roformers) or "rect" (MDX23C)

    @property
    def step(self) -> int:
        return self.chunk_size // self.overlap


@dataclass
class LoadedModel:
    spec: ModelSpec
    family: str  # bs_roformer | mel_band_roformer | mdx23c
    module: torch.nn.Module  # on its device, eval mode, fp32 weights
    roles: OutputRoles | None  # an ensemble member's outputs, and which is the vocals; None for a mode's split model
    chunking: ChunkingParams
    config: dict

    @property
    def outputs(self) -> tuple[str, ...]:
        """The module's outputs, in order, named as published."""
        return self.roles.outputs if self.roles else output_names(self.config)

    @property
    def stems(self) -> tuple[str, ...]:
        """Every stem the YAML names (a single-target model's other stem is the input minus its target)."""
        return tuple(str(n) for n in (self.config.get("training") or {}).get("instruments") or ()) or self.outputs

    @property
    def vocal_roles(self) -> OutputRoles:
        if self.roles is None:
            raise ModelError(f"{self.spec.name} is not an ensemble member: it has no vocals role")
        return self.roles


def files_present(spec: ModelSpec, model_dir: Path) -> bool:
    return (model_dir / spec.checkpoint).is_file() and (model_dir / spec.config).is_file()


def ensure_files(
    spec: ModelSpec,
    model_dir: Path,
    allow_download: bool = True,
    on_download: Callable[[ModelSpec], None] | None = None,
    mirror: str = "",
) -> None:
    """Stop with one line unless both files are there and sound; fetch missing ones when allowed.

    A damaged file is not replaced here: it may be an operator's copy still under way; `stembot models download`
    replaces it.
    """
    states = inventory.files_of(spec, model_dir)
    damaged = [state for state in states if state.damaged]
    if damaged:
        raise ModelError(damaged[0].problem_line())
    if all(state.present for state in states):
        return
    if not allow_download:
        raise ModelError(next(state for state in states if state.missing).problem_line())
    if on_download:
        on_download(spec)
    download(spec, model_dir, mirror)  # DownloadFailed: one line naming the file, the folder and what to do


def read_config(path: Path) -> dict:
    # The zoo's YAMLs use !!python/tuple, which only the full loader accepts (as audio-separator does).
    with open(path, encoding="utf-8") as fh:
        return yaml.load(fh, Loader=yaml.FullLoader)


def detect_family(config: dict) -> str:
    from audio_separator.separator.roformer.configuration_normalizer import ConfigurationNormalizer

    return ConfigurationNormalizer().detect_model_type(config) or "mdx23c"


def chunking_for(family: str, config: dict) -> ChunkingParams:
    inference = config.get("inference") or {}
    dim_t = int(inference.get("dim_t") or config["audio"]["dim_t"])
    overlap = int(inference.get("num_overlap") or 8)  # audio-separator's fallback
    if family in ROFORMER_FAMILIES:
        model_cfg = config.get("model") or {}
        hop = int(model_cfg.get("stft_hop_length") or config["audio"]["hop_length"])
        return ChunkingParams(chunk_size=hop * (dim_t - 1), overlap=overlap, window="hamming")
    return ChunkingParams(chunk_size=int(config["audio"]["hop_length"]) * (dim_t - 1), overlap=overlap, window="rect")


def build_module(family: str, config: dict, checkpoint: Path | None) -> torch.nn.Module:
    """Build the architecture from the YAML and load the weights (none: random init), on the CPU."""
    if family in ROFORMER_FAMILIES:
        if checkpoint is None:
            checkpoint = Path("/nonexistent/random-init.ckpt")  # RoformerLoader skips a missing file
        from audio_separator.separator.roformer.roformer_loader import RoformerLoader
        from audio_separator.separator.roformer.roformer_loader import logger as roformer_loader_log

        with _quiet(roformer_loader_log):  # it logs each failed attempt at ERROR; load() reports in one line
            result = RoformerLoader().load_model(model_path=str(checkpoint), config=config, device="cpu")
        if not getattr(result, "success", False) or getattr(result, "model", None) is None:
            raise ModelError(f"could not build {checkpoint.name}: {getattr(result, 'error_message', 'unknown error')}")
        return result.model
    from audio_separator.separator.uvr_lib_v5.tfc_tdf_v3 import TFC_TDF_net
    from ml_collections import ConfigDict

    module = TFC_TDF_net(ConfigDict(config), device=torch.device("cpu"))
    if checkpoint is None:
        return module
    state = torch.load(checkpoint, map_location="cpu")
    module.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
    return module


@contextlib.contextmanager
def _quiet(logger: logging.Logger) -> Iterator[None]:
    previous = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(previous)


def load(
    spec: ModelSpec,
    model_dir: Path,
    device: torch.device,
    allow_download: bool = True,
    on_download: Callable[[ModelSpec], None] | None = None,
    mirror: str = "",
    member: bool = True,
) -> LoadedModel:
    """`member`: an ensemble member, whose vocals output is found now (a mode's split model names its stems)."""
    spec = inventory.located(spec, model_dir)
    ensure_files(spec, model_dir, allow_download, on_download, mirror)
    config = read_config(model_dir / spec.config)
    family = detect_family(config)
    roles = resolve_roles(config, spec.vocals_stem, spec.name) if member else None
    checkpoint = model_dir / spec.checkpoint
    try:
        module = build_module(family, config, checkpoint)
    except Exception as exc:  # whole (its CRCs passed) but not weights of the architecture its YAML describes
        log.info("%s: %s does not load: %s", spec.name, spec.checkpoint, exc)
        reason = f"its weights do not fit {spec.config}"
        inventory.mark_damaged(checkpoint, reason)  # so `models list` shows it and `models download` replaces it
        raise ModelError(inventory.FileState(spec.name, spec.checkpoint, model_dir, inventory.FileStatus.DAMAGED,
                                             reason).problem_line()) from exc
    module.to(device).eval()
    log.info("loaded %s (%s) on %s", spec.name, family, device)
    return LoadedModel(
        spec=spec, family=family, module=module, roles=roles, chunking=chunking_for(family, config), config=config
    )
