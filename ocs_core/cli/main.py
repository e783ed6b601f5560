"""The ``ocs-core`` console command: argparse with one small module per subcommand.

A subcommand module defines ``register(subparsers, common)``: it adds its parser(s) with
``parents=[common]`` (the ``--site-file``/``--site-host`` options every subcommand takes)
and sets ``func`` (``func(args) -> int``) as a default. Set ``extra_args=True`` as a default
to receive unparsed trailing arguments as ``args.extra``. To add a subcommand, append its
module to :data:`SUBCOMMANDS`.

User errors (bad site file, unknown instance or agent class, router problems) print one line
``ocs-core: error: ...`` and exit with status 1.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from ocs_core.site.discovery import AgentEntryError
from ocs_core.router.process import RouterError
from ocs_core.site.config import SiteConfigError

__all__ = ["main", "build_parser", "common_options", "SUBCOMMANDS", "FAST_PATHS", "USER_ERRORS", "CliError"]

#: Modules that each define ``register(subparsers, common)``, in help order.
SUBCOMMANDS: list[str] = [
    "ocs_core.cli.router",
    "ocs_core.cli.agent",
    "ocs_core.cli.site",
    "clients.cli_commands",  # named by string: ocs_core does not import clients
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
    group.add_argument("--site-file", metavar="PATH",
                       help="site config file (default: $OCS_SITE_FILE, else ./site-config.yaml)")
    group.add_argument("--site-host", metavar="NAME",
                       help="host entry of the site file (default: this machine, else 'localhost')")
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
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as exc:
        print(f"ocs-core: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130

