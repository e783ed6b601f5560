"""An iblutil rig talking to a RigAgent's UDP bridge: run by OCS_CORE_IBLUTIL_PYTHON.

Usage: python iblutil_bridge_rig.py SERVER_PORT AGENT_PORT

1. As an iblutil UDP *server* on 127.0.0.1:SERVER_PORT (the agent's --udp-peer): wait for
   EXPSTART from the agent and print it.
2. As an iblutil UDP *client* of the agent's --udp-port: send EXPINIT and print CONFIRMED once
   the agent echoed it.
Every line on stdout is one JSON object; iblutil's own logs go to stderr.
"""
import asyncio
import json
import logging
import sys

from iblutil.io.net import app, base

TIMEOUT = 20.0


def say(**kw):
    print(json.dumps(kw), flush=True)


async def main(server_port, agent_port):
    log = logging.getLogger("iblutil-bridge-peer")
    log.addHandler(logging.StreamHandler(sys.stderr))
    log.setLevel(logging.DEBUG)
    server = await app.EchoProtocol.server(f"udp://127.0.0.1:{server_port}", name="ibl-server", log=log)
    say(step="ready")
    data, addr = await asyncio.wait_for(server.on_event(base.ExpMessage.EXPSTART), TIMEOUT)
    say(step="server-got", event="EXPSTART", data=data)
    server.close()
    client = await app.EchoProtocol.client(f"udp://127.0.0.1:{agent_port}", name="ibl-client", log=log)
    await client.init({"hello": "from iblutil"})
    say(step="client-confirmed")
    client.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
