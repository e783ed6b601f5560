"""Run a crossbar worker process with a sane recursion limit, serializers that
survive invalid Unicode, sends that cannot abort the router's own bookkeeping, and without a
known spurious warning.

crossbar starts each worker as ``<python> -u -m crossbar.worker.main ...``; our router config
names a small wrapper script as the worker's ``python``, which runs this module instead. It
fixes four things before crossbar's worker starts:

* **the recursion limit.** One of crossbar's dependencies, ``py_ecc``, raises Python's recursion
  limit to 100,000 when it is imported. Under that limit the C-level serializers recurse until
  the C stack overflows: a call whose arguments were nested ~8,000 deep (a 16 KB HTTP request)
  made ``cbor2.dumps`` segfault in the router worker, and the whole router exited. We import
  ``py_ecc`` first and set the limit to :data:`RECURSION_LIMIT`; every later attempt to raise
  it in this process is capped. Then the JSON decoders of the HTTP bridge and of websocket
  peers refuse nesting deeper than that with a RecursionError (crossbar answers with an error
  or drops that peer) and cbor2 refuses more than 400 levels, so nothing the router decodes is
  deep enough to overflow ``cbor2.dumps`` (measured: ~7,000 levels on an 8 MB stack, ~800 on
  1 MB). MsgPack, whose decoder takes 1,024 levels whatever the limit, is not offered
  (``ocs_core.router.config.WS_SERIALIZERS``). See docs/security.md, "Hostile messages";
* **lone surrogates.** JSON can spell a string that is not valid Unicode (``"\\ud800"``); the
  router decodes it, then fails to encode it for the callee (CBOR, MsgPack and autobahn's JSON
  all refuse it): the exception escapes crossbar's dealer, the invocation is never cleaned up
  and the caller never gets an answer (an HTTP bridge request hung until its client gave up),
  and an event stops at the first subscriber it cannot be encoded for.
  :func:`tolerate_lone_surrogates` makes the serializers write each lone surrogate as U+FFFD;
* **sends that fail.** When the router sends to a peer it cannot send to (a websocket already
  closing, a value that peer's serializer cannot hold), autobahn raises, and crossbar does not
  expect it: when an agent's stale session was dropped, the dealer cancelled its pending calls,
  one caller's websocket was closing, the exception aborted the detach, and the agent's
  registrations stayed held by a dead session for good (the agent could never register again
  until the router restarted). :func:`guard_sends` drops such a message for that peer, logged,
  and lets crossbar carry on;
* crossbar 26's HTTP caller bridge finishes a request twice whenever a call returns a WAMP
  error (``_fail_request`` then the render callback), so Twisted warns "request.finish called
  twice" on the first error reply. The reply itself is correct; the warning is filtered.

And one replacement: :mod:`ocs_core.router.replay_guard` checks signed bridge requests in place
of crossbar's own check (the same checks and replies, faster) and refuses replayed ones
(crossbar checks their timestamp, not their nonce).
"""
import runpy
import sys
import warnings
from typing import Any

#: The router worker's recursion limit. It bounds how deep the JSON decoders go (measured: 561
#: levels over HTTP, 278 over websocket, where autobahn's pure-Python decoder takes two frames a
#: level), below what overflows ``cbor2.dumps`` even on a 1 MB stack (~800); agents refuse more
#: than 100 levels anyway. Handling a message takes a few dozen frames of the worker's own.
RECURSION_LIMIT = 600
#: Frames kept in the tracebacks the worker formats (a hostile message's is ~1,000 deep).
TRACEBACK_LIMIT = 40

warnings.filterwarnings("ignore", message=r"Warning! request\.finish called twice", category=UserWarning)


def cap_recursion_limit(limit: int = RECURSION_LIMIT) -> None:
    """Import ``py_ecc`` (it raises the limit on import), set ``limit``, and cap later raises."""
    try:
        import py_ecc  # noqa: F401  (sets sys.setrecursionlimit(100000) on import)
    except ImportError:
        pass
    real = getattr(sys.setrecursionlimit, "__wrapped__", sys.setrecursionlimit)

    def capped(value: int) -> None:
        real(min(int(value), limit))

    capped.__wrapped__ = real  # type: ignore[attr-defined]
    real(limit)
    sys.setrecursionlimit = capped
    # A message that fails to decode is logged with its traceback (autobahn logs every protocol
    # error so); a too-deep one has ~1,000 frames: ~60 KB of log per hostile message. Keep 40.
    sys.tracebacklimit = TRACEBACK_LIMIT


def _valid_unicode(text: str) -> str:
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def scrub_lone_surrogates(obj: Any) -> Any:
    """A copy of ``obj`` whose strings (dict keys included) have each lone surrogate as U+FFFD.

    Iterative: the router decodes nesting several hundred levels deep, as deep as a recursive
    walk could go under its recursion limit.
    """
    root = [obj]
    stack: list[tuple[Any, Any]] = [(root, 0)]
    while stack:
        container, key = stack.pop()
        item = container[key]
        if isinstance(item, str):
            container[key] = _valid_unicode(item)
        elif isinstance(item, (list, tuple)):
            container[key] = new = list(item)
            stack.extend((new, i) for i in range(len(new)))
        elif isinstance(item, dict):
            container[key] = new = {(_valid_unicode(k) if isinstance(k, str) else k): v for k, v in item.items()}
            stack.extend((new, k) for k in new)
    return root[0]


def tolerate_lone_surrogates() -> None:
    """Make autobahn's JSON, CBOR and MsgPack serializers encode strings with lone surrogates."""
    import txaio

    txaio.use_twisted()  # as crossbar's worker does; autobahn's modules need a framework chosen
    from autobahn.wamp import serializer

    for name in ("JsonObjectSerializer", "CBORObjectSerializer", "MsgPackObjectSerializer"):
        cls = getattr(serializer, name, None)
        if cls is None or getattr(cls.serialize, "_ocs_scrubs", False):
            continue
        original = cls.serialize

        def serialize(self: Any, obj: Any, _original: Any = original) -> bytes:
            try:
                return _original(self, obj)
            except UnicodeEncodeError:
                return _original(self, scrub_lone_surrogates(obj))

        serialize._ocs_scrubs = True  # type: ignore[attr-defined]
        cls.serialize = serialize


def guard_sends() -> None:
    """Make a WAMP send to a peer that cannot take it a logged no-op instead of an exception."""
    import txaio

    txaio.use_twisted()
    from autobahn.exception import Disconnected
    from autobahn.wamp.exception import SerializationError, TransportLost
    from autobahn.wamp.websocket import WampWebSocketProtocol

    original = WampWebSocketProtocol.send
    if getattr(original, "_ocs_guarded", False):
        return
    log = txaio.make_logger()

    def send(self: Any, msg: Any) -> None:
        try:
            original(self, msg)
        except (Disconnected, TransportLost):
            log.debug("not sent to a closing peer: {msg}", msg=type(msg).__name__)
        except SerializationError as exc:
            log.warn("{msg} dropped for one peer: {why}", msg=type(msg).__name__, why=str(exc)[:200])

    send._ocs_guarded = True  # type: ignore[attr-defined]
    WampWebSocketProtocol.send = send


if __name__ == "__main__":
    cap_recursion_limit()
    tolerate_lone_surrogates()
    guard_sends()
    from ocs_core.router.replay_guard import install

    install()
    runpy.run_module("crossbar.worker.main", run_name="__main__", alter_sys=True)
