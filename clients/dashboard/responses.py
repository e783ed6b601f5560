"""What every resource of the dashboard's HTTP side shares: JSON replies with the security
headers, query arguments, and the checks of a POST (a JSON body from the page's own origin)."""
from __future__ import annotations

import json
import math
from typing import Any
from urllib.parse import urlsplit

from twisted.web import server

__all__ = ["set_headers", "json_reply", "clean", "arg", "refuse_post", "SECURITY_HEADERS"]

SECURITY_HEADERS = {
    b"content-security-policy": b"default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:",
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"no-referrer",
    b"cache-control": b"no-store",
}


def set_headers(request: server.Request, content_type: bytes) -> None:
    """The content type and :data:`SECURITY_HEADERS`."""
    request.setHeader(b"content-type", content_type)
    for k, v in SECURITY_HEADERS.items():
        request.setHeader(k, v)


def json_reply(request: server.Request, doc: Any, code: int = 200) -> bytes:
    """``doc`` as the JSON body of the reply, with status ``code``."""
    request.setResponseCode(code)
    set_headers(request, b"application/json")
    return json.dumps(doc, allow_nan=False, default=str).encode()


def clean(doc: Any) -> Any:
    """JSON-safe: non-finite floats become null."""
    if isinstance(doc, float) and not math.isfinite(doc):
        return None
    if isinstance(doc, dict):
        return {k: clean(v) for k, v in doc.items()}
    if isinstance(doc, (list, tuple)):
        return [clean(v) for v in doc]
    return doc


def arg(request: server.Request, name: str) -> str | None:
    """The first value of query argument ``name``, or None."""
    values = request.args.get(name.encode())
    return values[0].decode("utf-8", "replace") if values else None


def refuse_post(request: server.Request) -> bytes | None:
    """The error reply of a POST that is not JSON (415) or comes from another origin (403), else
    None. A browser sends ``Origin`` with every POST: another web site open in the same browser
    cannot act, and cannot send JSON across origins without one."""
    ctype = (request.getHeader("content-type") or "").split(";")[0].strip().lower()
    if ctype != "application/json":
        return json_reply(request, {"error": "POST a JSON body (Content-Type: application/json)"}, 415)
    origin = request.getHeader("origin")
    if origin is not None and urlsplit(origin).netloc != request.getHeader("host"):
        return json_reply(request, {"error": f"requests from origin {origin!r} are not accepted"}, 403)
    return None
