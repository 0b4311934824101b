"""`stembot models download|list`: fetch the ensemble's checkpoints ahead of time (e.g. before the worker starts),
and see which are present, missing or damaged."""

from __future__ import annotations

import argparse
import sys
import time

from separation_worker.models.modes import DEFAULT_MODE, MODES
from separation_worker.models.zoo import ModelSpec, parse_ensemble

ALL_MODES = "all"


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("models", help="download or list the separation models")
    actions = parser.add_subparsers(dest="models_action", required=True, metavar="ACTION")
    mode_help = (f"also the models of these modes (comma-separated, of {', '.join(MODES)}, or {ALL_MODES}); "
                 "default: the ensemble alone (the vocals mode)")
    download_parser = actions.add_parser("download", help="download every missing or damaged model file into "
                                         "STEMBOT_MODEL_DIR, verified")
    download_parser.add_argument("--mode", default=DEFAULT_MODE, type=_modes, help=mode_help)
    download_parser.set_defaults(handler=download)
    list_parser = actions.add_parser("list", help="show the ensemble (and the modes' models) and which are present, "
                                     "missing or damaged; exit 1 unless all are present")
    list_parser.add_argument("--mode", default=DEFAULT_MODE, type=_modes, help=mode_help)
    list_parser.set_defaults(handler=list_models)


def _modes(value: str) -> tuple[str, ...]:
    names = tuple(MODES) if value.strip().lower() == ALL_MODES else tuple(
        part.strip().lower() for part in value.split(",") if part.strip())
    unknown = [name for name in names if name not in MODES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown mode {', '.join(unknown) or value!r}: one of "
                                         f"{', '.join(MODES)} or {ALL_MODES}")
    return names


def wanted_models(settings, modes: tuple[str, ...] | str = (DEFAULT_MODE,)) -> list[ModelSpec]:
    """The ensemble's models, then each listed mode's split models, each once."""
    modes = (modes,) if isinstance(modes, str) else modes
    specs = list(parse_ensemble(settings.ensemble).members)
    for name in modes:
        specs += [m for m in MODES[name].models if m not in specs]
    return specs


def download(args: argparse.Namespace, settings) -> int:
    # No torch here: checking and fetching files needs none (only a legacy-format checkpoint's check loads it).
    from separation_worker.models import download as fetching
    from separation_worker.models import inventory

    specs = wanted_models(settings, args.mode)
    folder = settings.model_dir
    bar = _BytesBar() if sys.stderr.isatty() else None
    failures: list[str] = []
    for spec in specs:
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
    print(f"All {len(specs)} models are in {folder}")
    return 0


def list_models(args: argparse.Namespace, settings) -> int:
    from separation_worker.models import inventory

    specs = wanted_models(settings, args.mode)
    print(f"Model folder: {settings.model_dir}")
    bad = 0
    for spec in specs:
        checkpoint, config = inventory.files_of(spec, settings.model_dir)
        # One mark per model: its checkpoint's, unless that is fine and its YAML is not (then named).
        fault = checkpoint if not checkpoint.present else config
        which = f"  ({spec.config})" if fault is config and not config.present else ""
        role = f"{spec.weight:.2f}" if spec.vocals_stem else "mode"  # a mode's split model has no ensemble weight
        print(f"  {role:>4}  {spec.name:<26} {spec.checkpoint}  [{fault.label()}]{which}")
        bad += not fault.present
    if bad:
        flag = "" if args.mode == (DEFAULT_MODE,) else f" --mode {','.join(args.mode)}"
        print(f"{bad} of {len(specs)} models are missing or damaged: run `stembot models download{flag}`")
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
