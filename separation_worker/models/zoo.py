"""The ensemble as data: which models from audio-separator's zoo run, with which weights.

Like demucs' BagOfModels, the ensemble is a list of members and weights, not code:
operators change it with STEMBOT_ENSEMBLE (inline JSON, or a .json/.yaml file).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import yaml


@dataclass(frozen=True)
class ModelSpec:
    name: str  # shown to users and in result.json
    checkpoint: str  # the zoo's checkpoint filename
    config: str  # the zoo's YAML config filename
    weight: float
    vocals_stem: str = "vocals"  # the model's vocals stem as its YAML names it (any case)
    # Other names the same YAML is published under (its author's, other mirrors'): used when one of them is in the
    # model dir and `config` is not.
    config_aliases: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        data = asdict(self)
        data["config_aliases"] = list(self.config_aliases)
        return data


@dataclass(frozen=True)
class Ensemble:
    members: tuple[ModelSpec, ...]

    def __post_init__(self) -> None:
        if not self.members:
            raise ValueError("the ensemble needs at least one model")
        if any(m.weight <= 0 for m in self.members):
            raise ValueError("ensemble weights must be positive")

    @property
    def total_weight(self) -> float:
        return sum(m.weight for m in self.members)

    def to_setting(self) -> str:
        """As STEMBOT_ENSEMBLE would name it (JSON): what parse_ensemble reads back."""
        return json.dumps([m.to_dict() for m in self.members])


DEFAULT_ENSEMBLE = Ensemble(
    members=(
        ModelSpec(
            name="BS-Roformer",
            checkpoint="model_bs_roformer_ep_317_sdr_12.9755.ckpt",
            config="model_bs_roformer_ep_317_sdr_12.9755.yaml",
            weight=0.40,
            vocals_stem="vocals",
        ),
        ModelSpec(
            name="Mel-Band Roformer",
            checkpoint="vocals_mel_band_roformer.ckpt",
            config="vocals_mel_band_roformer.yaml",
            weight=0.35,
            vocals_stem="vocals",
        ),
        ModelSpec(
            name="MDX23C InstVoc HQ",
            checkpoint="MDX23C-8KFFT-InstVoc_HQ.ckpt",
            config="model_2_stem_full_band_8k.yaml",
            weight=0.25,
            vocals_stem="vocals",
        ),
    )
)


# Kim's Mel-Band Roformer alone: the ensemble's cheapest member (0.41 of its 8 TFLOP per second of audio),
# for machines without a GPU.
FAST_ENSEMBLE = Ensemble(members=(replace(DEFAULT_ENSEMBLE.members[1], weight=1.0),))

# `stembot separate --preset NAME`. "default" is the configured ensemble (STEMBOT_ENSEMBLE, else the three above);
# any other preset replaces it.
DEFAULT_PRESET = "default"
PRESETS: dict[str, Ensemble] = {DEFAULT_PRESET: DEFAULT_ENSEMBLE, "fast": FAST_ENSEMBLE}


def ensemble_for(preset: str, configured: str = "") -> Ensemble:
    """The ensemble a run uses: the configured one for the default preset, else the preset's own."""
    if preset == DEFAULT_PRESET:
        return parse_ensemble(configured)
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}: one of {', '.join(PRESETS)}")
    return PRESETS[preset]


def parse_ensemble(value: str) -> Ensemble:
    """'' -> the default; otherwise JSON text, or a path to a .json/.yaml file, holding a list of members."""
    if not value.strip():
        return DEFAULT_ENSEMBLE
    text = value
    if not value.lstrip().startswith(("[", "{")):
        path = Path(value).expanduser()
        if not path.is_file():
            raise ValueError(f"STEMBOT_ENSEMBLE: no such file {value!r}")
        text = path.read_text(encoding="utf-8")
    data = yaml.safe_load(text)  # YAML is a superset of JSON
    if isinstance(data, dict):
        data = data.get("members", data.get("models"))
    if not isinstance(data, list):
        raise ValueError("STEMBOT_ENSEMBLE must be a list of models")
    try:
        return Ensemble(members=tuple(
            ModelSpec(**{**item, "config_aliases": tuple(item.get("config_aliases") or ())}) for item in data))
    except TypeError as exc:
        raise ValueError(f"STEMBOT_ENSEMBLE: {exc}") from None
