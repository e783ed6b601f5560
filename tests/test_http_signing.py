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


def test_keyed_sha256_equals_the_hmac_module_for_any_key_and_message():
    """The signer's and the check's HMAC (two SHA-256 states copied per message) gives
    ``hmac``'s bytes: keys empty, short, of one block, longer (hashed first), any bytes."""
    import random

    from ocs_core.framing.http_signing import _KeyedSha256

    rng = random.Random(11)
    for _ in range(600):
        secret = rng.randbytes(rng.choice([0, 1, 32, 43, 63, 64, 65, 128, 300]))
        first, message = rng.randbytes(rng.randrange(24)), rng.randbytes(rng.randrange(400))
        keyed = _KeyedSha256(secret, first)
        expected = hmac.new(secret, first + message, hashlib.sha256).digest()
        assert keyed.digest(message) == expected
        assert keyed.digest(message) == expected  # the keyed states are not consumed


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


def test_fast_path_answers_exactly_as_every_check_in_order():
    """After a first request has set the parsed second, ``verify`` makes only the signature
    check for requests as ``Signer`` makes them: on any request it must answer as the full
    sequence of crossbar's checks does (seeded variations of every field)."""
    import random

    rng = random.Random(7)
    at = NOW.timestamp()
    for clock_offset in (0.5, 20.0):  # the router's clock: in the window, then far past it
        check = SignatureCheck(b"web", b"secret", 10, clock=lambda: at + clock_offset)
        signer = Signer("web", "secret", clock=lambda: at + rng.random() * 0.8)
        check.verify(_args(signer.query(BODY, 1)), BODY)  # sets the parsed second
        variants = {
            "key": [b"other", b"web", b""], "seq": [b"-5", b"+5", b" 7", b"1_0", b"x", b"\xd9\xa3"],
            "nonce": [b"-1", b"1.5", b"", b"12"], "signature": [b"", b"AAAA", None],
            "timestamp": [b"2026-12-01T10:00:00.999Z", b"2026-12-01T10:00:00.12aZ",
                          b"2026-12-01T10:00:00.123456Z", b"2026-12-01T10:00:01.000Z",
                          b"2026-12-01T10:00:00.123", b"2026-12-01T10:00:00.1234Z"]}
        answers = set()
        for n in range(600):
            args = _args(signer.query(BODY, n))
            body = BODY
            for name in rng.sample(sorted(variants), rng.randint(0, 2)):
                value = rng.choice(variants[name])
                field = name.encode()
                if value is None:
                    del args[field]
                elif rng.random() < 0.3:
                    args[field] = [value] + args[field]  # a repeated field: the first counts
                else:
                    args[field] = [value]
            if rng.random() < 0.1:
                body = BODY + b" "
            reference = SignatureCheck(b"web", b"secret", 10, clock=lambda: at + clock_offset)
            expected = reference._verify_each(args, body)
            assert check.verify(args, body) == expected, (args, body)
            answers.add(None if expected is None else expected.category)
        # the variations reached every kind of answer the window allows
        assert answers == ({None, "AR459", "AR460", "AR461", "AR462"} if clock_offset < 10
                           else {"AR462", "AR464"})  # a stale stamp is refused before the rest


def test_nonces_differ_between_signers_seeded_runs_and_a_forked_child():
    import os
    import random

    queries = [Signer("web", "s").query(b"", 1) for _ in range(3)]
    nonces = [urllib.parse.parse_qs(q)["nonce"][0] for q in queries]
    assert len(set(nonces)) == 3
    random.seed(0)  # a script seeding the random module does not make nonces repeat
    first = Signer("web", "s").query(b"", 1)
    random.seed(0)
    assert urllib.parse.parse_qs(Signer("web", "s").query(b"", 1))["nonce"] != \
        urllib.parse.parse_qs(first)["nonce"]
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next nonce
        os.write(write, Signer("web", "s").query(b"", 1).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = urllib.parse.parse_qs(pipe.read())["nonce"][0]
    os.waitpid(pid, 0)
    parent = urllib.parse.parse_qs(Signer("web", "s").query(b"", 1))["nonce"][0]
    assert child != parent and abs(int(child) - int(parent)) > 1000
