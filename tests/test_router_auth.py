"""Router authentication on a real crossbar (``hub.auth: cryptosign``) with real agent processes:

who may join, register, publish and call; refused keys; the signed HTTP bridge; the credentials
file; and what the rendered config and crossbar's log hold.
"""
from __future__ import annotations

import datetime
import json
import os
import stat
import subprocess
import sys
import urllib.parse

import pytest
import pytest_twisted
import requests
from autobahn.twisted.wamp import ApplicationSession
from autobahn.twisted.websocket import WampWebSocketClientFactory
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import ComponentConfig, PublishOptions, RegisterOptions
from twisted.internet import defer, reactor
from twisted.internet.endpoints import clientFromString

from clients.client_http import ControlClient, ControlClientError
from clients.ocs_client import OCSClient
from ocs_core.framing.http_signing import Signer, signed_params
from ocs_core.router.config import MAX_HTTP_BODY
from ocs_core.runtime.cryptosign import answer_challenge, join_options
from ocs_core.site.credentials import CredentialsError, load_credentials
from ocs_core.testing import http_call, project_env, running_router

FAKER, OTHER, DIRECTOR = "auth-faker", "auth-other", "auth-director"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    instances = [{"agent-class": "FakeDataAgent", "instance-id": iid, "arguments": []}
                 for iid in (FAKER, OTHER)]
    instances.append({"agent-class": "AccessDirector", "instance-id": DIRECTOR, "arguments": []})
    with running_router(tmp_path_factory.mktemp("auth"), instances=instances, auth=True) as router:
        agent = router.agent(FAKER)
        try:
            agent.wait_registered(15)
            yield router
        finally:
            agent.terminate()


class _Session(ApplicationSession):
    def __init__(self, config, authid, key, done):
        super().__init__(config)
        self._authid, self._key, self._done = authid, key, done

    def onConnect(self):  # noqa: N802
        self.join(self.config.realm, **join_options(self._authid, self._key))

    def onChallenge(self, challenge):  # noqa: N802
        return answer_challenge(self._key, challenge.method, challenge.extra)

    def onJoin(self, details):  # noqa: N802
        if not self._done.called:
            self._done.callback(self)

    def onLeave(self, details):  # noqa: N802
        if not self._done.called:
            self._done.errback(ApplicationError(details.reason, details.message))
        self.disconnect()


def join(router, authid=None, key=None) -> defer.Deferred:
    """A WAMP session on ``router``: anonymous, or as ``authid`` with its cryptosign ``key``."""
    done: defer.Deferred = defer.Deferred()
    factory = WampWebSocketClientFactory(
        lambda: _Session(ComponentConfig(realm="test_realm"), authid, key, done), url=router.ws_url)
    endpoint = clientFromString(reactor, f"tcp:host=127.0.0.1:port={router.port}:timeout=5")
    endpoint.connect(factory).addErrback(lambda f: done.called or done.errback(f))
    return done


async def refused(d) -> str:
    try:
        await d
    except ApplicationError as exc:
        return exc.error
    raise AssertionError("the router allowed it")


def key_of(router, iid):
    return load_credentials(router.credentials_path).agents[iid].private_key


@pytest_twisted.ensureDeferred
async def test_agent_key_registers_and_publishes_only_under_its_own_prefix(site):
    other = await join(site, OTHER, key_of(site, OTHER))
    try:
        reg = await other.register(lambda: "ok", f"observatory.{OTHER}.ops")
        await reg.unregister()
        # crossbar 26.10.1 answers an unauthorized REGISTER of a URI already registered with
        # procedure_already_exists (not not_authorized); either way it is refused, and
        # force_reregister does not kick the owner out
        for uri in (f"observatory.{FAKER}.ops", f"observatory.{FAKER}"):
            for opts in (None, RegisterOptions(force_reregister=True)):
                assert await refused(other.register(lambda *a, **k: "x", uri, options=opts)) in (
                    "wamp.error.not_authorized", "wamp.error.procedure_already_exists")
        assert await refused(other.register(lambda: "x", f"observatory.{FAKER}.new")) == \
            "wamp.error.not_authorized"
        assert await refused(other.publish(f"observatory.{FAKER}.feeds.heartbeat", {},
                                           options=PublishOptions(acknowledge=True))) == "wamp.error.not_authorized"
        # forged rules on the director's controls feed: refused for every principal but the director
        assert await refused(other.publish(f"observatory.{DIRECTOR}.feeds.controls", {"reset": True},
                                           options=PublishOptions(acknowledge=True))) == "wamp.error.not_authorized"
        await other.publish(f"observatory.{OTHER}.feeds.x", {}, options=PublishOptions(acknowledge=True))
        api = await other.call(f"observatory.{FAKER}", "get_api")  # agents may call agents
        assert api["agent_class"] == "FakeDataAgent"  # and the owner still serves it
        assert (await other.call(f"observatory.{FAKER}.ops", "status", "acq"))[0] == 0
    finally:
        other.leave()


@pytest_twisted.ensureDeferred
async def test_anonymous_sessions_are_controllers(site):
    anon = await join(site)
    try:
        assert await refused(anon.register(lambda: "x", f"observatory.{OTHER}.ops")) == "wamp.error.not_authorized"
        for topic in (f"observatory.{FAKER}.feeds.heartbeat", f"observatory.{DIRECTOR}.feeds.controls"):
            assert await refused(anon.publish(topic, {}, options=PublishOptions(acknowledge=True))) == \
                "wamp.error.not_authorized"
        await anon.subscribe(lambda *a: None, f"observatory.{FAKER}.feeds.heartbeat")
        reply = await anon.call(f"observatory.{FAKER}.ops", "status", "delay_task")
        assert reply[1] == "No session active."
    finally:
        anon.leave()


@pytest_twisted.ensureDeferred
async def test_a_wrong_key_cannot_join(site):
    wrong = key_of(site, FAKER)  # another agent's key
    assert await refused(join(site, OTHER, wrong)) == "wamp.error.not_authorized"
    assert await refused(join(site, "nobody", wrong)) == "wamp.error.not_authorized"


def test_a_revoked_agent_is_refused_with_one_line(site, tmp_path):
    env = project_env()
    revoke = subprocess.run([sys.executable, "-m", "ocs_core.cli", "credentials", "rotate", OTHER,
                             "--site-file", str(site.site_file)], capture_output=True, text=True,
                            env=env, timeout=60)
    assert revoke.returncode == 0, revoke.stderr
    assert "rotated auth-other; restart the router" in revoke.stdout
    assert key_of(site, OTHER) not in revoke.stdout  # secrets never printed
    agent = site.agent(OTHER)  # the router still knows only the old public key
    assert agent.proc.wait(30) == 1
    lines = [line for line in agent.log_text().splitlines() if "refused" in line]
    assert len(lines) == 1 and "Traceback" not in agent.log_text()
    assert f"refused the cryptosign key of '{OTHER}' (wamp.error.not_authorized" in lines[0]


def test_signed_http_bridge(site):
    client = OCSClient(FAKER, args=["--site-file", str(site.site_file)])  # signs: hub.http_key
    assert client.delay_task(delay=0.05).session["success"] is True
    unsigned = ControlClient(f"observatory.{FAKER}", site.http_url)
    with pytest.raises(ControlClientError, match="requires signed requests"):
        unsigned.get_api()
    with pytest.raises(ControlClientError, match="requires signed requests"):
        ControlClient(f"observatory.{FAKER}", site.http_url, signing=("test-http", "x" * 32)).get_api()
    body = json.dumps({"procedure": f"observatory.{FAKER}", "args": ["get_agent_class"]}).encode()
    stale = signed_params(*site.signing, body, 1,
                          now=datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=60))
    reply = _post(site, body, stale)
    assert reply == (400, "Request expired, too old timestamp.")
    fresh = signed_params(*site.signing, body, 2)
    assert _post(site, body, fresh)[0] == 200
    # crossbar 26.10.1 checks neither seq nor nonce; ocs-core's replay guard in the router
    # worker refuses a request it has already accepted
    assert _post(site, body, fresh) == (400, "REST bridge signature was invalid (replayed nonce).")
    assert _post(site, body, signed_params(*site.signing, body, 3))[0] == 200
    # as our clients send it (nothing percent-encoded: the worker's plain query parse and the
    # check's fast path), replayed too
    query = Signer(*site.signing).query(body, 6)
    assert _post_query(site, body, query)[0] == 200
    assert _post_query(site, body, query) == (400, "REST bridge signature was invalid (replayed nonce).")
    assert _post_query(site, body, query.replace("seq=6", "seq=7")) == (
        401, "REST bridge signature secret not valid.")
    # ocs-core's worker checks the signature in place of crossbar; crossbar's other checks
    # still apply to a signed request, and signing stays required afterwards
    bad_json = b"{nope"
    assert _post(site, bad_json, signed_params(*site.signing, bad_json, 4)) == (
        400, "Request body was invalid JSON.")
    big = b" " * (MAX_HTTP_BODY + 1)
    assert _post(site, big, signed_params(*site.signing, big, 5))[0] == 413
    with pytest.raises(ControlClientError, match="requires signed requests"):
        unsigned.get_api()
    shared = ControlClient(f"observatory.{FAKER}", site.http_url, session=requests.Session(),
                           signing=site.signing)  # the query in the URL, not by the adapter
    assert shared.get_api()["agent_class"] == "FakeDataAgent"


def _post(site, body, params):
    return _post_query(site, body, urllib.parse.urlencode(params))


def _post_query(site, body, query):
    r = requests.post(f"{site.http_url}?{query}", data=body, timeout=10)
    return r.status_code, r.json().get("error") if r.status_code != 200 else r.json()["args"][0]


def test_rendered_config_and_log_hold_no_private_keys(site):
    config = site.router.node_dir / "config.json"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    text = config.read_text() + site.log_path.read_text(errors="replace")
    creds = load_credentials(site.credentials_path)
    for key in creds.agents.values():
        assert key.private_key not in text
    assert creds.http["test-http"] not in site.log_path.read_text(errors="replace")


def test_credentials_file_must_be_private(site, tmp_path):
    path = tmp_path / "creds.yaml"
    path.write_text(site.credentials_path.read_text())
    os.chmod(path, 0o644)
    with pytest.raises(CredentialsError, match=r"readable by group or others \(mode 0644\); run: chmod 600"):
        load_credentials(path)


def test_a_new_instance_after_a_router_restart_which_agents_ride_out(site):
    site.add_instance("FakeDataAgent", "auth-late")  # gets a key; the router reads keys at start
    site.restart()
    late = site.agent("auth-late")
    try:
        late.wait_registered(20)
        site.agent(FAKER, start=False).wait_registered(30)  # the running agent joined again
        client = OCSClient(FAKER, args=["--site-file", str(site.site_file)])
        assert client.delay_task(delay=0.05).session["success"] is True
    finally:
        late.terminate()


@pytest.fixture(scope="module")
def closed_site(tmp_path_factory):
    """Authenticated, unsigned (loopback-only) bridge, no anonymous sessions."""
    with running_router(tmp_path_factory.mktemp("closed"), auth=True, sign_http=False,
                        anonymous="none") as router:
        yield router


def test_unsigned_bridge_is_loopback_only(closed_site):
    router = closed_site
    assert http_call(router.http_url, "observatory.x", "get_api")["error"] == "wamp.error.no_such_procedure"
    caller = json.loads((router.router.node_dir / "config.json").read_text())
    options = caller["workers"][0]["transports"][0]["paths"]["call"]["options"]
    assert options["require_ip"] == ["127.0.0.0/8", "::1/128"] and "secret" not in options


@pytest_twisted.ensureDeferred
async def test_without_anonymous_controllers_an_unauthenticated_session_cannot_join(closed_site):
    assert await refused(join(closed_site)) == "wamp.error.no_auth_method"
