"""A minimal server on sm-bluesky's own base class (run with the sm-bluesky venv's Python).

    python smbluesky_server.py PORT

Its commands answer the way sm-bluesky's servers do: through ``_send_response`` with bytes as
they are; ``connect_hardware`` and ``disconnect_hardware`` send nothing; ``shutdown`` closes.
"""
import sys
import time

from sm_bluesky.common.servers import AbstractInstrumentServer, register_command


class PathServer(AbstractInstrumentServer):
    def __init__(self, host, port):
        super().__init__(host, port)
        self.connects = 0
        self.disconnects = 0
        self.value = 0.0

    def connect_hardware(self, *args):
        self.connects += 1
        return True

    def disconnect_hardware(self, *args):
        self.disconnects += 1

    @register_command(b"path")
    def path(self, *args):
        self._send_response(b"C:\\temp\\new")

    @register_command(b"set")
    def set_value(self, value):
        self.value = float(value)
        self._send_response(str(self.value).encode())

    @register_command(b"read")
    def read(self, *args):
        self._send_response(repr(self.value).encode())

    @register_command(b"counts")
    def counts(self, *args):
        self._send_response(f"{self.connects}\t{self.disconnects}".encode())

    @register_command(b"fail")
    def fail(self, *args):
        raise ValueError("the device refused")

    @register_command(b"slow")
    def slow(self, seconds):
        time.sleep(float(seconds))
        self._send_response(b"done")


if __name__ == "__main__":
    PathServer("127.0.0.1", int(sys.argv[1])).start()
