"""`stembot check [--for ROLES]`: every missing or invalid setting, one line each; exit 1 if any."""

from __future__ import annotations

import argparse

from stembot.config_check import ROLES, check, default_roles, parse_roles
from stembot.settings import SettingsError


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("check", help="check the configuration (settings, Redis, ffmpeg, models) and exit")
    parser.add_argument("--for", dest="roles", default=None, metavar="ROLES",
                        help=f"comma-separated, from {', '.join(ROLES)} (default: worker, web and each bot whose "
                             "token is set)")
    parser.set_defaults(handler=run, tolerates_bad_settings=True)


def run(args: argparse.Namespace, settings) -> int:
    roles = parse_roles(args.roles) if args.roles is not None else ()
    report = check(settings, roles or default_roles(settings))
    for note in report.notes:
        print(f"note: {note}")
    problems = [*getattr(args, "settings_problems", []), *report.problems]
    if problems:
        raise SettingsError.of(problems)
    print(f"Configuration OK for {', '.join(report.roles)}.")
    return 0
