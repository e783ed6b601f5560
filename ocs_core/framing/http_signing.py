"""Signed requests to crossbar's HTTP caller bridge (sans-IO: query parameters from key, secret, body).

crossbar checks ``signature == urlsafe_b64(HMAC-SHA256(secret, key | timestamp | seq | nonce |
body))`` and that ``timestamp`` (UTC, ``%Y-%m-%dT%H:%M:%S.%fZ``) is within its
``timestamp_delta_limit`` of its own clock. As installed (26.10.1) it checks neither ``seq`` nor
``nonce``, so a captured request could be replayed inside that window
(:mod:`ocs_core.router.replay_guard` refuses replays in the router worker).
"""
from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import secrets

__all__ = ["signed_params", "signed_query", "new_secret"]


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
    """:func:`signed_params` as a URL query string (``key`` must be URL-safe: letters, digits,
    ``_``, ``-``, as ``hub.http_key`` is; cheaper than ``urllib.parse.urlencode``)."""
    p = signed_params(key, secret, body, seq)
    return (f"key={p['key']}&timestamp={p['timestamp'].replace(':', '%3A')}&seq={p['seq']}"
            f"&nonce={p['nonce']}&signature={p['signature'].replace('=', '%3D')}")
