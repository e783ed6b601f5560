"""The main job (`make demo`): bring up the site, find a resonance adaptively, shut down.

1. ``ocs-core up``: the router and every agent of this host in site-config.yaml (the OBE agent,
   a simulated instrument server and its instrument agent among them);
2. ``adaptive_scan.py``: OCSClient loop, a uniform sweep for comparison, and a PNG;
3. ``adaptive_scan_twisted.py``: the same loop as a run_control_script program;
4. ``agent_scan.py``: the OBE agent's own adaptive_scan Process drives the instrument agent;
5. where the archiver (FeedArchiver) put the recorded feeds;
6. ``ocs-core down``, whatever happened before.

``ocs-core web`` serves the dashboard throughout (its address with its key is printed; the key
is kept in ``<run-dir>/dashboard-key``); with ``--keep``
(``make demo KEEP=1``) the site and the page stay up, with a new adaptive scan every 30 s to
watch on the OBE panel, until Ctrl-C.

Exits non-zero, naming the step, when anything fails.
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

EXAMPLES = Path(__file__).resolve().parent


def run(step: str, cmd: list[str], timeout: float) -> None:
    print(f"\n=== {step}: {' '.join(Path(c).name if c.endswith('.py') else c for c in cmd[1:])}",
          flush=True)
    t0 = time.monotonic()
    try:
        result = subprocess.run(cmd, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{step} did not finish within {timeout:.0f} s") from None
    if result.returncode != 0:
        raise RuntimeError(f"{step} failed (exit status {result.returncode})")
    print(f"--- {step} done in {time.monotonic() - t0:.1f} s", flush=True)


def start_dashboard(ocs_core: list[str], site: list[str], port: int, log: Path,
                    key_file: Path) -> tuple[subprocess.Popen, str]:
    """``ocs-core web`` on ``port`` (another free one if it is taken) with the key of
    ``key_file`` (made once, mode 0600), logging to ``log``; its process and address with the key."""
    from clients.dashboard.login import KeyFileError, read_key_file
    key_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        key, _ = read_key_file(key_file)
    except KeyFileError as exc:
        raise RuntimeError(str(exc)) from None
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen([*ocs_core, "web", "--port", str(port), "--key-file", str(key_file), *site],
                                stdout=out, stderr=out, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/?key={quote(key, safe='')}"
    deadline = time.monotonic() + 20
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    print(f"\n=== dashboard: {url} (ocs-core web; the key is in {key_file}; log {log})", flush=True)
    return proc, url


def keep_up(url: str, scan: list[str]) -> None:
    """Keep the site and the dashboard up until Ctrl-C (or SIGTERM), with an adaptive scan every 30 s."""
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in the background
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    print(f"\nthe site and the dashboard stay up: open {url} (the OBE panel is on the obe-1 page); "
          "Ctrl-C stops everything", flush=True)
    while True:
        subprocess.run(scan, stdout=subprocess.DEVNULL)
        time.sleep(30)


def report_archive(site: list[str]) -> None:
    """Print where the site's FeedArchiver stored the recorded feeds (if the site has one)."""
    from clients.ocs_client import OCSClient

    print("\n=== the feed archive", flush=True)
    try:
        client = OCSClient("archiver", args=site)
        data = client.record.status().session.get("data") or {}
        client.close()
    except Exception as exc:  # noqa: BLE001 - the demo goes on without it
        print(f"no archiver in this site ({exc})")
        return
    for name, feed in sorted(data.get("feeds", {}).items()):
        print(f"  {name}: {feed['last_seq']} events, {feed['missing']} missing")
    print(f"archive: {data.get('store')}: {data.get('samples_written', 0)} samples "
          f"({data.get('store_size_bytes') or 0} bytes); read it with "
          "`ocs-core history obe-1.posterior --since 10m`", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the ocs-core demo site end to end.")
    parser.add_argument("--steps", type=int, default=60, help="measurements of the adaptive scan")
    parser.add_argument("--particles", type=int, default=20000)
    parser.add_argument("--png", default="demo-output/adaptive_scan.png")
    parser.add_argument("--site-file", default=str(EXAMPLES.parent.parent / "site-config.yaml"),
                        help="the demo's site file, named explicitly (default: the checkout's)")
    parser.add_argument("--run-dir", default="run")
    parser.add_argument("--port", type=int, default=os.environ.get("OCS_DEMO_PORT") or None,
                        help="router port; the agents' ports follow it (default: the site file's, "
                             "8001 and on; $OCS_DEMO_PORT)")
    parser.add_argument("--web-port", type=int, default=None,
                        help="the dashboard's port (default: 8002, or the router port + 10 with --port)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the site and the dashboard up until Ctrl-C (make demo KEEP=1)")
    args = parser.parse_args(argv)

    if args.port:  # a copy of the site file on the ports asked for (see demo_ports.py)
        from demo_ports import with_ports
        moved = Path(args.run_dir) / "site-config.yaml"
        moved.parent.mkdir(parents=True, exist_ok=True)
        moved.write_text(with_ports(Path(args.site_file).read_text(), int(args.port)))
        args.site_file = str(moved)
    site = ["--site-file", args.site_file]
    ocs_core = [sys.executable, "-m", "ocs_core.cli"]
    Path(args.png).parent.mkdir(parents=True, exist_ok=True)
    common = ["--particles", str(args.particles)]
    steps = [
        ("adaptive scan with OCSClient",
         [sys.executable, str(EXAMPLES / "adaptive_scan.py"), "--steps", str(args.steps),
          "--png", args.png, *common, *site], 300),
        ("the same loop as a Twisted control program",
         [sys.executable, str(EXAMPLES / "adaptive_scan_twisted.py"), "--steps", str(max(5, args.steps // 4)),
          *common, *site], 300),
        ("agent-to-agent: the OBE agent's adaptive_scan Process",
         [sys.executable, str(EXAMPLES / "agent_scan.py"), "--steps", str(max(5, args.steps // 2)),
          *common, *site], 300),
    ]
    t0 = time.monotonic()
    failed = None
    web = None
    try:
        keys = subprocess.run([*ocs_core, "credentials", "create", *site], capture_output=True,
                              text=True, timeout=60)  # an authenticated site: keys on first run
        print(keys.stdout.strip() or keys.stderr.strip(), flush=True)
        if keys.returncode != 0:
            raise RuntimeError("creating the site's credentials failed")
        run("bring up the site", [*ocs_core, "up", "--run-dir", args.run_dir, *site], 180)
        web_port = args.web_port or (args.port + 10 if args.port else 8002)
        web, url = start_dashboard(ocs_core, site, web_port, Path(args.run_dir) / "web.log",
                                   Path(args.run_dir) / "dashboard-key")
        for step, cmd, timeout in steps:
            run(step, cmd, timeout)
        report_archive(site)
        if args.keep:
            keep_up(url, [sys.executable, str(EXAMPLES / "agent_scan.py"), "--steps", "60", *common, *site])
    except KeyboardInterrupt:
        failed = None if args.keep else "interrupted"
    except RuntimeError as exc:
        failed = str(exc)
    finally:
        if web is not None:
            web.terminate()
            web.wait(10)
        try:
            run("shut the site down", [*ocs_core, "down", "--run-dir", args.run_dir, *site], 60)
        except RuntimeError as exc:
            failed = failed or str(exc)
    if failed:
        print(f"\ndemo FAILED: {failed} (logs: {os.path.join(args.run_dir, 'logs')} or the "
              "site's log-dir)", file=sys.stderr)
        return 1
    print(f"\ndemo finished in {time.monotonic() - t0:.0f} s; plot: {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
