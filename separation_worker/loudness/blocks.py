"""Fixed-size blocks over a signal: the unit in which the limiter and the true peak skip clean audio."""

from __future__ import annotations

import numpy as np


def row_max(rows: np.ndarray) -> np.ndarray:
    """max over the last axis: halving it elementwise (numpy's reduction over a short last axis is slow)."""
    while rows.shape[-1] > 1 and rows.shape[-1] % 2 == 0:
        half = rows.shape[-1] // 2
        rows = np.maximum(rows[..., :half], rows[..., half:])
    return rows.max(axis=-1)


def block_max(values: np.ndarray, blocks: int, size: int) -> np.ndarray:
    """Per block of `size` values, the largest (0 for blocks past the end); no copy of `values`."""
    out = np.zeros(blocks, dtype=values.dtype)
    whole = min(blocks, values.size // size)
    if whole:
        out[:whole] = row_max(values[: whole * size].reshape(whole, size))
    if whole < blocks and whole * size < values.size:
        out[whole] = values[whole * size : (whole + 1) * size].max()
    return out


def abs_max_over_channels(x: np.ndarray) -> np.ndarray:
    """max_c |x[c, i]| per sample, in one buffer."""
    out = np.abs(x[0]) if x.shape[0] else np.zeros(x.shape[-1], dtype=x.dtype)
    for channel in x[1:]:
        np.maximum(out, np.abs(channel), out=out)
    return out


def with_neighbours(mask: np.ndarray) -> np.ndarray:
    """`mask` widened by one block each side."""
    wide = mask.copy()
    wide[1:] |= mask[:-1]
    wide[:-1] |= mask[1:]
    return wide


def max_with_neighbours(values: np.ndarray) -> np.ndarray:
    """Per block, the max of its value and its neighbours'."""
    wide = values.copy()
    np.maximum(wide[1:], values[:-1], out=wide[1:])
    np.maximum(wide[:-1], values[1:], out=wide[:-1])
    return wide


def runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of the runs of True in a 1-D mask, ends exclusive."""
    edges = np.flatnonzero(np.diff(mask.astype(np.int8), prepend=0, append=0))
    return edges[0::2], edges[1::2]
