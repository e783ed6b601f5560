"""Rejoining while the router still holds the agent's old session (a NAT-style cut).

The cut resets the agent's side of its connection and leaves the router's side open and silent
(tests/wamp_helpers.py, ``CuttableProxy.nat_cut``): the router keeps the old session and its
registrations until its auto-ping times out (~15 s). Before the fix the agent reconnected at
once, got "instance-id ... already running" and exited, losing its running ops and queued feed
events. Now it retries registration until the router lets go; at first start it tells a stale
holder (no answer to ``get_api``) from a live one (fails fast, as before).
"""
from __future__ import annotations

import threading
import time

import pytest_twisted
from twisted.internet import threads

from ocs_core.runtime.timing import dsleep
from ocs_core.testing import AgentProcess, http_call, write_site_config
from test_outage import TOPIC, _callable, _check_sequence, _caught_up, _ops, _resent, _site_through
from wamp_helpers import CuttableProxy, Subscriber, until


@pytest_twisted.ensureDeferred
async def test_rejoin_waits_out_the_stale_session_and_keeps_ops_and_feed(router, tmp_path):
    proxy = CuttableProxy(router.port)
    proxy.listen()
    site = _site_through(proxy, router, tmp_path, "nat-faker", "nat.yaml")
    agent = AgentProcess("nat-faker", site, log_path=tmp_path / "nat-faker.out")
    subscriber = Subscriber(router.ws_url, TOPIC.format("nat-faker"))
    address = router.address("nat-faker")
    try:
        await threads.deferToThread(agent.wait_registered, 15)
        await subscriber.start()
        assert (await threads.deferToThread(_ops, router.http_url, address, "start", "acq", {}))[0] == 0
        await until(lambda: len(subscriber.events) >= 5, what="first events")
        await proxy.nat_cut()
        await dsleep(2.0)
        proxy.restore()  # the agent reconnects at once; the router still holds its old session
        await until(lambda: "still holds it" in agent.log_text(), timeout=10, what="a retry logged")
        t0 = time.monotonic()
        await _callable(router.http_url, address, timeout=30)
        waited = time.monotonic() - t0
        seen = len(subscriber.events)
        await until(lambda: _caught_up(subscriber.events, seen + 5), timeout=15,
                    what="the queued events and new ones after the rejoin")
        assert agent.is_running(), agent.log_text()[-3000:]
        status = await threads.deferToThread(_ops, router.http_url, address, "status", "acq")
        assert status[2]["status"] == "running" and status[2]["session_id"] == 0  # never restarted
        await threads.deferToThread(_ops, router.http_url, address, "stop", "acq")
        await threads.deferToThread(_ops, router.http_url, address, "wait", "acq", {}, 5)
        await dsleep(0.3)
        log = agent.log_text()
        _check_sequence(subscriber.events, resent=_resent(log))
        assert "already running" not in log and "Traceback" not in log
        assert log.count("rejoined the router") == 1 and "registered observatory.nat-faker after" in log
        assert waited < 25
    finally:
        proxy.release_silenced()
        await subscriber.stop()
        await threads.deferToThread(agent.terminate)


@pytest_twisted.ensureDeferred
async def test_first_start_waits_out_a_stale_holder_and_fails_fast_on_a_live_one(router, tmp_path):
    proxy = CuttableProxy(router.port)
    proxy.listen()
    site = _site_through(proxy, router, tmp_path, "stale-faker", "stale.yaml")
    old = AgentProcess("stale-faker", site, log_path=tmp_path / "old.out")
    direct = write_site_config(tmp_path, router.port, [{"agent-class": "FakeDataAgent",
                                                        "instance-id": "stale-faker"}], name="direct.yaml")
    new = live_twin = None
    try:
        await threads.deferToThread(old.wait_registered, 15)
        await proxy.nat_cut()  # the old run's host "lost its network" ...
        await threads.deferToThread(old.kill)  # ... and never comes back
        new = AgentProcess("stale-faker", direct, log_path=tmp_path / "new.out")
        await until(lambda: "does not answer" in new.log_text(), timeout=10, what="the stale holder probed")
        assert new.is_running()
        await threads.deferToThread(new.wait_registered, 30)  # once the router dropped the stale session
        reply = await threads.deferToThread(http_call, router.http_url, "observatory.stale-faker", "get_api")
        assert reply["args"][0]["instance_pid"] == new.pid
        # a live holder: the second start fails fast, as before
        live_twin = AgentProcess("stale-faker", direct, log_path=tmp_path / "twin.out")
        t0 = time.monotonic()
        code = await threads.deferToThread(live_twin.proc.wait, 15)
        assert code == 1 and time.monotonic() - t0 < 10
        assert "instance-id 'stale-faker' is already running on this router" in live_twin.log_text()
        assert new.is_running()
    finally:
        proxy.release_silenced()
        for a in (old, new, live_twin):
            if a is not None:
                await threads.deferToThread(a.terminate)


def _answers(http_url, address):
    try:
        return "error" not in http_call(http_url, address, "get_agent_class", timeout=1)
    except OSError:
        return False


@pytest_twisted.ensureDeferred
async def test_a_caller_closing_when_the_stale_session_goes_does_not_leave_a_zombie(router, tmp_path):
    """crossbar cancels the stale session's pending calls when it drops it; a caller whose websocket
    was closing at that moment made the cancel raise, the detach stopped half way, and the agent's
    registrations stayed held by a dead session for good (found by bench/chaos.py)."""
    from raw_wamp_client import RawWampClient

    proxy = CuttableProxy(router.port)
    proxy.listen()
    site = _site_through(proxy, router, tmp_path, "zombie-faker", "zombie.yaml")
    agent = AgentProcess("zombie-faker", site, log_path=tmp_path / "zombie-faker.out")
    address = router.address("zombie-faker")
    stop = threading.Event()

    def closing_callers():  # each calls the stale session, then breaks the protocol and never
        clients = []  # answers the router's close: it stays "closing" for the router's 1 s timeout
        while not stop.is_set():
            try:
                c = RawWampClient("127.0.0.1", router.port, "ws", "json")
                c.join()
                c.send('[48, 1, {}, "%s.ops", ["status", "acq"]]' % address)
                time.sleep(0.05)
                c.send("[999]")
                clients.append(c)
            except OSError:
                pass
            time.sleep(0.1)
            if len(clients) > 30:
                clients.pop(0).close()
        for c in clients:
            c.close()

    worker = threading.Thread(target=closing_callers, daemon=True)
    try:
        await threads.deferToThread(agent.wait_registered, 15)
        await proxy.nat_cut()
        await dsleep(0.5)
        worker.start()
        proxy.restore()
        deadline = time.monotonic() + 35  # a zombie registration never lets it register again
        while "still holds it" not in agent.log_text() or not await threads.deferToThread(
                _answers, router.http_url, address):
            assert time.monotonic() < deadline, agent.log_text()[-2000:]
            await dsleep(0.2)
        assert agent.is_running()
    finally:
        stop.set()
        worker.join(10)
        proxy.release_silenced()
        await threads.deferToThread(agent.terminate)
