"""The dashboard's key and login sessions (pure: no Twisted, no network).

On an authenticated site ``ocs-core web`` needs a key: from ``--key-file`` or generated at
start. A person logs in with it once; the browser then holds a random session token (an
HttpOnly cookie). The key and the session give no op privilege: op requests carry the person's
own ocs password.

* Keys are compared in constant time (:func:`hmac.compare_digest`); sessions are kept by the
  SHA-256 of their token, so a lookup's timing says nothing about a live token.
* At most :data:`MAX_SESSIONS` sessions (a new login forgets the least recently used one);
  one unused for :data:`IDLE_SECONDS` is forgotten.
* Wrong keys are limited: :data:`MAX_FAILURES` per client address and :data:`MAX_FAILURES_ALL`
  in all within :data:`FAILURE_WINDOW` seconds; beyond, every login (the right key too) is
  refused until the window has passed.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from collections import OrderedDict, deque
from pathlib import Path
from typing import Callable

from ocs_core.site.credentials import CredentialsError, check_private

__all__ = ["LoginGate", "LoginRefused", "KeyFileError", "new_key", "read_key_file",
           "MIN_KEY_CHARS", "MAX_KEY_CHARS", "MAX_SESSIONS", "IDLE_SECONDS", "MAX_FAILURES",
           "MAX_FAILURES_ALL", "FAILURE_WINDOW"]

#: A key file's key: at least this many characters (a generated one has 43), at most that many.
MIN_KEY_CHARS = 16
MAX_KEY_CHARS = 256
MAX_SESSIONS = 64
IDLE_SECONDS = 12 * 3600.0
MAX_FAILURES = 5
MAX_FAILURES_ALL = 50
FAILURE_WINDOW = 60.0
#: Client addresses whose failures are remembered (the oldest are forgotten first).
_MAX_CLIENTS = 1024


class KeyFileError(Exception):
    """The key file cannot be used; the text names the file and what to do."""


class LoginRefused(Exception):
    """A login the gate refuses: ``code`` is the HTTP status (401 wrong key, 429 too many)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def new_key() -> str:
    """A new random key (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def read_key_file(path: str | os.PathLike) -> tuple[str, bool]:
    """The key in ``path`` and whether it was just created.

    A missing file is created mode 0600 with a new key; an existing one must be private to
    its owner (as the credentials file) and hold one key of :data:`MIN_KEY_CHARS` to
    :data:`MAX_KEY_CHARS` printable characters without spaces.

    Raises:
        KeyFileError: group/world readable, unreadable, or not a usable key.
    """
    path = Path(path).expanduser()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot create the dashboard's key file: {exc.strerror}") from None
    else:
        key = new_key()
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(key + "\n")
        return key, True
    try:
        check_private(path)
        with open(path, "rb") as f:
            data = f.read(MAX_KEY_CHARS + 3)
    except CredentialsError as exc:
        raise KeyFileError(str(exc)) from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read the dashboard's key file: {exc.strerror}") from None
    try:
        key = data.decode("ascii").strip()
    except UnicodeDecodeError:
        key = ""
    if not (MIN_KEY_CHARS <= len(key) <= MAX_KEY_CHARS) or not key.isprintable() or " " in key:
        raise KeyFileError(f"{path}: expected one key of {MIN_KEY_CHARS} to {MAX_KEY_CHARS} printable "
                           "characters without spaces (delete the file and a new key is made)")
    return key, False


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "replace")).digest()


class LoginGate:
    """Who is logged in to the dashboard.

    Args:
        key: the dashboard's key; None: no login needed (an open site without ``--key-file``).
        clock: monotonic seconds (tests may pass a fake).
    """

    def __init__(self, key: str | None, clock: Callable[[], float] = time.monotonic) -> None:
        self._key = key.encode("utf-8") if key is not None else None
        self.clock = clock
        self._sessions: OrderedDict[bytes, float] = OrderedDict()  # digest -> last use
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()  # client -> times
        self._all_failures: deque[float] = deque()

    @property
    def required(self) -> bool:
        """Whether pages need a login."""
        return self._key is not None

    @property
    def session_count(self) -> int:
        """Sessions held now."""
        self._expire()
        return len(self._sessions)

    def login(self, candidate: object, client: str) -> str:
        """A new session token for the right key.

        Raises:
            LoginRefused: wrong key (401), or too many wrong keys lately (429).
        """
        now = self.clock()
        self._forget_failures(now)
        mine = self._failures.get(client)
        if (mine is not None and len(mine) >= MAX_FAILURES) or len(self._all_failures) >= MAX_FAILURES_ALL:
            oldest = mine[0] if mine is not None and len(mine) >= MAX_FAILURES else self._all_failures[0]
            wait = max(1, int(oldest + FAILURE_WINDOW - now + 0.999))
            raise LoginRefused(f"too many wrong keys lately; try again in {wait} s", 429)
        if self._key is None:
            raise LoginRefused("this dashboard needs no key", 400)
        given = candidate.encode("utf-8", "replace") if isinstance(candidate, str) else b""
        if not given or not hmac.compare_digest(given, self._key):
            self._failed(client, now)
            raise LoginRefused("wrong key: use the key that ocs-core web printed in its address line "
                               "(or the one in its --key-file)", 401)
        self._expire(now)
        token = secrets.token_urlsafe(32)
        self._sessions[_digest(token)] = now
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return token

    def valid(self, token: str | None) -> bool:
        """Whether ``token`` is a live session (using it keeps it alive); always True when no
        login is required."""
        if self._key is None:
            return True
        if not token:
            return False
        now = self.clock()
        self._expire(now)
        digest = _digest(token)
        if digest not in self._sessions:
            return False
        self._sessions[digest] = now
        self._sessions.move_to_end(digest)
        return True

    def logout(self, token: str | None) -> None:
        """Forget the session of ``token`` (if any)."""
        if token:
            self._sessions.pop(_digest(token), None)

    def _expire(self, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        while self._sessions:
            digest, used = next(iter(self._sessions.items()))
            if now - used < IDLE_SECONDS:
                break
            del self._sessions[digest]

    def _failed(self, client: str, now: float) -> None:
        times = self._failures.pop(client, None) or deque()
        times.append(now)
        self._failures[client] = times
        while len(self._failures) > _MAX_CLIENTS:
            self._failures.popitem(last=False)
        self._all_failures.append(now)

    def _forget_failures(self, now: float) -> None:
        horizon = now - FAILURE_WINDOW
        while self._all_failures and self._all_failures[0] <= horizon:
            self._all_failures.popleft()
        for client in list(self._failures):
            times = self._failures[client]
            while times and times[0] <= horizon:
                times.popleft()
            if not times:
                del self._failures[client]
