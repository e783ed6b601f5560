"""Keep imports quiet: stop bjdata's stale C extension from printing a NumPy ABI traceback.

crossbar depends on ``bjdata``, whose published wheels were built against NumPy 1.x. Under
NumPy 2, importing its C extension ``_bjdata`` makes NumPy print an "_ARRAY_API not found"
traceback to stderr before the import fails and bjdata falls back to its pure-Python codec.
autobahn imports bjdata for its optional UBJSON serializer, so every agent and client would
start with a traceback. Marking ``_bjdata`` as absent in ``sys.modules`` makes that import
fail quietly with ImportError, which bjdata already handles. ocs-core never uses UBJSON.
"""
import sys

if "_bjdata" not in sys.modules and "bjdata" not in sys.modules:
    sys.modules["_bjdata"] = None  # type: ignore[assignment]


def skip_unused_serializers() -> None:
    """Mark autobahn's optional UBJSON (``bjdata``) and FlatBuffers serializers as absent.

    Both import NumPy when ``autobahn.wamp.serializer`` is first imported (~0.1 s and ~13 MB
    per process); ocs-core agents speak JSON, CBOR or MsgPack only. ``ocs-core agent`` calls this
    before the agent's module is imported; it does nothing once the serializers are loaded, and
    the router never calls it.
    """
    if "autobahn.wamp.serializer" in sys.modules:
        return
    for name in ("bjdata", "autobahn.flatbuffers"):
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]
