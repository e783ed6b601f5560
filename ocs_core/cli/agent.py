"""``ocs-core agent INSTANCE_ID [AGENT ARGS...]``: run one agent instance of the site file."""
from __future__ import annotations

import argparse
from pathlib import Path

from ocs_core._quiet_imports import skip_unused_serializers
from ocs_core.site.discovery import find_agent_entry
from ocs_core.site.args import site_file_path
from ocs_core.site.config import SiteConfigError, load_site_config


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add the ``agent`` subcommand."""
    agent = subparsers.add_parser(
        "agent", parents=[common],
        help="run an agent instance of the site file (arguments after the id go to the agent)",
        description="Run the agent instance INSTANCE_ID of the site file. Its agent-class picks "
                    "the 'ocs_core.agents' entry point; its arguments come from the site file, "
                    "and arguments given here replace site-file arguments of the same flag.")
    agent.add_argument("instance_id", metavar="INSTANCE_ID")
    agent.set_defaults(func=run_agent, extra_args=True, launcher=True)


def agent_command_line(args: argparse.Namespace, site_file: Path) -> list[str]:
    """The argument list the agent's ``main`` receives."""
    extra = list(args.extra)
    argv = ["--instance-id", args.instance_id, "--site-file", str(site_file)]
    if args.site_host:
        argv += ["--site-host", args.site_host]
    return argv + extra


def run_agent(args: argparse.Namespace) -> int:
    """Resolve the instance, find its agent class's main and call it in this process."""
    site_file = site_file_path(args.site_file, args.site).resolve()
    cfg = load_site_config(site_file)
    host = cfg.host(args.site_host)
    inst = host.instance(args.instance_id)
    if inst is None:
        known = ", ".join(host.instance_ids) or "none"
        raise SiteConfigError(f"{site_file}: host {host.name!r}: unknown instance-id "
                              f"{args.instance_id!r} (known: {known})")
    skip_unused_serializers()  # before the agent's module (and autobahn) is imported
    main = find_agent_entry(inst.agent_class)
    result = main(agent_command_line(args, site_file))
    return result if isinstance(result, int) else 0
