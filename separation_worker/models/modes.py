"""Separation modes as data: the ensemble's vocals/instrumental split, then more models splitting those stems.

A mode is the ensemble followed by `Split`s. Each split runs one model of the zoo over one stem and replaces it by
the model's stems it keeps, plus what is left over (the stem minus the kept ones), so a mode's stems always add back
up to the input: the leftover is never thrown away. `mixes` are extra stems summed from others (the karaoke track
with backing vocals); they are conveniences, not part of that partition.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..contract.modes import DEFAULT_MODE, MODE_SUMMARIES
from .zoo import ModelSpec

__all__ = ["DEFAULT_MODE", "MODES", "Mode", "Split", "mode_named"]


@dataclass(frozen=True)
class Split:
    """One model over one stem: `keep` maps its stems (as its YAML names them, any case) to ours."""

    model: ModelSpec
    source: str  # the stem it splits ("vocals" | "instrumental" | one an earlier split made)
    # (the model's stem under each spelling its published YAMLs use, our stem)
    keep: tuple[tuple[tuple[str, ...], str], ...]
    rest: str  # our stem for source - kept stems (added to it when an earlier split made it)


@dataclass(frozen=True)
class Mode:
    name: str  # one of contract.modes.MODE_NAMES
    splits: tuple[Split, ...] = ()
    mixes: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (our stem, the stems it sums)
    order: tuple[str, ...] = ("vocals", "instrumental")  # the result's stems, in this order

    @property
    def summary(self) -> str:
        """One line for --help, /help and the mode picker."""
        return MODE_SUMMARIES[self.name]

    @property
    def parts(self) -> tuple[str, ...]:
        """The stems that partition the input (sum back up to it)."""
        mixed = {name for name, _ in self.mixes}
        return tuple(name for name in self.order if name not in mixed)

    @property
    def models(self) -> tuple[ModelSpec, ...]:
        """The split models beyond the ensemble, each once, in order of use."""
        seen: dict[tuple[str, str], ModelSpec] = {}
        for split in self.splits:
            seen.setdefault((split.model.checkpoint, split.model.config), split.model)
        return tuple(seen.values())


def _split_model(name: str, checkpoint: str, config: str, *aliases: str) -> ModelSpec:
    """A split model under the zoo's filenames (audio-separator's models.json); `aliases`: the YAML's other
    published names, found in the model dir too, and the checkpoint's own name with .yaml."""
    own = checkpoint.rsplit(".", 1)[0] + ".yaml"
    return ModelSpec(name=name, checkpoint=checkpoint, config=config, weight=1.0, vocals_stem="",
                     config_aliases=tuple(dict.fromkeys(a for a in (*aliases, own) if a != config)))


KARAOKE_MODEL = _split_model(
    "Mel-Band Roformer Karaoke",
    "mel_band_roformer_karaoke_aufr33_viperx_sdr_10.1956.ckpt",
    "mel_band_roformer_karaoke_aufr33_viperx_sdr_10.1956_config.yaml",
    "config_mel_band_roformer_karaoke.yaml",
)
SIX_STEM_MODEL = _split_model("BS-Roformer SW", "BS-Roformer-SW.ckpt", "BS-Roformer-SW.yaml", "BS-Rofo-SW-Fixed.yaml")
DEREVERB_MODEL = _split_model(
    "Mel-Band Roformer De-Reverb",
    "dereverb_mel_band_roformer_anvuew_sdr_19.1729.ckpt",
    "dereverb_mel_band_roformer_anvuew.yaml",
)
DENOISE_MODEL = _split_model(
    "Mel-Band Roformer Denoise",
    "denoise_mel_band_roformer_aufr33_sdr_27.9959.ckpt",
    "denoise_mel_band_roformer_aufr33_sdr_27.9959_config.yaml",
    "model_mel_band_roformer_denoise.yaml",
)

MODES: dict[str, Mode] = {
    mode.name: mode
    for mode in (
        Mode(DEFAULT_MODE),
        Mode(
            "karaoke",
            # The karaoke model's target is the lead vocal: its author named it "karaoke" (and the rest, music and
            # backing choir, "other"); the zoo's YAML renames them Vocals/Instrumental. Run on the ensemble's vocals,
            # what is left beside the lead is the backing choir.
            splits=(Split(KARAOKE_MODEL, "vocals", ((("vocals", "karaoke"), "lead_vocals"),), rest="backing_vocals"),),
            mixes=(("instrumental_backing", ("instrumental", "backing_vocals")),),
            order=("lead_vocals", "backing_vocals", "instrumental", "instrumental_backing"),
        ),
        Mode(
            "stems",
            # BS-Roformer SW's own vocals stem (what the ensemble left in the instrumental) and its residual go
            # into "other", so the six stems sum to the input.
            splits=(
                Split(
                    SIX_STEM_MODEL,
                    "instrumental",
                    tuple(((name,), name) for name in ("drums", "bass", "guitar", "piano")),
                    rest="other",
                ),
            ),
            order=("vocals", "drums", "bass", "guitar", "piano", "other"),
        ),
        Mode(
            "clean-vocals",
            splits=(
                Split(DEREVERB_MODEL, "vocals", ((("noreverb", "dry"), "vocals"),), rest="vocal_reverb"),
                Split(DENOISE_MODEL, "vocals", ((("dry", "clean"), "vocals"),), rest="vocal_reverb"),
            ),
            order=("vocals", "instrumental", "vocal_reverb"),
        ),
    )
}


def mode_named(name: str) -> Mode:
    try:
        return MODES[name]
    except KeyError:
        raise ValueError(f"unknown mode {name!r}: one of {', '.join(MODES)}") from None
