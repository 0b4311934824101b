"""What one separation produced: stems on disk, their loudness, and what ran (written as result.json)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .loudness import LoudnessReport

RESULT_FILE = "result.json"


@dataclass(frozen=True)
class Stem:
    name: str  # "vocals" | "instrumental"
    paths: dict[str, Path]  # format -> file; the first is the primary one
    loudness: LoudnessReport

    @property
    def path(self) -> Path:
        return next(iter(self.paths.values()))

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size

    def to_dict(self) -> dict:
        return {
            "file": self.path.name,
            "size_bytes": self.size_bytes,
            "files": {fmt: {"file": p.name, "size_bytes": p.stat().st_size} for fmt, p in self.paths.items()},
            "silent": self.loudness.silent,
            "loudness": self.loudness.to_dict(),
        }


@dataclass
class SeparationResult:
    title: str
    source: str
    duration: float  # seconds
    sample_rate: int
    format: str
    stems: list[Stem]
    models: list[dict]  # name, checkpoint, weight
    device: str
    precision: str
    timings: dict[str, float]
    analysis: dict  # bpm, bpm_confidence, key, camelot, key_confidence
    out_dir: Path = field(default_factory=Path)
    original: Path | None = None  # the input, encoded, when kept for comparison

    def stem(self, name: str) -> Stem:
        return next(s for s in self.stems if s.name == name)

    def to_dict(self) -> dict:
        data = {
            "title": self.title,
            "source": self.source,
            "duration": round(self.duration, 3),
            "sample_rate": self.sample_rate,
            "format": self.format,
            "stems": {s.name: s.to_dict() for s in self.stems},
            "models": self.models,
            "device": self.device,
            "precision": self.precision,
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }
        if self.original is not None:
            data["original"] = {"file": self.original.name, "size_bytes": self.original.stat().st_size}
        data.update(self.analysis)
        return data

    def write_json(self) -> Path:
        path = self.out_dir / RESULT_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return path
