"""Independent evaluation song sets for the BPM/key estimator, from a composer unlike synth_music's.

`tests/synth_music.py` is what the estimator was tuned on; this module is deliberately a different
generator, so that the estimator can be checked for generalization. Only synth_music's plumbing is
shared (the SMF writer, `Note`, FluidSynth discovery, the soundfont, pitch names); the harmony,
voicings, rhythms, drum grooves, instrumentation and the set layout are all this module's own, and a
sixth set ("holdout") mixes every style from a separate seed stream, to be kept out of all tuning.

Sets (each `song_set(name)` is `count` songs, 20-30 s, all 24 keys evenly, tempos 70-170 BPM):

* ``harmonic``  harmonic/melodic minor (major V/V7, vii°(7), leading tone resolving up, V-i cadences);
  major songs with secondary dominants (V/V, V/vi, V/ii, V/IV) and borrowed iv, bIII, bVI, bVII.
  About 40 % are slow (70-90 BPM) with drums: backbeat with eighth or sixteenth hats.
* ``sparse``    few voices: solo piano/guitar/harp arpeggios, fingerpicking, bass + melody only, melody
  over a drone, block chords with long rests (no bass), guitar + voice; some in 3/4.
* ``swing``     swung eighths (2:1), ride or shuffle grooves, 7th/9th shell and rootless voicings,
  walking bass, 12-bar blues (major and minor), minor ii-V.
* ``offtonic``  loops that start (and mostly end) off the tonic (IV-V-vi-iii, unresolved ii-V, minor
  songs starting on bVI or iv), dorian minor with a major IV, mixolydian major with bVII, pedal bass.
* ``additive``  no FluidSynth: this module's numpy synthesizer (wavetable saw/square/organ, plucks, FM
  e-piano, sine bass, a formant "vocal", noise drums) playing its own simple major/minor songs.
* ``holdout``   all of the above styles mixed, from a different seed stream.

Ground truth conventions:

* ``tonic``/``mode``: the key the chords establish as home. Modal songs are labelled by their tonic:
  dorian and aeolian as minor, mixolydian and ionian as major; 12-bar blues on I7 as major (minor
  blues as minor); a drone song by its drone and the third the melody leans on.
* ``bpm``: the tempo of the rendered audio at the written quarter-note pulse (3/4 songs too), already
  scaled by the song's playback-speed detune (``written_bpm * 2**(detune_cents/1200)``). Half-time
  grooves (snare on beat 3 only, style ends in "/halftime") are labelled at the written quarter note,
  not at the half-time backbeat. Swung songs: the quarter note (the swung eighth is a subdivision).
* ``has_vocal``: a sung-style lead exists (GM choir/voice programs 52-54, or the additive formant
  voice); the "instrumental" stem is the mix without exactly that channel, rendered at the mix's gain,
  so for songs without a vocal it is identical to the mix. Instrumental leads stay in both.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import os
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf
from scipy import signal

try:
    from tests import synth_music as _sm
except ImportError:  # imported with tests/ itself on sys.path
    import synth_music as _sm  # type: ignore[no-redef]

Note = _sm.Note
PITCH_NAMES = _sm.PITCH_NAMES
SR = _sm.RENDER_SR
DRUMS = _sm.DRUM_CHANNEL
FS_GAIN = 0.3
CACHE_VERSION = "song_sets-v1"
SET_NAMES: tuple[str, ...] = ("harmonic", "sparse", "swing", "offtonic", "additive", "holdout")
FAMILIES: tuple[str, ...] = SET_NAMES[:5]

# GM percussion (note numbers on channel 10).
KICK, STICK, SNARE, CLAP, HAT, PEDAL_HAT, OPEN_HAT = 36, 37, 38, 39, 42, 44, 46
LOW_TOM, MID_TOM, HIGH_TOM, CRASH, RIDE, SHAKER = 45, 47, 50, 49, 51, 70
# GM drum kits (program on channel 10): standard, room, power, electronic, TR-808, jazz, brush.
KITS = {"standard": 0, "room": 8, "power": 16, "electronic": 24, "808": 25, "jazz": 32, "brush": 40}

# --- Harmony --------------------------------------------------------------------------------

QUALITIES: dict[str, tuple[int, ...]] = {
    "maj": (0, 4, 7), "min": (0, 3, 7), "dim": (0, 3, 6), "sus4": (0, 5, 7), "add9": (0, 4, 7, 14),
    "7": (0, 4, 7, 10), "maj7": (0, 4, 7, 11), "m7": (0, 3, 7, 10), "m7b5": (0, 3, 6, 10),
    "dim7": (0, 3, 6, 9), "6": (0, 4, 7, 9), "m6": (0, 3, 7, 9), "9": (0, 4, 7, 10, 14),
    "maj9": (0, 4, 7, 11, 14), "m9": (0, 3, 7, 10, 14), "7b9": (0, 4, 7, 10, 13), "madd9": (0, 3, 7, 14),
}
# Numerals relative to the song's tonic, whatever its mode (minor songs write bIII, bVI, bVII).
ROMAN: dict[str, tuple[int, str]] = {
    "I": (0, "maj"), "Imaj7": (0, "maj7"), "Imaj9": (0, "maj9"), "I6": (0, "6"), "Iadd9": (0, "add9"),
    "I7": (0, "7"), "i": (0, "min"), "im7": (0, "m7"), "im9": (0, "m9"), "im6": (0, "m6"), "iadd9": (0, "madd9"),
    "ii": (2, "min"), "iim7": (2, "m7"), "iim9": (2, "m9"), "iio": (2, "dim"), "iiø7": (2, "m7b5"),
    "II7": (2, "7"), "bIII": (3, "maj"), "bIIImaj7": (3, "maj7"), "iii": (4, "min"), "iiim7": (4, "m7"),
    "III7": (4, "7"), "IV": (5, "maj"), "IVmaj7": (5, "maj7"), "IVadd9": (5, "add9"), "IV7": (5, "7"),
    "iv": (5, "min"), "ivm7": (5, "m7"), "V": (7, "maj"), "V7": (7, "7"), "V9": (7, "9"), "V7b9": (7, "7b9"),
    "Vsus4": (7, "sus4"), "v": (7, "min"), "vm7": (7, "m7"), "bVI": (8, "maj"), "bVImaj7": (8, "maj7"),
    "bVI7": (8, "7"), "vi": (9, "min"), "vim7": (9, "m7"), "VI7": (9, "7"), "bVII": (10, "maj"),
    "bVII7": (10, "7"), "viio": (11, "dim"), "viio7": (11, "dim7"), "viiø7": (11, "m7b5"),
}

IONIAN = (0, 2, 4, 5, 7, 9, 11)
AEOLIAN = (0, 2, 3, 5, 7, 8, 10)
HARMONIC_MINOR = (0, 2, 3, 5, 7, 8, 11)
MELODIC_UP = (0, 2, 3, 5, 7, 9, 11)
DORIAN = (0, 2, 3, 5, 7, 9, 10)
MIXOLYDIAN = (0, 2, 4, 5, 7, 9, 10)

# Progressions per (family, variant). "X/3" and "X/5": the chord over its third/fifth.
PROGRESSIONS: dict[str, tuple[tuple[str, ...], ...]] = {
    "harmonic/hminor-cadence": (
        ("i", "iv", "V7", "i"), ("i", "bVI", "iv", "V7"), ("i", "iiø7", "V7", "i"),
        ("iv", "i", "V", "i"), ("i", "bVI", "iiø7", "V7", "i", "iv", "V7", "i"),
    ),
    "harmonic/melodic-minor": (("i", "iim7", "V7", "i"), ("i", "IV", "V7", "i"), ("i", "im6", "ii", "V7")),
    "harmonic/hminor-vii": (("i", "viio7", "i", "iv", "i", "viio7", "i", "V7"), ("i", "iv", "viio7", "i"),
                            ("bVI", "viio7", "i", "V7")),
    "harmonic/andalusian": (("i", "bVII", "bVI", "V"), ("i", "bVII", "bVI", "V7")),
    "harmonic/secondary": (("I", "II7", "V", "I"), ("I", "III7", "vi", "IV", "ii", "V7", "I", "I"),
                           ("I", "VI7", "ii", "V7"), ("IV", "II7", "V7", "I"), ("I", "I7", "IV", "V7")),
    "harmonic/borrowed": (("I", "iv", "I", "V"), ("I", "bVI", "bVII", "I"), ("I", "IV", "iv", "I"),
                          ("I", "bVII", "IV", "V"), ("I", "bIII", "IV", "I")),
    "harmonic/mixed": (("I", "III7", "vi", "iv"), ("I", "II7", "IV", "iv", "I", "bVI", "V7", "I")),
    "sparse/major": (("I", "IV", "I", "V"), ("I", "V/3", "vi", "IV"), ("I", "iii", "IV", "V"),
                     ("Iadd9", "IV", "vi", "V"), ("I", "ii", "I/3", "IV")),
    "sparse/minor": (("i", "bVII", "bVI", "bVII"), ("i", "iv", "i", "v"), ("i", "bIII", "iv", "i"),
                     ("i", "bVI", "bIII", "bVII"), ("i", "iv", "V", "i")),
    "swing/major": (("Imaj7", "vim7", "iim7", "V7"), ("iiim7", "VI7", "iim7", "V7"),
                    ("iim7", "V7", "Imaj7", "Imaj7"), ("Imaj7", "VI7", "iim9", "V9"), ("Imaj9", "IVmaj7", "iiim7", "VI7")),
    "swing/minor": (("im7", "ivm7", "iiø7", "V7b9"), ("im7", "im6", "iiø7", "V7b9"),
                    ("im9", "ivm7", "bVII7", "bIIImaj7", "bVImaj7", "iiø7", "V7b9", "im7")),
    "swing/blues-major": (("I7", "IV7", "I7", "I7", "IV7", "IV7", "I7", "I7", "V7", "IV7", "I7", "V7"),),
    "swing/blues-minor": (("im7", "ivm7", "im7", "im7", "ivm7", "ivm7", "im7", "im7", "bVI7", "V7", "im7", "V7"),),
    "offtonic/loop-IV": (("IV", "V", "vi", "iii"), ("IV", "V", "iii", "vi"), ("IV", "vi", "V", "iii"),
                         ("IV", "I/3", "ii", "V"), ("ii", "IV", "vi", "V")),
    "offtonic/ii-V": (("iim7", "V7", "iim7", "V7"), ("iim7", "V7", "iiim7", "vim7"), ("IVmaj7", "V7", "iiim7", "vim7")),
    "offtonic/mixolydian": (("I", "bVII", "IV", "I"), ("bVII", "IV", "I", "I"), ("I", "bVII", "I", "IV"),
                            ("I", "vm7", "IV", "bVII")),
    "offtonic/pedal-major": (("IV", "V", "vi", "I"), ("ii", "IV", "V", "I"), ("I", "IV", "V", "IV")),
    "offtonic/minor-VI": (("bVI", "bVII", "i", "i"), ("bVI", "bIII", "bVII", "i"), ("bVI", "iv", "i", "bVII"),
                          ("bVI", "bVII", "iv", "i")),
    "offtonic/minor-iv": (("iv", "bVI", "bVII", "i"), ("iv", "i", "bVII", "bVI"), ("iv", "bVII", "bIII", "bVI")),
    "offtonic/dorian": (("i", "IV", "i", "IV"), ("im7", "IV7"), ("i", "IV", "bVII", "i"), ("im7", "ii", "IV", "im7")),
    "offtonic/pedal-minor": (("i", "bVI", "bVII", "i"), ("bVI", "bVII", "i", "i"), ("i", "iv", "bVII", "bVI")),
    "additive/major": (("I", "IV", "V", "I"), ("I", "vi", "ii", "V"), ("I", "V", "IV", "I"), ("I", "iii", "vi", "IV")),
    "additive/natural": (("i", "bVI", "bVII", "i"), ("i", "iv", "bVII", "bIII"), ("i", "v", "iv", "i")),
    "additive/harmonic": (("i", "iv", "V", "i"), ("i", "bVI", "V", "i"), ("i", "bVII", "bVI", "V")),
}

# Variants per family and mode; a song's style string is "family/variant/groove".
VARIANTS: dict[str, dict[str, tuple[str, ...]]] = {
    "harmonic": {"minor": ("hminor-cadence", "melodic-minor", "hminor-vii", "andalusian"),
                 "major": ("secondary", "borrowed", "mixed")},
    "sparse": {m: ("solo-arp", "fingerpick", "bass-melody", "drone", "block-rests", "duo", "waltz-solo")
               for m in ("major", "minor")},
    "swing": {"major": ("walking", "blues-major", "ballad", "turnaround"),
              "minor": ("minor-walking", "blues-minor", "ballad", "minor-ii-V")},
    "offtonic": {"major": ("loop-IV", "ii-V", "mixolydian", "pedal-major"),
                 "minor": ("minor-VI", "minor-iv", "dorian", "pedal-minor")},
    "additive": {"major": ("pad-pluck", "epiano", "organ-lead", "arp-synth"),
                 "minor": ("pad-pluck", "epiano", "organ-lead", "arp-synth")},
}
DRUM_SHARE = {"harmonic": 0.7, "sparse": 0.3, "swing": 0.65, "offtonic": 0.6, "additive": 0.6}
VOCAL_SHARE = {"harmonic": 0.35, "sparse": 0.35, "swing": 0.3, "offtonic": 0.4, "additive": 0.35}
GROOVES: dict[str, tuple[str, ...]] = {
    "harmonic": ("backbeat8", "backbeat16", "ballad16", "backbeat8", "backbeat16"),
    "sparse": ("light", "brush", "light"),
    "swing": ("swing-ride", "shuffle", "brush-swing"),
    "offtonic": ("backbeat8", "four-floor", "halftime", "backbeat16", "push8"),
    "additive": ("backbeat8", "four-floor", "backbeat16", "light"),
}

# GM programs (zero-based) per role, chosen apart from synth_music's palettes where sensible.
PIANOS = (0, 1, 2, 4, 5, 7)
ORGANS = (16, 17, 18, 19, 21)
GUITARS = (24, 25, 26, 27)
STRINGS = (48, 49, 50, 51, 44)
BRASS = (56, 57, 60, 61, 62)
LEADS = (40, 56, 59, 64, 65, 66, 68, 71, 73, 74, 80, 81, 82, 84, 11, 12, 8)
VOICES = (52, 53, 54)
PADS = (88, 89, 91, 92, 94, 48, 49)
BASSES = (32, 33, 34, 35, 36, 38, 39, 43, 58)


@dataclass(frozen=True)
class SetSong:
    """One song of a set; the composition follows deterministically from these fields."""

    name: str
    set_name: str
    seed: int
    bpm: float  # true tempo of the rendered audio (quarter note), detune included
    tonic: int  # pitch class, 0 = C
    mode: str  # "major" or "minor"
    drums: bool
    style: str  # "family/variant/groove", e.g. "swing/walking/swing-ride"
    has_vocal: bool
    detune_cents: float = 0.0  # playback-speed detune of the whole render
    duration_s: float = 25.0  # target length (whole bars; the render adds ~1.5 s of release)
    meter: int = 4  # beats per bar

    @property
    def key(self) -> str:
        return f"{PITCH_NAMES[self.tonic]} {self.mode}"

    @property
    def written_bpm(self) -> float:
        """The tempo the song is composed at, before the playback-speed detune."""
        return self.bpm / 2 ** (self.detune_cents / 1200)

    @property
    def family(self) -> str:
        return self.style.split("/")[0]

    @property
    def renderer(self) -> str:
        return "additive" if self.family == "additive" else "fluidsynth"


@dataclass
class Composition:
    notes: list[Note]
    programs: dict[int, int | str]  # channel -> GM program (FluidSynth) or timbre name (additive)
    vocal_channels: frozenset[int]
    description: str
    pans: dict[int, float] = field(default_factory=dict)


# --- Set layout -----------------------------------------------------------------------------


def _stratified(rng: np.random.Generator, count: int, lo: float, hi: float) -> np.ndarray:
    edges = np.linspace(lo, hi, count + 1)
    return rng.permutation(rng.uniform(edges[:-1], edges[1:]))


def song_set(name: str, count: int = 48, seed: int = 0) -> list[SetSong]:
    """`count` songs of set `name`: keys cycle through all 24 (evenly when count is a multiple of
    24), tempos spread over 70-170 BPM (the "harmonic" set has ~40 % slow drum songs at 70-90)."""
    if name not in SET_NAMES:
        raise ValueError(f"unknown set {name!r}; expected one of {SET_NAMES}")
    stream = SET_NAMES.index(name)
    # The holdout draws from its own stream (a different spawn key), never from the other sets'.
    rng = np.random.default_rng([seed, stream, 0x5E7 if name != "holdout" else 0x401D])
    keys = [(t, m) for m in ("major", "minor") for t in range(12)]
    order = [keys[i % 24] for i in rng.permutation(count)]
    families = [name] * count if name != "holdout" else [FAMILIES[i % 5] for i in rng.permutation(count)]
    if name == "harmonic":
        n_slow = round(count * 0.4)
        tempos = np.concatenate([_stratified(rng, n_slow, 70, 90), _stratified(rng, count - n_slow, 90, 170)])
        slow_first = np.arange(count) < n_slow
        perm = rng.permutation(count)
        tempos, slow = tempos[perm], slow_first[perm]
        drums = slow | (rng.random(count) < 0.5)
    else:
        tempos = _stratified(rng, count, 70, 170)
        drums = np.array([rng.random() < DRUM_SHARE[f] for f in families])
    variant_turn: dict[tuple[str, str], int] = {}
    songs = []
    for i in range(count):
        tonic, mode = order[i]
        family = families[i]
        options = VARIANTS[family][mode]
        turn = variant_turn.get((family, mode), int(rng.integers(len(options))))
        variant_turn[(family, mode)] = turn + 1
        variant = options[turn % len(options)]
        meter = 3 if variant == "waltz-solo" else 4
        bpm = float(tempos[i])
        if family == "swing" and variant == "ballad":
            bpm = 70 + (bpm - 70) * 0.3  # ballads stay at 70-100
        has_drums = bool(drums[i]) and variant not in ("solo-arp", "waltz-solo", "drone")
        groove = ""
        if has_drums:
            grooves = GROOVES[family]
            groove = grooves[int(rng.integers(len(grooves)))]
            if groove == "halftime" and not 100 <= bpm <= 150:
                groove = "backbeat8"
            if family == "swing" and variant == "ballad":
                groove = "brush-swing"
        # A vocal needs harmony left under it: with a drone or a lone bass the instrumental stem
        # would carry no mode at all, so those melodies are always instruments.
        vocal_ok = variant not in ("bass-melody", "drone")
        has_vocal = bool(vocal_ok and rng.random() < VOCAL_SHARE[family] * (1.4 if variant == "duo" else 1.0))
        detune = float(np.round(rng.uniform(-25, 25), 1))
        songs.append(SetSong(
            name=f"{name}{seed}-{i:02d}",
            set_name=name,
            seed=int(rng.integers(2**31)),
            bpm=round(bpm, 2),
            tonic=tonic,
            mode=mode,
            drums=has_drums,
            style=f"{family}/{variant}" + (f"/{groove}" if groove else ""),
            has_vocal=has_vocal,
            detune_cents=detune,
            duration_s=float(np.round(rng.uniform(20, 28), 1)),
            meter=meter,
        ))
    return songs


# --- Arranger -------------------------------------------------------------------------------


def _chord(name: str) -> tuple[int, tuple[int, ...], int | None]:
    """(root offset, intervals, bass offset or None) of a numeral such as "V7" or "I/3"."""
    inversion = None
    if "/" in name:
        name, inv = name.split("/")
        inversion = int(inv)
    root, quality = ROMAN[name]
    intervals = QUALITIES[quality]
    bass = None
    if inversion == 3:
        bass = root + intervals[1]
    elif inversion == 5:
        bass = root + intervals[2]
    return root, intervals, bass


@dataclass
class _Slot:
    start: float
    length: float
    name: str
    root: int  # pitch class (absolute)
    pcs: tuple[int, ...]  # absolute pitch classes, root first
    intervals: tuple[int, ...]
    bass: int  # absolute pitch class of the bass note


def _chord_scale(tonic: int, scale: tuple[int, ...], pcs: tuple[int, ...]) -> set[int]:
    """The song's scale with the chord's tones substituted for any neighbouring degree they clash with."""
    out = {(tonic + s) % 12 for s in scale}
    for c in pcs:
        if c not in out:
            out.discard((c + 1) % 12)
            out.discard((c - 1) % 12)
            out.add(c)
    return out


def _swing_map(t: float, ratio: float) -> float:
    """Straight beat position -> swung (eighth pairs long:short = ratio:1)."""
    if ratio <= 1:
        return t
    beat = np.floor(t + 1e-9)
    f = t - beat
    s = ratio / (ratio + 1)
    return float(beat + (f * s / 0.5 if f < 0.5 else s + (f - 0.5) * (1 - s) / 0.5))


class _Arranger:
    def __init__(self, song: SetSong) -> None:
        self.song = song
        self.rng = np.random.default_rng(song.seed)
        self.notes: list[Note] = []
        self.swing = 0.0
        self.lag: dict[int, float] = {}
        self.bpm = song.written_bpm
        self.timeline: list[_Slot] = []
        self.total_beats = 0.0
        self.scale: tuple[int, ...] = IONIAN

    # Humanized note entry: swing, ~5 ms onset jitter, a small per-channel lag, velocity spread.
    def add(self, start: float, dur: float, pitch: int, vel: float, ch: int, jitter_ms: float = 5.0,
            straight: bool = False) -> None:
        rng = self.rng
        if self.swing and not straight:
            end = _swing_map(start + dur, self.swing)
            start = _swing_map(start, self.swing)
            dur = max(0.05, end - start)
        if ch not in self.lag:
            self.lag[ch] = float(rng.uniform(-4, 8)) if ch != DRUMS else 0.0
        shift_ms = self.lag[ch] + float(np.clip(rng.normal(0, jitter_ms), -2.5 * jitter_ms, 2.5 * jitter_ms))
        start = max(0.0, start + shift_ms / 1000 * self.bpm / 60)
        v = int(np.clip(vel + rng.normal(0, 5), 15, 125))
        if 0 <= pitch <= 127:
            self.notes.append(Note(float(start), float(max(0.04, dur)), int(pitch), v, ch))

    def build_timeline(self, progression: tuple[str, ...], beats_per_chord: float, bars: int,
                       ending: tuple[str, ...] = ()) -> None:
        tonic, meter = self.song.tonic, self.song.meter
        self.total_beats = bars * meter
        n = max(1, int(round(self.total_beats / beats_per_chord)))
        names = [progression[i % len(progression)] for i in range(n)]
        if ending:
            names[-len(ending):] = list(ending)[-n:]
        self.timeline = []
        for i, nm in enumerate(names):
            root, intervals, bass = _chord(nm)
            pcs = tuple((tonic + root + iv) % 12 for iv in intervals)
            self.timeline.append(_Slot(i * beats_per_chord, beats_per_chord, nm, (tonic + root) % 12, pcs,
                                       intervals, (tonic + (root if bass is None else bass)) % 12))

    def slot_at(self, t: float) -> _Slot:
        i = min(len(self.timeline) - 1, max(0, int((t + 1e-6) // self.timeline[0].length)))
        return self.timeline[i]

    # --- Voicings ---

    def voicing(self, slot: _Slot, kind: str, center: float, prev: list[int] | None) -> list[int]:
        rng = self.rng
        ivs = list(slot.intervals)
        root = slot.root
        if kind == "shell":  # jazz: 3rd and 7th (and the 9th when written), rootless
            third = ivs[1]
            seventh = ivs[3] if len(ivs) > 3 else (9 if third == 4 else 10)
            tones = [third, seventh] + ([ivs[4]] if len(ivs) > 4 else [14 if rng.random() < 0.5 else 9])
            cands = []
            for order in (tones, [seventh, third + 12, tones[2] + 12 if tones[2] < 12 else tones[2]]):
                for octv in (36, 48, 60):
                    base = octv + root
                    cands.append(sorted(base + x for x in order))
        else:
            pcs_rel = sorted({x % 12 for x in ivs})
            cands = []
            for inv in range(len(pcs_rel)):
                order = pcs_rel[inv:] + [p + 12 for p in pcs_rel[:inv]]
                for octv in (36, 48, 60, 72):
                    close = [octv + root + x for x in order]
                    if kind == "open" and len(close) >= 3:  # drop-2: second voice from the top down an octave
                        drop = close[:]
                        drop[-2] -= 12
                        cands.append(sorted(drop))
                    elif kind == "spread":  # root low, fifth and tenth above
                        r = octv + root
                        third = ivs[1] if len(ivs) > 1 else 4
                        cands.append(sorted([r, r + 7, r + 12 + third] + ([r + 12 + ivs[3]] if len(ivs) > 3 else [])))
                    else:
                        cands.append(close)
        cands = [c for c in cands if 40 <= min(c) and max(c) <= 88] or cands

        def cost(c: list[int]) -> float:
            k = abs(float(np.mean(c)) - center)
            if prev:  # voice leading: stay near the last voicing
                k = 0.4 * k + abs(float(np.mean(c)) - float(np.mean(prev))) + 0.5 * abs(max(c) - max(prev))
            return k + float(rng.uniform(0, 1.5))

        return min(cands, key=cost)

    # --- Layers ---

    def comp(self, ch: int, pattern: str, kind: str, center: float, vel: float, skip_last: bool = False) -> None:
        rng, meter = self.rng, self.song.meter
        prev: list[int] | None = None
        for k, slot in enumerate(self.timeline):
            v = self.voicing(slot, kind, center, prev)
            prev = v
            t0, L = slot.start, slot.length
            last = k == len(self.timeline) - 1
            if last and not skip_last:
                for p in v:
                    self.add(t0, L + 1.0, p, vel - 4, ch)
                continue
            if pattern == "pad":
                for p in v:
                    self.add(t0, L * 0.97, p, vel - 8, ch)
            elif pattern == "pulse8":  # eighth-note pulses, accents on the beat
                for b in np.arange(0, L, 0.5):
                    for p in v:
                        self.add(t0 + b, 0.32, p, vel if b % 1 == 0 else vel - 14, ch)
            elif pattern == "strum":  # down, down-up, up-down-up; strings staggered
                for b, down in ((0, 1), (1, 1), (1.5, 0), (2.5, 0), (3, 1), (3.5, 0)):
                    if b >= L:
                        continue
                    order = v if down else v[::-1]
                    for j, p in enumerate(order):
                        self.add(t0 + b + j * 0.012 * self.bpm / 60, min(0.9, L - b), p, vel - (0 if down else 12), ch)
            elif pattern == "broken":  # alberti-like sixteenths or eighths
                step = 0.25 if self.bpm < 110 else 0.5
                seq = [v[0], v[-1], v[len(v) // 2], v[-1]]
                for j, b in enumerate(np.arange(0, L, step)):
                    self.add(t0 + b, step * 1.6, seq[j % 4], vel - 10 + (8 if j % 4 == 0 else 0), ch)
            elif pattern == "charleston":  # jazz comping: 1 and the and of 2, sometimes 4
                hits = [(0, 0.6), (1.5, 0.4)] + ([(3, 0.3)] if rng.random() < 0.4 else [])
                for b, d in hits:
                    if b < L:
                        for p in v:
                            self.add(t0 + b, d, p, vel - (0 if b == 0 else 8), ch)
            elif pattern == "anticipate":  # pop push: hit on 1, on 2&, and anticipate the next bar on 4&
                for b, d in ((0, 1.2), (1.5, 0.9), (3.5, 0.5)):
                    if b < L:
                        for p in v:
                            self.add(t0 + b, d, p, vel - (0 if b == 0 else 6), ch)
            elif pattern == "block-rest":  # one block chord, then silence for the rest of the slot
                d = float(rng.choice([0.5, 1.0, 1.5]))
                for p in v:
                    self.add(t0, d, p, vel, ch)
                if L >= 4 and rng.random() < 0.4:
                    for p in v:
                        self.add(t0 + 2.5, 0.4, p, vel - 12, ch)
            elif pattern == "waltz":  # oom-pah-pah: chord on 2 and 3
                for b in range(1, meter):
                    for p in v:
                        self.add(t0 + b, 0.6, p, vel - 10, ch)

    def arpeggio(self, ch: int, pattern: str, center: float, vel: float, with_bass: bool) -> None:
        """Solo-instrument broken chords; with_bass adds the left-hand bass on each chord."""
        meter = self.song.meter
        for k, slot in enumerate(self.timeline):
            v = self.voicing(slot, "close", center, None)
            t0, L = slot.start, slot.length
            bass = 36 + (slot.bass - 36) % 12
            if with_bass:
                self.add(t0, min(L, meter) * 0.95, bass, vel + 4, ch)
                if L > meter:
                    self.add(t0 + meter, meter * 0.95, bass + (7 if pattern != "travis" else 12), vel, ch)
            if pattern == "up":
                seq = [*v, v[0] + 12]
            elif pattern == "updown":
                seq = [*v, v[0] + 12, *v[::-1][:-1]]
            elif pattern == "wide":  # root-fifth-octave-tenth
                r = v[0]
                seq = [r, r + 7, r + 12, r + 12 + (slot.intervals[1] if len(slot.intervals) > 1 else 4), r + 12, r + 7]
            else:  # travis picking: alternating thumb on the beats, treble between
                seq = []
            step = 0.5 if self.bpm > 80 else 0.25
            if pattern == "travis":
                for b in np.arange(0, L, 1.0):
                    thumb = bass + (0 if int(b) % 2 == 0 else 7) + 12
                    self.add(t0 + b, 0.9, thumb, vel, ch)
                    self.add(t0 + b + 0.5, 0.5, v[(int(b) + 1) % len(v)] + 12, vel - 8, ch)
                continue
            for j, b in enumerate(np.arange(0 if not with_bass else step, L, step)):
                if k == len(self.timeline) - 1 and b >= meter:
                    break
                self.add(t0 + b, step * 2.5, seq[j % len(seq)], vel - 6 - (4 if j % 2 else 0), ch)

    def bass(self, ch: int, pattern: str, low: int, vel: float, pedal: int | None = None) -> None:
        rng = self.rng
        nslots = len(self.timeline)
        for k, slot in enumerate(self.timeline):
            pc = slot.bass if pedal is None else pedal
            root = low + (pc - low) % 12
            t0, L = slot.start, slot.length
            if k == nslots - 1:
                self.add(t0, L + 0.5, root, vel, ch)
                continue
            nxt = self.timeline[k + 1]
            nxt_root = low + ((nxt.bass if pedal is None else pedal) - low) % 12
            if pattern == "whole":
                self.add(t0, L * 0.96, root, vel, ch)
            elif pattern == "drive8":
                for b in np.arange(0, L, 0.5):
                    self.add(t0 + b, 0.42, root, vel - (0 if b % 1 == 0 else 10), ch)
            elif pattern == "octave":
                for j, b in enumerate(np.arange(0, L, 0.5)):
                    self.add(t0 + b, 0.35, root + (12 if j % 2 else 0), vel - (6 if j % 2 else 0), ch)
            elif pattern == "root-fifth":  # root on 1, fifth on 3, chromatic approach on 4&
                self.add(t0, 1.8, root, vel, ch)
                if L >= 4:
                    self.add(t0 + 2, 1.3, root + 7, vel - 8, ch)
                    self.add(t0 + L - 0.5, 0.45, nxt_root + (1 if rng.random() < 0.5 else -1), vel - 14, ch)
            elif pattern == "syncop":  # 1, 2&, 4 (pop)
                for b, d in ((0, 1.3), (1.5, 0.9), (3, 0.8)):
                    if b < L:
                        self.add(t0 + b, d, root, vel - (0 if b == 0 else 8), ch)
            elif pattern == "two-feel":
                for b in np.arange(0, L, 2.0):
                    self.add(t0 + b, 1.8, root if b % 4 == 0 else root + 7, vel - (0 if b == 0 else 6), ch)
            elif pattern == "walking":
                self.walk(ch, slot, root, nxt_root, vel)
            elif pattern == "pedal-pulse":  # repeated pedal eighths with an accent on each beat
                for b in np.arange(0, L, 0.5):
                    self.add(t0 + b, 0.4, root, vel - (0 if b % 1 == 0 else 14), ch)

    def walk(self, ch: int, slot: _Slot, root: int, nxt_root: int, vel: float) -> None:
        """Walking quarters: root on 1, chord/scale tones, then a chromatic or fifth approach."""
        rng = self.rng
        beats = int(slot.length)
        cs = sorted(_chord_scale(self.song.tonic, self.scale, slot.pcs))
        pool = [p for p in range(root - 5, root + 17) if p % 12 in cs]
        chord_tones = [p for p in pool if p % 12 in slot.pcs]
        p = root
        for b in range(beats):
            if b == 0:
                p = root
            elif b == beats - 1:
                p = nxt_root + int(rng.choice([-1, 1, 7 - 12]))
            else:
                opts = chord_tones if b % 2 == 0 else pool
                near = sorted(opts, key=lambda q, p=p: abs(q - p - (2 if rng.random() < 0.6 else -2)))
                p = near[int(rng.integers(min(2, len(near))))] if near else p
            self.add(slot.start + b, 0.9, p, vel - (0 if b == 0 else 6), ch)
            if rng.random() < 0.12 and b < beats - 1:  # a skip-note triplet-ish ghost on the swung "and"
                self.add(slot.start + b + 0.5, 0.3, p, vel - 30, ch)

    def melody(self, ch: int, lo: int, hi: int, vel: float, density: float, vocal: bool,
               cadence: bool = False, end_on_tonic: bool = True, melodic_minor: bool = False,
               lean_third: bool = False) -> None:
        """A motif-based line: a one-bar rhythm repeated with variations over two-bar phrases,
        chord tones on strong beats, steps between, phrases aimed at stable tones."""
        rng, song = self.rng, self.song
        meter = song.meter
        bars = int(round(self.total_beats / meter))
        tonic = song.tonic
        third = (tonic + (4 if song.mode == "major" else 3)) % 12

        def rhythm() -> list[tuple[float, float]]:
            out, pos = [], 0.0
            while pos < meter - 1e-6:
                room = meter - pos
                if vocal:
                    weights = {0.5: 0.2 * density, 1.0: 0.35, 1.5: 0.15, 2.0: 0.2, 3.0: 0.1}
                else:
                    weights = {0.25: 0.25 * density if self.bpm < 120 and not self.swing else 0.0,
                               0.5: 0.45 * density, 1.0: 0.3, 1.5: 0.12, 2.0: 0.12}
                choices = [d for d in weights if d <= room + 1e-6 and (d != 1.5 or pos % 1 == 0)]
                w = np.array([weights[d] for d in choices])
                d = float(rng.choice(choices, p=w / w.sum()))
                if d == 0.25:  # sixteenths come in pairs
                    d = 0.25 if room >= 0.5 else 0.5
                    out.append((pos, 0.25))
                    pos += 0.25
                out.append((pos, d))
                pos += d
            return [(o, d) for o, d in out if o < meter]

        motif = rhythm()
        p = min((q for q in range(lo, hi + 1) if q % 12 == tonic), key=lambda q: abs(q - (lo + hi) / 2))
        direction = 1
        resolve_next = False
        for bar in range(bars):
            phrase_pos = bar % 2
            if vocal and bar % 4 == 3 and bar != bars - 1 and rng.random() < 0.6:
                continue  # breathe
            cell = motif if (bar % 4 in (0, 2) or rng.random() < 0.3) else rhythm()
            last_bar = bar == bars - 1
            if last_bar:
                cell = [(0.0, 1.0), (1.0, float(meter) + 0.5)] if meter > 2 else [(0.0, float(meter))]
            for j, (o, d) in enumerate(cell):
                if rng.random() < (0.06 if not vocal else 0.1) and not last_bar and j:
                    continue  # rest
                t = bar * meter + o
                slot = self.slot_at(t)
                ascending = direction > 0
                scale = MELODIC_UP if (melodic_minor and ascending) else self.scale
                cs = _chord_scale(tonic, scale, slot.pcs)
                pool = [q for q in range(lo, hi + 1) if q % 12 in cs]
                ct = [q for q in pool if q % 12 in slot.pcs] or pool
                strong = abs(o - round(o)) < 1e-6 and (round(o) % 2 == 0 or d >= 1)
                phrase_end = (phrase_pos == 1 and j == len(cell) - 1) or (last_bar and j == len(cell) - 1)
                if resolve_next:
                    target = [q for q in range(p, p + 3) if q % 12 == tonic]
                    p = target[0] if target else p
                    resolve_next = False
                elif last_bar and j == len(cell) - 1 and end_on_tonic:
                    tones = [q for q in pool if q % 12 == tonic] or pool
                    p = min(tones, key=lambda q: abs(q - p))
                elif phrase_end:
                    stable = [q for q in ct if q % 12 in (tonic, third, (tonic + 7) % 12)] or ct
                    if lean_third and rng.random() < 0.5:
                        stable = [q for q in pool if q % 12 == third] or stable
                    p = sorted(stable, key=lambda q: abs(q - p))[int(rng.integers(min(2, len(stable))))]
                elif strong:
                    if rng.random() < 0.15:  # an occasional leap to a chord tone
                        leaps = [q for q in ct if 4 <= abs(q - p) <= 9]
                        p = int(rng.choice(leaps)) if leaps else p
                    else:
                        near = sorted(ct, key=lambda q: abs(q - p))
                        p = near[int(rng.integers(min(2, len(near))))]
                    if lean_third and rng.random() < 0.35:
                        thirds = [q for q in pool if q % 12 == third]
                        p = min(thirds, key=lambda q: abs(q - p)) if thirds else p
                else:
                    if rng.random() < 0.25:
                        direction = -direction
                    idx = min(range(len(pool)), key=lambda i: abs(pool[i] - p))
                    idx = int(np.clip(idx + direction * int(rng.choice([1, 1, 1, 2])), 0, len(pool) - 1))
                    p = pool[idx]
                if p >= hi - 2:
                    direction = -1
                elif p <= lo + 2:
                    direction = 1
                # Harmonic-minor/major cadences: the last note over V before the tonic chord is the
                # leading tone, and the line resolves up to the tonic at the change.
                if cadence and slot.root == (tonic + 7) % 12:
                    nxt_t = t + d
                    nxt = self.slot_at(nxt_t)
                    if nxt is not slot and nxt.root == tonic and nxt_t < self.total_beats:
                        lt = [q for q in range(p - 6, p + 7) if q % 12 == (tonic + 11) % 12 and lo <= q <= hi]
                        if lt:
                            p = min(lt, key=lambda q: abs(q - p))
                            resolve_next = True
                legato = 0.98 if vocal else float(rng.uniform(0.7, 0.95))
                accent = 8 if strong else 0
                self.add(t, d * legato, p, vel + accent, ch, jitter_ms=7.0 if vocal else 5.0)

    def drone(self, ch: int, low: int, vel: float) -> None:
        tonic = self.song.tonic
        root = low + (tonic - low) % 12
        span = 4 * self.song.meter
        for t in np.arange(0, self.total_beats, span):
            d = min(span, self.total_beats - t) + (1.0 if t + span >= self.total_beats else 0.0)
            for p in (root, root + 7, root + 12):
                self.add(float(t), d * 0.99, p, vel - (8 if p != root else 0), ch)

    def drums(self, groove: str) -> None:
        rng, meter = self.rng, self.song.meter
        bars = int(round(self.total_beats / meter))
        fill_every = 4 if rng.random() < 0.6 else 8
        crash_every = int(rng.choice([4, 8]))
        kick_extra = rng.random() < 0.5
        for bar in range(bars):
            t0 = bar * meter
            last = bar == bars - 1
            ev: list[tuple[float, int, float]] = []
            if bar % crash_every == 0 and groove not in ("light", "brush"):
                ev.append((0, CRASH, 88))
            if last:
                ev += [(0, KICK, 100), (0, CRASH, 95)]
                for o, n, v in ev:
                    self.add(t0 + o, 1.0, n, v, DRUMS, jitter_ms=3)
                break
            if groove in ("backbeat8", "backbeat16", "push8"):
                ev += [(0, KICK, 104), (2, KICK, 96), (1, SNARE, 102), (3, SNARE, 104)]
                if kick_extra:
                    ev.append((2.5 if groove != "push8" else 1.5, KICK, 84))
                step = 0.25 if groove == "backbeat16" else 0.5
                for b in np.arange(0, meter, step):
                    ev.append((b, HAT, 78 if b % 1 == 0 else (52 if step == 0.25 and b % 0.5 else 62)))
                if groove == "push8":
                    ev.append((3.5, OPEN_HAT, 70))
            elif groove == "ballad16":
                ev += [(0, KICK, 96), (2.5, KICK, 80), (1, STICK, 90), (3, STICK, 92)]
                for b in np.arange(0, meter, 0.25):
                    ev.append((b, HAT, 60 if b % 1 == 0 else 40))
            elif groove == "halftime":  # snare on 3 only; labelled at the written quarter
                ev += [(0, KICK, 104), (1.5, KICK, 82), (2, SNARE, 108)]
                for b in np.arange(0, meter, 0.5):
                    ev.append((b, HAT, 72 if b % 1 == 0 else 56))
            elif groove == "four-floor":
                for b in range(meter):
                    ev += [(b, KICK, 104), (b + 0.5, OPEN_HAT, 64)]
                ev += [(1, CLAP, 96), (3, CLAP, 98)]
            elif groove == "light":
                ev += [(0, KICK, 84), (2, KICK if meter == 4 else STICK, 74)]
                if meter == 4:
                    ev += [(1, STICK, 70), (3, STICK, 74)]
                for b in np.arange(0, meter, 0.5):
                    ev.append((b, SHAKER, 58 if b % 1 == 0 else 44))
            elif groove in ("brush", "brush-swing"):
                for b in np.arange(0, meter, 0.5):
                    ev.append((b, SNARE, 40 if b % 1 else 52))
                ev += [(1, SNARE, 78), (3, SNARE, 80)] if meter == 4 else [(1, SNARE, 70)]
                ev += [(0, KICK, 70), (2, KICK, 62)] if meter == 4 else [(0, KICK, 70)]
            elif groove == "swing-ride":
                for b in (0, 1, 1.5, 2, 3, 3.5):
                    ev.append((b, RIDE, 82 if b in (1, 3) else 66))
                ev += [(1, PEDAL_HAT, 70), (3, PEDAL_HAT, 72)]
                for b in range(meter):
                    ev.append((b, KICK, 34))  # feathered
                for b in np.arange(0.5, meter, 1.0):
                    if rng.random() < 0.3:
                        ev.append((b, SNARE, float(rng.uniform(30, 55))))  # comping ghosts
            elif groove == "shuffle":
                ev += [(0, KICK, 100), (2, KICK, 92), (1, SNARE, 100), (3, SNARE, 102)]
                if kick_extra:
                    ev.append((2.5, KICK, 76))
                for b in np.arange(0, meter, 0.5):
                    ev.append((b, HAT, 80 if b % 1 == 0 else 58))
            fill: list[tuple[float, int, float]] = []
            if bar % fill_every == fill_every - 1 and groove not in ("light", "brush", "brush-swing"):
                ev = [e for e in ev if e[0] < meter - 1]
                steps = (0, 1 / 3, 2 / 3) if self.swing else (0, 0.25, 0.5, 0.75)  # triplets when swung
                toms = (SNARE, HIGH_TOM, MID_TOM, LOW_TOM)
                fill = [(meter - 1 + s, toms[j % 4], 90 + 4 * j) for j, s in enumerate(steps)]
            for o, n, v in ev:
                self.add(t0 + o, 0.25, n, v, DRUMS, jitter_ms=3)
            for o, n, v in fill:
                self.add(t0 + o, 0.2, n, v, DRUMS, jitter_ms=3, straight=True)


# --- Composition per family -----------------------------------------------------------------


def _bars_for(song: SetSong, beats_per_chord: float, prog_len: int) -> int:
    """Whole chords' worth of bars near duration_s; for the sets' 20-28 s targets the render, with
    its ~2.5 s ending, stays within 20-30 s."""
    chord_bars = max(1, int(beats_per_chord // song.meter))
    bar_s = song.meter * 60 / song.bpm
    bars = max(chord_bars * 2, chord_bars * int(round(song.duration_s / bar_s / chord_bars)))
    lo, hi = min(20.0, song.duration_s), max(30.0, song.duration_s + 2.5)  # shorter songs on request
    while bars * bar_s + 2.5 > hi and bars > chord_bars * 2:
        bars -= chord_bars
    while bars * bar_s + 1.5 < lo:
        bars += chord_bars
    return bars


def compose(song: SetSong) -> Composition:
    """The notes of `song`, deterministic in its fields."""
    a = _Arranger(song)
    rng = a.rng
    family, variant = song.style.split("/")[:2]
    groove = song.style.split("/")[2] if song.style.count("/") >= 2 else ""
    minor = song.mode == "minor"
    programs: dict[int, int | str] = {}
    vocal_ch: set[int] = set()
    desc: list[str] = [song.style]
    lead_vel = float(rng.uniform(78, 98))
    comp_vel = float(rng.uniform(58, 76))
    bass_vel = float(rng.uniform(80, 98))
    CH_CHORD, CH_BASS, CH_LEAD, CH_PAD = 0, 1, 2, 3

    def lead_program() -> int:
        if song.has_vocal:
            return int(rng.choice(VOICES))
        return int(rng.choice(LEADS))

    def add_lead(lo: int, hi: int, density: float, **kw: object) -> None:
        prog = lead_program()
        programs[CH_LEAD] = prog
        if song.has_vocal:
            vocal_ch.add(CH_LEAD)
        a.melody(CH_LEAD, lo, hi, lead_vel, density, vocal=song.has_vocal, **kw)  # type: ignore[arg-type]
        desc.append(f"lead={prog}{' (vocal)' if song.has_vocal else ''}")

    def pick(key: str) -> tuple[str, ...]:
        progs = PROGRESSIONS[key]
        return progs[int(rng.integers(len(progs)))]

    if family == "harmonic":
        a.scale = (AEOLIAN if variant != "hminor-vii" else HARMONIC_MINOR) if minor else IONIAN
        prog = pick(f"harmonic/{variant}")
        bpc = 4.0 if song.written_bpm < 120 or len(prog) == 8 else float(rng.choice([4.0, 8.0]))
        bars = _bars_for(song, bpc, len(prog))
        ending = ("V7", "i") if minor else (("iv", "I") if variant == "borrowed" and rng.random() < 0.4 else ("V7", "I"))
        a.build_timeline(prog, bpc, bars, ending)
        chord_prog = int(rng.choice(PIANOS + ORGANS + STRINGS + GUITARS))
        pattern = str(rng.choice(["pad", "pulse8", "broken", "anticipate", "strum" if chord_prog in GUITARS else "pad"]))
        kind = str(rng.choice(["close", "open", "spread"]))
        programs[CH_CHORD] = chord_prog
        a.comp(CH_CHORD, pattern, kind, float(rng.uniform(56, 66)), comp_vel)
        programs[CH_BASS] = int(rng.choice(BASSES))
        a.bass(CH_BASS, str(rng.choice(["whole", "root-fifth", "drive8", "syncop"])), int(rng.choice([28, 33, 36])), bass_vel)
        if rng.random() < 0.5:
            programs[CH_PAD] = int(rng.choice(PADS + BRASS))
            a.comp(CH_PAD, "pad", "close", float(rng.uniform(62, 72)), comp_vel - 12)
        lo = int(rng.integers(57, 66))
        add_lead(lo, lo + 17, float(rng.uniform(0.4, 0.9)), cadence=True, melodic_minor=variant == "melodic-minor")
        desc += [f"{'-'.join(prog)}", f"chords={chord_prog} {pattern}/{kind}"]
    elif family == "sparse":
        a.scale = AEOLIAN if minor else IONIAN
        prog = pick("sparse/minor" if minor else "sparse/major")
        if variant == "drone":
            prog = ("i",) if minor else ("I",)
        bpc = float(song.meter * (1 if song.written_bpm < 110 else 2))
        bars = _bars_for(song, bpc, len(prog))
        end_tonic = rng.random() < 0.65
        a.build_timeline(prog, bpc, bars, (("i",) if minor else ("I",)) if end_tonic else ())
        if variant in ("solo-arp", "waltz-solo", "fingerpick"):
            inst = int(rng.choice((0, 1, 2, 4, 46, 24, 25) if variant != "fingerpick" else (24, 25, 26, 27)))
            programs[CH_CHORD] = inst
            if variant == "waltz-solo":
                a.bass(CH_CHORD, "whole", 36, comp_vel + 10)
                a.comp(CH_CHORD, "waltz", "close", float(rng.uniform(58, 66)), comp_vel + 4)
            else:
                pat = "travis" if variant == "fingerpick" else str(rng.choice(["up", "updown", "wide"]))
                a.arpeggio(CH_CHORD, pat, float(rng.uniform(58, 68)), comp_vel + 8, with_bass=True)
                desc.append(pat)
            if song.has_vocal or rng.random() < 0.3:
                add_lead(60, 76, 0.5)
        elif variant == "bass-melody":
            programs[CH_BASS] = int(rng.choice(BASSES))
            a.bass(CH_BASS, str(rng.choice(["root-fifth", "two-feel", "syncop"])), int(rng.choice([33, 36])), bass_vel)
            add_lead(int(rng.integers(60, 67)), 80, float(rng.uniform(0.5, 1.0)))
        elif variant == "drone":
            programs[CH_PAD] = int(rng.choice((19, 48, 49, 89, 109, 104, 21, 16)))
            a.drone(CH_PAD, int(rng.choice([36, 43, 48])), comp_vel)
            add_lead(int(rng.integers(60, 66)), 81, float(rng.uniform(0.4, 0.8)), lean_third=True)
        elif variant == "block-rests":
            programs[CH_CHORD] = int(rng.choice((0, 19, 61, 48, 4, 16, 89)))
            a.comp(CH_CHORD, "block-rest", str(rng.choice(["close", "open", "spread"])), float(rng.uniform(52, 64)), comp_vel + 8)
            if song.has_vocal or rng.random() < 0.5:
                add_lead(62, 79, 0.5)
        else:  # duo: guitar strum or piano + melody, no bass
            inst = int(rng.choice((24, 25, 0, 4)))
            programs[CH_CHORD] = inst
            a.comp(CH_CHORD, "strum" if inst in GUITARS else "anticipate", "close", float(rng.uniform(56, 64)), comp_vel)
            add_lead(60, 77, 0.6)
        desc.append("-".join(prog))
    elif family == "swing":
        a.swing = float(rng.uniform(1.8, 2.2))
        if variant in ("blues-major", "blues-minor"):
            prog = PROGRESSIONS[f"swing/{variant}"][0]
            a.scale = MIXOLYDIAN if variant == "blues-major" else AEOLIAN
        else:
            prog = pick("swing/minor" if minor else "swing/major")
            a.scale = AEOLIAN if minor else IONIAN
        bpc = 4.0 if (len(prog) >= 8 or song.written_bpm < 130) else float(rng.choice([4.0, 8.0]))
        if variant == "turnaround" and song.written_bpm < 150:
            bpc = 2.0
        bars = _bars_for(song, bpc, len(prog))
        resolve = ("V7", "im7") if minor else ("V7", "Imaj7")
        if variant.startswith("blues"):
            resolve = ("V7", "im7") if minor else ("V7", "I7")
        a.build_timeline(prog, bpc, bars, resolve)
        comp_inst = int(rng.choice((0, 4, 26, 11, 16, 17, 5)))
        programs[CH_CHORD] = comp_inst
        a.comp(CH_CHORD, "charleston" if variant != "ballad" else "pad", "shell" if rng.random() < 0.7 else "open",
               float(rng.uniform(56, 64)), comp_vel)
        programs[CH_BASS] = int(rng.choice((32, 32, 33, 35)))
        a.bass(CH_BASS, "walking" if variant != "ballad" and song.written_bpm > 80 else "two-feel", 31, bass_vel)
        if variant in ("blues-major", "blues-minor") and rng.random() < 0.4:
            programs[CH_PAD] = int(rng.choice((61, 16, 18)))
            a.comp(CH_PAD, "pad", "close", 66, comp_vel - 14)
        add_lead(int(rng.integers(58, 65)), 82, float(rng.uniform(0.5, 1.0)), cadence=rng.random() < 0.5)
        desc += ["-".join(prog), f"comp={comp_inst}", f"swing={a.swing:.2f}"]
    elif family == "offtonic":
        a.scale = {"dorian": DORIAN, "mixolydian": MIXOLYDIAN}.get(variant, AEOLIAN if minor else IONIAN)
        prog = pick(f"offtonic/{variant}")
        if _chord(prog[0])[0] == 0 and len(set(prog)) > 1 and rng.random() < 0.6:  # start the loop off the tonic
            turn = int(rng.choice([i for i, c in enumerate(prog) if _chord(c)[0] != 0]))
            prog = prog[turn:] + prog[:turn]
        bpc = 4.0 if song.written_bpm < 125 else float(rng.choice([4.0, 8.0]))
        bars = _bars_for(song, bpc, len(prog))
        end_tonic = rng.random() < 0.35
        a.build_timeline(prog, bpc, bars, (("i",) if minor else ("I",)) if end_tonic else ())
        chord_prog = int(rng.choice(PIANOS + GUITARS + ORGANS + (90, 50, 62)))
        pattern = str(rng.choice(["pulse8", "anticipate", "pad", "broken", "strum" if chord_prog in GUITARS else "pulse8"]))
        programs[CH_CHORD] = chord_prog
        a.comp(CH_CHORD, pattern, str(rng.choice(["close", "open"])), float(rng.uniform(56, 67)), comp_vel)
        pedal = None
        if variant.startswith("pedal") or rng.random() < 0.15:
            pedal = song.tonic if rng.random() < 0.75 else (song.tonic + 7) % 12
        programs[CH_BASS] = int(rng.choice(BASSES))
        a.bass(CH_BASS, "pedal-pulse" if pedal is not None else str(rng.choice(["drive8", "octave", "syncop", "whole"])),
               int(rng.choice([28, 33])), bass_vel, pedal=pedal)
        if rng.random() < 0.4:
            programs[CH_PAD] = int(rng.choice(PADS))
            a.comp(CH_PAD, "pad", "spread", 64, comp_vel - 14)
        add_lead(int(rng.integers(59, 67)), 81, float(rng.uniform(0.4, 0.9)), end_on_tonic=end_tonic)
        desc += ["-".join(prog), f"chords={chord_prog} {pattern}", f"pedal={pedal}", f"end_tonic={end_tonic}"]
    else:  # additive: channels name timbres of this module's synthesizer
        natural = rng.random() < 0.5
        a.scale = (AEOLIAN if natural else HARMONIC_MINOR) if minor else IONIAN
        prog = pick("additive/major" if not minor else ("additive/natural" if natural else "additive/harmonic"))
        bpc = 4.0 if song.written_bpm < 120 else float(rng.choice([4.0, 8.0]))
        bars = _bars_for(song, bpc, len(prog))
        end = ("V", "i") if (minor and not natural) else (("i",) if minor else ("I",))
        a.build_timeline(prog, bpc, bars, end if rng.random() < 0.7 else ())
        chord_timbre = {"pad-pluck": "saw_pad", "epiano": "fm_epiano", "organ-lead": "organ", "arp-synth": "square_pad"}[variant]
        programs[CH_CHORD] = chord_timbre
        a.comp(CH_CHORD, "pad" if chord_timbre in ("saw_pad", "square_pad", "organ") else "anticipate",
               str(rng.choice(["close", "open", "spread"])), float(rng.uniform(55, 64)), comp_vel)
        if variant in ("pad-pluck", "arp-synth"):
            programs[CH_PAD] = "pluck"
            a.arpeggio(CH_PAD, str(rng.choice(["up", "updown", "wide"])), 70, comp_vel, with_bass=False)
        programs[CH_BASS] = str(rng.choice(["sine_bass", "saw_bass"]))
        a.bass(CH_BASS, str(rng.choice(["whole", "drive8", "octave", "root-fifth"])), 33, bass_vel)
        if song.has_vocal:
            programs[CH_LEAD] = "vocal"
            vocal_ch.add(CH_LEAD)
            a.melody(CH_LEAD, 60, 77, lead_vel, 0.5, vocal=True, cadence=not natural)
        elif rng.random() < 0.75:
            programs[CH_LEAD] = str(rng.choice(["square_lead", "pluck", "fm_bell"]))
            a.melody(CH_LEAD, 64, 84, lead_vel, float(rng.uniform(0.4, 0.9)), vocal=False, cadence=not natural)
        desc += ["-".join(prog), f"timbres={programs}"]
    if song.drums and groove:
        if family == "additive":
            programs[DRUMS] = "noise_kit"
        else:
            kit = {"swing-ride": "jazz", "brush-swing": "brush", "brush": "brush", "four-floor": "electronic",
                   "shuffle": "room"}.get(groove, str(rng.choice(["standard", "room", "power", "808"])))
            programs[DRUMS] = KITS[kit]
        a.drums(groove)
    pans = {ch: float(rng.uniform(-0.5, 0.5)) for ch in programs}
    return Composition(sorted(a.notes, key=lambda n: n.start), programs, frozenset(vocal_ch), ", ".join(desc), pans)


# --- Rendering ------------------------------------------------------------------------------


def _fluidsynth_raw(midi: bytes) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        mid, wav = Path(tmp) / "in.mid", Path(tmp) / "out.wav"
        mid.write_bytes(midi)
        subprocess.run(
            ["fluidsynth", "-ni", "-q", "-g", str(FS_GAIN), "-r", str(SR), "-O", "float", "-F", str(wav),
             str(_sm.SOUNDFONT), str(mid)],
            check=True, capture_output=True, timeout=180,
        )
        audio, _ = sf.read(wav, dtype="float32", always_2d=True)
    return np.ascontiguousarray(audio.T)


def _end_beats(notes: list[Note]) -> float:
    return max(n.start + n.duration for n in notes)


def _finish(audio: np.ndarray, song: SetSong, end_beats: float, speed: float) -> np.ndarray:
    """Trim to 1.5 s after the last note (in rendered time) and apply the playback-speed detune."""
    if speed != 1.0:
        audio = librosa.resample(audio, orig_sr=SR * speed, target_sr=SR).astype(np.float32)
    end = int((end_beats * 60 / song.bpm + 1.5) * SR)
    out = audio[:, :end]
    if out.shape[1] < end:
        out = np.pad(out, ((0, 0), (0, end - out.shape[1])))
    return out


def _atomic_write(path: Path, audio: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".flac")
    os.close(fd)
    try:
        sf.write(tmp, np.clip(audio.T, -1, 1), SR, subtype="PCM_16", format="FLAC")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@functools.cache
def _synth_source_hash() -> bytes:
    """Part of the additive cache key: an edit to the synthesizer invalidates its renders."""
    parts = [inspect.getsource(f) for f in (_Synth, _harmonic_amps, _wavetable, _additive_render)]
    return hashlib.sha1("".join(parts).encode()).hexdigest().encode()


def render(song: SetSong, stem: str = "mix", cache_dir: Path | None = None) -> np.ndarray:
    """float32 (2, n) at 44100 Hz, peak ~0.9, ~1.5 s after the last note. stem "instrumental" is the
    mix without the vocal channel(s), at the mix's gain (equal to the mix when not has_vocal).
    Cached as FLAC by a hash of the composition; writes are atomic, so parallel renders are safe."""
    if stem not in ("mix", "instrumental"):
        raise ValueError(f"stem must be 'mix' or 'instrumental', not {stem!r}")
    comp = compose(song)
    cache_dir = Path(cache_dir) if cache_dir else _sm.default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    keep = [n for n in comp.notes if n.channel not in comp.vocal_channels]
    speed = 2 ** (song.detune_cents / 1200)
    if song.renderer == "fluidsynth":
        mix_id = _sm.write_smf(comp.notes, comp.programs, song.written_bpm)  # type: ignore[arg-type]
        inst_id = _sm.write_smf(keep, comp.programs, song.written_bpm) if comp.vocal_channels else mix_id  # type: ignore[arg-type]
        ident = mix_id + b"|" + inst_id + f"|{_sm.SOUNDFONT}|{FS_GAIN}".encode()
    else:
        mix_id = repr((comp.notes, sorted(comp.programs.items(), key=str), comp.pans, song.seed)).encode()
        ident = mix_id + b"|" + repr(sorted(comp.vocal_channels)).encode() + _synth_source_hash()
    digest = hashlib.sha1(f"{CACHE_VERSION}|{song.detune_cents}|{song.bpm}|".encode() + ident).hexdigest()[:20]
    paths = {"mix": cache_dir / f"set-{digest}-mix.flac",
             "instrumental": cache_dir / f"set-{digest}-{'inst' if comp.vocal_channels else 'mix'}.flac"}
    if not paths[stem].exists():
        end_beats = _end_beats(comp.notes)
        if song.renderer == "fluidsynth":
            mix = _finish(_fluidsynth_raw(mix_id), song, end_beats, speed)
            inst = _finish(_fluidsynth_raw(inst_id), song, end_beats, speed) if comp.vocal_channels else None
        else:
            mix, inst = _additive_render(song, comp)
            inst = inst if comp.vocal_channels else None
        gain = 0.9 / (float(np.max(np.abs(mix))) or 1.0)
        _atomic_write(paths["mix"], mix * gain)
        if inst is not None:
            _atomic_write(paths["instrumental"], inst * gain)
    audio, _ = sf.read(paths[stem], dtype="float32", always_2d=True)
    return np.ascontiguousarray(audio.T)


def render_set(songs: list[SetSong], stem: str = "mix", workers: int = 4) -> list[np.ndarray]:
    with ThreadPoolExecutor(max(1, workers)) as pool:
        return list(pool.map(lambda s: render(s, stem), songs))


# --- The additive/FM synthesizer ---------------------------------------------------------------

_TABLE_N = 4096
_PHASE = np.arange(_TABLE_N) / _TABLE_N


def _wavetable(amps: np.ndarray) -> np.ndarray:
    k = np.arange(1, len(amps) + 1)[:, None]
    table = (amps[:, None] * np.sin(2 * np.pi * k * _PHASE[None, :])).sum(0)
    return table / (np.max(np.abs(table)) or 1.0)


def _harmonic_amps(timbre: str, f0: float) -> np.ndarray:
    kmax = max(1, min(60, int(SR / 2.2 / f0)))
    k = np.arange(1, kmax + 1, dtype=float)
    if timbre in ("saw_pad", "saw_bass"):
        return 1 / k ** (1.0 if timbre == "saw_pad" else 1.6)
    if timbre in ("square_lead", "square_pad"):
        return np.where(k % 2 == 1, 1 / k, 0.08 / k)
    if timbre == "organ":
        amps = np.zeros(max(8, kmax))
        for h, a in ((1, 1.0), (2, 0.8), (3, 0.55), (4, 0.4), (6, 0.25), (8, 0.18)):
            amps[h - 1] = a
        return amps[:kmax]
    if timbre == "vocal":  # an "ah"/"oh" formant envelope over a glottal-ish spectrum
        f = k * f0
        env = sum(g * np.exp(-(((f - fc) / bw) ** 2)) for fc, bw, g in ((700, 130, 1.0), (1150, 150, 0.55),
                                                                       (2700, 250, 0.25), (3300, 300, 0.12)))
        return (1 / k ** 0.6) * (0.08 + env)
    if timbre == "pluck_dull":
        return 1 / k ** 2.6
    return 1 / k  # pluck (bright)


class _Synth:
    def __init__(self, song: SetSong, n: int) -> None:
        self.rng = np.random.default_rng(song.seed ^ 0xADD)
        self.n = n
        self.tables: dict[tuple[str, int], np.ndarray] = {}
        self.speed = 2 ** (song.detune_cents / 1200)
        self.spb = 60 / song.bpm  # seconds per beat, as rendered
        self.kit = self._kit()

    def table(self, timbre: str, pitch: int) -> np.ndarray:
        key = (timbre, pitch)
        if key not in self.tables:
            self.tables[key] = _wavetable(_harmonic_amps(timbre, 440 * 2 ** ((pitch - 69) / 12) * self.speed))
        return self.tables[key]

    @staticmethod
    def osc(table: np.ndarray, freq: np.ndarray | float, n: int, phase0: float = 0.0) -> np.ndarray:
        inc = np.broadcast_to(np.asarray(freq, dtype=float) / SR, (n,))
        ph = (phase0 + np.cumsum(inc)) % 1.0
        idx = ph * _TABLE_N
        i0 = idx.astype(int) % _TABLE_N
        frac = idx - np.floor(idx)
        return table[i0] * (1 - frac) + table[(i0 + 1) % _TABLE_N] * frac

    def note(self, timbre: str, pitch: int, dur_s: float, vel: int) -> np.ndarray:
        f0 = 440 * 2 ** ((pitch - 69) / 12) * self.speed
        release = {"saw_pad": 0.35, "square_pad": 0.3, "organ": 0.06, "vocal": 0.15, "sine_bass": 0.06,
                   "saw_bass": 0.06, "square_lead": 0.08}.get(timbre, 0.4)
        n = int((dur_s + release) * SR)
        t = np.arange(n) / SR
        amp = (vel / 127) ** 1.6
        gate = np.clip((dur_s + release - t) / release, 0, 1) ** 2  # release ramp after note-off
        ph0 = float(self.rng.random())
        if timbre in ("saw_pad", "square_pad"):
            tab = self.table(timbre, pitch)
            detune = 2 ** (7 / 1200)
            x = 0.5 * (self.osc(tab, f0 * detune, n, ph0) + self.osc(tab, f0 / detune, n, 1 - ph0))
            env = np.minimum(1, t / 0.12) * gate
            return 0.22 * amp * x * env
        if timbre == "organ":
            x = self.osc(self.table("organ", pitch), f0 * (1 + 0.002 * np.sin(2 * np.pi * 6 * t)), n, ph0)
            return 0.2 * amp * x * np.minimum(1, t / 0.01) * gate
        if timbre in ("square_lead", "vocal"):
            vib_depth = 0.004 if timbre == "square_lead" else 0.012  # fraction of f0
            vib = 1 + vib_depth * np.minimum(1, t / 0.3) * np.sin(2 * np.pi * 5.4 * t + ph0 * 6)
            x = self.osc(self.table(timbre, pitch), f0 * vib, n, ph0)
            att = 0.02 if timbre == "square_lead" else 0.07
            if timbre == "vocal":
                x = x + 0.02 * self.rng.standard_normal(n) * np.exp(-t / 0.05)  # breathy onset
            return (0.22 if timbre == "vocal" else 0.16) * amp * x * np.minimum(1, t / att) * gate
        if timbre in ("sine_bass", "saw_bass"):
            if timbre == "sine_bass":
                x = np.sin(2 * np.pi * f0 * t + ph0) + 0.25 * np.sin(4 * np.pi * f0 * t) + 0.08 * np.sin(6 * np.pi * f0 * t)
            else:
                x = self.osc(self.table("saw_bass", pitch), f0, n, ph0)
            env = np.minimum(1, t / 0.006) * (0.7 + 0.3 * np.exp(-t / 0.15)) * gate
            return 0.4 * amp * x * env
        if timbre in ("fm_epiano", "fm_bell"):
            ratio, idx0, decay = (1.0, 2.2, 1.1) if timbre == "fm_epiano" else (3.5, 3.0, 0.9)
            index = idx0 * np.exp(-t / 0.25) + 0.3
            x = np.sin(2 * np.pi * f0 * t + index * np.sin(2 * np.pi * f0 * ratio * t))
            env = np.minimum(1, t / 0.003) * np.exp(-t / decay) * gate
            return 0.3 * amp * x * env
        # pluck: bright table fading into a dull one, exponential decay
        bright = self.osc(self.table("pluck", pitch), f0, n, ph0)
        dull = self.osc(self.table("pluck_dull", pitch), f0, n, ph0)
        mix = np.exp(-t / 0.07)
        env = np.minimum(1, t / 0.002) * np.exp(-t / (0.35 + 60 / max(f0, 60))) * gate
        return 0.3 * amp * (bright * mix + dull * (1 - mix)) * env

    def _kit(self) -> dict[int, np.ndarray]:
        rng = self.rng

        def noise(sec: float) -> np.ndarray:
            return rng.standard_normal(int(sec * SR))

        def t_of(sec: float) -> np.ndarray:
            return np.arange(int(sec * SR)) / SR

        hp = signal.butter(4, float(rng.uniform(6500, 8500)), "highpass", fs=SR, output="sos")
        bp = signal.butter(2, (1200, 7000), "bandpass", fs=SR, output="sos")
        kit: dict[int, np.ndarray] = {}
        t = t_of(0.35)
        f_end, f_start = float(rng.uniform(42, 58)), float(rng.uniform(130, 190))
        freq = f_end + (f_start - f_end) * np.exp(-t / 0.045)  # pitched sine sweep, short tail
        kit[KICK] = np.sin(2 * np.pi * np.cumsum(freq) / SR) * np.exp(-t / 0.11) * 0.9
        t = t_of(0.3)
        tone = np.sin(2 * np.pi * float(rng.uniform(170, 210)) * t) * np.exp(-t / 0.05)
        kit[SNARE] = 0.45 * tone + 0.6 * signal.sosfilt(bp, noise(0.3)) * np.exp(-t / 0.09)
        kit[CLAP] = sum(signal.sosfilt(bp, noise(0.3)) * np.exp(-np.clip(t - d, 0, None) / 0.02) * (t >= d)
                        for d in (0.0, 0.011, 0.023)) * 0.5
        kit[STICK] = 0.5 * signal.sosfilt(bp, noise(0.04)) * np.exp(-t_of(0.04) / 0.008)
        kit[HAT] = 0.35 * signal.sosfilt(hp, noise(0.12)) * np.exp(-t_of(0.12) / 0.03)
        kit[PEDAL_HAT] = 0.25 * kit[HAT]
        kit[OPEN_HAT] = 0.3 * signal.sosfilt(hp, noise(0.5)) * np.exp(-t_of(0.5) / 0.18)
        kit[SHAKER] = 0.25 * signal.sosfilt(hp, noise(0.08)) * np.sin(np.pi * t_of(0.08) / 0.08)
        t = t_of(1.5)
        kit[CRASH] = 0.3 * signal.sosfilt(signal.butter(2, 4000, "highpass", fs=SR, output="sos"), noise(1.5)) * np.exp(-t / 0.6)
        kit[RIDE] = 0.25 * kit[CRASH][: int(0.8 * SR)] * np.exp(-t_of(0.8) / 0.3)
        for note, f in ((LOW_TOM, 95), (MID_TOM, 130), (HIGH_TOM, 175)):
            t = t_of(0.35)
            kit[note] = 0.6 * np.sin(2 * np.pi * np.cumsum(f * (1 + 0.5 * np.exp(-t / 0.04))) / SR) * np.exp(-t / 0.15)
        return kit


def _additive_render(song: SetSong, comp: Composition) -> tuple[np.ndarray, np.ndarray]:
    """(mix, instrumental) of an "additive" song, both (2, n) float32 at 44100 Hz, unnormalized."""
    spb = 60 / song.bpm
    n = int((_end_beats(comp.notes) * spb + 1.5) * SR)
    synth = _Synth(song, n)
    buses = {ch: np.zeros(n + SR * 2) for ch in comp.programs}
    for note in comp.notes:
        start = int(note.start * spb * SR)
        if note.channel == DRUMS:
            x = synth.kit.get(note.pitch)
            if x is None:
                continue
            x = x * (note.velocity / 110) ** 1.5
        else:
            x = synth.note(str(comp.programs[note.channel]), note.pitch, note.duration * spb, note.velocity)
        seg = buses[note.channel][start : start + len(x)]
        seg += x[: len(seg)]
    ir_t = np.arange(int(1.1 * SR)) / SR
    ir = synth.rng.standard_normal(len(ir_t)) * np.exp(-ir_t / 0.28)
    ir = signal.sosfilt(signal.butter(2, 5000, "lowpass", fs=SR, output="sos"), ir)
    ir /= np.sqrt(np.sum(ir**2))
    out = {k: np.zeros((2, n)) for k in ("mix", "inst")}
    for ch, bus in buses.items():
        bus = bus[:n]
        if comp.programs[ch] not in ("sine_bass", "saw_bass"):
            bus = bus + 0.18 * signal.fftconvolve(bus, ir)[:n]
        pan = 0.0 if ch in (DRUMS, 1) else comp.pans.get(ch, 0.0)
        lr = np.stack([np.cos((pan + 1) * np.pi / 4), np.sin((pan + 1) * np.pi / 4)])[:, None] * np.sqrt(2)
        stereo = lr * bus[None, :]
        out["mix"] += stereo
        if ch not in comp.vocal_channels:
            out["inst"] += stereo
    return out["mix"].astype(np.float32), out["inst"].astype(np.float32)
