"""`stembot models download|list`: fetch the ensemble's checkpoints ahead of time (e.g. in an image)."""

from __future__ import annotations

import argparse

from separation_worker.models.zoo import parse_ensemble


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("models", help="download or list the separation models")
    actions = parser.add_subparsers(dest="models_action", required=True, metavar="ACTION")
    actions.add_parser("download", help="download every model of the ensemble into STEMBOT_MODEL_DIR").set_defaults(
        handler=download
    )
    actions.add_parser("list", help="show the ensemble and which models are present").set_defaults(handler=list_models)


def download(args: argparse.Namespace, settings) -> int:
    from separation_worker.models import loader  # torch: only when a model is touched, not for `stembot --help`

    ensemble = parse_ensemble(settings.ensemble)
    for spec in ensemble.members:
        if loader.files_present(spec, settings.model_dir):
            print(f"{spec.name}: already in {settings.model_dir}")
            continue
        print(f"{spec.name}: downloading {spec.checkpoint} and {spec.config} ...", flush=True)
        loader.download(spec, settings.model_dir)  # audio-separator draws the progress bars
    print(f"All {len(ensemble.members)} models are in {settings.model_dir}")
    return 0


def list_models(args: argparse.Namespace, settings) -> int:
    from separation_worker.models import loader

    ensemble = parse_ensemble(settings.ensemble)
    print(f"Model folder: {settings.model_dir}")
    for spec in ensemble.members:
        state = "present" if loader.files_present(spec, settings.model_dir) else "missing"
        print(f"  {spec.weight:.2f}  {spec.name:<20} {spec.checkpoint}  [{state}]")
    return 0
