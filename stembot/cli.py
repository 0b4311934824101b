"""`stembot` command line: one subcommand per module in stembot/commands."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
import warnings

from . import log_format, redaction
from .commands import COMMANDS
from .settings import Settings, SettingsError

EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stembot",
        description="Separate songs into vocals and instrumental, with BPM and key.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log details (and tracebacks) to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _quiet_libraries(args.verbose)
    try:
        settings = _settings(args)
        redaction.install(redaction.secrets_of(settings))
        log_format.configure(logging.INFO if args.verbose else logging.ERROR, settings.log_format == "json")
        return int(args.handler(args, settings) or 0)
    except SettingsError as exc:  # one line per setting at fault, each naming it
        for problem in exc.problems:
            print(f"stembot: {redaction.scrub(problem)}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("stembot: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one line, no traceback, unless asked for
        if args.verbose:  # scrubbed: a chained exception's text may carry a token (PTB's InvalidToken does)
            print(redaction.scrub(traceback.format_exc()), file=sys.stderr, end="")
        print(f"stembot: {redaction.scrub(str(exc)) or type(exc).__name__}", file=sys.stderr)
        return EXIT_FAILURE


def _settings(args: argparse.Namespace) -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        # `stembot check` goes on with defaults in place of the bad values, to name every other problem too.
        if not getattr(args, "tolerates_bad_settings", False) or exc.partial is None:
            raise
        args.settings_problems = exc.problems
        return exc.partial


def _quiet_libraries(verbose: bool) -> None:
    # The model libraries print deprecation warnings on import; a user only wants our own output.
    if not verbose:
        warnings.filterwarnings("ignore")
        os.environ.setdefault("PYTHONWARNINGS", "ignore")


if __name__ == "__main__":
    sys.exit(main())
