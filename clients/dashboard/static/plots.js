// Plots of the dashboard, on dygraphs (served from the installed dygraphs wheel at /lib/dygraph.js).
// Plots.series(): per-field sample arrays that grow by the pushed points (bounded);
// Plots.rows(): the rows dygraphs draws (time, field...); Plots.TimePlot: a live/history plot.
"use strict";

var Plots = (function () {
  var KEEP = 20000;

  function Series(keep) { this.keep = keep || KEEP; this.fields = {}; }
  Series.prototype.add = function (fields) {
    for (var name in fields) {
      var t = fields[name][0], v = fields[name][1];
      var s = this.fields[name] || (this.fields[name] = { t: [], v: [] });
      for (var i = 0; i < t.length; i++) { s.t.push(t[i]); s.v.push(v[i]); }
      if (s.t.length > this.keep * 1.25) {
        s.t = s.t.slice(s.t.length - this.keep); s.v = s.v.slice(s.v.length - this.keep);
      }
    }
  };
  Series.prototype.names = function () { return Object.keys(this.fields).sort(); };

  // Rows [t, f1, f2...] of the named fields; fields that share timestamps are zipped, others
  // merged by time (null where a field has no sample).
  function rows(series, names) {
    var cols = names.map(function (n) { return series.fields[n] || { t: [], v: [] }; });
    if (!cols.length) return [];
    var same = cols.every(function (c) { return c.t.length === cols[0].t.length &&
      c.t[0] === cols[0].t[0] && c.t[c.t.length - 1] === cols[0].t[cols[0].t.length - 1]; });
    var out = [], i, k;
    if (same) {
      var t0 = cols[0].t;
      out = new Array(t0.length);
      for (i = 0; i < t0.length; i++) {
        var r = new Array(cols.length + 1); r[0] = t0[i];
        for (k = 0; k < cols.length; k++) r[k + 1] = cols[k].v[i];
        out[i] = r;
      }
      return out;
    }
    var byT = new Map();
    cols.forEach(function (c, k) {
      for (var i = 0; i < c.t.length; i++) {
        var r = byT.get(c.t[i]);
        if (!r) { r = new Array(cols.length + 1).fill(null); r[0] = c.t[i]; byT.set(c.t[i], r); }
        r[k + 1] = c.v[i];
      }
    });
    out = Array.from(byT.values());
    out.sort(function (a, b) { return a[0] - b[0]; });
    return out;
  }

  // Rows with [min, mean, max] cells (dygraphs' customBars) from the archive's series.
  function historyRows(series, names) {
    var byT = new Map();
    names.forEach(function (n, k) {
      var s = series[n]; if (!s) return;
      for (var i = 0; i < s.t.length; i++) {
        var r = byT.get(s.t[i]);
        if (!r) { r = new Array(names.length + 1).fill(null); r[0] = s.t[i]; byT.set(s.t[i], r); }
        var v = s.value[i];
        r[k + 1] = (typeof v === "number") ? [s.min ? s.min[i] : v, v, s.max ? s.max[i] : v] : null;
      }
    });
    var out = Array.from(byT.values());
    out.sort(function (a, b) { return a[0] - b[0]; });
    return out;
  }

  function utc(t) { return new Date(t * 1000).toISOString().replace("T", " ").slice(0, 23) + "Z"; }
  function timeAxis(t) {
    var s = new Date(t * 1000).toISOString(); return s.slice(11, 19);
  }

  // A dygraph over unix seconds; draw(rows, labels, bars) replaces its data.
  function TimePlot(el, opts) {
    this.el = el; this.graph = null; this.opts = opts || {}; this.count = 0;
  }
  TimePlot.prototype.draw = function (data, labels, bars) {
    var options = {
      labels: labels, file: data, customBars: !!bars, errorBars: false, connectSeparatedPoints: true,
      legend: "always", labelsSeparateLines: false, animatedZooms: false, digitsAfterDecimal: 4,
      xlabel: this.opts.xlabel || "time (UTC)", ylabel: this.opts.ylabel || "",
      axes: { x: { valueFormatter: this.opts.xformat || utc, axisLabelFormatter: this.opts.xaxis || timeAxis } }
    };
    if (this.opts.points) { options.drawPoints = true; options.strokeWidth = 0; options.pointSize = 2; }
    if (this.opts.errorBars) { options.errorBars = true; options.customBars = false; options.sigma = 1; }
    this.count = data.length;
    this.el.setAttribute("data-points", String(data.length));
    if (!data.length) {
      if (this.graph) { this.graph.destroy(); this.graph = null; }
      this.el.textContent = "no samples yet"; return;
    }
    if (this.graph && this.graph.numColumns() === labels.length &&
        this.graph.getOption("customBars") === options.customBars) {
      this.graph.updateOptions({ file: data, labels: labels });
    } else {
      if (this.graph) this.graph.destroy();
      this.el.textContent = "";
      this.graph = new Dygraph(this.el, data, options);
    }
  };

  return { Series: Series, rows: rows, historyRows: historyRows, TimePlot: TimePlot, utc: utc, KEEP: KEEP };
})();
