"""Helpers for the client tests: a counting loopback TCP proxy, agents kept for a whole module."""
from __future__ import annotations

import socket
import threading
from typing import Iterable

from ocs_core.testing import AgentProcess, RouterFixture


class CountingProxy:
    """A loopback TCP proxy to ``target_port`` that counts the connections it accepts."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.connections = 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._closing = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            self.connections += 1
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._closing = True
        self._server.close()


def start_agents(router: RouterFixture, specs: Iterable[tuple[str, str]],
                 env: dict[str, str] | None = None, timeout: float = 15.0) -> list[AgentProcess]:
    """Add ``(agent_class, instance_id)`` instances to the site file, launch them, wait for them."""
    agents = []
    try:
        for agent_class, instance_id in specs:
            router.add_instance(agent_class, instance_id)
            agents.append(router.agent(instance_id, env=env))
        for agent in agents:
            agent.wait_registered(timeout)
    except BaseException:
        for agent in agents:
            agent.terminate()
        raise
    return agents
