"""WAMP-cryptosign for agents (pure): Ed25519 key pairs and the answer to the router's challenge.

An agent proves it holds the private key of its principal by signing the router's 32-byte
challenge; the router holds only public keys. Uses ``cryptography`` (an autobahn dependency),
so agent hosts need neither crossbar nor PyNaCl.
"""
from __future__ import annotations

import binascii

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = ["new_private_key", "public_key", "sign_challenge", "join_options", "answer_challenge",
           "CryptosignKeyError"]

_RAW = {"encoding": serialization.Encoding.Raw, "format": serialization.PublicFormat.Raw}


class CryptosignKeyError(ValueError):
    """A private key is not 64 hex digits, or a challenge is not valid hex."""


def new_private_key() -> str:
    """A fresh Ed25519 private key (its 32-byte seed as 64 hex digits)."""
    raw = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    return raw.hex()


def _key(private_hex: str) -> Ed25519PrivateKey:
    try:
        seed = bytes.fromhex(private_hex)
    except (TypeError, ValueError):
        seed = b""
    if len(seed) != 32:
        raise CryptosignKeyError("a private key is 64 hex digits (an Ed25519 seed)")
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_key(private_hex: str) -> str:
    """The public key (64 hex digits) the router lists for this private key."""
    return _key(private_hex).public_key().public_bytes(**_RAW).hex()


def sign_challenge(private_hex: str, challenge_hex: str) -> str:
    """crossbar's expected answer: the signature (64 bytes) then the challenge (32 bytes), in hex."""
    try:
        challenge = binascii.a2b_hex(challenge_hex)
    except (TypeError, ValueError, binascii.Error):
        raise CryptosignKeyError(f"the router's challenge is not hex: {str(challenge_hex)[:40]!r}") from None
    return (_key(private_hex).sign(challenge) + challenge).hex()


def join_options(authid: str, private_hex: str | None) -> dict:
    """The keyword arguments of ``ApplicationSession.join`` (none when there is no key:
    anonymous, as ocs agents join)."""
    if not private_hex:
        return {}
    return {"authmethods": ["cryptosign"], "authid": authid,
            "authextra": {"pubkey": public_key(private_hex)}}


def answer_challenge(private_hex: str | None, method: str, extra: dict) -> str:
    """The signature for the router's ``challenge``.

    Raises:
        CryptosignKeyError: not a cryptosign challenge, or this session has no key.
    """
    if method != "cryptosign" or not private_hex:
        raise CryptosignKeyError(f"the router asked for {method!r} authentication; this agent "
                                 "has a cryptosign key only" if private_hex else
                                 f"the router asked for {method!r} authentication and this "
                                 "session has no key")
    return sign_challenge(private_hex, extra.get("challenge", ""))
