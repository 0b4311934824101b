"""`stembot models download|list`: fetch the ensemble's checkpoints ahead of time (e.g. before the worker starts),
and see which are present, missing or damaged."""

from __future__ import annotations

import argparse
import sys

from separation_worker.models.zoo import parse_ensemble


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("models", help="download or list the separation models")
    actions = parser.add_subparsers(dest="models_action", required=True, metavar="ACTION")
    actions.add_parser("download", help="download every missing or damaged model into STEMBOT_MODEL_DIR, verified"
                       ).set_defaults(handler=download)
    actions.add_parser("list", help="show the ensemble and which model files are present, missing or damaged"
                       ).set_defaults(handler=list_models)


def download(args: argparse.Namespace, settings) -> int:
    from separation_worker.contract.errors import ModelError
    from separation_worker.models import inventory
    from separation_worker.models.download import download as fetch

    ensemble = parse_ensemble(settings.ensemble)
    failures = []
    for spec in ensemble.members:
        states = inventory.files_of(spec, settings.model_dir)
        if all(state.status is inventory.FileStatus.PRESENT for state in states):
            print(f"{spec.name}: already in {settings.model_dir}")
            continue
        why = ", ".join(f"{s.filename} {s.label()}" for s in states if s.status is not inventory.FileStatus.PRESENT)
        print(f"{spec.name}: downloading ({why}) ...", flush=True)
        try:
            fetch(spec, settings.model_dir, settings.model_mirror)
        except ModelError as exc:
            failures.append(str(exc))
            continue
        print(f"{spec.name}: verified and in place")
    for failure in failures:
        print(f"stembot: {failure}", file=sys.stderr)
    if failures:
        return 1
    print(f"All {len(ensemble.members)} models are in {settings.model_dir}")
    return 0


def list_models(args: argparse.Namespace, settings) -> int:
    from separation_worker.models import inventory

    ensemble = parse_ensemble(settings.ensemble)
    print(f"Model folder: {settings.model_dir}")
    bad = 0
    for spec in ensemble.members:
        checkpoint, config = inventory.files_of(spec, settings.model_dir)
        print(f"  {spec.weight:.2f}  {spec.name:<20} {spec.checkpoint}  [{checkpoint.label()}]")
        if config.status is not inventory.FileStatus.PRESENT:
            print(f"        {'':<20} {spec.config}  [{config.label()}]")
        bad += checkpoint.status is not inventory.FileStatus.PRESENT or config.status is not inventory.FileStatus.PRESENT
    if bad:
        print(f"{bad} of {len(ensemble.members)} models are missing or damaged: run `stembot models download`")
        return 1
    return 0
