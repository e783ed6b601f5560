"""Benchmark: redrawing a dashboard plot of N points in headless Chromium, measured in the page.

Not a test. Serves the dashboard's own ``plots.js`` and the installed dygraphs wheel's
``dygraph-combined.js`` (exactly what ``ocs-core web`` serves), opens a page in Debian's headless
Chromium (flags of ``tests/browser.py``), and times ``Plots.TimePlot.draw`` with fresh data of N
points, from the call until the next animation frame (the redraw painted), ``performance.now()``.

    .venv/bin/python bench/dashboard_plot.py               # 100,000 points, 2 fields x 50,000 too
    .venv/bin/python bench/dashboard_plot.py --points 20000 --repeats 30
"""
from __future__ import annotations

import argparse
import http.server
import os
import statistics
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from browser import quit_chromium, start_chromium  # noqa: E402
from clients.dashboard.web import STATIC, plot_library  # noqa: E402

PAGE = b"""<!doctype html><html><head><meta charset="utf-8">
<link rel="stylesheet" href="/lib/dygraph.css"><script src="/lib/dygraph.js"></script>
<script src="/static/plots.js"></script></head>
<body><div id="p" style="width:1100px;height:300px"></div><script>
function make(n, fields, k) {
  var s = new Plots.Series(n); var f = {}; var t0 = 1.7e9;
  for (var j = 0; j < fields; j++) { var t = new Array(n), v = new Array(n);
    for (var i = 0; i < n; i++) { t[i] = t0 + i * 0.1; v[i] = Math.sin(i / 1000 + k + j) + Math.random() * 0.1; }
    f["field_" + j] = [t, v]; }
  s.add(f); return s;
}
window.bench = function (n, fields, reps, done) {
  var plot = new Plots.TimePlot(document.getElementById("p"));
  var names = []; for (var j = 0; j < fields; j++) names.push("field_" + j);
  var first = make(n, fields, 0); plot.draw(Plots.rows(first, names), ["t"].concat(names), false);
  var times = [], rowsTimes = [], r = 0;
  function step() {
    if (r >= reps) { done({draw: times, rows: rowsTimes, points: plot.count}); return; }
    var s = make(n, fields, ++r);
    var t0 = performance.now(); var data = Plots.rows(s, names); var t1 = performance.now();
    plot.draw(data, ["t"].concat(names), false);
    requestAnimationFrame(function () { times.push(performance.now() - t1); rowsTimes.push(t1 - t0); setTimeout(step, 50); });
  }
  step();
};
</script></body></html>"""


def serve() -> http.server.ThreadingHTTPServer:
    lib = plot_library()
    files = {"/": (PAGE, "text/html"), "/lib/dygraph.js": (lib["dygraph.js"].read_bytes(), "text/javascript"),
             "/lib/dygraph.css": (lib["dygraph.css"].read_bytes(), "text/css"),
             "/static/plots.js": ((STATIC / "plots.js").read_bytes(), "text/javascript")}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body, ctype = files.get(self.path, (b"", "text/plain"))
            self.send_response(200 if self.path in files else 404)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    server = serve()
    driver = start_chromium()
    try:
        driver.set_script_timeout(300)
        driver.get(f"http://127.0.0.1:{server.server_address[1]}/")
        print(f"dygraphs (installed wheel) in {driver.capabilities.get('browserVersion')} headless, "
              f"{os.cpu_count()} cores")
        print("| case | redraw median | best | worst | rows() median |\n| --- | --- | --- | --- | --- |")
        for fields in (1, 2):
            n = args.points // fields
            result = driver.execute_async_script(
                "window.bench(arguments[0], arguments[1], arguments[2], arguments[3]);", n, fields, args.repeats)
            draw, rows = result["draw"], result["rows"]
            print(f"| {fields} field(s) x {n:,} points ({result['points']:,} rows) | "
                  f"{statistics.median(draw):.1f} ms | {min(draw):.1f} ms | {max(draw):.1f} ms | "
                  f"{statistics.median(rows):.1f} ms |")
    finally:
        quit_chromium(driver)
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
