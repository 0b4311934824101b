"""`stembot models download|list`: fetch the ensemble's checkpoints ahead of time (e.g. before the worker starts),
and see which are present, missing or damaged."""

from __future__ import annotations

import argparse
import sys
import time

from separation_worker.models.zoo import parse_ensemble


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("models", help="download or list the separation models")
    actions = parser.add_subparsers(dest="models_action", required=True, metavar="ACTION")
    actions.add_parser("download", help="download every missing or damaged model file into STEMBOT_MODEL_DIR, "
                       "verified").set_defaults(handler=download)
    actions.add_parser("list", help="show the ensemble and which models are present, missing or damaged; "
                       "exit 1 unless all are present").set_defaults(handler=list_models)


def download(args: argparse.Namespace, settings) -> int:
    # No torch here: checking and fetching files needs none (only a legacy-format checkpoint's check loads it).
    from separation_worker.models import download as fetching
    from separation_worker.models import inventory

    ensemble = parse_ensemble(settings.ensemble)
    folder = settings.model_dir
    bar = _BytesBar() if sys.stderr.isatty() else None
    failures: list[str] = []
    for spec in ensemble.members:
        states = inventory.files_of(spec, folder)
        if all(state.present for state in states):
            print(f"{spec.name}: already in {folder}")
            continue
        for state in states:
            if state.present:
                continue
            file = inventory.ModelFile(spec.name, state.filename, state.kind)
            source = fetching.source_name(fetching.sources(file, settings.model_mirror)[0])
            print(f"{spec.name}: downloading {state.filename} ({state.label()}) from {source} ...", flush=True)
            try:
                fetching.fetch_file(file, folder, settings.model_mirror, progress=bar)
            except fetching.DownloadFailed as exc:
                failures.append(exc.download_line(mirrored=bool(settings.model_mirror)))
                continue
            finally:
                if bar:
                    bar.close()
            size = (folder / state.filename).stat().st_size
            print(f"{spec.name}: {state.filename} verified ({_megabytes(size)}) and in place", flush=True)
    for failure in failures:
        print(f"stembot: {failure}", file=sys.stderr)
    if failures:
        return 1
    print(f"All {len(ensemble.members)} models are in {folder}")
    return 0


def list_models(args: argparse.Namespace, settings) -> int:
    from separation_worker.models import inventory

    ensemble = parse_ensemble(settings.ensemble)
    print(f"Model folder: {settings.model_dir}")
    bad = 0
    for spec in ensemble.members:
        checkpoint, config = inventory.files_of(spec, settings.model_dir)
        # One mark per model: its checkpoint's, unless that is fine and its YAML is not (then named).
        fault = checkpoint if not checkpoint.present else config
        which = f"  ({spec.config})" if fault is config and not config.present else ""
        print(f"  {spec.weight:.2f}  {spec.name:<20} {spec.checkpoint}  [{fault.label()}]{which}")
        bad += not fault.present
    if bad:
        print(f"{bad} of {len(ensemble.members)} models are missing or damaged: run `stembot models download`")
        return 1
    return 0


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


class _BytesBar:
    """`  123.4 / 639.1 MB` redrawn in place on a terminal, a few times a second."""

    def __init__(self) -> None:
        self._drawn = 0.0
        self._shown = False

    def __call__(self, file, done: int, total: int | None) -> None:
        now = time.monotonic()
        if done and now - self._drawn < 0.2 and done != total:
            return
        self._drawn = now
        of = f" / {_megabytes(total)}" if total else ""
        sys.stderr.write(f"\r  {_megabytes(done)}{of}\x1b[K")
        sys.stderr.flush()
        self._shown = True

    def close(self) -> None:
        if self._shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
            self._shown = False
