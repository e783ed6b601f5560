"""``ocs-core credentials create|rotate|revoke|export|list``: the keys of an authenticated site.

Secrets are never printed: the commands say what changed and where the file is. After a
change, restart the router (``ocs-core router stop`` / ``start``, or ``ocs-core down`` / ``up``):
it reads the public keys when it starts.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ocs_core.cli.main import CliError
from ocs_core.framing.http_signing import new_secret
from ocs_core.runtime.cryptosign import new_private_key, public_key
from ocs_core.site.args import site_file_path
from ocs_core.site.config import DEFAULT_CREDENTIALS, SiteConfig, load_site_config
from ocs_core.site.credentials import AgentKey, Credentials, load_credentials, save_credentials

RESTART = "restart the router to load them"


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``credentials`` and its subcommands."""
    group = subparsers.add_parser("credentials", help="create, rotate, revoke or export the site's keys")
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = actions.add_parser("create", parents=[common],
                           help="add a key for every agent instance of the site (and the HTTP "
                                "bridge's secret) that has none")
    p.add_argument("--force", action="store_true", help="also for a site that runs open")
    p.set_defaults(func=run_create)
    p = actions.add_parser("rotate", parents=[common], help="replace keys (old ones stop working)")
    p.add_argument("instance_ids", nargs="*", metavar="INSTANCE_ID")
    p.add_argument("--http", action="store_true", help="replace the HTTP bridge's secret")
    p.set_defaults(func=run_rotate)
    p = actions.add_parser("revoke", parents=[common], help="remove agents' keys")
    p.add_argument("instance_ids", nargs="+", metavar="INSTANCE_ID")
    p.set_defaults(func=run_revoke)
    p = actions.add_parser("export", parents=[common],
                           help="write the file another host needs: its own agents' keys")
    p.add_argument("--out", required=True, metavar="PATH", help="where to write it (mode 0600)")
    p.add_argument("--with-http", action="store_true",
                   help="include the HTTP bridge's secret (for hosts that run OCSClient scripts)")
    p.set_defaults(func=run_export)
    p = actions.add_parser("list", parents=[common], help="the agents with keys (public keys only)")
    p.set_defaults(func=run_list)


def _site(args: argparse.Namespace) -> tuple[SiteConfig, Path]:
    cfg = load_site_config(site_file_path(args.site_file))
    path = Path(cfg.hub.credentials or DEFAULT_CREDENTIALS).expanduser()
    if not path.is_absolute():  # an open site's hub.credentials is not resolved by the loader
        path = Path(cfg.path or "site-config.yaml").resolve().parent / path
    return cfg, path


def _load(path: Path, missing_ok: bool = False) -> Credentials:
    if missing_ok and not path.exists():
        return Credentials()
    return load_credentials(path)


def _all_instances(cfg: SiteConfig) -> list[str]:
    return [iid for host in cfg.hosts.values() for iid in host.instance_ids]


def _new_key() -> AgentKey:
    private = new_private_key()
    return AgentKey(public_key(private), private)


def run_create(args: argparse.Namespace) -> int:
    cfg, path = _site(args)
    if not cfg.hub.authenticated and not args.force:
        print(f"{cfg.path}: the site runs open (hub.auth: none): no keys needed "
              "(--force creates them anyway)")
        return 0
    creds = _load(path, missing_ok=True)
    added = [iid for iid in _all_instances(cfg) if iid not in creds.agents]
    for iid in added:
        creds.agents[iid] = _new_key()
    http = cfg.hub.http_key if cfg.hub.http_key and cfg.hub.http_key not in creds.http else None
    if http:
        creds.http[http] = new_secret()
    save_credentials(creds, path)
    what = f"{len(added)} new agent key(s)" + (f" and the HTTP secret {http!r}" if http else "")
    note = "" if cfg.hub.authenticated else " (the site runs open: set hub.auth: cryptosign to use them)"
    if cfg.hub.authenticated:
        note += f"; router authenticated (cryptosign){', HTTP bridge signed' if cfg.hub.http_key else ''}"
    print(f"{path}: {what}; {len(creds.agents)} agent(s) in all{note}"
          + ("; restart a running router to load them" if added or http else ""))
    return 0


def run_rotate(args: argparse.Namespace) -> int:
    cfg, path = _site(args)
    creds = _load(path)
    if not args.instance_ids and not args.http:
        raise CliError("name the instance-ids to rotate, or --http")
    unknown = [iid for iid in args.instance_ids if iid not in creds.agents]
    if unknown:
        raise CliError(f"{path}: no key for {', '.join(unknown)} (create it first)")
    for iid in args.instance_ids:
        creds.agents[iid] = _new_key()
    if args.http:
        if not cfg.hub.http_key:
            raise CliError("the site names no hub.http_key")
        creds.http[cfg.hub.http_key] = new_secret()
    save_credentials(creds, path)
    rotated = list(args.instance_ids) + (["the HTTP secret"] if args.http else [])
    print(f"{path}: rotated {', '.join(rotated)}; {RESTART}, then the agents")
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    _, path = _site(args)
    creds = _load(path)
    gone = [iid for iid in args.instance_ids if creds.agents.pop(iid, None) is not None]
    save_credentials(creds, path)
    print(f"{path}: revoked {', '.join(gone) or 'nothing'}" + (f"; {RESTART}" if gone else ""))
    return 0


def run_export(args: argparse.Namespace) -> int:
    cfg, path = _site(args)
    creds = _load(path)
    host = cfg.host(args.site_host)
    missing = [iid for iid in host.instance_ids if iid not in creds.agents]
    if missing:
        raise CliError(f"{path}: no key for {', '.join(missing)}; run `ocs-core credentials create`")
    out = Credentials(agents={iid: creds.agents[iid] for iid in host.instance_ids},
                      http=dict(creds.http) if args.with_http else {})
    save_credentials(out, args.out)
    print(f"{args.out}: the keys of host {host.name!r} ({len(out.agents)} agent(s)"
          f"{', with the HTTP secret' if args.with_http else ''}); copy it there as "
          f"{Path(path).name}, mode 0600")
    return 0


def run_list(args: argparse.Namespace) -> int:
    _, path = _site(args)
    creds = _load(path)
    for iid, key in sorted(creds.agents.items()):
        print(f"{iid}  {key.public_key[:16]}...  {'private key here' if key.private_key else 'public only'}")
    for name in sorted(creds.http):
        print(f"http {name}  (secret here)")
    return 0
