"""``ocs-core agent INSTANCE_ID [AGENT ARGS...]``: run one agent instance of the site file.

The instance's agent-class is looked up in ocs-core's registry first (entry points, or a
``module:function`` / ``file.py:function`` target, a relative file being under the site file's
directory); a class of ocs's plugins runs through ocs's own ``ocs-agent-cli``, which replaces
this process (same pid, so a supervisor sees no difference). A configuration or usage error
exits with :data:`CONFIG_ERROR_STATUS`, which supervisors do not retry.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from ocs_core._quiet_imports import skip_unused_serializers
from ocs_core.site.discovery import find_agent_entry, registry_of
from ocs_core.site.args import site_file_path
from ocs_core.site.config import SiteConfigError, load_site_config
from ocs_core.site.ocs_plugins import ocs_agent_command

#: Exit status of a configuration or usage error (sysexits' EX_CONFIG); argparse's own is 2.
CONFIG_ERROR_STATUS = 78


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add the ``agent`` subcommand."""
    agent = subparsers.add_parser(
        "agent", parents=[common], add_help=False,
        help="run an agent instance of the site file (arguments after the id go to the agent)",
        description="Run the agent instance INSTANCE_ID of the site file. Its agent-class picks "
                    "the 'ocs_core.agents' entry point (or a module:function / file.py:function "
                    "target, or one of ocs's plugins through ocs-agent-cli); its arguments come "
                    "from the site file, and arguments given here replace site-file arguments "
                    "of the same flag. `ocs-core agent INSTANCE_ID --help` shows the agent's own "
                    "options.")
    agent.add_argument("-h", "--help", action="store_true",
                       help="show this help; after INSTANCE_ID, the agent's own options")
    agent.add_argument("instance_id", metavar="INSTANCE_ID", nargs="?")
    agent.set_defaults(func=run_agent, extra_args=True, parser=agent, launcher=True,
                       user_error_status=CONFIG_ERROR_STATUS)


def agent_command_line(args: argparse.Namespace, site_file: Path) -> list[str]:
    """The argument list the agent's ``main`` receives."""
    extra = list(args.extra) + (["--help"] if getattr(args, "help", False) else [])
    argv = ["--instance-id", args.instance_id, "--site-file", str(site_file)]
    if args.site_host:
        argv += ["--site-host", args.site_host]
    return argv + extra


def run_agent(args: argparse.Namespace) -> int:
    """Resolve the instance, find its agent class's main and call it in this process."""
    if args.instance_id is None:
        if args.help:
            args.parser.print_help()
            return 0
        args.parser.error("the following arguments are required: INSTANCE_ID")
    site_file = site_file_path(args.site_file, args.site).resolve()
    cfg = load_site_config(site_file)
    host = cfg.host(args.site_host)
    inst = host.instance(args.instance_id)
    if inst is None:
        known = ", ".join(host.instance_ids) or "none"
        raise SiteConfigError(f"{site_file}: host {host.name!r}: unknown instance-id "
                              f"{args.instance_id!r} (known: {known})")
    if inst.manage.startswith("docker"):
        raise SiteConfigError(f"{site_file}: instance {inst.instance_id!r} is managed by docker "
                              f"(manage: {inst.manage}); ocs-core runs host agents only")
    if registry_of(inst.agent_class, site_file.parent) == "ocs":
        argv = ocs_agent_command(inst.instance_id, site_file, host.name, list(args.extra))
        os.execv(argv[0], argv)  # ocs's own launcher replaces this process
    skip_unused_serializers()  # before the agent's module (and autobahn) is imported
    main = find_agent_entry(inst.agent_class, site_file.parent)
    result = main(agent_command_line(args, site_file))
    return result if isinstance(result, int) else 0
