"""Random-weight models of the ensemble's three architectures, written as checkpoint + YAML.

They go into a model dir under the zoo's filenames, so the engine loads them through the
same code path as the real downloads. `tiny` keeps the real STFTs and band splits with
narrow layers (fast on a CPU); `real` uses the published configurations (for GPU benches).
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import yaml

from separation_worker.models import loader
from separation_worker.models.zoo import DEFAULT_ENSEMBLE, Ensemble

# The seven list sections audio-separator's model list needs, with the UVR-listed models.
DOWNLOAD_CHECKS = {
    "vr_download_list": {},
    "mdx_download_list": {},
    "mdx_download_vip_list": {},
    "demucs_download_list": {},
    "mdx23c_download_list": {
        "MDX23C Model: MDX23C-InstVoc HQ": {"MDX23C-8KFFT-InstVoc_HQ.ckpt": "model_2_stem_full_band_8k.yaml"}
    },
    "mdx23c_download_vip_list": {},
    "roformer_download_list": {
        "Roformer Model: BS-Roformer-Viperx-1297": {
            "model_bs_roformer_ep_317_sdr_12.9755.ckpt": "model_bs_roformer_ep_317_sdr_12.9755.yaml"
        }
    },
}

BS_FREQS_PER_BANDS = (2,) * 24 + (4,) * 12 + (12,) * 8 + (24,) * 8 + (48,) * 8 + (128, 129)

_AUDIO_ROFORMER = {"n_fft": 2048, "hop_length": 441, "num_channels": 2, "sample_rate": 44100, "dim_f": 1024}

REAL_CONFIGS: dict[str, dict] = {
    "model_bs_roformer_ep_317_sdr_12.9755.yaml": {
        "audio": {**_AUDIO_ROFORMER, "chunk_size": 352800, "dim_t": 801},
        "model": {
            "dim": 512, "depth": 12, "stereo": True, "num_stems": 1,
            "time_transformer_depth": 1, "freq_transformer_depth": 1, "linear_transformer_depth": 0,
            "freqs_per_bands": BS_FREQS_PER_BANDS, "dim_head": 64, "heads": 8,
            "attn_dropout": 0.1, "ff_dropout": 0.1, "flash_attn": True, "dim_freqs_in": 1025,
            "stft_n_fft": 2048, "stft_hop_length": 441, "stft_win_length": 2048, "stft_normalized": False,
            "mask_estimator_depth": 2,
        },
        "training": {"instruments": ["vocals", "other"], "target_instrument": "vocals"},
        "inference": {"batch_size": 1, "dim_t": 801, "num_overlap": 4},
    },
    "vocals_mel_band_roformer.yaml": {
        "audio": {**_AUDIO_ROFORMER, "chunk_size": 485100, "dim_t": 1101},
        "model": {
            "dim": 384, "depth": 6, "stereo": True, "num_stems": 1,
            "time_transformer_depth": 1, "freq_transformer_depth": 1, "num_bands": 60,
            "dim_head": 64, "heads": 8, "attn_dropout": 0.0, "ff_dropout": 0.0, "flash_attn": True,
            "dim_freqs_in": 1025, "sample_rate": 44100,
            "stft_n_fft": 2048, "stft_hop_length": 441, "stft_win_length": 2048, "stft_normalized": False,
            "mask_estimator_depth": 2,
        },
        "training": {"instruments": ["vocals", "other"], "target_instrument": "vocals"},
        "inference": {"batch_size": 1, "dim_t": 1101, "num_overlap": 1},
    },
    "model_2_stem_full_band_8k.yaml": {
        "audio": {
            "chunk_size": 261120, "dim_f": 4096, "dim_t": 256, "hop_length": 1024, "n_fft": 8192,
            "num_channels": 2, "sample_rate": 44100, "min_mean_abs": 0.001,
        },
        "model": {
            "act": "gelu", "bottleneck_factor": 4, "growth": 128, "norm": "InstanceNorm",
            "num_blocks_per_scale": 2, "num_channels": 128, "num_scales": 5, "num_subbands": 4, "scale": [2, 2],
        },
        "training": {"instruments": ["Vocals", "Instrumental"], "target_instrument": None},
        "inference": {"batch_size": 1, "dim_t": 256, "num_overlap": 8},
    },
}

# Narrow layers, real STFTs and band splits. MDX23C's overlap is lowered (its 8192-point STFTs
# dominate on a CPU); 261120 / 2 keeps every sample under exactly `overlap` windows.
TINY_OVERRIDES: dict[str, dict] = {
    "model_bs_roformer_ep_317_sdr_12.9755.yaml": {"model": {"dim": 32, "depth": 1, "heads": 2, "dim_head": 16}},
    "vocals_mel_band_roformer.yaml": {"model": {"dim": 32, "depth": 1, "heads": 2, "dim_head": 16}},
    "model_2_stem_full_band_8k.yaml": {
        "model": {"num_channels": 8, "growth": 8, "num_scales": 2, "bottleneck_factor": 2},
        "inference": {"num_overlap": 2},
    },
}


def config_for(config_name: str, size: str = "tiny") -> dict:
    config = copy.deepcopy(REAL_CONFIGS[config_name])
    if size == "tiny":
        for section, values in TINY_OVERRIDES[config_name].items():
            config[section].update(values)
    return config


def write_model(model_dir: Path, checkpoint: str, config_name: str, size: str = "tiny", seed: int = 0) -> None:
    """Write a random-weight checkpoint and its YAML under the zoo's filenames."""
    model_dir.mkdir(parents=True, exist_ok=True)
    config = config_for(config_name, size)
    (model_dir / config_name).write_text(yaml.dump(config), encoding="utf-8")
    torch.manual_seed(seed)
    written = loader.read_config(model_dir / config_name)
    module = loader.build_module(loader.detect_family(written), written, None)
    torch.save(module.state_dict(), model_dir / checkpoint)


def write_ensemble(model_dir: Path, size: str = "tiny", ensemble: Ensemble = DEFAULT_ENSEMBLE) -> Path:
    for seed, spec in enumerate(ensemble.members):
        if not loader.files_present(spec, model_dir):
            write_model(model_dir, spec.checkpoint, spec.config, size, seed)
    return model_dir
