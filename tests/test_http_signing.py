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


# -- the router's check (SignatureCheck): crossbar's checks, order and replies ---------------
import pytest  # noqa: E402

from ocs_core.framing.http_signing import Refusal, SignatureCheck, Signer  # noqa: E402

NOW = datetime.datetime(2026, 12, 1, 10, 0, 0, 123456, tzinfo=datetime.timezone.utc)
BODY = b'{"procedure": "observatory.x.ops"}'


def _args(query: str) -> dict[bytes, list[bytes]]:
    """The query as twisted's request.args holds it."""
    return {k.encode(): [v.encode() for v in vs] for k, vs in urllib.parse.parse_qs(query).items()}


def _check(window_s: float = 10) -> SignatureCheck:
    return SignatureCheck(b"web", b"secret", window_s, clock=lambda: NOW.timestamp() + 1.0)


def test_check_accepts_what_the_signer_and_signed_params_sign():
    signer = Signer("web", "secret", clock=lambda: NOW.timestamp())
    assert _check().verify(_args(signer.query(BODY, 5)), BODY) is None
    params = signed_params("web", "secret", BODY, 6, now=NOW, nonce=9)
    assert _check().verify(_args(urllib.parse.urlencode(params)), BODY) is None
    assert "%" not in signer.query(BODY, 5)


def test_signer_stamps_crossbars_format_to_the_millisecond():
    query = Signer("web", "s", clock=lambda: NOW.timestamp()).query(b"", 1)
    assert urllib.parse.parse_qs(query)["timestamp"] == ["2026-12-01T10:00:00.123Z"]


@pytest.mark.parametrize("drop, reason", [
    ("key", "'key' field missing"),
    ("timestamp", "signed request required, but mandatory 'timestamp' field missing"),
    ("seq", "'seq' field missing"), ("nonce", "'nonce' field missing"),
    ("signature", "'signature' field missing")])
def test_check_refuses_a_missing_field_as_crossbar(drop, reason):
    args = _args(urllib.parse.urlencode(signed_params("web", "secret", BODY, 1, now=NOW)))
    del args[drop.encode()]
    assert _check().verify(args, BODY) == Refusal(400, "AR461", reason)


def test_check_refuses_bad_stale_or_forged_requests_as_crossbar():
    good = signed_params("web", "secret", BODY, 1, now=NOW, nonce=7)

    def verify(**change):
        return _check().verify(_args(urllib.parse.urlencode({**good, **change})), BODY)

    assert verify(timestamp="yesterday").category == "AR462"
    assert "invalid timestamp 'yesterday'" in verify(timestamp="yesterday").reason
    assert verify(timestamp="2026-12-01T10:00:00.123+01:00Z").category == "AR462"
    stale = signed_params("web", "secret", BODY, 1, now=NOW - datetime.timedelta(seconds=12))
    assert _check().verify(_args(urllib.parse.urlencode(stale)), BODY) == Refusal(400, "AR464")
    assert _check(window_s=0).verify(_args(urllib.parse.urlencode(stale)), BODY) is None  # no limit
    assert verify(seq="x").reason == "invalid sequence number 'x' (must be an integer)"
    assert verify(nonce="1.5").reason == "invalid nonce '1.5' (must be an integer)"
    assert verify(key="other") == Refusal(401, "AR460", "unknown key 'other' in signed request")
    assert verify(nonce="8") == Refusal(401, "AR459")  # signed with nonce 7
    assert _check().verify(_args(urllib.parse.urlencode(good)), BODY + b" ") == Refusal(401, "AR459")
    forged = signed_params("web", "other secret", BODY, 1, now=NOW, nonce=7)
    assert _check().verify(_args(urllib.parse.urlencode(forged)), BODY) == Refusal(401, "AR459")


def test_check_takes_other_timestamps_crossbar_takes():
    # strptime's %m and %d take one digit; the fast path does not, the fallback does
    stamp = "2026-12-1T10:00:00.1Z"
    mac = hmac.new(b"secret", None, hashlib.sha256)
    for part in (b"web", stamp.encode(), b"1", b"2", BODY):
        mac.update(part)
    params = {"key": "web", "timestamp": stamp, "seq": "1", "nonce": "2",
              "signature": base64.urlsafe_b64encode(mac.digest()).decode()}
    assert _check().verify(_args(urllib.parse.urlencode(params)), BODY) is None
