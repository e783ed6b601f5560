"""Tests for rig URIs: validate_uri, hostname2ip, is_valid_ip and external_ip (all offline)."""
import ipaddress
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from agents.rig import uri as rig_uri
from agents.rig.uri import external_ip, hostname2ip, is_valid_ip, split_uri, validate_uri


@pytest.mark.parametrize("ip, ok", [
    ("127.0.0.1", True), ("::1", True), ("192.168.0.300", False), ("rig-1", False), ("", False),
    (ipaddress.ip_address("10.0.0.1"), True),
])
def test_is_valid_ip(ip, ok):
    assert is_valid_ip(ip) is ok


def test_hostname2ip_localhost():
    assert hostname2ip("localhost") == ipaddress.ip_address("127.0.0.1")


def test_hostname2ip_own_host():
    assert isinstance(hostname2ip(), (ipaddress.IPv4Address, ipaddress.IPv6Address))


def test_hostname2ip_failure(monkeypatch):
    def fail(name):
        raise socket.gaierror(-2, "Name or service not known")
    monkeypatch.setattr(rig_uri.socket, "gethostbyname", fail)
    with pytest.raises(ValueError, match='Failed to resolve IP for hostname "rig-9"'):
        hostname2ip("rig-9")


@pytest.mark.parametrize("given, expected", [
    ("127.0.0.1", "udp://127.0.0.1:11001"),
    ("127.0.0.1:9000", "udp://127.0.0.1:9000"),
    ("udp://127.0.0.1:9000", "udp://127.0.0.1:9000"),
    ("ws://127.0.0.1", "ws://127.0.0.1:11001"),
    ("localhost", "udp://127.0.0.1:11001"),
    ("localhost:1", "udp://127.0.0.1:1"),
    (ipaddress.ip_address("10.1.2.3"), "udp://10.1.2.3:11001"),
    (ipaddress.ip_address("::1"), "udp://[::1]:11001"),
    ("::1", "udp://[::1]:11001"),
    ("[::1]:9000", "udp://[::1]:9000"),
])
def test_validate_uri(given, expected):
    assert validate_uri(given) == expected


def test_validate_uri_defaults():
    assert validate_uri("127.0.0.1", default_port=1234, default_proc="tcp") == "tcp://127.0.0.1:1234"
    assert validate_uri("127.0.0.1", default_port="80") == "udp://127.0.0.1:80"


def test_validate_uri_without_resolving():
    assert validate_uri("rig-1", resolve_host=False) == "udp://rig-1:11001"
    assert validate_uri("rig-1.lab.example:5", resolve_host=False) == "udp://rig-1.lab.example:5"
    for bad in ("rig_1", "rig 1", "-rig", "rig$", ""):
        with pytest.raises(ValueError, match="Invalid hostname"):
            validate_uri(bad, resolve_host=False)


def test_validate_uri_resolve_failure(monkeypatch):
    def fail(name):
        raise socket.gaierror(-2, "Name or service not known")
    monkeypatch.setattr(rig_uri.socket, "gethostbyname", fail)
    with pytest.raises(ValueError, match="Failed to resolve"):
        validate_uri("rig-9:9000")


@pytest.mark.parametrize("bad", [None, 11001, b"127.0.0.1", ("127.0.0.1", 1)])
def test_validate_uri_type_errors(bad):
    with pytest.raises(TypeError, match="Unsupported URI"):
        validate_uri(bad)


@pytest.mark.parametrize("bad", ["127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:abc", "127.0.0.1:-1"])
def test_validate_uri_port_errors(bad):
    with pytest.raises(ValueError, match="Invalid port number"):
        validate_uri(bad)
    with pytest.raises(ValueError, match="Invalid port number"):
        validate_uri("127.0.0.1", default_port=0)


def test_split_uri():
    assert split_uri("udp://127.0.0.1:5") == ("udp", "127.0.0.1", 5)
    assert split_uri("udp://[::1]:5") == ("udp", "::1", 5)
    with pytest.raises(ValueError):
        split_uri("127.0.0.1:5")


def test_external_ip_refuses_without_service(monkeypatch):
    monkeypatch.delenv(rig_uri.EXTERNAL_IP_URL_ENV, raising=False)
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="needs the internet"):
        external_ip()
    assert time.monotonic() - start < 5.0  # a guard against hanging, not a speed test


class _Echo(BaseHTTPRequestHandler):
    body = b"203.0.113.7\n"

    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_echo():
    server = HTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    server.server_close()


def test_external_ip_with_local_service(http_echo, monkeypatch):
    assert external_ip(http_echo) == ipaddress.ip_address("203.0.113.7")
    monkeypatch.setenv(rig_uri.EXTERNAL_IP_URL_ENV, http_echo)
    assert external_ip() == ipaddress.ip_address("203.0.113.7")


def test_external_ip_bad_answer(http_echo, monkeypatch):
    monkeypatch.setattr(_Echo, "body", b"<html>nope</html>")
    with pytest.raises(RuntimeError, match="not an IP address"):
        external_ip(http_echo)


def test_external_ip_unreachable_fails_fast():
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="failed"):
        external_ip(f"http://127.0.0.1:{port}/", timeout=1.0)
    assert time.monotonic() - start < 10.0  # a guard against hanging, not a speed test
