"""An iblutil rig for interop tests: run by the interpreter named in OCS_CORE_IBLUTIL_PYTHON.

Usage: python iblutil_rig.py SERVER_PORT OUR_PORT

1. As an iblutil UDP *server* on 127.0.0.1:SERVER_PORT: wait for EXPSTART from our rig, print it,
   answer with EXPINFO (waiting for our echo) and print CONFIRMED.
2. As an iblutil UDP *client* of 127.0.0.1:OUR_PORT: send EXPINIT (waiting for our echo), then
   wait for EXPEND from us and print it.
Every line on stdout is one JSON object; iblutil's own logs go to stderr.
"""
import asyncio
import json
import logging
import sys

from iblutil.io.net import app, base

TIMEOUT = 10.0


def say(**kw):
    print(json.dumps(kw), flush=True)


async def main(server_port, our_port):
    log = logging.getLogger("iblutil-peer")
    log.addHandler(logging.StreamHandler(sys.stderr))
    log.setLevel(logging.DEBUG)
    server = await app.EchoProtocol.server(f"udp://127.0.0.1:{server_port}", name="ibl-server", log=log)
    say(step="ready", version=base.PROTOCOL_VERSION)
    data, addr = await asyncio.wait_for(server.on_event(base.ExpMessage.EXPSTART), TIMEOUT)
    say(step="server-got", event="EXPSTART", data=data, addr=list(addr))
    await server.info(base.ExpStatus.RUNNING, {"from": "iblutil"}, addr=addr)
    say(step="server-confirmed")
    server.close()

    client = await app.EchoProtocol.client(f"udp://127.0.0.1:{our_port}", name="ibl-client", log=log)
    waiting = asyncio.ensure_future(client.on_event(base.ExpMessage.EXPEND | base.ExpMessage.EXPINTERRUPT))
    await client.init({"hello": "from iblutil"})
    say(step="client-confirmed")
    data, addr, event = await asyncio.wait_for(waiting, TIMEOUT)
    say(step="client-got", event=base.ExpMessage(event).name, data=data)
    client.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
