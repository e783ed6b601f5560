"""Command-line side of the site config: standard options, environment, instance resolution.

Every agent, client and ``ocs-core`` subcommand takes the same site options. An agent's
``main(args)`` typically does::

    parser = argparse.ArgumentParser()
    parser.add_argument('--mode', default='idle')
    args = site_args.parse_args('FakeDataAgent', parser, args)
    address = site_args.agent_address(args)      # e.g. 'observatory.faker1'

Resolution follows ocs 0.12: the instance is found by ``--instance-id`` (else by a unique
agent-class match); its ``arguments`` from the site file are merged with the command line (a
command-line option replaces the site file's option of the same flag); the hub and host fill
whatever the command line did not give. Pure logic: no Twisted, no network.
"""
from __future__ import annotations

import argparse
import functools
import os
import re
import sys
from pathlib import Path
from typing import Mapping

from ocs_core.site.config import (HostConfig, HubConfig, InstanceConfig, SiteConfig, SiteConfigError,
                                  load_site_config)
from ocs_core.site.credentials import load_credentials

__all__ = ["add_arguments", "parse_args", "agent_address", "merge_arguments", "split_groups",
           "site_file_path", "site_host_default", "ENV_FLAGS", "CONTROL", "HOST_ONLY",
           "DEFAULT_SITE_FILE", "SITE_FILE_HELP", "SITE_HELP", "CHECK_ENV", "CHECKED"]

#: ``agent_class`` values with special meaning: a client (no host or instance needed) and a
#: host-level tool (host matching only).
CONTROL = "*control*"
HOST_ONLY = "*host*"
DEFAULT_SITE_FILE = "site-config.yaml"
#: Environment variables that stand for options (like ocs-agent-cli's); the command line wins.
ENV_FLAGS = {
    "INSTANCE_ID": "--instance-id",
    "SITE_HOST": "--site-host",
    "SITE_HUB": "--site-hub",
    "SITE_HTTP": "--site-http",
    "CROSSBAR_TIMEOUT": "--crossbar-timeout",
}
_OPTION = re.compile(r"^--?[A-Za-z]")
#: Set by ``ocs-core up``'s check of every instance (ocs_core.supervisor.precheck): ``parse`` makes
#: an agent's parse_args, ``init`` its init_site_agent, raise ``SystemExit(CHECKED)`` instead of
#: going on (runtime.agent has the same two names: the layers do not import each other).
CHECK_ENV = "OCS_CORE_CHECK_ARGUMENTS"
CHECKED = "ocs-core: arguments checked"
SITE_FILE_HELP = ("site config file (default: $OCS_CONFIG_DIR/default.yaml when $OCS_CONFIG_DIR "
                  "is set, else $OCS_SITE_FILE, else ./site-config.yaml)")
SITE_HELP = "site name, as in ocs: the site file is $OCS_CONFIG_DIR/NAME.yaml"


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if value < 0 or value != value:
        raise argparse.ArgumentTypeError(f"expected seconds >= 0 (0 = forever), got {text!r}")
    return value


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Help that shows each option's default, unless its text already names one or it has none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (not action.option_strings or "default" in text or default in (None, False, argparse.SUPPRESS, [], ())
                or isinstance(action, argparse._HelpAction)):
            return text
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        return f"{text} (default: {shown})" if text else f"(default: {shown})"


def add_arguments(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Add the standard site options to ``parser`` (a new parser when None) and return it.

    A new parser's help shows every option's default (:class:`DefaultsHelpFormatter`).
    """
    if parser is None:
        parser = argparse.ArgumentParser(formatter_class=DefaultsHelpFormatter)
    group = parser.add_argument_group("site configuration")
    group.add_argument("--site-file", metavar="PATH", help=SITE_FILE_HELP)
    group.add_argument("--site", metavar="NAME", help=SITE_HELP)
    group.add_argument("--site-host", metavar="NAME",
                       help="host entry to use (default for agents: $SITE_HOST, else this "
                            "machine's name, else 'localhost')")
    group.add_argument("--site-hub", metavar="URL", help="router websocket URL (overrides hub.wamp_server)")
    group.add_argument("--site-http", metavar="URL", help="router HTTP bridge URL (overrides hub.wamp_http)")
    group.add_argument("--site-realm", metavar="REALM", help="WAMP realm (overrides hub.wamp_realm)")
    group.add_argument("--instance-id", metavar="ID", help="agent instance-id in the site file")
    group.add_argument("--address-root", metavar="ROOT", help="URI root (overrides hub.address_root)")
    group.add_argument("--access-policy", metavar="POLICY",
                       help="access policy (overrides hub.access_policy)")
    group.add_argument("--log-dir", metavar="DIR", help="log directory (overrides the host's log-dir)")
    group.add_argument("--working-dir", metavar="DIR",
                       help="directory a relative log dir is under (default: the current one)")
    group.add_argument("--crossbar-timeout", metavar="SECONDS", type=_timeout,
                       help="how long to keep reconnecting to a lost router; 0 = forever (default)")
    return parser


def site_file_path(value: str | os.PathLike | None, site: str | None = None,
                   environ: Mapping[str, str] | None = None) -> Path:
    """The site file to use (docs/site-and-router.md has the table).

    ``--site-file`` (``value``), else ``--site NAME`` (``$OCS_CONFIG_DIR/NAME.yaml``), else, when
    ``$OCS_CONFIG_DIR`` is set, ``$OCS_CONFIG_DIR/default.yaml`` (ocs's rule: ocs's tools and
    ocs-core in one shell use one site), else ``$OCS_SITE_FILE``, else ``./site-config.yaml``.

    Raises:
        SiteConfigError: both ``--site`` and ``--site-file``; ``--site`` without
            ``$OCS_CONFIG_DIR``; ``--site none``.
    """
    environ = os.environ if environ is None else environ
    config_dir = environ.get("OCS_CONFIG_DIR")
    if site is not None:
        if value:
            raise SiteConfigError(f"give --site or --site-file, not both (--site {site}, "
                                  f"--site-file {value})")
        if site == "none":
            raise SiteConfigError("--site none (no site file) is not supported: ocs-core reads "
                                  "its hub and hosts from a site file; pass --site-file PATH")
        if not config_dir:
            raise SiteConfigError(f"--site {site}: $OCS_CONFIG_DIR is not set (the site is "
                                  f"$OCS_CONFIG_DIR/{site}.yaml); set it or pass --site-file PATH")
        return Path(config_dir) / f"{site}.yaml"
    if value:
        return Path(value)
    if config_dir:
        return Path(config_dir) / "default.yaml"
    chosen = environ.get("OCS_SITE_FILE")
    return Path(chosen) if chosen else Path(DEFAULT_SITE_FILE)


def site_host_default(value: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """``--site-host`` as agent launchers take it (ocs's ``ocs-agent-cli``): ``value``, else
    ``$SITE_HOST``, else None (this machine's name, else ``localhost``, is matched later)."""
    environ = os.environ if environ is None else environ
    return value or environ.get("SITE_HOST") or None


def agent_address(args: argparse.Namespace) -> str:
    """The agent's WAMP address ``<address_root>.<instance_id>``."""
    if not getattr(args, "address_root", None) or not getattr(args, "instance_id", None):
        raise SiteConfigError("agent address needs both --address-root and --instance-id")
    return f"{args.address_root}.{args.instance_id}"


def _flag(token: str) -> str | None:
    """The flag a token starts a group with, or None when it is a value (e.g. ``-5``)."""
    if not _OPTION.match(token):
        return None
    if token.startswith("--"):
        return token.split("=", 1)[0]
    return token[:2]


def split_groups(tokens: list[str]) -> list[tuple[str | None, list[str]]]:
    """Split an argument list into ``(flag, tokens)`` groups, each starting at an option.

    A group starts at a token of ``-`` or ``--`` followed by a letter; anything else (values,
    negative numbers) joins the current group. Leading values form a group with flag None.
    """
    groups: list[tuple[str | None, list[str]]] = []
    for token in tokens:
        flag = _flag(token)
        if flag is not None or not groups:
            groups.append((flag, [token]))
        else:
            groups[-1][1].append(token)
    return groups


def merge_arguments(config_args: list[str], cli_args: list[str]) -> list[str]:
    """Merge a site file's instance arguments with the command line (command line wins).

    Every command-line group replaces all site-file groups with the same flag; leading
    positional values on the command line replace the site file's.
    """
    config_groups = split_groups(list(config_args))
    cli_groups = split_groups(list(cli_args))
    cli_flags = {flag for flag, _ in cli_groups}
    lead: list[str] = []
    if config_groups and config_groups[0][0] is None:
        lead = config_groups.pop(0)[1]
    if cli_groups and cli_groups[0][0] is None:
        lead = cli_groups.pop(0)[1]
    merged = list(lead)
    for flag, tokens in config_groups:
        if flag not in cli_flags:
            merged.extend(tokens)
    for _, tokens in cli_groups:
        merged.extend(tokens)
    return merged


def _has_flag(tokens: list[str], flag: str) -> bool:
    return any(t == flag or t.startswith(flag + "=") for t in tokens)


def _env_tokens(argv: list[str], environ: dict | None = None) -> list[str]:
    environ = os.environ if environ is None else environ
    tokens: list[str] = []
    for var, flag in ENV_FLAGS.items():
        value = environ.get(var)
        if value and not _has_flag(argv, flag):
            tokens += [flag, value]
    return tokens


class _QuietParser(argparse.ArgumentParser):
    def error(self, message: str):  # noqa: D102
        raise ValueError(message)


@functools.lru_cache(maxsize=1)
def _preparser() -> _QuietParser:
    # Built once: parsing does not change it, and building one costs ~0.2 ms per client.
    return add_arguments(_QuietParser(add_help=False, allow_abbrev=False))


def _preparse(argv: list[str]) -> argparse.Namespace | None:
    try:
        return _preparser().parse_known_args(argv)[0]
    except ValueError:  # a bad site option value: the caller's parser reports it
        return None


def _has_site_options(parser: argparse.ArgumentParser) -> bool:
    return any("--site-file" in action.option_strings for action in parser._actions)


def _load(args: argparse.Namespace, control: bool) -> SiteConfig | None:
    path = site_file_path(args.site_file, args.site)
    complete = all(getattr(args, k) for k in ("site_hub", "site_http", "site_realm", "address_root"))
    if control and complete and not path.exists():
        return None
    return load_site_config(path)


def _select_instance(cfg: SiteConfig, host: HostConfig, agent_class: str,
                     instance_id: str | None) -> InstanceConfig:
    known = ", ".join(host.instance_ids) or "none"
    where = f"{cfg.path}: host {host.name!r}"
    if instance_id:
        inst = host.instance(instance_id)
        if inst is None:
            raise SiteConfigError(f"{where}: unknown instance-id {instance_id!r} (known: {known})")
        return inst
    matches = [i for i in host.agent_instances if i.agent_class == agent_class]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise SiteConfigError(f"{where}: no instance of agent-class {agent_class!r}; pass "
                              f"--instance-id (known: {known})")
    ids = ", ".join(i.instance_id for i in matches)
    raise SiteConfigError(f"{where}: several instances of agent-class {agent_class!r} ({ids}); "
                          f"pass --instance-id")


def parse_args(agent_class: str | None, parser: argparse.ArgumentParser | None = None,
               args: list[str] | None = None) -> argparse.Namespace:
    """Resolve an agent's (or a client's) options against the site file.

    Args:
        agent_class: the agent's class name; None or ``'*control*'`` for a client (no host or
            instance needed); ``'*host*'`` for a host-level tool (host matching only).
        parser: the agent's parser; the standard site options are added when missing.
        args: the command line without the program name (default ``sys.argv[1:]``).

    Returns:
        The namespace parsed from the merged arguments, with ``site_file`` (absolute),
        ``site_host``, ``site_hub``, ``site_http``, ``site_realm``, ``address_root``,
        ``access_policy``, ``instance_id``, ``log_dir``, ``working_dir`` and
        ``crossbar_timeout`` filled in from the site file when not given, and
        ``agent_class`` (the argument, as in ocs) unless the parser defines it.

    Raises:
        SiteConfigError: bad site file, no matching host or instance.
    """
    if parser is None:
        parser = argparse.ArgumentParser()
    if not _has_site_options(parser):
        add_arguments(parser)
    argv = list(sys.argv[1:] if args is None else args)
    if "-h" in argv or "--help" in argv:  # help needs no site file
        parser.parse_args(argv)
    control = agent_class in (None, CONTROL)
    if not control:  # as ocs-agent-cli: the environment stands for options of agents only
        argv = _env_tokens(argv) + argv
    pre = _preparse(argv)
    if pre is None:
        parser.parse_args(argv)  # exits with argparse's own message
        raise SiteConfigError(f"invalid site options: {argv}")
    cfg = _load(pre, control)

    host: HostConfig | None = None
    inst: InstanceConfig | None = None
    if cfg is not None:
        host = cfg.find_host(pre.site_host) if control else cfg.host(pre.site_host)
    if not control and agent_class != HOST_ONLY:
        assert cfg is not None and host is not None
        inst = _select_instance(cfg, host, agent_class, pre.instance_id)
        if not pre.instance_id:
            argv = ["--instance-id", inst.instance_id] + argv
        argv = merge_arguments(inst.arguments, argv)
    ns = parser.parse_args(argv)
    _fill(ns, cfg, host)
    if inst is not None and cfg is not None and cfg.hub_for(host).authenticated:
        ns.auth_key = _agent_key(cfg.hub_for(host), ns.instance_id)
    if not hasattr(ns, "agent_class"):
        ns.agent_class = agent_class
    if not control and os.environ.get(CHECK_ENV) == "parse":
        raise SystemExit(CHECKED)  # ``ocs-core up``'s check: the arguments parse, go no further
    return ns


def _agent_key(hub: HubConfig, instance_id: str) -> str:
    """This agent's private key from the site's credentials file (authenticated sites)."""
    creds = load_credentials(hub.credentials or "")
    entry = creds.agents.get(instance_id)
    if entry is None:
        raise SiteConfigError(f"{hub.credentials}: no key for agent {instance_id!r}; run "
                              f"`ocs-core credentials create` (then restart the router)")
    if entry.private_key is None:
        raise SiteConfigError(f"{hub.credentials}: only the public key of {instance_id!r} is here; "
                              f"copy this host's file from the router host with "
                              f"`ocs-core credentials export --site-host HOST`")
    return entry.private_key


def _fill(ns: argparse.Namespace, cfg: SiteConfig | None, host: HostConfig | None) -> None:
    if cfg is not None:
        hub = cfg.hub_for(host)
        defaults = {"site_hub": hub.wamp_server, "site_http": hub.wamp_http,
                    "site_realm": hub.wamp_realm, "address_root": hub.address_root,
                    "access_policy": hub.access_policy}
        ns.site_http_key, ns.site_credentials = hub.http_key, hub.credentials
        ns.site_authenticated = hub.authenticated
        for key, value in defaults.items():
            if getattr(ns, key, None) is None:
                setattr(ns, key, value)
        ns.site_file = str(Path(cfg.path).resolve()) if cfg.path else ns.site_file
    if host is not None:
        if ns.site_host is None:
            ns.site_host = host.name
        if ns.log_dir is None:
            ns.log_dir = host.log_dir
        if ns.crossbar_timeout is None:
            ns.crossbar_timeout = host.crossbar_timeout
    if ns.crossbar_timeout is None:
        ns.crossbar_timeout = 0.0
    if ns.working_dir is None:
        ns.working_dir = os.getcwd()
    if ns.log_dir is not None and not os.path.isabs(ns.log_dir):
        ns.log_dir = os.path.join(ns.working_dir, ns.log_dir)
