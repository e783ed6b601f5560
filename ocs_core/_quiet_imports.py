"""Skip autobahn's serializers that ocs-core never uses (UBJSON, FlatBuffers).

Both import NumPy when ``autobahn.wamp.serializer`` is first imported (~0.1 s and ~13 MB per
process). The NumPy "_ARRAY_API not found" traceback that bjdata's C extension used to print is
fixed where it arises, in the venv: the Makefile installs bjdata's pure-Python build
(``PYBJDATA_NO_EXTENSION=1``), and ``tests/test_venv_clean.py`` checks that crossbar and ocs's
tools start without it.
"""
import sys


def skip_unused_serializers() -> None:
    """Mark autobahn's optional UBJSON (``bjdata``) and FlatBuffers serializers as absent.

    ocs-core agents speak JSON, CBOR or MsgPack only. ``ocs-core agent`` calls this before the
    agent's module is imported; it does nothing once the serializers are loaded, and the router
    never calls it.
    """
    if "autobahn.wamp.serializer" in sys.modules:
        return
    for name in ("bjdata", "autobahn.flatbuffers"):
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]
