// The dashboard page: a site view (#/) and an agent view (#/agent/<instance-id>), fed by the
// server-sent events of /events; op requests go to POST /api/op with the password typed.
"use strict";

var CODES = { 1: "none", 2: "starting", 3: "running", 4: "stopping", 5: "succeeded", 6: "failed",
              7: "expired", 8: "degraded" };
var RESPONSE = { 0: "OK", "-1": "ERROR", 1: "TIMEOUT" };

var state = { root: "observatory", agents: {}, received: {}, connected: null, server: false,
              archiver: null, watch: undefined, api: null, specs: null, view: null, source: null,
              feeds: {}, plots: {}, obe: null, dirty: {} };

function h(tag, attrs, children) {
  var el = document.createElement(tag);
  for (var k in (attrs || {})) {
    if (k === "text") el.textContent = attrs[k];
    else if (k === "cls") el.className = attrs[k];
    else if (k.slice(0, 2) === "on") el.addEventListener(k.slice(2), attrs[k]);
    else if (attrs[k] !== null && attrs[k] !== undefined && attrs[k] !== false) el.setAttribute(k, attrs[k]);
  }
  (children || []).forEach(function (c) { if (c) el.appendChild(typeof c === "string" ? document.createTextNode(c) : c); });
  return el;
}
function $(sel) { return document.querySelector(sel); }
function instanceOf(address) { return address.slice(address.lastIndexOf(".") + 1); }
function fmtTime(t) { return t ? new Date(t * 1000).toISOString().slice(11, 23) : "-"; }
function codeBadge(op, code) {
  return h("span", { cls: "op code-" + code, "data-op": op, "data-code": code,
                     title: op + ": " + (CODES[code] || code) }, [op + " " + (CODES[code] || code)]);
}

// -- the event stream -------------------------------------------------------------------------
function connect() {
  if (state.source) state.source.close();
  var url = "/events" + (state.watch ? "?watch=" + encodeURIComponent(state.watch) : "");
  var src = state.source = new EventSource(url);
  src.addEventListener("open", function () { state.server = true; banner(); });
  src.addEventListener("error", function () {
    state.server = false; banner();
    // the browser retries a lost stream by itself, but not a refused one (401 after a logout
    // elsewhere or a restart of ocs-core web, 503 when too many pages are open)
    if (src.readyState === EventSource.CLOSED) setTimeout(function () { if (state.source === src) recheck(); }, 1000);
  });
  src.addEventListener("hello", function (e) {
    var d = JSON.parse(e.data);
    state.root = d.address_root; state.connected = d.connected; state.archiver = d.archiver;
    state.routerUrl = d.router; state.agents = {};
    d.agents.forEach(function (a) { state.agents[a.address] = a; state.received[a.address] = performance.now(); });
    banner(); render();
  });
  src.addEventListener("router", function (e) {
    var d = JSON.parse(e.data); state.connected = d.connected; state.routerUrl = d.router; banner();
  });
  src.addEventListener("agent", function (e) {
    var a = JSON.parse(e.data);
    state.agents[a.address] = a; state.received[a.address] = performance.now();
    if (a.agent_class === "FeedArchiver" && !a.lost) state.archiver = a.address;
    if (state.view === "site") renderSiteRow(a);
    else if (state.watch === a.address) {
      renderAgentHeader();
      if (!state.loaded && !a.lost) loadAgent(a.address);  // the page was opened before it was seen
    }
  });
  src.addEventListener("beats", function (e) {
    var now = performance.now();
    JSON.parse(e.data).forEach(function (a) { if (state.agents[a]) { state.agents[a].age = 0; state.received[a] = now; } });
  });
  src.addEventListener("api", function (e) {
    var d = JSON.parse(e.data);
    if (d.address !== state.watch) return;
    state.api = d.api;
    if (state.loaded) updateSessions();  // the body is drawn once the param declarations are in
  });
  src.addEventListener("points", function (e) {
    var d = JSON.parse(e.data);
    var key = d.address + "/" + d.feed;
    var s = state.feeds[key]; if (!s) return;
    s.add(d.fields); state.dirty[key] = true;
  });
}

function banner() {
  var el = $("#banner"), text = null;
  if (!state.server) text = "The dashboard server is unreachable; retrying...";
  else if (state.connected === false) text = "Lost the router at " + (state.routerUrl || "?") + "; reconnecting...";
  el.textContent = text || "";
  el.className = text ? "banner" : "banner hidden";
  el.setAttribute("data-shown", text ? "true" : "false");
}

// -- routing ----------------------------------------------------------------------------------
function route() {
  var m = location.hash.match(/^#\/agent\/(.+)$/);
  var watch = m ? state.root + "." + decodeURIComponent(m[1]) : null;
  if (m && decodeURIComponent(m[1]).indexOf(".") >= 0) watch = decodeURIComponent(m[1]);
  state.view = m ? "agent" : "site";
  if (watch !== state.watch) {
    state.watch = watch; state.api = null; state.specs = null; state.loaded = false; state.feeds = {}; state.plots = {}; state.obe = null;
    connect();
  }
  render();
  if (watch) loadAgent(watch);
}

function render() {
  var view = $("#view"); view.textContent = "";
  if (state.view === "site") renderSite(view); else renderAgentShell(view);
}

// -- site view --------------------------------------------------------------------------------
function renderSite(view) {
  var addresses = Object.keys(state.agents).sort();
  var tbody = h("tbody", { id: "agents" });
  view.appendChild(h("section", { cls: "site" }, [
    h("h2", { text: "Agents (" + addresses.length + ")" }),
    h("table", { cls: "agents" }, [
      h("thead", {}, [h("tr", {}, ["instance-id", "class", "host", "state", "heartbeat", "operations"].map(
        function (c) { return h("th", { text: c }); }))]), tbody])]));
  addresses.forEach(function (a) { renderSiteRow(state.agents[a]); });
}

function renderSiteRow(a) {
  var tbody = $("#agents"); if (!tbody) return;
  var row = h("tr", { "data-address": a.address, "data-state": a.lost ? "lost" : "alive", cls: a.lost ? "lost" : "alive" }, [
    h("td", {}, [h("a", { href: "#/agent/" + encodeURIComponent(a.instance_id), text: a.instance_id })]),
    h("td", { text: a.agent_class || "?" }), h("td", { text: a.host || "?" }),
    h("td", { cls: "state", text: a.lost ? "lost" : "alive" }),
    h("td", { cls: "age", "data-address": a.address }),
    h("td", { cls: "ops" }, Object.keys(a.op_codes).map(function (op) { return codeBadge(op, a.op_codes[op]); }))]);
  var old = tbody.querySelector('tr[data-address="' + CSS.escape(a.address) + '"]');
  if (old) tbody.replaceChild(row, old);
  else {
    var after = Array.prototype.find.call(tbody.children, function (r) { return r.getAttribute("data-address") > a.address; });
    tbody.insertBefore(row, after || null);
    var head = $(".site h2"); if (head) head.textContent = "Agents (" + tbody.children.length + ")";
  }
  updateAges();
}

function ageOf(a) { return a.age + (performance.now() - (state.received[a.address] || performance.now())) / 1000; }
function updateAges() {
  document.querySelectorAll("td.age").forEach(function (td) {
    var a = state.agents[td.getAttribute("data-address")]; if (a) td.textContent = ageOf(a).toFixed(1) + " s ago";
  });
  var ha = $("#agent-age"); if (ha && state.agents[state.watch]) ha.textContent = ageOf(state.agents[state.watch]).toFixed(1) + " s ago";
}

// -- agent view -------------------------------------------------------------------------------
function loadAgent(address) {
  if (state.loading) return;
  state.loading = true;
  fetch("/api/agent?agent=" + encodeURIComponent(address)).then(function (r) { return r.json(); }).then(function (d) {
    state.loading = false;
    if (state.watch !== address) return;
    if (d.error) { $("#agent-error").textContent = d.error; return; }
    $("#agent-error").textContent = "";
    state.specs = d.param_specs; state.api = d.api; state.loaded = true; renderAgentBody();
  }).catch(function (e) { state.loading = false; var el = $("#agent-error"); if (el) el.textContent = String(e); });
}

function renderAgentShell(view) {
  view.appendChild(h("p", {}, [h("a", { href: "#/", text: "\u2190 all agents" })]));
  view.appendChild(h("section", { id: "agent-head" }));
  view.appendChild(h("p", { cls: "privs" }, [h("label", {}, ["access password (sent as ocs's privs; empty: none) ",
    h("input", { id: "password", type: "password", autocomplete: "off" })])]));
  view.appendChild(h("p", { id: "agent-error", cls: "error" }));
  view.appendChild(h("section", { id: "agent-body" }, [h("p", { text: "loading..." })]));
  renderAgentHeader();
  if (state.loaded) renderAgentBody();
}

function renderAgentHeader() {
  var el = $("#agent-head"); if (!el) return;
  var a = state.agents[state.watch];
  el.textContent = "";
  el.appendChild(h("h2", { text: instanceOf(state.watch) }));
  if (!a) { el.appendChild(h("p", { text: "not seen on the heartbeats (yet)" })); return; }
  el.appendChild(h("p", { cls: "meta", "data-state": a.lost ? "lost" : "alive" }, [
    (a.agent_class || "?") + " on " + (a.host || "?") + " (pid " + (a.pid || "?") + ") \u2014 ",
    h("span", { cls: a.lost ? "lost" : "alive", text: a.lost ? "lost" : "alive" }), ", heartbeat ",
    h("span", { id: "agent-age" })]));
  updateAges();
}

function opsOf(api) {
  var out = [];
  (api.tasks || []).forEach(function (t) { out.push({ name: t[0], session: t[1], info: t[2], kind: "task" }); });
  (api.processes || []).forEach(function (t) { out.push({ name: t[0], session: t[1], info: t[2], kind: "process" }); });
  return out;
}

function renderAgentBody() {
  var body = $("#agent-body"); if (!body || !state.api) return;
  body.textContent = "";
  var api = state.api;
  var feeds = (api.feeds || []).filter(function (f) { return f[1] && f[1].record; });
  if (feeds.some(function (f) { return f[0] === "posterior"; }) || api.agent_class === "OBEAgent") {
    body.appendChild(obePanel());
  }
  feeds.forEach(function (f) { body.appendChild(feedPanel(f[0])); });
  var ops = h("section", { cls: "ops-list" }, [h("h3", { text: "Operations" })]);
  opsOf(api).forEach(function (op) { ops.appendChild(opCard(op)); });
  body.appendChild(ops);
  updateSessions();
}

function specsOf(name) {
  if (!state.specs || !state.specs[name]) return null;
  return state.specs[name];
}

function paramField(spec) {
  var hint = [spec.type || "any"];
  if (!spec.required) hint.push("default " + JSON.stringify(spec.default));
  else hint.push("required");
  if (spec.min !== null && spec.min !== undefined) hint.push("min " + spec.min);
  if (spec.max !== null && spec.max !== undefined) hint.push("max " + spec.max);
  var input;
  if (spec.choices) {
    input = h("select", { name: spec.name }, [h("option", { value: "", text: spec.required ? "(choose)" : "(default)" })]
      .concat(spec.choices.map(function (c) { return h("option", { value: JSON.stringify(c), text: JSON.stringify(c) }); })));
  } else if (spec.type === "bool") {
    input = h("select", { name: spec.name }, [h("option", { value: "", text: "(default)" }),
      h("option", { value: "true", text: "true" }), h("option", { value: "false", text: "false" })]);
  } else {
    input = h("input", { name: spec.name, type: "text", placeholder: spec.required ? "" : JSON.stringify(spec.default) });
  }
  input.setAttribute("data-type", spec.type || "");
  return h("label", { cls: "param" }, [h("span", { cls: "pname", text: spec.name }), input,
    h("span", { cls: "hint", text: hint.join(", ") + (spec.doc ? " \u2014 " + spec.doc : "") })]);
}

function parseValue(text, type) {
  if (type === "str") return text;
  try { return JSON.parse(text); } catch (e) { return text; }
}

function formParams(card, name) {
  var json = card.querySelector("textarea.params");
  if (json) {
    var text = json.value.trim(); if (!text) return {};
    var v = JSON.parse(text); // a SyntaxError is shown to the person
    return v;
  }
  var params = {};
  card.querySelectorAll("label.param input, label.param select").forEach(function (el) {
    if (el.value === "") return;
    params[el.name] = parseValue(el.value, el.getAttribute("data-type"));
  });
  return params;
}

function opCard(op) {
  var specs = specsOf(op.name);
  var card = h("div", { cls: "op-card", "data-op": op.name, "data-kind": op.kind });
  card.appendChild(h("h4", {}, [op.name + " ", h("span", { cls: "kind", text: op.kind }), " ", h("span", { cls: "badge" })]));
  if (op.info && op.info.docstring) card.appendChild(h("pre", { cls: "doc", text: op.info.docstring }));
  var form = h("form", { cls: "start-form" });
  if (specs && specs.params) {
    if (!specs.params.length) form.appendChild(h("p", { cls: "hint", text: "no parameters" }));
    specs.params.forEach(function (s) { form.appendChild(paramField(s)); });
  } else {
    form.appendChild(h("label", { cls: "json" }, ["params (JSON object) ",
      h("textarea", { cls: "params", rows: 2, placeholder: "{}" })]));
  }
  var buttons = h("div", { cls: "buttons" }, [
    h("button", { type: "submit", cls: "start", text: "Start" }),
    op.kind === "process" ? h("button", { type: "button", cls: "stop", text: "Stop",
      onclick: function () { request(card, op.name, "stop"); } }) : null,
    op.kind === "task" && op.info && op.info.abortable ? h("button", { type: "button", cls: "abort", text: "Abort",
      onclick: function () { request(card, op.name, "abort"); } }) : null,
    h("button", { type: "button", cls: "status", text: "Status", onclick: function () { request(card, op.name, "status"); } })]);
  form.appendChild(buttons);
  form.addEventListener("submit", function (e) {
    e.preventDefault();
    var params;
    try { params = formParams(card, op.name); } catch (err) { showReply(card, "the params are not JSON: " + err.message, "error"); return; }
    request(card, op.name, "start", params);
  });
  card.appendChild(form);
  card.appendChild(h("pre", { cls: "reply", "data-code": "" }));
  card.appendChild(h("div", { cls: "session" }));
  return card;
}

function showReply(card, text, code) {
  var el = card.querySelector("pre.reply"); el.textContent = text; el.setAttribute("data-code", code);
}

function request(card, op, action, params) {
  var pw = $("#password") ? $("#password").value : "";
  var body = { agent: state.watch, op: op, action: action, params: params || {} };
  if (pw) body.password = pw;
  showReply(card, action + "...", "pending");
  fetch("/api/op", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) })
    .then(function (r) { return r.json(); })
    .then(function (d) {
      if (d.error) { showReply(card, d.error, "error"); return; }
      showReply(card, d.text, d.code);
    })
    .catch(function (e) { showReply(card, String(e), "error"); });
}

function dataTree(value) {
  if (value === null || typeof value !== "object") return h("span", { cls: "leaf", text: JSON.stringify(value) });
  var keys = Object.keys(value);
  if (!keys.length) return h("span", { cls: "leaf", text: Array.isArray(value) ? "[]" : "{}" });
  if (Array.isArray(value) && value.length > 20 && value.every(function (v) { return typeof v !== "object"; })) {
    return h("span", { cls: "leaf", text: "[" + value.slice(0, 20).map(function (v) { return JSON.stringify(v); }).join(", ") + ", ... (" + value.length + " items)]" });
  }
  return h("ul", { cls: "tree" }, keys.map(function (k) {
    return h("li", {}, [h("span", { cls: "key", text: k + ": " }), dataTree(value[k])]);
  }));
}

function updateSessions() {
  if (!state.api) return;
  var codes = (state.agents[state.watch] || {}).op_codes || {};
  opsOf(state.api).forEach(function (op) {
    var card = document.querySelector('.op-card[data-op="' + CSS.escape(op.name) + '"]');
    if (!card) return;
    var s = op.session || {};
    var code = s.op_code || codes[op.name] || 1;
    var badge = card.querySelector(".badge"); badge.replaceWith(codeBadge(op.name, code)); card.querySelector(".op").classList.add("badge");
    var box = card.querySelector(".session"); box.textContent = "";
    box.setAttribute("data-status", s.status || "no_history");
    if (!s.status || s.status === "no_history") { box.appendChild(h("p", { cls: "hint", text: "no session yet" })); return; }
    box.appendChild(h("p", { cls: "status-line" }, ["session " + s.session_id + ": ",
      h("b", { cls: "status", text: s.status }), ", success " + JSON.stringify(s.success) +
      ", started " + fmtTime(s.start_time) + (s.end_time ? ", ended " + fmtTime(s.end_time) : "")]));
    box.appendChild(h("ul", { cls: "messages" }, (s.messages || []).slice(-50).map(function (m) {
      return h("li", {}, [h("span", { cls: "t", text: fmtTime(m[0]) + " " }), h("span", { cls: "msg", text: m[1] })]);
    })));
    box.appendChild(h("div", { cls: "data-tree" }, [h("span", { cls: "key", text: "data: " }), dataTree(s.data)]));
  });
}

window.dashboard = state;
