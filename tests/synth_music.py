"""Synthetic music with known tempo and key, for the analysis tests and bench.

Songs are composed as MIDI (melody + bass + chords, optional GM drums, humanized), written
with a tiny Standard MIDI File writer and rendered through FluidSynth and the General MIDI
soundfont. Everything is seeded, so a (seed, index) pair always gives the same song, and
rendered audio is cached by the hash of its MIDI bytes.

Also here: numpy-only signals (click track, additive chord progression) for quick tests.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf

SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
RENDER_SR = 44100
RENDER_GAIN = 0.35
TICKS_PER_BEAT = 480
DRUM_CHANNEL = 9  # GM channel 10, zero-based
PITCH_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")

MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10)  # natural minor; V chords bring the leading tone

CHORD_INTERVALS: dict[str, tuple[int, ...]] = {
    "maj": (0, 4, 7),
    "min": (0, 3, 7),
    "dim": (0, 3, 6),
    "dom7": (0, 4, 7, 10),
    "maj7": (0, 4, 7, 11),
    "min7": (0, 3, 7, 10),
}
# Roman numeral -> (root offset from the tonic in semitones, quality).
MAJOR_CHORDS: dict[str, tuple[int, str]] = {
    "I": (0, "maj"), "Imaj7": (0, "maj7"), "ii": (2, "min"), "ii7": (2, "min7"),
    "iii": (4, "min"), "IV": (5, "maj"), "IVmaj7": (5, "maj7"), "V": (7, "maj"),
    "V7": (7, "dom7"), "vi": (9, "min"), "vi7": (9, "min7"), "bVII": (10, "maj"),
}
MINOR_CHORDS: dict[str, tuple[int, str]] = {
    "i": (0, "min"), "i7": (0, "min7"), "ii°": (2, "dim"), "III": (3, "maj"),
    "iv": (5, "min"), "iv7": (5, "min7"), "v": (7, "min"), "V": (7, "maj"),
    "V7": (7, "dom7"), "VI": (8, "maj"), "VII": (10, "maj"),
}
# Common pop/rock/electronic loops; most deliberately do not start on the tonic chord.
MAJOR_PROGRESSIONS: tuple[tuple[str, ...], ...] = (
    ("I", "V", "vi", "IV"),
    ("vi", "IV", "I", "V"),
    ("IV", "V", "I", "vi"),
    ("ii7", "V7", "Imaj7", "Imaj7"),
    ("I", "vi", "IV", "V"),
    ("IV", "I", "V", "vi"),
    ("V", "vi", "IV", "I"),
    ("IVmaj7", "V7", "iii", "vi", "ii7", "V7", "I", "I"),
    ("I", "bVII", "IV", "I"),
    ("vi", "ii", "V", "I"),
    ("ii", "IV", "V", "I"),
)
MINOR_PROGRESSIONS: tuple[tuple[str, ...], ...] = (
    ("i", "VI", "III", "VII"),
    ("VI", "VII", "i", "i"),
    ("i", "iv", "v", "i"),
    ("i", "VII", "VI", "V"),
    ("iv", "V", "i", "i"),
    ("i", "iv", "VII", "III"),
    ("VI", "iv", "i", "V"),
    ("ii°", "V7", "i", "i"),
    ("i", "VI", "iv", "V"),
    ("VI", "III", "VII", "i"),
    ("iv7", "VII", "III", "VI", "ii°", "V", "i", "i"),
)

# GM programs (zero-based) per role.
CHORD_PROGRAMS = (0, 1, 4, 5, 16, 17, 19, 24, 25, 26, 27, 46, 48, 49, 50, 88, 89, 90, 91, 94, 95)
BASS_PROGRAMS = (32, 33, 34, 35, 36, 38, 39, 42, 87)
MELODY_PROGRAMS = (0, 11, 13, 22, 40, 56, 65, 66, 71, 73, 79, 80, 81, 82, 85)

KICK, SNARE, CLAP, HAT, OPEN_HAT, CRASH, RIDE = 36, 38, 39, 42, 46, 49, 51
# Drum patterns on a 16-step bar: instrument -> steps.
DRUM_PATTERNS: dict[str, dict[int, tuple[int, ...]]] = {
    "rock": {KICK: (0, 8, 10), SNARE: (4, 12), HAT: (0, 2, 4, 6, 8, 10, 12, 14)},
    "four_on_floor": {KICK: (0, 4, 8, 12), CLAP: (4, 12), OPEN_HAT: (2, 6, 10, 14), HAT: (0, 4, 8, 12)},
    "half_time": {KICK: (0, 7), SNARE: (8,), HAT: (0, 2, 4, 6, 8, 10, 12, 14)},
    "hip_hop": {KICK: (0, 6, 10), SNARE: (4, 12), HAT: tuple(range(0, 16, 2))},
    "breakbeat": {KICK: (0, 10), SNARE: (4, 12), RIDE: tuple(range(0, 16, 2))},
    "sixteenths": {KICK: (0, 8), SNARE: (4, 12), HAT: tuple(range(16))},
}

# Rhythm cells for one 4/4 bar of melody, in beats; negative values are rests.
MELODY_RHYTHMS: tuple[tuple[float, ...], ...] = (
    (1, 1, 1, 1),
    (0.5, 0.5, 1, 2),
    (1.5, 0.5, 1, 1),
    (0.5, 0.5, 0.5, 0.5, 1, 1),
    (2, 2),
    (1, 0.5, 0.5, 2),
    (0.5, 1, 0.5, 2),
    (-1, 1, 1, 1),
    (0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 1),
    (-0.5, 0.5, 0.5, 0.5, 2),
    (3, 1),
)


@dataclass(frozen=True)
class Note:
    start: float  # beats
    duration: float  # beats
    pitch: int
    velocity: int
    channel: int


@dataclass(frozen=True)
class SongSpec:
    """What a song is; the composition itself follows deterministically from `seed`."""

    name: str
    seed: int
    bpm: float
    tonic: int  # pitch class, 0 = C
    mode: str  # "major" or "minor"
    drums: bool
    duration_s: float
    detune_cents: float = 0.0  # whole render sped up/slowed, as off-A440 recordings are

    @property
    def key(self) -> str:
        return f"{PITCH_NAMES[self.tonic]} {self.mode}"

    @property
    def true_bpm(self) -> float:
        """Tempo of the rendered audio: detuning by playback speed scales the tempo too."""
        return self.bpm * 2 ** (self.detune_cents / 1200)


@dataclass(frozen=True)
class Song:
    spec: SongSpec
    notes: tuple[Note, ...]
    programs: dict[int, int]  # channel -> GM program
    description: str


# --- Standard MIDI File writer -------------------------------------------------------------


def _vlq(value: int) -> bytes:
    """MIDI variable-length quantity."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    return bytes(reversed(out))


def write_smf(notes: tuple[Note, ...] | list[Note], programs: dict[int, int], bpm: float) -> bytes:
    """A format-0 MIDI file: one tempo, program changes, then the notes."""
    events: list[tuple[int, int, bytes]] = []  # (tick, order, bytes); note-offs sort before note-ons
    tempo_us = round(60_000_000 / bpm)
    events.append((0, 0, b"\xff\x51\x03" + tempo_us.to_bytes(3, "big")))
    for channel, program in sorted(programs.items()):
        events.append((0, 1, bytes([0xC0 | channel, program])))
    for note in notes:
        on = max(0, round(note.start * TICKS_PER_BEAT))
        off = max(on + 1, round((note.start + note.duration) * TICKS_PER_BEAT))
        events.append((on, 3, bytes([0x90 | note.channel, note.pitch, note.velocity])))
        events.append((off, 2, bytes([0x80 | note.channel, note.pitch, 0])))
    events.sort(key=lambda e: (e[0], e[1]))
    track = bytearray()
    tick = 0
    for at, _, data in events:
        track += _vlq(at - tick) + data
        tick = at
    track += _vlq(TICKS_PER_BEAT) + b"\xff\x2f\x00"
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, TICKS_PER_BEAT)
    return header + b"MTrk" + struct.pack(">I", len(track)) + bytes(track)


# --- Composition ----------------------------------------------------------------------------


def _chord_pitch_classes(tonic: int, chord: tuple[int, str]) -> list[int]:
    root, quality = chord
    return [(tonic + root + i) % 12 for i in CHORD_INTERVALS[quality]]


def _voice(pcs: list[int], center: float) -> list[int]:
    """Close-position voicing of the chord whose mean pitch is nearest `center`."""
    best: list[int] = []
    for inversion in range(len(pcs)):
        order = pcs[inversion:] + pcs[:inversion]
        pitches = [48 + order[0]]
        for pc in order[1:]:
            pitches.append(pitches[-1] + (pc - pitches[-1]) % 12)
        for shift in (-12, 0, 12):
            cand = [p + shift for p in pitches]
            if not best or abs(np.mean(cand) - center) < abs(np.mean(best) - center):
                best = cand
    return best


class _Composer:
    def __init__(self, spec: SongSpec) -> None:
        self.spec = spec
        self.rng = np.random.default_rng(spec.seed)
        self.notes: list[Note] = []

    def _add(self, start: float, duration: float, pitch: int, velocity: float, channel: int) -> None:
        # Humanize: ~8 ms onset jitter and velocity spread, as a player would.
        jitter_s = float(np.clip(self.rng.normal(0, 0.008), -0.02, 0.02))
        start = max(0.0, start + jitter_s * self.spec.bpm / 60)
        vel = int(np.clip(velocity + self.rng.normal(0, 8), 20, 127))
        self.notes.append(Note(start, max(0.05, duration), int(pitch), vel, channel))

    def compose(self) -> Song:
        spec, rng = self.spec, self.rng
        chords_table = MAJOR_CHORDS if spec.mode == "major" else MINOR_CHORDS
        progs = MAJOR_PROGRESSIONS if spec.mode == "major" else MINOR_PROGRESSIONS
        progression = progs[rng.integers(len(progs))]
        chords_per_bar = 1 if len(progression) == 8 or spec.bpm < 100 or rng.random() < 0.7 else 2
        bar_beats = 4
        bars = max(4, int(spec.duration_s * spec.bpm / 60 / bar_beats))
        slots = bars * chords_per_bar
        timeline = [chords_table[progression[i % len(progression)]] for i in range(slots)]
        ends_on_tonic = rng.random() < 0.5
        if ends_on_tonic:  # a final cadence, as many songs end
            timeline[-1] = chords_table["I" if spec.mode == "major" else "i"]
        slot_beats = bar_beats / chords_per_bar

        chord_prog = int(rng.choice(CHORD_PROGRAMS))
        bass_prog = int(rng.choice(BASS_PROGRAMS))
        melody_prog = int(rng.choice(MELODY_PROGRAMS))
        programs = {0: chord_prog, 1: bass_prog, 2: melody_prog}
        comp_style = str(rng.choice(["sustain", "stabs", "arpeggio", "offbeat", "syncopated"]))
        bass_style = str(rng.choice(["whole", "quarters", "eighths", "root_fifth", "syncopated"]))
        has_melody = rng.random() < 0.85
        drum_style = str(rng.choice(list(DRUM_PATTERNS))) if spec.drums else "none"

        center = float(rng.uniform(58, 66))
        for i, chord in enumerate(timeline):
            t0 = i * slot_beats
            pcs = _chord_pitch_classes(spec.tonic, chord)
            last = i == len(timeline) - 1
            self._comp(t0, slot_beats, _voice(pcs, center), "sustain" if last else comp_style)
            self._bass(t0, slot_beats, pcs, "whole" if last else bass_style)
        if has_melody:
            self._melody(timeline, slot_beats, bars, bar_beats)
        if spec.drums:
            self._drums(bars, bar_beats, DRUM_PATTERNS[drum_style])
        description = (
            f"{'-'.join(progression)} x{chords_per_bar}/bar, chords={chord_prog} {comp_style}, "
            f"bass={bass_prog} {bass_style}, melody={melody_prog if has_melody else 'none'}, "
            f"drums={drum_style}, end={'tonic' if ends_on_tonic else 'loop'}"
        )
        return Song(spec, tuple(self.notes), programs, description)

    def _comp(self, t0: float, length: float, voicing: list[int], style: str) -> None:
        if style == "sustain":
            for p in voicing:
                self._add(t0, length * 0.98, p, 70, 0)
        elif style == "stabs":
            for b in np.arange(0, length, 1.0):
                for p in voicing:
                    self._add(t0 + b, 0.45, p, 72 if b == 0 else 62, 0)
        elif style == "arpeggio":
            pattern = [*voicing, voicing[0] + 12, *voicing[::-1][1:]]
            for k, b in enumerate(np.arange(0, length, 0.5)):
                self._add(t0 + b, 0.5, pattern[k % len(pattern)], 68, 0)
        elif style == "offbeat":
            for b in np.arange(0.5, length, 1.0):
                for p in voicing:
                    self._add(t0 + b, 0.3, p, 66, 0)
        else:  # syncopated pop comping: 1, 2&, 4
            for b, d in ((0, 1.4), (1.5, 1.4), (3, 0.9)):
                if b < length:
                    for p in voicing:
                        self._add(t0 + b, min(d, length - b), p, 68, 0)

    def _bass(self, t0: float, length: float, pcs: list[int], style: str) -> None:
        root = 36 + pcs[0]  # C2..B2
        fifth = root + 7
        if style == "whole":
            self._add(t0, length * 0.95, root, 92, 1)
        elif style == "quarters":
            for b in np.arange(0, length, 1.0):
                self._add(t0 + b, 0.85, root, 90 if b == 0 else 80, 1)
        elif style == "eighths":
            for b in np.arange(0, length, 0.5):
                self._add(t0 + b, 0.4, root, 88 if b % 1 == 0 else 74, 1)
        elif style == "root_fifth":
            seq = (root, fifth, root + 12, fifth)
            for k, b in enumerate(np.arange(0, length, 1.0)):
                self._add(t0 + b, 0.85, seq[k % 4], 86, 1)
        else:
            for b, d in ((0, 1.4), (1.5, 0.4), (2, 1.4), (3.5, 0.4)):
                if b < length:
                    self._add(t0 + b, d, root, 88, 1)

    def _melody(self, timeline: list[tuple[int, str]], slot_beats: float, bars: int, bar_beats: int) -> None:
        spec, rng = self.spec, self.rng
        scale = MAJOR_SCALE if spec.mode == "major" else MINOR_SCALE
        # Scale pitches across the melody range; index walk stays in it.
        pool = [p for p in range(55, 88) if (p - spec.tonic) % 12 in scale]
        third = 4 if spec.mode == "major" else 3
        idx = len(pool) // 2
        rest_bar = rng.random() < 0.3
        for bar in range(bars):
            if rest_bar and bar % 4 == 3 and bar != bars - 1:
                continue  # breathing room between phrases
            cell = MELODY_RHYTHMS[rng.integers(len(MELODY_RHYTHMS))]
            phrase_end = bar % 2 == 1 or bar == bars - 1
            t = float(bar * bar_beats)
            for k, dur in enumerate(cell):
                if dur < 0:
                    t += -dur
                    continue
                chord = timeline[min(int(t // slot_beats), len(timeline) - 1)]
                chord_pcs = _chord_pitch_classes(spec.tonic, chord)
                strong = abs(t - round(t)) < 1e-6 and round(t) % 2 == 0
                last_note = k == len(cell) - 1
                if strong or (phrase_end and last_note):
                    # Chord tones on strong beats and phrase ends, nearest to the current pitch.
                    cands = [i for i, p in enumerate(pool) if p % 12 in chord_pcs]
                    cands.sort(key=lambda i: abs(i - idx))
                    if phrase_end and last_note:
                        # Phrases come to rest on stable degrees: a tonic-triad tone the chord
                        # shares (most often the tonic itself), else the chord root.
                        near = cands[:4]
                        triad = [i for i in near if (pool[i] - spec.tonic) % 12 in (0, third, 7)]
                        tonic = [i for i in triad if pool[i] % 12 == spec.tonic]
                        if tonic and rng.random() < 0.6:
                            cands = tonic
                        else:
                            cands = triad or [i for i in near if pool[i] % 12 == chord_pcs[0]] or near
                    idx = cands[int(rng.integers(min(2, len(cands))))]
                else:
                    step = int(rng.choice([-2, -1, -1, 1, 1, 2]))
                    idx = int(np.clip(idx + step, 0, len(pool) - 1))
                pitch = pool[idx]
                over_dominant = chord[0] == 7 and chord[1] in ("maj", "dom7")
                if spec.mode == "minor" and over_dominant and (pitch - spec.tonic) % 12 == 10:
                    pitch += 1  # harmonic minor over the dominant
                self._add(t, dur * 0.9, pitch, 92 if strong else 82, 2)
                t += dur

    def _drums(self, bars: int, bar_beats: int, pattern: dict[int, tuple[int, ...]]) -> None:
        for bar in range(bars):
            t0 = bar * bar_beats
            if bar % 4 == 0:
                self._add(t0, 1.0, CRASH, 90, DRUM_CHANNEL)
            for instrument, steps in pattern.items():
                for s in steps:
                    vel = 100 if instrument in (KICK, SNARE, CLAP) else (80 if s % 4 == 0 else 62)
                    self._add(t0 + s / 4, 0.2, instrument, vel, DRUM_CHANNEL)


def compose(spec: SongSpec) -> Song:
    return _Composer(spec).compose()


# --- Evaluation set -------------------------------------------------------------------------


def eval_set(seed: int, count: int = 72) -> list[SongSpec]:
    """`count` songs cycling through all 24 keys, tempos spread over 70-170 BPM, ~60 % with
    drums, each detuned by up to ±30 cents."""
    rng = np.random.default_rng(seed)
    keys = [(tonic, mode) for mode in ("major", "minor") for tonic in range(12)]
    order = [keys[i % 24] for i in rng.permutation(count)]
    tempo_edges = np.linspace(70, 170, count + 1)
    tempos = rng.permutation(np.round(rng.uniform(tempo_edges[:-1], tempo_edges[1:]), 1))
    drums = rng.permutation(np.arange(count) < round(count * 0.6))
    specs = []
    for i in range(count):
        tonic, mode = order[i]
        specs.append(
            SongSpec(
                name=f"s{seed}-{i:02d}",
                seed=int(rng.integers(2**31)),
                bpm=float(tempos[i]),
                tonic=tonic,
                mode=mode,
                drums=bool(drums[i]),
                duration_s=float(np.round(rng.uniform(20, 30), 1)),
                detune_cents=float(np.round(rng.uniform(-30, 30), 1)),
            )
        )
    return specs


# --- Rendering ------------------------------------------------------------------------------


def fluidsynth_available() -> bool:
    return shutil.which("fluidsynth") is not None and SOUNDFONT.exists()


def default_cache_dir() -> Path:
    return Path(os.environ.get("STEMBOT_SYNTH_CACHE", Path(tempfile.gettempdir()) / "stembot-synth-cache"))


def render_midi(midi: bytes, cache_dir: Path | None = None, sample_rate: int = RENDER_SR) -> np.ndarray:
    """FluidSynth render of a MIDI file as float32 (2, n); cached as FLAC by content hash."""
    cache_dir = cache_dir or default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1(midi + f"{SOUNDFONT}|{sample_rate}|{RENDER_GAIN}".encode()).hexdigest()[:20]
    cached = cache_dir / f"{digest}.flac"
    if not cached.exists():
        with tempfile.TemporaryDirectory() as tmp:
            mid, wav = Path(tmp) / "in.mid", Path(tmp) / "out.wav"
            mid.write_bytes(midi)
            subprocess.run(
                ["fluidsynth", "-ni", "-q", "-g", str(RENDER_GAIN), "-r", str(sample_rate), "-F", str(wav),
                 str(SOUNDFONT), str(mid)],
                check=True,
                capture_output=True,
                timeout=120,
            )
            audio, sr = sf.read(wav, dtype="float32", always_2d=True)
            peak = float(np.max(np.abs(audio))) or 1.0
            partial = cached.with_suffix(".tmp.flac")
            sf.write(partial, audio * min(1.0, 0.9 / peak), sr, subtype="PCM_16")
            partial.replace(cached)  # atomic, so parallel renders never see half a file
    audio, _ = sf.read(cached, dtype="float32", always_2d=True)
    return np.ascontiguousarray(audio.T)


def render_song(spec: SongSpec, cache_dir: Path | None = None) -> tuple[Song, np.ndarray]:
    song = compose(spec)
    audio = render_midi(write_smf(song.notes, song.programs, spec.bpm), cache_dir)
    # FluidSynth pads several seconds of silence; keep 1.5 s of release after the last note.
    end_s = max(n.start + n.duration for n in song.notes) * 60 / spec.bpm + 1.5
    audio = audio[:, : int(end_s * RENDER_SR)]
    if spec.detune_cents:
        # Resampling from a slightly higher/lower nominal rate = faster/slower playback.
        speed = 2 ** (spec.detune_cents / 1200)
        audio = librosa.resample(audio, orig_sr=RENDER_SR * speed, target_sr=RENDER_SR).astype(np.float32)
    return song, np.ascontiguousarray(audio)


def render_many(
    specs: list[SongSpec], cache_dir: Path | None = None, workers: int = 4
) -> list[tuple[Song, np.ndarray]]:
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda s: render_song(s, cache_dir), specs))


# --- numpy-only signals for quick tests -------------------------------------------------------


def click_track(bpm: float, seconds: float, sample_rate: int = 22050, accent_every: int = 4) -> np.ndarray:
    """Metronome clicks (short decaying 1.5 kHz bursts), downbeats accented."""
    n = int(seconds * sample_rate)
    out = np.zeros(n, dtype=np.float32)
    t = np.arange(int(0.03 * sample_rate)) / sample_rate
    click = (np.sin(2 * np.pi * 1500 * t) * np.exp(-t / 0.006)).astype(np.float32)
    for k, start in enumerate(np.arange(0, seconds, 60 / bpm)):
        i = int(start * sample_rate)
        seg = click[: max(0, n - i)] * (1.0 if k % accent_every == 0 else 0.6)
        out[i : i + len(seg)] += seg
    return out * 0.5


def additive_progression(
    tonic: int, mode: str, progression: tuple[str, ...], bpm: float = 100, bars_per_chord: int = 1,
    repeats: int = 3, sample_rate: int = 22050, seed: int = 0,
) -> np.ndarray:
    """Harmonic-rich tones playing a chord progression with a bass root, plus a tonic-resolving
    final chord; numpy only, so tests need no FluidSynth."""
    rng = np.random.default_rng(seed)
    table = MAJOR_CHORDS if mode == "major" else MINOR_CHORDS
    beat = 60 / bpm
    chord_s = 4 * beat * bars_per_chord
    sequence = list(progression) * repeats + ["I" if mode == "major" else "i"]
    out = np.zeros(int(chord_s * len(sequence) * sample_rate) + sample_rate, dtype=np.float64)
    harmonics = np.array([1.0, 0.5, 0.33, 0.25, 0.2, 0.15])
    for k, name in enumerate(sequence):
        pcs = _chord_pitch_classes(tonic, table[name])
        pitches = [*_voice(pcs, 62), 36 + pcs[0]]
        for b in range(4 * bars_per_chord):  # re-struck every beat so there is rhythm too
            i0 = int((k * chord_s + b * beat) * sample_rate)
            t = np.arange(int(beat * sample_rate)) / sample_rate
            env = np.exp(-t / 0.4) * (1.0 if b % 4 == 0 else 0.7) * rng.uniform(0.85, 1.0)
            for p in pitches:
                f0 = 440.0 * 2 ** ((p - 69) / 12)
                partials = sum(
                    a * np.sin(2 * np.pi * f0 * h * t) for h, a in enumerate(harmonics, 1) if f0 * h < sample_rate / 2
                )
                out[i0 : i0 + len(t)] += env * partials
    return (0.3 * out / np.max(np.abs(out))).astype(np.float32)
