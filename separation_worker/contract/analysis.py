"""Tempo and key as the manifest carries them and users see them: "128 BPM · A minor (8A)"."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class MusicalAnalysis:
    bpm: float | None  # one decimal, None when unknown
    bpm_confidence: float  # 0..1
    key: str | None  # e.g. "A minor", "F# major"; None when unknown
    camelot: str | None  # e.g. "8A"
    key_confidence: float  # 0..1
    # The same pulse at double or half speed, when the music supports both about equally (half-time
    # grooves, slow songs with busy hi-hats): "75 BPM (or 150)". None when one reading is clear.
    bpm_alternative: float | None = None

    def to_dict(self) -> dict:
        """The five fields always; `bpm_alternative` only when there is one (as result.json keeps it)."""
        data = asdict(self)
        if self.bpm_alternative is None:
            del data["bpm_alternative"]
        return data

    def summary(self) -> str:
        """One line for users, e.g. "128 BPM · A minor (8A)", "75 BPM (or 150) · key unknown"."""
        if self.bpm is None:
            tempo = "BPM unknown"
        else:
            tempo = f"{_number(self.bpm)} BPM"
            if self.bpm_alternative is not None:
                tempo += f" (or {_number(self.bpm_alternative)})"
        key = "key unknown" if self.key is None else f"{self.key} ({self.camelot})" if self.camelot else self.key
        return f"{tempo} · {key}"


def _number(bpm: float) -> str:
    return str(int(bpm)) if float(bpm).is_integer() else f"{bpm:.1f}"


UNKNOWN = MusicalAnalysis(bpm=None, bpm_confidence=0.0, key=None, camelot=None, key_confidence=0.0)
