"""The separation modes a job may ask for, by name, as front ends offer them. Plain data: the worker implements each
in separation_worker/models/modes.py (the models that make its stems)."""

from __future__ import annotations

DEFAULT_MODE = "vocals"
MODE_SUMMARIES = {
    DEFAULT_MODE: "vocals + instrumental",
    "karaoke": "lead vocals, backing vocals, instrumental, and instrumental + backing",
    "stems": "vocals, drums, bass, guitar, piano, other",
    "clean-vocals": "vocals without reverb and noise, the instrumental, and the reverb and noise taken out",
}
MODE_NAMES = tuple(MODE_SUMMARIES)
# Stems some modes add on top of the ones that sum to the song, as sums of those (a mixer must not count them again).
MIX_STEMS = frozenset({"instrumental_backing"})
