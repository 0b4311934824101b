"""Loudness: BS.1770-4 metering, true peak, and normalization of stems under a true-peak ceiling."""

from .normalize import integrated_loudness, measure_stems, normalize, normalize_stems
from .true_peak import true_peak_dbtp

__all__ = ["integrated_loudness", "measure_stems", "normalize", "normalize_stems", "true_peak_dbtp"]
