// The agent view's plot panels: a live/history plot per recorded feed, and the OBE panel.
// Globals of app.js (state, h) and plots.js (Plots) are used; app.js calls feedPanel, obePanel
// and, every 400 ms, redraw.
"use strict";

// -- live and history plots -------------------------------------------------------------------
function feedPanel(feed) {
  var key = state.watch + "/" + feed;
  var series = state.feeds[key] = new Plots.Series();
  var plotEl = h("div", { cls: "plot", "data-points": "0" });
  var plot = new Plots.TimePlot(plotEl);
  var fieldsBox = h("div", { cls: "fields" });
  var range = h("select", { cls: "range" }, [["live", "live"], ["3600", "last hour (archive)"],
    ["86400", "last day (archive)"]].map(function (o) { return h("option", { value: o[0], text: o[1] }); }));
  var note = h("span", { cls: "hint" });
  var panel = h("section", { cls: "feed-panel", "data-feed": feed }, [
    h("h3", { text: "feed " + feed }), h("div", { cls: "controls" }, [fieldsBox, range, note]), plotEl]);
  var entry = state.plots[key] = { series: series, plot: plot, panel: panel, selected: null, mode: "live" };
  range.addEventListener("change", function () {
    entry.mode = range.value;
    if (entry.mode === "live") { note.textContent = ""; state.dirty[key] = true; return; }
    historyLoad(entry, feed, Number(range.value), note);
  });
  fetch("/api/feed?agent=" + encodeURIComponent(state.watch) + "&feed=" + encodeURIComponent(feed))
    .then(function (r) { return r.json(); }).then(function (d) {
      if (d.fields) { series.add(d.fields); state.dirty[key] = true; }
    });
  return panel;
}

function fieldChoices(entry) {
  var names = entry.series.names();
  var box = entry.panel.querySelector(".fields");
  if (entry.selected === null && names.length) entry.selected = names.slice();
  names.forEach(function (n) {
    if (box.querySelector('input[value="' + CSS.escape(n) + '"]')) return;
    var cb = h("input", { type: "checkbox", value: n });
    cb.checked = entry.selected.indexOf(n) >= 0;
    cb.addEventListener("change", function () {
      entry.selected = Array.prototype.filter.call(box.querySelectorAll("input"), function (i) { return i.checked; })
        .map(function (i) { return i.value; });
      state.dirty[state.watch + "/" + entry.panel.getAttribute("data-feed")] = true;
      if (entry.mode !== "live") entry.panel.querySelector(".range").dispatchEvent(new Event("change"));
    });
    box.appendChild(h("label", { cls: "field" }, [cb, n]));
  });
  return (entry.selected || []).filter(function (n) { return names.indexOf(n) >= 0; });
}

function historyLoad(entry, feed, span, note) {
  if (!state.archiver) { note.textContent = "no archiver runs (FeedArchiver): history unavailable"; return; }
  var stop = Date.now() / 1000, start = stop - span;
  var fields = fieldChoices(entry);
  note.textContent = "loading...";
  fetch("/api/history?address=" + encodeURIComponent(state.watch) + "&feed=" + encodeURIComponent(feed) +
        "&start=" + start + "&stop=" + stop + "&max_points=2000" + (fields.length ? "&fields=" + encodeURIComponent(fields.join(",")) : ""))
    .then(function (r) { return r.json(); }).then(function (d) {
      if (entry.mode === "live") return;
      if (d.error) { note.textContent = d.error; return; }
      var names = Object.keys(d.series).sort();
      entry.plot.draw(Plots.historyRows(d.series, names), ["t"].concat(names), true);
      note.textContent = "from " + d.archiver + (d.gaps && d.gaps.length ? ", " + d.gaps.length + " gap(s) recorded" : "");
    }).catch(function (e) { note.textContent = String(e); });
}

function redraw() {
  for (var key in state.dirty) {
    var entry = state.plots[key];
    if (entry && entry.mode === "live") {
      var names = fieldChoices(entry);
      entry.plot.draw(Plots.rows(entry.series, names), ["t"].concat(names), false);
    }
    if (state.obe && state.obe.key === key) drawObe();
  }
  state.dirty = {};
}

// -- the OBE panel ----------------------------------------------------------------------------
function obePanel() {
  var key = state.watch + "/posterior";
  var panel = h("section", { cls: "obe-panel" }, [h("h3", { text: "Bayesian experiment design: posterior" }),
    h("p", { cls: "hint", text: "posterior mean \u00b1 std of each parameter, and the settings chosen, against the number of measurements (latest run)" }),
    h("div", { cls: "obe-params" }), h("h4", { text: "settings chosen" }), h("div", { cls: "plot obe-settings", "data-points": "0" })]);
  state.obe = { key: key, panel: panel, plots: {},
                settings: new Plots.TimePlot(panel.querySelector(".obe-settings"), { points: true,
                  xlabel: "measurements", xformat: String, xaxis: String }) };
  return panel;
}

function drawObe() {
  var series = state.feeds[state.obe.key]; if (!series || !series.fields.n_measurements) return;
  var n = series.fields.n_measurements.v, start = 0;
  for (var i = 1; i < n.length; i++) if (n[i] < n[i - 1]) start = i;  // a new run starts over
  var names = series.names();
  var params = names.filter(function (f) { return f.indexOf("mean_") === 0; }).map(function (f) { return f.slice(5); });
  var box = state.obe.panel.querySelector(".obe-params");
  params.forEach(function (p) {
    var mean = series.fields["mean_" + p], std = series.fields["std_" + p]; if (!mean || !std) return;
    var plot = state.obe.plots[p];
    if (!plot) {
      var el = h("div", { cls: "plot obe-param", "data-param": p, "data-points": "0" });
      box.appendChild(h("div", { cls: "obe-cell" }, [h("h4", { text: p }), el]));
      plot = state.obe.plots[p] = new Plots.TimePlot(el, { errorBars: true, xlabel: "measurements", ylabel: p,
                                                           xformat: String, xaxis: String });
    }
    var rows = [];
    for (var i = start; i < n.length && i < mean.v.length && i < std.v.length; i++) rows.push([n[i], [mean.v[i], std.v[i]]]);
    plot.draw(rows, ["n", p], false);
  });
  var settings = names.filter(function (f) { return f.indexOf("setting_") === 0; });
  var rows = [];
  for (var j = start; j < n.length; j++) {
    var r = [n[j]]; settings.forEach(function (s) { r.push(series.fields[s].v[j]); }); rows.push(r);
  }
  state.obe.settings.draw(settings.length ? rows : [], ["n"].concat(settings), false);
}

