"""Sans-IO wire formats: bytes in, events out; values in, bytes out (no Twisted here)."""
