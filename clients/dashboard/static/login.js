// The dashboard's login (when `ocs-core web` has a key): the form, the key from the address
// (the server logs in and redirects; a refusal comes back as ?login=...), logout, and what the
// page does when its session ends. Loaded after app.js; it starts the page.
"use strict";

var LOGIN_NOTES = { refused: "The key in the address was refused: type the key.",
                    "too-many": "Too many wrong keys lately: wait a minute, then type the key." };

function postJson(url, body) {
  return fetch(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body || {}) })
    .then(function (r) { return r.json().then(function (d) { d.status = r.status; return d; }); });
}

function session() { return fetch("/auth/session").then(function (r) { return r.json(); }); }

function start() {
  state.needLogin = false;
  $("#logout").className = state.loginRequired ? "logout" : "logout hidden";
  route();
}

function recheck() {
  session().then(function (d) {
    state.loginRequired = d.required;
    if (d.required && !d.logged_in) showLogin("Your session has ended (logged out, or ocs-core web restarted): log in again.");
    else if (state.watch === undefined) start();  // never routed (the server was away at load)
    else connect();
  }).catch(function () { setTimeout(recheck, 1000); });
}

function showLogin(note) {
  state.needLogin = true;
  if (state.source) state.source.close();
  state.source = null; state.watch = undefined; state.server = true; state.connected = null; banner();
  $("#logout").className = "logout hidden";
  var view = $("#view"); view.textContent = "";
  var input = h("input", { id: "login-key", type: "password", autocomplete: "current-password", size: 48 });
  var error = h("p", { id: "login-error", cls: "error", text: note || "" });
  var form = h("form", { id: "login", cls: "login" }, [
    h("h2", { text: "Log in" }),
    h("p", { text: "This dashboard needs its key: the one in the address that ocs-core web printed " +
                   "(http://...?key=...), or in its --key-file. The key lets you see the site; op buttons " +
                   "still act with your ocs access password." }),
    h("label", {}, ["key ", input]), " ", h("button", { type: "submit", text: "Log in" }), error]);
  form.addEventListener("submit", function (e) {
    e.preventDefault();
    error.textContent = "logging in...";
    postJson("/auth/login", { key: input.value }).then(function (d) {
      if (d.status === 200 && d.logged_in) { input.value = ""; start(); }
      else error.textContent = d.error || ("refused (HTTP " + d.status + ")");
    }).catch(function (err) { error.textContent = String(err); });
  });
  view.appendChild(form);
  input.focus();
}

function logout() {
  postJson("/auth/logout").then(function () { showLogin("Logged out."); })
    .catch(function () { state.server = false; banner(); });
}

window.addEventListener("hashchange", function () { if (!state.needLogin) route(); });
window.addEventListener("load", function () {
  $("#logout").addEventListener("click", logout);
  var note = (location.search.match(/[?&]login=([a-z-]+)/) || [])[1];
  if (location.search) history.replaceState(null, "", "/" + location.hash);  // no key or note in the address
  session().then(function (d) {
    state.loginRequired = d.required;
    if (d.required && !d.logged_in) showLogin(LOGIN_NOTES[note]); else start();
  }).catch(function () { state.server = false; banner(); setTimeout(recheck, 1000); });
  setInterval(updateAges, 500);
  setInterval(redraw, 400);
});
