"""Signed requests to crossbar's HTTP caller bridge (sans-IO): signing, and checking a signature.

crossbar checks ``signature == urlsafe_b64(HMAC-SHA256(secret, key | timestamp | seq | nonce |
body))`` and that ``timestamp`` (UTC, ``%Y-%m-%dT%H:%M:%S.%fZ``) is within its
``timestamp_delta_limit`` of its own clock. As installed (26.10.1) it checks neither ``seq`` nor
``nonce``, so a captured request could be replayed inside that window.
:class:`SignatureCheck` makes crossbar's checks, with its replies, in a fraction of its time; the
router worker uses it in place of crossbar's own and refuses replays
(:mod:`ocs_core.router.replay_guard`).
"""
from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import hmac
import itertools
import os
import re
import secrets
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Sequence

__all__ = ["signed_params", "signed_query", "Signer", "new_secret", "SignatureCheck", "Refusal",
           "SIGNED_FIELDS"]

#: The query parameters of a signed request.
SIGNED_FIELDS = (b"key", b"timestamp", b"seq", b"nonce", b"signature")
_STAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # crossbar's
_PLAIN_STAMP = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{1,6}Z\Z")
_EPOCH = datetime.datetime(1970, 1, 1)
_URLSAFE = bytes.maketrans(b"+/", b"-_")

#: A timestamp's milliseconds and its ``Z``, formatted once (formatting them costs a request
#: ~4 µs with cold caches, as a client's are at each call).
_MILLIS = tuple(f".{ms:03d}Z" for ms in range(1000))


def _nonce_counter() -> Iterator[int]:
    return itertools.count(secrets.randbits(62))


#: Nonces only have to differ (the router refuses a ``(key, nonce)`` it accepted within its
#: memory span); the signature, not the nonce, is what a forger lacks. So they count up from a
#: random start drawn from the OS, for all signers of the process: two processes' nonces
#: meet only if their starts lie closer than the requests they make (out of 2**62). A forked
#: child draws a new start, or its nonces would repeat its parent's.
_nonces = _nonce_counter()


def _restart_nonces() -> None:
    global _nonces
    _nonces = _nonce_counter()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_restart_nonces)


def _urlsafe_b64(digest: bytes) -> bytes:
    return binascii.b2a_base64(digest, newline=False).translate(_URLSAFE)


try:  # CPython's own SHA-256 (3.12+: _sha2); its copy() is a memcpy, where OpenSSL 3's
    from _sha2 import sha256 as _plain_sha256  # type: ignore[import-not-found]
except ImportError:  # HMAC copy and digest duplicate three provider contexts each
    try:
        from _sha256 import sha256 as _plain_sha256  # type: ignore[import-not-found,no-redef]
    except ImportError:
        _plain_sha256 = hashlib.sha256  # type: ignore[assignment]

_SHA256_BLOCK = 64
_INNER_PAD = bytes(x ^ 0x36 for x in range(256))
_OUTER_PAD = bytes(x ^ 0x5C for x in range(256))


class _KeyedSha256:
    """HMAC-SHA256 (RFC 2104) keyed by ``secret`` and fed ``first`` once; :meth:`digest` of
    each message after it costs two copies of a SHA-256 state.

    Built on CPython's own SHA-256 where it has one: with the CPU caches cold, as a client
    calling now and then and the router between requests find them, a signature cost ~20 µs
    through ``hmac`` (OpenSSL 3 copies three provider contexts per copy and again per digest)
    and ~8 µs this way. The same bytes as ``hmac.new(secret, first + message, "sha256")``.
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, secret: bytes, first: bytes = b"") -> None:
        if len(secret) > _SHA256_BLOCK:
            secret = hashlib.sha256(secret).digest()
        secret = secret.ljust(_SHA256_BLOCK, b"\0")
        self._inner = _plain_sha256(secret.translate(_INNER_PAD))
        self._inner.update(first)
        self._outer = _plain_sha256(secret.translate(_OUTER_PAD))

    def digest(self, message: bytes) -> bytes:
        """The HMAC of ``first + message``."""
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


def new_secret(nbytes: int = 32) -> str:
    """A random secret for the bridge (URL-safe text)."""
    return secrets.token_urlsafe(nbytes)


def signed_params(key: str, secret: str, body: bytes, seq: int, *,
                  now: datetime.datetime | None = None, nonce: int | None = None) -> dict[str, str]:
    """The query parameters that sign ``body`` for crossbar's caller path.

    Args:
        key, secret: the bridge's key and secret (from the credentials file).
        body: the exact request body that will be sent.
        seq: a counter the client increments per request.
        now: the time to stamp (default: the current UTC time).
        nonce: a random integer (default: fresh random 63 bits).
    """
    stamp = (now or datetime.datetime.now(datetime.timezone.utc)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    nonce_text = str(secrets.randbits(63) if nonce is None else nonce)
    seq_text = str(seq)
    mac = hmac.new(secret.encode("utf-8"), None, hashlib.sha256)
    for part in (key, stamp, seq_text, nonce_text):
        mac.update(part.encode("utf-8"))
    mac.update(body)
    return {"key": key, "timestamp": stamp, "seq": seq_text, "nonce": nonce_text,
            "signature": base64.urlsafe_b64encode(mac.digest()).decode("ascii")}


def signed_query(key: str, secret: str, body: bytes, seq: int) -> str:
    """:func:`signed_params` as a URL query string (see :meth:`Signer.query`)."""
    return Signer(key, secret).query(body, seq)


class Signer:
    """Signs bridge requests for one key and secret, cheaply: the HMAC is keyed and fed the key
    once, the timestamp's date and time of day formatted once a second.

    ``key`` must be URL-safe (letters, digits, ``_``, ``-``, as ``hub.http_key`` is).
    """

    def __init__(self, key: str, secret: str, clock: Callable[[], float] = time.time) -> None:
        self.key, self._clock = key, clock
        self._mac = _KeyedSha256(secret.encode("utf-8"), key.encode("utf-8"))
        self._head = f"key={key}&timestamp="
        self._second, self._prefix = -1, ""

    def query(self, body: bytes, seq: int) -> str:
        """The signed query string for ``body``, nothing percent-encoded.

        The timestamp's ``:`` and the signature's ``=`` padding are legal in a query (RFC 3986)
        and read back unchanged; without ``%`` escapes urllib3 takes its fast path over the
        URL and the router unquotes nothing (escaping them cost the client ~25 µs a request).
        """
        now = self._clock()
        second = int(now)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        stamp = self._prefix + _MILLIS[min(int((now - second) * 1000), 999)]
        nonce = next(_nonces)
        signature = _urlsafe_b64(self._mac.digest(f"{stamp}{seq}{nonce}".encode("ascii") + body))
        return f"{self._head}{stamp}&seq={seq}&nonce={nonce}&signature={signature.decode('ascii')}"


@dataclass(frozen=True)
class Refusal:
    """Why a signed request is refused, as crossbar replies: HTTP code, crossbar's log
    category (which names its reply text) and the ``reason`` that text quotes."""

    code: int
    category: str
    reason: str = ""


class SignatureCheck:
    """crossbar 26.10.1's checks of a signed bridge request, its order and its refusals.

    Differences: the timestamp is parsed without ``strptime`` when it has crossbar's own
    fixed format (others still go through ``strptime``, so what crossbar accepts is accepted),
    the HMAC key is prepared once, and the signature is compared in constant time.

    Args:
        key, secret: the bridge's key and secret.
        window_s: the tolerated distance of a timestamp from ``clock`` (0: no limit, as crossbar).
        clock: seconds since the epoch (UTC).
    """

    def __init__(self, key: bytes, secret: bytes, window_s: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.key, self.window_s, self._clock = key, window_s, clock
        self._mac = _KeyedSha256(secret, key)  # a request's key must equal ``key``
        self._second_prefix, self._second_at = b"", 0.0  # the last timestamp's second, parsed

    def verify(self, args: Mapping[bytes, Sequence[bytes]], body: bytes) -> Refusal | None:
        """None if ``args`` (the query, each name's values; the first counts) sign ``body``.

        A request as ``Signer`` makes them (each field once, the known key, a timestamp in
        the same second as the last one parsed, digits for ``seq`` and ``nonce``) passes all
        of crossbar's checks but the signature's, so only that one is made; any other
        request gets every check in crossbar's order.
        """
        try:
            (key,), (stamp,), (seq,), (nonce,), (signature,) = (
                args[b"key"], args[b"timestamp"], args[b"seq"], args[b"nonce"], args[b"signature"])
        except (KeyError, ValueError):
            return self._verify_each(args, body)
        if (key == self.key and stamp[:20] == self._second_prefix and len(stamp) == 24
                and stamp[23:] == b"Z" and stamp[20:23].isdigit() and seq.isdigit()
                and nonce.isdigit() and (not self.window_s or abs(
                    self._second_at + int(stamp[20:23]) / 1000 - self._clock()) <= self.window_s)):
            expected = self._mac.digest(b"".join((stamp, seq, nonce, body)))
            if hmac.compare_digest(signature, _urlsafe_b64(expected)):
                return None
            return Refusal(401, "AR459")
        return self._verify_each(args, body)

    def _verify_each(self, args: Mapping[bytes, Sequence[bytes]], body: bytes) -> Refusal | None:
        first = {name: values[0] for name in SIGNED_FIELDS if (values := args.get(name))}
        if b"key" not in first:
            return Refusal(400, "AR461", "'key' field missing")
        stamp = first.get(b"timestamp")
        if stamp is None:
            return Refusal(400, "AR461", "signed request required, but mandatory 'timestamp' field missing")
        at = self._seconds(stamp)
        if at is None:
            return Refusal(400, "AR462", f"invalid timestamp '{stamp.decode('utf-8', 'replace')}' "
                                         "(must be UTC/ISO-8601, e.g. '2011-10-14T16:59:51.123Z')")
        if self.window_s and abs(at - self._clock()) > self.window_s:
            return Refusal(400, "AR464")
        for name in (b"seq", b"nonce"):
            text = first.get(name)
            if text is None:
                return Refusal(400, "AR461", f"'{name.decode()}' field missing")
            try:
                int(text)
            except ValueError:
                what = "sequence number" if name == b"seq" else "nonce"
                return Refusal(400, "AR462", f"invalid {what} '{text.decode('utf-8', 'replace')}' "
                                             "(must be an integer)")
        signature = first.get(b"signature")
        if signature is None:
            return Refusal(400, "AR461", "'signature' field missing")
        if first[b"key"] != self.key:
            return Refusal(401, "AR460", f"unknown key '{first[b'key'].decode('utf-8', 'replace')}' "
                                         "in signed request")
        expected = self._mac.digest(b"".join((stamp, first[b"seq"], first[b"nonce"], body)))
        if not hmac.compare_digest(signature, _urlsafe_b64(expected)):
            return Refusal(401, "AR459")
        return None

    def _seconds(self, stamp: bytes) -> float | None:
        """Seconds since the epoch of a UTC timestamp in crossbar's format, or None; a stamp
        to the millisecond sets the second :meth:`verify` reads without a date parse."""
        try:
            if _PLAIN_STAMP.match(stamp):
                at = datetime.datetime.fromisoformat(stamp[:-1].decode("ascii"))
            else:
                at = datetime.datetime.strptime(stamp.decode("utf-8"), _STAMP_FORMAT)
        except (ValueError, UnicodeDecodeError):
            return None
        seconds = (at - _EPOCH).total_seconds()
        if len(stamp) == 24 and _PLAIN_STAMP.match(stamp):
            self._second_prefix, self._second_at = stamp[:20], seconds - int(stamp[20:23]) / 1000
        return seconds
