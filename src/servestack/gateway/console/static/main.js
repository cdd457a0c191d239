// The console's shell: who is looking (the session), the nav, and one page at a time by the URL's hash.

import { ApiError, clearAdminKey, getJSON, setAdminKey } from "./api.js";
import { clear, h, note } from "./dom.js";
import * as keys from "./pages/keys.js";
import * as logs from "./pages/logs.js";
import * as overview from "./pages/overview.js";
import * as plan from "./pages/plan.js";
import * as traffic from "./pages/traffic.js";

const PAGES = { overview, traffic, logs, plan, keys };
const root = document.getElementById("page");
const who = document.getElementById("who");
let session = null;
let unmount = null;

function route() {
  const [path, search = ""] = location.hash.replace(/^#\/?/, "").split("?");
  const name = PAGES[path] ? path : "overview";
  return { name, params: new URLSearchParams(search) };
}

async function loadSession() {
  try {
    session = await getJSON("/admin/console");
  } catch (error) {
    if (!(error instanceof ApiError) || ![401, 403].includes(error.status)) throw error;
    clearAdminKey();
    session = { auth: true, admin: false, can_read: false, can_act: false, admin_api: true, refused: error.message };
  }
  showWho();
}

function showWho() {
  const parts = [];
  if (session.admin) {
    parts.push(h("span", { class: "badge ok" }, "admin"));
    parts.push(h("button", { class: "link", onclick: logOut }, "Log out"));
  } else if (session.admin_api) {
    parts.push(h("button", { class: "link", onclick: () => showLogin() }, "Log in"));
  }
  if (!session.can_act) parts.unshift(h("span", { class: "muted small" }, "read-only"));
  clear(who, parts);
}

function logOut() {
  clearAdminKey();
  start();
}

function showLogin(reason) {
  unmount?.();
  unmount = null;
  const input = h("input", { type: "password", name: "key", autocomplete: "off", placeholder: "admin key", required: true });
  const message = h("p", { class: "error", role: "alert" }, reason ?? "");
  const form = h(
    "form",
    { class: "card login", onsubmit: (event) => logIn(event, input, message) },
    h("h2", {}, "Log in"),
    note("The console needs the gateway's admin key (SERVESTACK_ADMIN_KEY). It is kept in this tab's session only."),
    input,
    h("button", { type: "submit" }, "Log in"),
    message,
  );
  clear(root, form);
  input.focus();
}

async function logIn(event, input, message) {
  event.preventDefault();
  setAdminKey(input.value.trim());
  input.value = "";
  try {
    await loadSession();
  } catch (error) {
    message.textContent = error.message;
    return;
  }
  if (!session.admin) {
    clearAdminKey();
    await loadSession();
    showLogin("That key is not the admin key (SERVESTACK_ADMIN_KEY): a client key cannot open the console.");
    return;
  }
  show();
}

function show() {
  unmount?.();
  unmount = null;
  const { name, params } = route();
  for (const link of document.querySelectorAll("#nav a")) {
    link.classList.toggle("current", link.dataset.page === name);
  }
  if (!session.can_read) {
    showLogin(session.refused);
    return;
  }
  clear(root);
  unmount = PAGES[name].mount(root, { session, params, login: showLogin });
}

async function start() {
  try {
    await loadSession();
  } catch (error) {
    clear(root, h("p", { class: "error" }, `The gateway did not answer: ${error.message}`));
    return;
  }
  show();
}

window.addEventListener("hashchange", show);
start();
