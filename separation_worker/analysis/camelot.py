"""Key names and the Camelot wheel DJs use for harmonic mixing."""

from __future__ import annotations

PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
MODES = ("major", "minor")

_LETTERS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_ACCIDENTALS = {"#": 1, "♯": 1, "b": -1, "♭": -1}


def pitch_class(tonic: str) -> int:
    """0..11 for a note name with any sharps or flats: "C" -> 0, "Bb" -> 10, "F#" -> 6, "Cb" -> 11."""
    name = tonic.strip()
    if not name or name[0].upper() not in _LETTERS or any(c not in _ACCIDENTALS for c in name[1:]):
        raise ValueError(f"not a note name: {tonic!r}")
    return (_LETTERS[name[0].upper()] + sum(_ACCIDENTALS[c] for c in name[1:])) % 12


def _mode(mode: str) -> str:
    normalized = mode.strip().lower()
    if normalized not in MODES:
        raise ValueError(f"mode must be 'major' or 'minor', not {mode!r}")
    return normalized


def key_name(tonic_pc: int, mode: str) -> str:
    """Display name with sharps, e.g. (9, "minor") -> "A minor"."""
    return f"{PITCH_CLASSES[tonic_pc % 12]} {_mode(mode)}"


def camelot_code(tonic: str, mode: str) -> str:
    """Camelot code: ("A", "minor") -> "8A", ("C", "major") -> "8B", ("Bb", "major") -> "6B".

    Numbers walk the circle of fifths (one step = a fifth up) with C major at 8B; a minor key
    shares its number with its relative major (three semitones up), letter A instead of B.
    """
    pc = pitch_class(tonic)
    is_minor = _mode(mode) == "minor"
    major_pc = (pc + 3) % 12 if is_minor else pc
    number = (7 * major_pc + 7) % 12 + 1
    return f"{number}{'A' if is_minor else 'B'}"
