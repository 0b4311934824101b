"""EBU R128 / BS.1770-4 normalization: on target, under the true-peak ceiling, silence untouched."""

import numpy as np
import pytest

from separation_worker import loudness
from tests.conftest import SR, music


def drums_and_tone(level: float, seconds: float = 10.0) -> np.ndarray:
    """A peaky signal (sharp transients over a tone): reaching -14 LUFS needs limiting, not just gain."""
    x = music(seconds, seed=3, level=0.2)
    x[:, :: SR // 4] += 1.0
    return (x * level).astype(np.float32)


@pytest.mark.parametrize("level", [4.0, 1.0, 0.3, 0.15], ids=["very-loud", "loud", "quiet", "very-quiet"])
def test_reaches_target_under_true_peak_ceiling(level):
    x = drums_and_tone(level)
    before = loudness.integrated_loudness(x, SR)
    y, report = loudness.normalize(x, SR, target_lufs=-14.0, ceiling_dbtp=-1.0)
    assert not report.silent
    assert report.lufs_before == pytest.approx(before)
    assert loudness.integrated_loudness(y, SR) == pytest.approx(-14.0, abs=0.5)
    assert loudness.true_peak_dbtp(y) <= -1.0 + 1e-3
    assert report.true_peak_after_dbtp <= -1.0 + 1e-3


def test_gentle_signal_gets_plain_gain():
    t = np.arange(SR * 10) / SR
    x = np.stack([0.01 * np.sin(2 * np.pi * 440 * t)] * 2).astype(np.float32)
    y, report = loudness.normalize(x, SR)
    assert not report.limited
    ratio = y[0, 1000] / x[0, 1000]
    np.testing.assert_allclose(y, x * ratio, rtol=1e-4, atol=1e-7)  # one gain, no shape change


def test_other_targets():
    x = drums_and_tone(1.0)
    y, _ = loudness.normalize(x, SR, target_lufs=-23.0, ceiling_dbtp=-2.0)
    assert loudness.integrated_loudness(y, SR) == pytest.approx(-23.0, abs=0.5)
    assert loudness.true_peak_dbtp(y) <= -2.0 + 1e-3


def test_silence_stays_silence():
    x = np.zeros((2, SR * 5), dtype=np.float32)
    y, report = loudness.normalize(x, SR)
    assert report.silent and report.lufs_before is None
    assert not np.any(y)


def test_near_silent_stem_is_left_alone():
    x = drums_and_tone(0.0005)  # far below the silence threshold
    y, report = loudness.normalize(x, SR, silence_lufs=-60.0)
    assert report.silent and report.gain_db == 0.0
    np.testing.assert_array_equal(y, x)


def test_stem_far_below_its_song_is_silent():
    x = drums_and_tone(0.1)  # about -47 LUFS: not silent on its own
    assert not loudness.normalize(x, SR)[1].silent
    y, report = loudness.normalize(x, SR, reference_lufs=-5.0)  # but 40+ LU below its song
    assert report.silent
    np.testing.assert_array_equal(y, x)


def test_gain_is_capped():
    x = drums_and_tone(0.05)
    _, report = loudness.normalize(x, SR, max_gain_db=10.0, silence_lufs=-90)
    assert report.gain_db == pytest.approx(10.0)
    assert report.lufs_after == pytest.approx(report.lufs_before + 10.0, abs=0.2)


def test_clip_shorter_than_a_gating_block():
    x = drums_and_tone(1.0, seconds=0.2)
    y, report = loudness.normalize(x, SR)
    assert not report.silent
    assert loudness.true_peak_dbtp(y) <= -1.0 + 1e-3


@pytest.mark.parametrize("level", [4.0, 1.0, 0.15], ids=["very-loud", "loud", "very-quiet"])
@pytest.mark.parametrize("ceiling", [-1.0, -1.5])
def test_same_results_as_the_reference_tools(level, ceiling):
    """The fast meter, true peak and limiter agree with pyloudnorm + resample_poly recomputed per pass."""
    from tests.support import reference_loudness

    x = drums_and_tone(level, seconds=6.0)
    y, report = loudness.normalize(x, SR, ceiling_dbtp=ceiling)
    y_ref, ref = reference_loudness.normalize(x, SR, ceiling_dbtp=ceiling)
    assert report.limited == ref.limited
    for ours, theirs in ((report.lufs_before, ref.lufs_before), (report.lufs_after, ref.lufs_after),
                         (report.true_peak_before_dbtp, ref.true_peak_before_dbtp),
                         (report.true_peak_after_dbtp, ref.true_peak_after_dbtp), (report.gain_db, ref.gain_db)):
        assert ours == pytest.approx(theirs, abs=0.05)
    assert reference_loudness.integrated_loudness(y, SR) == pytest.approx(report.lufs_after, abs=0.05)
    assert reference_loudness.true_peak_dbtp(y) <= ceiling + 1e-3


def test_meter_matches_pyloudnorm_across_lengths():
    from tests.support import reference_loudness

    for seconds in (0.3, 0.43, 1.0, 7.3):
        x = music(seconds, seed=4, level=0.3)
        assert loudness.integrated_loudness(x, SR) == pytest.approx(
            reference_loudness.integrated_loudness(x, SR), abs=0.01)
        assert loudness.true_peak_dbtp(x) == pytest.approx(reference_loudness.true_peak_dbtp(x), abs=0.01)


def _resample_poly_peak(x: np.ndarray) -> float:
    from scipy.signal import resample_poly

    return float(np.abs(resample_poly(x.astype(np.float64), 4, 1, axis=-1)).max())


@pytest.mark.parametrize("shape", ["nyquist", "impulses", "noise", "square", "near-nyquist", "edges", "odd-length"])
def test_true_peak_bounds_hold_on_hostile_signals(shape):
    """The bounds that decide what to interpolate may never hide a peak: signals built to overshoot
    (alternating samples, clicks, full-scale noise, hard edges at the ends) give resample_poly's peak."""
    rng = np.random.default_rng(7)
    n = SR // 2
    t = np.arange(n)
    x = {
        "nyquist": np.where(t % 2, 1.0, -1.0) * (t % 3000 < 40),
        "impulses": (t % 997 == 0) * 1.0 - (t % 1499 == 0) * 0.9,
        "noise": rng.uniform(-1, 1, n),
        "square": np.sign(np.sin(2 * np.pi * 3000 * t / SR)),
        "near-nyquist": np.sin(2 * np.pi * 0.49 * t + 0.3),
        "edges": np.r_[np.ones(5), np.zeros(n - 10), -np.ones(5)],
        "odd-length": rng.uniform(-1, 1, n)[: n - 13] * (np.arange(n - 13) > n - 500),
    }[shape]
    stereo = np.stack([x, -0.5 * np.roll(x, 3)]).astype(np.float32)
    theirs = _resample_poly_peak(stereo)
    assert loudness.true_peak_dbtp(stereo) == pytest.approx(20 * np.log10(theirs), abs=1e-3)


def test_limited_pass_remeasures_only_what_changed():
    """Loudness after a limiter curve, from the kept K-weighting plus the touched runs, equals
    measuring the limited audio from scratch."""
    from separation_worker.loudness.limiter import limiter_gain
    from separation_worker.loudness.meter import k_weight, measure
    from separation_worker.loudness.true_peak import TruePeaks

    x = drums_and_tone(1.0, seconds=8.3)
    gain = 3.0
    peaks = TruePeaks(x)
    curve = limiter_gain(peaks.above(0.9 / gain), gain, 0.9, SR)
    assert 0 < curve.hot.mean() < 1  # some spans limited, some not
    quick = k_weight(x, SR).after(x, gain, curve.gain, *curve.runs())
    direct = measure(x * (np.float32(gain) * curve.gain), SR)
    np.testing.assert_allclose(quick.z, direct.z, rtol=1e-4, atol=1e-12)
    assert peaks.max_after(gain, curve.gain, curve.touched_blocks(32, peaks.blocks)) == pytest.approx(
        TruePeaks(x * (np.float32(gain) * curve.gain)).max(), rel=1e-5)


def test_stems_are_compared_with_their_sum():
    """normalize_stems: a stem 40+ LU below the song its stems add up to is silent, the other normalized."""
    band = drums_and_tone(4.0)
    whisper = music(10.0, seed=5, level=0.2) * np.float32(0.028)
    assert -60 < loudness.integrated_loudness(whisper, SR) < loudness.integrated_loudness(band, SR) - 40
    out = loudness.normalize_stems({"vocals": whisper, "instrumental": band}, SR)
    assert out["vocals"][1].silent and not out["instrumental"][1].silent
    np.testing.assert_array_equal(out["vocals"][0], whisper)
    assert out["instrumental"][1].lufs_after == pytest.approx(-14.0, abs=0.1)
