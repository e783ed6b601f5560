"""The password a client sends for ``privs``: a password string, or a level from ocs's password file.

``privs`` is a string (sent as it is), ``None`` or ``1`` (no password), or ``2``/``3``: the
password for that level is looked up in ``$OCS_PASSWORDS_FILE``, else ``~/.ocs-passwords.yaml``
(ocs's format and matching rules, :func:`ocs_core.runtime.access.client_password`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from ocs_core.runtime.access import AccessRuleError, client_password, parse_password_file

__all__ = ["password_for", "passwords_file", "PasswordFileError"]


class PasswordFileError(ValueError):
    """``privs`` is not a password or level, or the password file cannot be used."""


def passwords_file() -> Path:
    """``$OCS_PASSWORDS_FILE`` if set, else ``~/.ocs-passwords.yaml``."""
    return Path(os.environ.get("OCS_PASSWORDS_FILE") or os.path.expanduser("~/.ocs-passwords.yaml"))


def password_for(privs: Any, instance_id: str, agent_class: str | None) -> str:
    """The password to send to ``instance_id`` (of ``agent_class``) for ``privs``.

    Raises:
        PasswordFileError: ``privs`` is neither a string nor 1, 2 or 3; or a level 2/3 was
            asked for and the password file is missing or malformed.
    """
    if isinstance(privs, str):
        return privs
    if privs is None or privs == 1 and not isinstance(privs, bool):
        return ""
    if isinstance(privs, bool) or not isinstance(privs, int) or privs not in (2, 3):
        raise PasswordFileError(f"privs must be a password string or a level 1, 2 or 3, got {privs!r}")
    path = passwords_file()
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        entries = parse_password_file(doc, str(path))
    except FileNotFoundError:
        raise PasswordFileError(f"privs={privs}: no password file at {path} (set "
                                "OCS_PASSWORDS_FILE or create ~/.ocs-passwords.yaml)") from None
    except (OSError, yaml.YAMLError) as exc:
        raise PasswordFileError(f"{path}: cannot read the password file: "
                                f"{str(exc).splitlines()[0]}") from None
    except AccessRuleError as exc:
        raise PasswordFileError(str(exc)) from None
    return client_password(entries, privs, instance_id, agent_class)
