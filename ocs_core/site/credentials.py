"""The credentials file of an authenticated site: agents' key pairs and the HTTP bridge's secret.

It lives outside ``site-config.yaml`` (``hub.credentials``, default ``ocs-credentials.yaml`` beside
it), is written mode 0600, and is refused when group or others may read it::

    agents:
      fake-data1: {public_key: 3b6a...e1, private_key: 9f02...7c}
      remote-1: {public_key: 77aa...90}        # its private key lives on its own host only
    http:
      ocs-core-http: Zk3...q                   # the secret of hub.http_key

The router needs the public keys (and the HTTP secret); an agent needs its private key; a
host's copy holds only its own agents' private keys (``ocs-core credentials export``). Pure:
no Twisted, no network.
"""
from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ocs_core.site.config import SiteConfigError

__all__ = ["Credentials", "AgentKey", "CredentialsError", "load_credentials", "save_credentials"]

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
HEADER = ("# ocs-core credentials: the agents' private keys and the HTTP bridge's secret.\n"
          "# Keep it private (mode 0600); `ocs-core credentials --help` creates, rotates, exports.\n")


class CredentialsError(SiteConfigError):
    """The credentials file is missing, too widely readable, or malformed."""


@dataclass(frozen=True)
class AgentKey:
    """One agent's key pair (``private_key`` is None where only the router needs the entry)."""

    public_key: str
    private_key: str | None = None


@dataclass
class Credentials:
    """The contents of a credentials file."""

    agents: dict[str, AgentKey] = field(default_factory=dict)
    http: dict[str, str] = field(default_factory=dict)

    def to_doc(self) -> dict[str, Any]:
        agents = {iid: {"public_key": k.public_key, **({"private_key": k.private_key}
                                                        if k.private_key else {})}
                  for iid, k in sorted(self.agents.items())}
        return {"agents": agents, "http": dict(sorted(self.http.items()))}


def _fail(path: Path, what: str) -> CredentialsError:
    return CredentialsError(f"{path}: {what}")


def check_private(path: Path) -> None:
    """Refuse a credentials file that group or others may read or write."""
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise _fail(path, f"readable by group or others (mode {stat.S_IMODE(mode):04o}); "
                          f"run: chmod 600 {path}")


def load_credentials(path: str | os.PathLike) -> Credentials:
    """Read and check a credentials file.

    Raises:
        CredentialsError: missing (with the command that creates it), group/world readable,
            not YAML, or an entry that is not a 64-hex-digit key.
    """
    path = Path(path)
    try:
        check_private(path)
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _fail(path, "no credentials file; create it with `ocs-core credentials create`") from None
    except OSError as exc:
        raise _fail(path, f"cannot read the credentials file: {exc.strerror}") from None
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError:
        raise _fail(path, "not valid YAML") from None  # no excerpt: it would show secrets
    if not isinstance(doc, dict) or set(doc) - {"agents", "http"}:
        raise _fail(path, "expected a mapping with 'agents' and 'http'")
    creds = Credentials()
    agents = doc.get("agents") or {}
    if not isinstance(agents, dict):
        raise _fail(path, "agents: expected a mapping of instance-id to keys")
    for iid, entry in agents.items():
        if not isinstance(entry, dict) or set(entry) - {"public_key", "private_key"}:
            raise _fail(path, f"agents.{iid}: expected public_key and (optionally) private_key")
        for k in ("public_key", "private_key"):
            if (k == "public_key" or entry.get(k) is not None) and not _HEX64.match(str(entry.get(k))):
                raise _fail(path, f"agents.{iid}.{k}: expected 64 lowercase hex digits")
        creds.agents[str(iid)] = AgentKey(entry["public_key"], entry.get("private_key"))
    http = doc.get("http") or {}
    if not isinstance(http, dict):
        raise _fail(path, "http: expected a mapping of key name to secret")
    for name, secret in http.items():
        if not isinstance(secret, str) or len(secret) < 16:
            raise _fail(path, f"http.{name}: expected a secret of at least 16 characters")
        creds.http[str(name)] = secret
    return creds


def save_credentials(creds: Credentials, path: str | os.PathLike) -> Path:
    """Write ``creds`` to ``path`` with mode 0600 (atomically: a private temporary file, renamed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(HEADER)
            yaml.safe_dump(creds.to_doc(), f, sort_keys=False, default_flow_style=False)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
