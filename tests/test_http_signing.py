"""Signed bridge requests (pure): crossbar's HMAC recomputed, and the query string form."""
import base64
import datetime
import hashlib
import hmac
import urllib.parse

from ocs_core.framing.http_signing import signed_params, signed_query


def test_signature_is_crossbars_hmac_over_key_timestamp_seq_nonce_body():
    now = datetime.datetime(2026, 12, 1, 10, 0, 0, 123456, tzinfo=datetime.timezone.utc)
    p = signed_params("web", "secret", b'{"procedure": "x"}', 7, now=now, nonce=42)
    assert (p["timestamp"], p["seq"], p["nonce"]) == ("2026-12-01T10:00:00.123Z", "7", "42")
    datetime.datetime.strptime(p["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ")  # crossbar's format
    mac = hmac.new(b"secret", None, hashlib.sha256)
    for part in (b"web", p["timestamp"].encode(), b"7", b"42", b'{"procedure": "x"}'):
        mac.update(part)
    assert p["signature"] == base64.urlsafe_b64encode(mac.digest()).decode()


def test_query_string_decodes_to_the_same_parameters():
    query = urllib.parse.parse_qs(signed_query("ocs-core_http", "s" * 40, b"body", 3))
    assert set(query) == {"key", "timestamp", "seq", "nonce", "signature"}
    assert query["key"] == ["ocs-core_http"] and query["seq"] == ["3"]
    assert query["signature"][0].endswith("=") and ":" in query["timestamp"][0]
