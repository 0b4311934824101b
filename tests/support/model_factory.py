"""Random-weight models of the ensemble's three architectures, written as checkpoint + YAML.

The YAMLs are the zoo's published ones (`published_configs/`, copies of what audio-separator's
downloader fetches) with only the network size shrunk: stem names, STFT, bands and chunking are
as published, so the engine meets exactly what production loads. `real` keeps the published
sizes too (for GPU benches). They go into a model dir under the zoo's filenames and are loaded
through the same code path as the real downloads.
"""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from separation_worker.models import loader
from separation_worker.models.modes import MODES
from separation_worker.models.zoo import DEFAULT_ENSEMBLE, Ensemble

PUBLISHED_CONFIGS = Path(__file__).with_name("published_configs")

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

_TINY_ROFORMER = {"dim": 32, "depth": 1, "heads": 2, "dim_head": 16}

# Only the width and depth of the networks; everything a loader or a chunker reads stays published.
TINY_MODEL_SIZES: dict[str, dict] = {
    "model_bs_roformer_ep_317_sdr_12.9755.yaml": _TINY_ROFORMER,
    "vocals_mel_band_roformer.yaml": _TINY_ROFORMER,
    # MDX23C's cost on a CPU is its 8192-point spectrograms at the published overlap of 8: the thinnest net.
    "model_2_stem_full_band_8k.yaml": {
        "num_channels": 4, "growth": 4, "num_scales": 1, "num_blocks_per_scale": 1, "bottleneck_factor": 16,
    },
    # The modes' split models (models/modes.py)
    "mel_band_roformer_karaoke_aufr33_viperx_sdr_10.1956_config.yaml": _TINY_ROFORMER,
    "BS-Roformer-SW.yaml": _TINY_ROFORMER,
    "dereverb_mel_band_roformer_anvuew.yaml": _TINY_ROFORMER,
    "denoise_mel_band_roformer_aufr33_sdr_27.9959_config.yaml": _TINY_ROFORMER,
}

# Other mirrors of the same checkpoints publish other stem spellings: the training repository's
# BS-Roformer YAML names its stems vocals/other. Both must load the same way.
STEM_NAME_VARIANTS: dict[str, dict] = {
    "training-repo": {
        "model_bs_roformer_ep_317_sdr_12.9755.yaml": {"instruments": ["vocals", "other"], "target_instrument": "vocals"},
        # The karaoke model's author named its target (the lead vocal) "karaoke"; the zoo's copy says Vocals.
        "mel_band_roformer_karaoke_aufr33_viperx_sdr_10.1956_config.yaml": {
            "instruments": ["karaoke", "other"], "target_instrument": "karaoke",
        },
    },
}


def published_config(config_name: str) -> dict:
    return loader.read_config(PUBLISHED_CONFIGS / config_name)


def config_for(config_name: str, size: str = "tiny", variant: str = "") -> dict:
    config = published_config(config_name)
    if size == "tiny":
        config["model"].update(TINY_MODEL_SIZES[config_name])
    config["training"].update(STEM_NAME_VARIANTS.get(variant, {}).get(config_name, {}))
    return config


def write_config(path: Path, config: dict) -> None:
    # yaml.dump keeps the published !!python/tuple tags, which the zoo's loader reads back.
    path.write_text(yaml.dump(config, sort_keys=False), encoding="utf-8")


def write_model(
    model_dir: Path, checkpoint: str, config_name: str, size: str = "tiny", seed: int = 0, variant: str = ""
) -> None:
    """Write a random-weight checkpoint and its YAML under the zoo's filenames."""
    model_dir.mkdir(parents=True, exist_ok=True)
    write_config(model_dir / config_name, config_for(config_name, size, variant))
    torch.manual_seed(seed)
    written = loader.read_config(model_dir / config_name)
    module = loader.build_module(loader.detect_family(written), written, None)
    torch.save(module.state_dict(), model_dir / checkpoint)


def write_mode_models(model_dir: Path) -> Path:
    """The split models every mode uses (models/modes.py), beside the ensemble's."""
    for seed, spec in enumerate({m.checkpoint: m for mode in MODES.values() for m in mode.models}.values(), start=10):
        if not loader.files_present(spec, model_dir):
            write_model(model_dir, spec.checkpoint, spec.config, seed=seed)
    return model_dir


def write_ensemble(
    model_dir: Path, size: str = "tiny", ensemble: Ensemble = DEFAULT_ENSEMBLE, variant: str = ""
) -> Path:
    for seed, spec in enumerate(ensemble.members):
        if not loader.files_present(spec, model_dir):
            write_model(model_dir, spec.checkpoint, spec.config, size, seed, variant)
    return model_dir
