"""The separation's ETA: measured from the first chunks, scaled by each model's FLOPs, shown on the bar and,
when long, as one line naming the fast preset."""

import numpy as np
import pytest
import torch

from separation_worker import audio_io
from separation_worker.inference.chunking import plan
from separation_worker.inference.cost import flops_per_chunk
from separation_worker.inference.estimate import Estimator, ModelCost, ProgressEta
from separation_worker.models import loader
from separation_worker.models.zoo import DEFAULT_ENSEMBLE, FAST_ENSEMBLE, ModelSpec
from separation_worker.pipeline import separate_song
from separation_worker.progress import ProgressEvent
from stembot.commands.separate import SeparationEta, about, slow_separation_hint
from stembot.terminal_progress import TerminalProgress
from tests.conftest import music
from tests.support.model_factory import config_for


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


COSTS = [ModelCost("A", chunks=10, rows=10, work_per_chunk=1.0), ModelCost("B", chunks=4, rows=4, work_per_chunk=5.0)]


def test_later_models_are_predicted_from_the_rate_measured_so_far():
    clock = Clock()
    estimator = Estimator(COSTS, clock)
    clock.now += 2.0  # A's first chunk: 2 s per unit of work
    first = estimator.report(0, 1)
    assert first.elapsed_s == 2.0
    assert first.remaining_s == pytest.approx(9 * 2 + 20 * 2)
    clock.now += 18.0
    estimator.report(0, 10)  # A done at 20 s
    clock.now += 15.0  # B's first chunk: 5 units in 15 s, 3 s per unit (B's own rate for B)
    later = estimator.report(1, 1)
    assert later.remaining_s == pytest.approx(3 * 5 * 3)
    assert later.total_s == pytest.approx(35 + 45)
    # Another preset's models at the rate measured over all work so far: 35 s for 15 units.
    assert estimator.seconds_for([ModelCost("B", 4, 4, 5.0)], later) == pytest.approx(20 * 35 / 15)


def test_zero_filled_rows_count_as_work():
    clock = Clock()
    estimator = Estimator([ModelCost("A", chunks=3, rows=4, work_per_chunk=1.0)], clock)
    clock.now += 4.0  # one batch of 3 chunks padded to 4 rows
    assert estimator.report(0, 3).remaining_s == pytest.approx(0.0)


def test_progress_events_drive_it_and_counting_is_left_out():
    clock = Clock()
    asked = []

    def costs_for(length):
        asked.append(length)
        clock.now += 10.0  # counting FLOPs takes time of its own
        return COSTS

    eta = ProgressEta(costs_for, sample_rate=100, clock=clock)
    assert eta.observe(ProgressEvent("decode", 1.0, duration=3.5)) is None
    assert eta.observe(ProgressEvent("separate", 0.0)) is None
    clock.now += 2.0
    estimate = eta.observe(ProgressEvent("separate", 0.05, "A", 0.1))
    assert asked == [350]
    assert estimate is not None and estimate.elapsed_s == pytest.approx(2.0)
    assert estimate.remaining_s == pytest.approx(58.0)
    clock.now += 1.0
    eta.observe(ProgressEvent("separate", 0.1, "A", 0.2))
    assert asked == [350]  # once per song
    assert eta.observe(ProgressEvent("loudness", 0.0)) is None


def test_no_costs_means_no_estimate():
    eta = ProgressEta(lambda length: [], sample_rate=100)
    eta.observe(ProgressEvent("decode", 1.0, duration=3.0))
    assert eta.observe(ProgressEvent("separate", 0.1, "A", 0.1)) is None


def test_real_size_flops_per_second_of_audio():
    """FlopCounterMode on meta tensors gives the published schedule's cost (PLATFORM_NOTES: 4.35, 0.41, 3.29)."""
    expected = {"BS-Roformer": 4.35, "Mel-Band Roformer": 0.41, "MDX23C InstVoc HQ": 3.29}
    for spec in DEFAULT_ENSEMBLE.members:
        config = config_for(spec.config, "real")
        family = loader.detect_family(config)
        with torch.device("meta"):  # shapes only: no 2 GB of random weights
            module = _build(family, config)
        model = loader.LoadedModel(spec, family, module, None, loader.chunking_for(family, config), config)  # type: ignore[arg-type]
        flops = flops_per_chunk(model)
        assert flops is not None
        seconds_per_chunk = model.chunking.step / audio_io.SAMPLE_RATE
        assert flops / seconds_per_chunk / 1e12 == pytest.approx(expected[spec.name], abs=0.01)


def _build(family, config):
    if family in loader.ROFORMER_FAMILIES:
        from audio_separator.separator.uvr_lib_v5.roformer.bs_roformer import BSRoformer
        from audio_separator.separator.uvr_lib_v5.roformer.mel_band_roformer import MelBandRoformer

        cls = BSRoformer if family == "bs_roformer" else MelBandRoformer
        return cls(**config["model"])
    return loader.build_module(family, config, None)


def test_engine_costs_follow_the_schedule_and_leave_the_models_as_they_were(engine):
    mix = music(2.0, seed=4)
    before = engine.separate(mix)
    length = mix.shape[1]
    costs = engine.costs(length)
    assert [c.name for c in costs] == [m.name for m in DEFAULT_ENSEMBLE.members]
    for model, c in zip(engine._models, costs):
        assert c.chunks == c.rows == len(plan(length, model.chunking).starts)  # CPU: batch 1, nothing zero-filled
        assert c.work_per_chunk > 0
    assert [c.name for c in engine.costs(length, FAST_ENSEMBLE.members)] == ["Mel-Band Roformer"]
    assert engine.costs(length, (ModelSpec("X", "x.ckpt", "x.yaml", 1.0),)) == []  # not loaded: nothing
    after = engine.separate(mix)  # the weights swapped for meta tensors while counting are back
    np.testing.assert_array_equal(after.vocals, before.vocals)


def test_hint_wording():
    assert about(20) == "under a minute"
    assert about(7 * 60 + 10) == "7 min"
    assert about(2 * 3600 + 10 * 60) == "2 h 10 min"
    assert slow_separation_hint("cpu", 7800, 210, True, 420) == (
        "Separating on CPU: about 2 h 10 min for this 3:30 song; `--preset fast` takes about 7 min.")
    assert slow_separation_hint("cpu", 720, 210, suggest_fast=False) == (
        "Separating on CPU: about 12 min for this 3:30 song.")


@pytest.mark.parametrize("suggest_fast", [True, False])
def test_a_long_separation_prints_one_line_naming_the_preset(tmp_path, engine, settings, capsys, suggest_fast):
    samples = music(2.0, seed=5)
    song = audio_io.DecodedAudio(samples, title="Song")
    sink = SeparationEta(engine, TerminalProgress(enabled=False), suggest_fast=suggest_fast, hint_after_s=0.0)
    sink(ProgressEvent("decode", 1.0, duration=samples.shape[1] / audio_io.SAMPLE_RATE))  # a decoded source sends none
    separate_song(song, tmp_path / "out", engine, settings, fmt="wav", progress=sink)
    err = capsys.readouterr().err
    assert sink.hint is not None and err.count("Separating on CPU") == 1
    assert sink.hint.startswith("Separating on CPU: about ") and "for this 0:02 song" in sink.hint
    assert ("`--preset fast` takes about " in sink.hint) == suggest_fast


def test_the_bar_shows_the_eta(capsys):
    bars = TerminalProgress(enabled=True)
    bars(ProgressEvent("separate", 0.1, "BS-Roformer", 0.3))
    bars.show_eta(3725)
    bars(ProgressEvent("separate", 0.4, "Mel-Band Roformer", 0.1))  # a new model's bar keeps it
    bars.close()
    err = capsys.readouterr().err
    assert "ETA 1:02:05" in err.split("Mel-Band Roformer")[-1]


def test_a_modes_split_models_count_in_the_eta(tmp_path, engine, settings):
    from separation_worker.models.modes import MODES

    samples = music(2.0, seed=6)
    song = audio_io.DecodedAudio(samples, title="Song")
    sink = SeparationEta(engine, TerminalProgress(enabled=False), hint_after_s=1e9, mode=MODES["karaoke"])
    sink(ProgressEvent("decode", 1.0, duration=samples.shape[1] / audio_io.SAMPLE_RATE))
    separate_song(song, tmp_path / "out", engine, settings, fmt="wav", progress=sink, mode="karaoke")
    costs = sink._eta.estimator.costs
    assert [c.name for c in costs] == [*(m.name for m in engine.ensemble.members), "Mel-Band Roformer Karaoke"]
    assert sink._eta.latest is not None and sink._eta.latest.remaining_s >= 0
