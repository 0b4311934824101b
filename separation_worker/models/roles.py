"""Which of a model's outputs is the vocals, and which the accompaniment, as its YAML publishes them.

The zoo spells stems as each model's author did: BS-Roformer `Vocals`/`Instrumental` (UVR's copy)
or `vocals`/`other` (the training repository's), MDX23C `Vocals`/`Instrumental`, Kim's Mel-Band
`vocals`/`other`. Names are matched case-insensitively. A model with a `target_instrument`
outputs only that stem; the other is the mix minus it (as audio-separator does).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..contract.errors import ModelError


@dataclass(frozen=True)
class OutputRoles:
    outputs: tuple[str, ...]  # the module's outputs, in order, named as published
    vocals: int | None  # index of the vocals output; None: vocals = mix - outputs[accompaniment]
    accompaniment: int | None  # index of an output that is everything but the vocals; None: mix - vocals

    def __post_init__(self) -> None:
        if self.vocals is None and self.accompaniment is None:
            raise ValueError("one of vocals and accompaniment must be an output")


def output_names(config: dict) -> tuple[str, ...]:
    training = config.get("training") or {}
    target = training.get("target_instrument")
    return (str(target),) if target else tuple(str(name) for name in training.get("instruments") or ())


def resolve_roles(config: dict, vocals_name: str, model_name: str) -> OutputRoles:
    """Find the vocals among a model's published stems; ModelError if it has none."""
    outputs = output_names(config)
    instruments = tuple(str(n) for n in (config.get("training") or {}).get("instruments") or ())
    wanted = vocals_name.casefold()
    folded = [name.casefold() for name in outputs]
    if wanted in folded:
        vocals = folded.index(wanted)
        # A two-stem model that predicts both (MDX23C): its second head is the accompaniment.
        others = [i for i in range(len(outputs)) if i != vocals]
        return OutputRoles(outputs, vocals, others[0] if len(outputs) == 2 else None)
    # A single-target model whose target is the accompaniment of a two-stem vocals/other split.
    stems = [name.casefold() for name in instruments]
    if len(outputs) == 1 and len(stems) == 2 and wanted in stems and outputs[0].casefold() in stems:
        return OutputRoles(outputs, None, 0)
    published = list(instruments) or list(outputs)
    raise ModelError(
        f"{model_name}: none of its outputs {list(outputs)} (stems {published}) is the vocals ({vocals_name!r})"
    )
