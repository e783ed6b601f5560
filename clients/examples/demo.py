"""The main job (`make demo`): bring up the site, find a resonance adaptively, shut down.

1. ``ocs-core up``: the router and every agent of this host in site-config.yaml (the OBE agent,
   a simulated instrument server and its instrument agent among them);
2. ``adaptive_scan.py``: OCSClient loop, a uniform sweep for comparison, and a PNG;
3. ``adaptive_scan_twisted.py``: the same loop as a run_control_script program;
4. ``agent_scan.py``: the OBE agent's own adaptive_scan Process drives the instrument agent;
5. where the archiver (FeedArchiver) put the recorded feeds;
6. ``ocs-core down``, whatever happened before.

Exits non-zero, naming the step, when anything fails.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

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
    parser.add_argument("--site-file", default=None)
    parser.add_argument("--run-dir", default="run")
    args = parser.parse_args(argv)

    site = ["--site-file", args.site_file] if args.site_file else []
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
    try:
        run("bring up the site", [*ocs_core, "up", "--run-dir", args.run_dir, *site], 180)
        for step, cmd, timeout in steps:
            run(step, cmd, timeout)
        report_archive(site)
    except (RuntimeError, KeyboardInterrupt) as exc:
        failed = str(exc) or "interrupted"
    finally:
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
