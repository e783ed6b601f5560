"""Run a crossbar worker process without a known spurious warning.

crossbar starts each worker as ``<python> -u -m crossbar.worker.main ...``; our router config
names a small wrapper script as the worker's ``python``, which runs this module instead.
crossbar 26's HTTP caller bridge finishes a request twice whenever a call returns a WAMP error
(``_fail_request`` then the render callback), so Twisted warns "request.finish called twice" on
the first error reply. The reply itself is correct; the warning is filtered.

And one addition: :mod:`ocs_core.router.replay_guard` refuses replayed signed bridge requests
(crossbar checks their timestamp, not their nonce).
"""
import runpy
import warnings

warnings.filterwarnings("ignore", message=r"Warning! request\.finish called twice", category=UserWarning)

if __name__ == "__main__":
    from ocs_core.router.replay_guard import install

    install()
    runpy.run_module("crossbar.worker.main", run_name="__main__", alter_sys=True)
