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

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        """One line for users, e.g. "128 BPM · A minor (8A)", "97.5 BPM · key unknown"."""
        if self.bpm is None:
            tempo = "BPM unknown"
        elif float(self.bpm).is_integer():
            tempo = f"{int(self.bpm)} BPM"
        else:
            tempo = f"{self.bpm:.1f} BPM"
        key = "key unknown" if self.key is None else f"{self.key} ({self.camelot})" if self.camelot else self.key
        return f"{tempo} · {key}"


UNKNOWN = MusicalAnalysis(bpm=None, bpm_confidence=0.0, key=None, camelot=None, key_confidence=0.0)
