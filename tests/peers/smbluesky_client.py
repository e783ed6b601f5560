"""sm-bluesky's own InstrumentClient drives a server (run with the sm-bluesky venv's Python).

    python smbluesky_client.py PORT TIMEOUT < calls.json

stdin holds a JSON list of calls ``[command, arg, ...]``; stdout gets one JSON line per call:
``{"ok": reply data}`` or ``{"error": "<exception type>: <message>"}``.
"""
import json
import sys

from sm_bluesky.common.clients import InstrumentClient


def main():
    client = InstrumentClient("127.0.0.1", int(sys.argv[1]), timeout=float(sys.argv[2]))
    for call in json.load(sys.stdin):
        try:
            result = {"ok": client.send_payload(*call)}
        except Exception as exc:  # the client wraps everything in ConnectionError
            result = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
