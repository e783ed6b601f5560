"""The ``ocs-core`` console command: argparse with one small module per subcommand.

A subcommand module defines ``register(subparsers, common)``: it adds its parser(s) with
``parents=[common]`` (the ``--site-file``/``--site-host`` options every subcommand takes)
and sets ``func`` (``func(args) -> int``) as a default. Set ``extra_args=True`` as a default
to receive unparsed trailing arguments as ``args.extra``, and ``launcher=True`` when the
subcommand starts or controls agents (``--site-host`` then defaults to ``$SITE_HOST``). To add a subcommand, append its
module to :data:`SUBCOMMANDS`.

User errors (bad site file, unknown instance or agent class, router problems) print one line
``ocs-core: error: ...`` and exit with status 1.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from ocs_core.site.discovery import AgentEntryError
from ocs_core.router.process import RouterError
from ocs_core.site.args import SITE_FILE_HELP, SITE_HELP, site_file_path, site_host_default
from ocs_core.site.config import SiteConfigError

__all__ = ["main", "build_parser", "common_options", "SUBCOMMANDS", "FAST_PATHS", "USER_ERRORS", "CliError"]

#: Modules that each define ``register(subparsers, common)``, in help order.
SUBCOMMANDS: list[str] = [
    "ocs_core.cli.router",
    "ocs_core.cli.agent",
    "ocs_core.cli.site",
    "ocs_core.cli.credentials",
    "clients.cli_commands",  # named by string: ocs_core does not import clients
    "clients.dashboard.cli",
    "clients.cli_history",
]

#: Subcommands whose module is known up front, so that running one imports only that module.
#: ``ocs-core agent`` starts every agent: loading the client subcommands there (requests and
#: friends) cost ~5 MB of RSS and a tenth of a second of start-up per agent, for nothing.
FAST_PATHS: dict[str, str] = {"agent": "ocs_core.cli.agent"}


class CliError(Exception):
    """A user-facing error of a subcommand: printed as one line, exit status 1."""


#: Exceptions printed as one line (exit status 1) instead of a traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (SiteConfigError, AgentEntryError, RouterError, CliError)


def common_options() -> argparse.ArgumentParser:
    """A parent parser with the options every subcommand takes."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("site")
    group.add_argument("--site-file", metavar="PATH", help=SITE_FILE_HELP)
    group.add_argument("--site", metavar="NAME", help=SITE_HELP)
    group.add_argument("--site-host", metavar="NAME",
                       help="host entry of the site file (default: this machine, else 'localhost'; "
                            "agent launchers: $SITE_HOST first)")
    return common


def build_parser(modules: list[str] | None = None) -> argparse.ArgumentParser:
    """The ``ocs-core`` parser with the subcommands of ``modules`` (default: all of them)."""
    parser = argparse.ArgumentParser(prog="ocs-core", description="ocs-core: agents, router and clients.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = common_options()
    for name in SUBCOMMANDS if modules is None else modules:
        importlib.import_module(name).register(subparsers, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``ocs-core`` with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    fast = FAST_PATHS.get(argv[0]) if argv else None
    parser = build_parser([fast] if fast else None)
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "extra_args", False):
        hint = getattr(args, "extra_hint", "")
        _subparser(parser, args.command).error(f"unrecognized arguments: {' '.join(extra)}"
                                               + (f" ({hint})" if hint else ""))
    args.extra = extra
    if getattr(args, "launcher", False):  # starts or controls agents: $SITE_HOST, as ocs-agent-cli
        args.site_host = site_host_default(args.site_host)
    try:
        if getattr(args, "site", None) is not None:  # --site NAME: one file for every subcommand
            args.site_file, args.site = str(site_file_path(args.site_file, args.site)), None
        status = int(args.func(args) or 0)
        sys.stdout.flush()  # a pipe's reader that left shows here, not at interpreter exit
        return status
    except USER_ERRORS as exc:
        print(f"ocs-core: error: {exc}", file=sys.stderr)
        return int(getattr(args, "user_error_status", 1))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `ocs-core status | head`: the reader left; stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the exit-time flush finds no pipe
        return 141  # as if killed by SIGPIPE (128 + 13), what a shell reports


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    """The parser of subcommand ``command`` (for errors that show its own usage)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            return action.choices[command]
    return parser

