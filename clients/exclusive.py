"""ExclusiveAccess: hold an Access Director's exclusive grant for a ``with`` block.

    with ExclusiveAccess("fake-subsystem", password="grant-pw") as grant:
        client = OCSClient("faker1", privs=grant.password)
        client.delay_task(delay=1)      # others are locked out of the grant's levels meanwhile

The grant is acquired on entry, renewed in a background thread (every third of its lifetime)
and released on exit, also when the block raises. It speaks ocs 0.12's ``request_exclusive``,
so it works with ocs's Access Director too.
"""
from __future__ import annotations

import getpass
import logging
import os
import socket
import threading
import time
from typing import Any

from clients.client_http import DEFAULT_TIMEOUT, ControlClient
from clients.site import resolve_hub

__all__ = ["ExclusiveAccess", "ExclusiveAccessError"]

log = logging.getLogger("clients.exclusive")


class ExclusiveAccessError(RuntimeError):
    """The director refused a request; ``str(exc)`` is its error text."""


class ExclusiveAccess:
    """An exclusive-access grant from an Access Director.

    Args:
        grant_name: the ``exclusive_access_blocks`` entry of the director's config.
        password: the block's password, if it has one.
        grantee: who holds the grant (shown to those locked out); default ``user@host:pid``.
        director: the director's instance-id.
        lifetime: seconds each acquire or renew asks for.
        args, site_file, site_host: the site options, as for OCSClient.
        timeout: seconds each HTTP request may take.

    Attributes:
        password: the grant's password (pass it as ``privs``) while held, else None.
        expire_at: when the grant lapses unless renewed.
        renew_error: the last renewal failure, if any (the grant may have lapsed).
    """

    def __init__(self, grant_name: str, password: str | None = None, grantee: str | None = None, *,
                 director: str = "access-director", lifetime: float = 60.0, args: Any = None,
                 site_file: str | None = None, site_host: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        if lifetime <= 0:
            raise ValueError(f"lifetime must be > 0 seconds, got {lifetime!r}")
        hub = resolve_hub(args, site_file=site_file, site_host=site_host)
        address = f"{hub.address_root}.{director}"
        self._client = ControlClient(address, hub.wamp_http, timeout=timeout, signing=hub.signing)
        self._procedure = f"{address}.request_exclusive"
        self._request = {"grant_name": grant_name, "password": password,
                         "grantee": grantee or f"{getpass.getuser()}@{socket.gethostname()}:{os.getpid()}"}
        self.lifetime = float(lifetime)
        self.password: str | None = None
        self.expire_at: float | None = None
        self.renew_error: str | None = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def _call(self, action: str, **extra: Any) -> dict[str, Any]:
        result = self._client.call(self._procedure, **self._request, action=action, **extra)
        if not isinstance(result, dict) or "error" in result:
            error = result.get("error") if isinstance(result, dict) else repr(result)
            raise ExclusiveAccessError(f"{action} {self._request['grant_name']}: {error}")
        return result

    def acquire(self) -> str:
        """Acquire the grant and start renewing it; return its password.

        Raises:
            ExclusiveAccessError: the director refused (held by someone else, wrong password...).
            ControlClientError: the director is not reachable.
        """
        result = self._call("acquire", expire_at=time.time() + self.lifetime)
        self.password, self.expire_at = result["password"], result["expire_at"]
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew_loop, daemon=True,
                                         name=f"renew {self._request['grant_name']}")
        self._renewer.start()
        return self.password

    def renew(self) -> float:
        """Extend the grant by ``lifetime`` seconds; return the new expiry time."""
        self.expire_at = self._call("renew", expire_at=time.time() + self.lifetime)["expire_at"]
        return self.expire_at

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.lifetime / 3):
            try:
                self.renew()
                self.renew_error = None
            except Exception as exc:  # keep trying: the director may be back before expiry
                self.renew_error = str(exc)
                log.warning("renewing grant %s failed: %s", self._request["grant_name"], exc)

    def release(self) -> None:
        """Stop renewing and release the grant (idempotent)."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=self._client.timeout + 1)
            self._renewer = None
        if self.password is not None:
            self.password = self.expire_at = None
            self._call("release")

    def __enter__(self) -> "ExclusiveAccess":
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self.release()
        finally:
            self._client.close()
