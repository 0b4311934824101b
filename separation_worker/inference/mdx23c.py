"""MDX23C (audio-separator's TFC_TDF_net) split into spectrogram -> network -> waveform.

The same operations as `TFC_TDF_net.forward`, in the same order (eager results are identical, see
tests/test_gpu_paths.py), but with the network part on its own so that it alone is torch.compile'd (the
STFTs stay eager: complex tensors are where compilers are weakest), and with nothing copied from the host
inside a forward pass: its STFT keeps a CPU window that `.to(device)` copies on every call, and its inverse
builds a zero tensor on the CPU; each such copy from pageable memory makes the host wait for the GPU.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

Network = Callable[[torch.Tensor], torch.Tensor]  # spectrogram -> output spectrogram


# audio-separator's TFC_TDF_net: its parts are plain attributes (its STFT is not a module), typed as Any here.
Mdx23c = Any


def keep_window_on(module: Mdx23c, device: torch.device) -> None:
    """Move the STFT's window to the model's device once, so the `.to(x.device)` in each call copies nothing."""
    stft = module.stft
    stft.window = stft.window.to(device)


def network(module: Mdx23c, x: torch.Tensor) -> torch.Tensor:
    """TFC_TDF_net.forward between its STFT and its inverse."""
    m = module
    mix = x = m.cac2cws(x)
    first_conv_out = x = m.first_conv(x)
    x = x.transpose(-1, -2)
    encoder_outputs = []
    for block in m.encoder_blocks:
        x = block.tfc_tdf(x)
        encoder_outputs.append(x)
        x = block.downscale(x)
    x = m.bottleneck_block(x)
    for block in m.decoder_blocks:
        x = block.upscale(x)
        x = torch.cat([x, encoder_outputs.pop()], 1)
        x = block.tfc_tdf(x)
    x = x.transpose(-1, -2)
    x = x * first_conv_out  # reduce artifacts
    x = m.final_conv(torch.cat([mix, x], 1))
    x = m.cws2cac(x)
    targets = int(m.num_target_instruments)
    if targets > 1:
        b, c, f, t = x.shape
        x = x.reshape(b, targets, -1, f, t)
    return x


def inverse(module: Mdx23c, x: torch.Tensor) -> torch.Tensor:
    """The STFT's inverse as audio-separator's, with its zero padding made on the device."""
    stft = module.stft
    window = stft.window.to(x.device)
    batch_dims = x.shape[:-3]
    c, f, t = x.shape[-3:]
    n = stft.n_fft // 2 + 1
    f_pad = torch.zeros([*batch_dims, c, n - f, t], device=x.device)
    x = torch.cat([x, f_pad], -2)
    x = x.reshape([*batch_dims, c // 2, 2, n, t]).reshape([-1, 2, n, t])
    x = x.permute([0, 2, 3, 1])
    x = x[..., 0] + x[..., 1] * 1.0j
    x = torch.istft(x, n_fft=stft.n_fft, hop_length=stft.hop_length, window=window, center=True)
    return x.reshape([*batch_dims, 2, -1])


def forward_with(module: Mdx23c, run_network: Network) -> Callable[[torch.Tensor], torch.Tensor]:
    """A `forward` for `module`: its own STFT, then `run_network` (network() itself, or compiled), then inverse()."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        return inverse(module, run_network(module.stft(x)))

    return forward


def network_input_shape(module: Mdx23c, chunk_size: int, batch: int = 1) -> tuple[int, ...]:
    """The spectrogram's shape for `batch` stereo chunks: (batch, 2 channels x re/im, dim_f, frames)."""
    stft = module.stft
    return (batch, 4, stft.dim_f, chunk_size // stft.hop_length + 1)
