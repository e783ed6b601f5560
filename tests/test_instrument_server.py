"""Tests of InstrumentServer and the simulated instrument: protocol level and real loopback sockets."""
import json
import signal
import socket
import threading

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, threads
from twisted.internet.testing import MemoryReactorClock, StringTransport

from agents.instrument.commands import CommandError, command
from agents.instrument.server import InstrumentServer
from agents.instrument.simulated import Resonance, SimulatedInstrument
from agents.instrument.testing import ServerProcess


class Toy(InstrumentServer):
    """A server with reactor-side commands only (for the fake reactor)."""

    def __init__(self, reactor, **kw):
        super().__init__(reactor, **kw)
        self.waiting = []

    @command("echo", hardware=False)
    def echo(self, *words):
        return list(words)

    @command("add", hardware=False)
    def add(self, a: float, b: float = 1.0) -> float:
        return a + b

    @command("later", hardware=False, timeout=2.0)
    def later(self, value: str):
        d = defer.Deferred()
        self.waiting.append((d, value))
        return d

    @command("bad", hardware=False)
    def bad(self):
        raise CommandError("the value was wrong")

    @command("boom", hardware=False)
    def boom(self):
        raise RuntimeError("kaput")


def connect_fake(server):
    server.listen(0)
    factory = server.reactor.tcpServers[-1][1]
    proto = factory.buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    return proto, transport


def lines(transport):
    out = transport.value().decode().splitlines()
    transport.clear()
    return out


# ---------- protocol level, fake reactor ----------

def test_fragmented_requests_and_builtins():
    clock = MemoryReactorClock()
    proto, tr = connect_fake(Toy(clock))
    for ch in b"pi":
        proto.dataReceived(bytes([ch]))
    assert tr.value() == b""
    proto.dataReceived(b"ng\r\necho\ta\tb\nadd\t2")
    proto.dataReceived(b".5\n")
    assert lines(tr) == ["1\t", "1\ta\tb", "1\t3.5"]
    proto.dataReceived(b"command_list\n")
    names = lines(tr)[0].split("\t")[1:]
    assert {"ping", "connect_hardware", "disconnect_hardware", "shutdown", "command_list", "echo"} <= set(names)


def test_help_shows_usage():
    proto, tr = connect_fake(Toy(MemoryReactorClock()))
    proto.dataReceived(b"help\tadd\nhelp\tnosuch\nhelp\n")
    out = lines(tr)
    assert out[0] == "1\tadd <a:float> [b:float]"
    assert out[1] == "0\thelp: unknown command 'nosuch'"
    assert "ping: Reply 1 with no data: the server is alive." in out[2].split("\t")


def test_errors_are_clear_replies():
    proto, tr = connect_fake(Toy(MemoryReactorClock()))
    proto.dataReceived(b"nosuch\t1\nadd\tx\nadd\nbad\nboom\n\nping\n")
    out = lines(tr)
    assert out[0] == "0\tunknown command 'nosuch'; send command_list for the known ones"
    assert out[1] == "0\tadd: argument a must be a finite number, got 'x'"
    assert out[2].startswith("0\tadd: takes 1 to 2 argument(s), got 0")
    assert out[3] == "0\tbad: the value was wrong"
    assert out[4] == "0\tboom: RuntimeError: kaput"
    assert out[5].startswith("0\tempty request line")
    assert out[6] == "1\t"


def test_overlong_line_gets_error_and_connection_recovers():
    proto, tr = connect_fake(Toy(MemoryReactorClock(), max_line=64))
    proto.dataReceived(b"echo\t" + b"x" * 100)
    assert lines(tr) == ["0\tline longer than 64 bytes; discarded"]
    proto.dataReceived(b"y" * 10_000)
    assert proto.parser.buffered == 0
    proto.dataReceived(b"yyy\necho\tok\n")
    assert lines(tr) == ["1\tok"]


def test_replies_stay_in_order_and_timeout_frees_the_connection():
    clock = MemoryReactorClock()
    server = Toy(clock)
    proto, tr = connect_fake(server)
    proto.dataReceived(b"later\tA\nping\nlater\tB\necho\tafter\n")
    assert tr.value() == b""  # ping waits behind 'later A'
    clock.advance(2.5)  # A's deadline passes
    assert lines(tr) == ["0\tlater: timed out after 2 s", "1\t"]
    (_, a), (d_b, b) = server.waiting
    d_b.callback("done " + b)
    assert lines(tr) == ["1\tdone B", "1\tafter"]


def test_hardware_command_needs_connection():
    class Dev(InstrumentServer):
        @command("get")
        def get(self):
            return 1
    proto, tr = connect_fake(Dev(MemoryReactorClock()))
    proto.dataReceived(b"get\n")
    assert lines(tr) == ["0\tget: hardware not connected (send connect_hardware)"]


def test_table_api_and_registry():
    server = Toy(MemoryReactorClock())
    server.add_command("twice", lambda x: 2 * int(x), hardware=False, help="double it")
    assert server.commands["twice"].help == "double it"
    proto, tr = connect_fake(server)
    proto.dataReceived(b"twice\t21\n")
    assert lines(tr) == ["1\t42"]
    with pytest.raises(ValueError):
        server.add_command("two words", lambda: None)


def test_lost_connection_drops_its_queue():
    clock = MemoryReactorClock()
    server = Toy(clock)
    proto, tr = connect_fake(server)
    proto.dataReceived(b"later\tA\necho\tnever\n")
    proto.connectionLost(None)
    server.waiting[0][0].callback("x")
    assert tr.value() == b""


def test_pipelined_flood_pauses_reading_until_the_queue_drains():
    clock = MemoryReactorClock()
    server = Toy(clock)
    server.max_pending = 4
    proto, tr = connect_fake(server)
    proto.dataReceived(b"".join(b"later\t%d\n" % i for i in range(10)))
    assert tr.producerState == "paused"
    for i in range(10):
        d, value = server.waiting[i]
        d.callback(value)
    assert tr.producerState == "producing"
    assert lines(tr) == [f"1\t{i}" for i in range(10)]


def test_many_instant_commands_in_one_chunk_do_not_recurse():
    proto, tr = connect_fake(Toy(MemoryReactorClock()))
    proto.dataReceived(b"ping\n" * 5000)
    assert lines(tr) == ["1\t"] * 5000


# ---------- real sockets on loopback, server in this process ----------

class Device(InstrumentServer):
    """A server whose hardware commands record overlap, and can hang until released."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.release = threading.Event()
        self._guard = threading.Lock()
        self.inside = 0
        self.max_inside = 0

    @command("work")
    def work(self, tag: str) -> str:
        with self._guard:
            self.inside += 1
            self.max_inside = max(self.max_inside, self.inside)
        self.release.wait(0.002)  # let other threads try to get in
        with self._guard:
            self.inside -= 1
        return tag

    @command("hang", timeout=0.3)
    def hang(self) -> str:
        self.release.wait(20)
        return "released"

    @command("crash")
    def crash(self):
        raise OSError("device on fire")


def raw_exchange(port, payload, expect_lines, timeout=10.0):
    """A plain socket client: send payload, read until expect_lines lines arrived."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.sendall(payload)
    return _read_lines(sock, expect_lines)


def _read_lines(sock, expect_lines):
    """Read from an open socket until ``expect_lines`` lines or EOF; close it."""
    with sock:
        data = b""
        while data.count(b"\n") < expect_lines:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return data.decode().splitlines()


def raw_one_per_command(port, requests):
    return [raw_exchange(port, r, 1)[0] for r in requests]


@pytest.fixture
def device():
    server = Device(timeout=5.0)
    yield server
    server.release.set()
    pytest_twisted.blockon(server.stop())


@pytest_twisted.inlineCallbacks
def test_raw_clients_one_per_command_and_persistent(device):
    yield device.connect()
    port = device.listen(0).getHost().port
    singles = yield threads.deferToThread(
        raw_one_per_command, port, [b"ping\n", b"work\tx\n", b"nosuch\n", b"work\n"])
    assert singles == ["1\t", "1\tx", "0\tunknown command 'nosuch'; send command_list for the known ones",
                       "0\twork: takes 1 argument(s), got 0 (usage: work <tag:str>)"]
    payload = b"".join(b"work\t%d\n" % i for i in range(50))
    many = yield threads.deferToThread(raw_exchange, port, payload, 50)
    assert many == [f"1\t{i}" for i in range(50)]


@pytest_twisted.inlineCallbacks
def test_concurrent_clients_get_their_own_replies_and_hardware_is_serialised(device):
    yield device.connect()
    port = device.listen(0).getHost().port

    def client(k):
        payload = b"".join(f"work\tc{k}-{i}\n".encode() for i in range(30))
        return raw_exchange(port, payload, 30)
    results = yield defer.gatherResults([threads.deferToThread(client, k) for k in range(6)])
    for k, got in enumerate(results):
        assert got == [f"1\tc{k}-{i}" for i in range(30)]
    assert device.max_inside == 1


@pytest_twisted.inlineCallbacks
def test_hung_device_times_out_and_server_keeps_serving(device):
    yield device.connect()
    port = device.listen(0).getHost().port
    got = yield threads.deferToThread(raw_exchange, port, b"hang\nping\ncommand_list\n", 3)
    assert got[0] == "0\thang: timed out after 0.3 s"
    assert got[1] == "1\t" and got[2].startswith("1\t")
    # another client is served meanwhile; a hardware call waits for the hung one, within its deadline
    got = yield threads.deferToThread(raw_exchange, port, b"ping\n", 1)
    assert got == ["1\t"]
    device.release.set()
    got = yield threads.deferToThread(raw_exchange, port, b"work\tok\ncrash\n", 2)
    assert got == ["1\tok", "0\tcrash: OSError: device on fire"]


@pytest_twisted.inlineCallbacks
def test_shutdown_command_stops_the_server(device):
    stopped = defer.Deferred()
    device.on_shutdown(lambda: stopped.callback(None))
    yield device.connect()
    port = device.listen(0).getHost().port
    got = yield threads.deferToThread(raw_exchange, port, b"shutdown\n", 1)
    assert got == ["1\tshutting down"]
    yield stopped.addTimeout(5, reactor)
    assert not device.hardware_connected
    with pytest.raises(ConnectionRefusedError):
        yield threads.deferToThread(raw_exchange, port, b"ping\n", 1)


# ---------- the simulated instrument ----------

@pytest_twisted.inlineCallbacks
def test_simulated_measure_is_seeded_and_validated():
    res = Resonance(center=2.0, width=0.1, amplitude=3.0, background=1.0, noise=0.01)
    servers = [SimulatedInstrument(resonance=res, seed=7), SimulatedInstrument(resonance=res, seed=7)]
    ports = []
    for s in servers:
        yield s.connect()
        ports.append(s.listen(0).getHost().port)
    try:
        req = b"measure\t2.0\nmeasure\t2.1\nmeasure\t5\nmeasure\tabc\nmeasure\tnan\nread\nget_config\n"
        a = yield threads.deferToThread(raw_exchange, ports[0], req, 7)
        b = yield threads.deferToThread(raw_exchange, ports[1], req, 7)
        assert a == b  # same seed, same values
        values = [float(x.split("\t")[1]) for x in a[:3]]
        assert values[0] == pytest.approx(4.0, abs=0.05)
        assert values[1] == pytest.approx(2.5, abs=0.05)
        assert values[2] == pytest.approx(1.0, abs=0.05)
        assert a[3] == "0\tmeasure: argument x must be a finite number, got 'abc'"
        assert a[4] == "0\tmeasure: argument x must be a finite number, got 'nan'"
        assert float(a[5].split("\t")[1]) == pytest.approx(1.0, abs=0.05)  # setpoint is 5
        config = json.loads(a[6].split("\t", 1)[1])
        assert config["center"] == 2.0 and config["seed"] == 7 and config["count"] == 4
    finally:
        for s in servers:
            yield s.stop()


@pytest_twisted.inlineCallbacks
def test_simulated_delay_runs_in_a_thread_not_the_reactor():
    server = SimulatedInstrument(resonance=Resonance(delay=1.0, noise=0.0), seed=1)
    yield server.connect()
    port = server.listen(0).getHost().port
    try:
        slow = threads.deferToThread(raw_exchange, port, b"measure\t2.5\n", 1)
        # another connection's ping and a reactor-side command are answered while measure sleeps
        fast = yield threads.deferToThread(raw_exchange, port, b"ping\nget_config\n", 2)
        assert fast[0] == "1\t" and fast[1].startswith("1\t{")
        assert not slow.called
        got = yield slow
        assert float(got[0].split("\t")[1]) == pytest.approx(1.0)
    finally:
        yield server.stop()


def test_resonance_validation():
    with pytest.raises(ValueError, match="width"):
        Resonance(width=0)
    assert Resonance(center=1, width=2, amplitude=3, background=4).model(1) == pytest.approx(7)


# ---------- the server as a process ----------

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
@pytest_twisted.inlineCallbacks
def test_process_prints_ready_line_and_exits_promptly_on_signal(sig):
    proc = ServerProcess(reactor, ["--port", "0", "--seed", "3"])
    port = yield proc.start()
    try:
        got = yield threads.deferToThread(raw_exchange, port, b"ping\nmeasure\t2.5\n", 2)
        assert got[0] == "1\t" and got[1].startswith("1\t")
        proc.signal(sig)
        code = yield proc.wait(timeout=5)
        assert code == 0
    finally:
        if proc.running:
            yield proc.kill()


@pytest_twisted.inlineCallbacks
def test_process_exits_on_sigterm_even_with_a_hung_measurement():
    proc = ServerProcess(reactor, ["--port", "0", "--delay", "30", "--timeout", "60"])
    port = yield proc.start()
    try:
        hung = socket.create_connection(("127.0.0.1", port), timeout=20)  # connected before SIGTERM
        hung.sendall(b"measure\t1\n")
        pending = threads.deferToThread(_read_lines, hung, 1)
        yield threads.deferToThread(raw_exchange, port, b"ping\n", 1)
        proc.signal(signal.SIGTERM)
        code = yield proc.wait(timeout=5)
        assert code == 0
        assert (yield pending) == []  # connection closed without a reply
    finally:
        if proc.running:
            yield proc.kill()


@pytest_twisted.inlineCallbacks
def test_process_shutdown_command_ends_it():
    proc = ServerProcess(reactor, ["--port", "0"])
    port = yield proc.start()
    try:
        got = yield threads.deferToThread(raw_exchange, port, b"shutdown\n", 1)
        assert got == ["1\tshutting down"]
        assert (yield proc.wait(timeout=5)) == 0
    finally:
        if proc.running:
            yield proc.kill()
