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
