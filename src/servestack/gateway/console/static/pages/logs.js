// Logs: an engine's log streamed live (server-sent events), one replica or all, with follow and search.
// The lines are `servestack logs SERVICE -f`'s: probe lines left out, secrets masked by the instance.

import { ApiError, getJSON, streamEvents } from "../api.js";
import { clear, h, note } from "../dom.js";

const KEEP = 5000;
const FIRST_LINES = 200;
const RETRY_MS = 3000;

export function mount(root, { params }) {
  const service = h("select", { "aria-label": "service", onchange: () => restart() });
  const replica = h("select", { "aria-label": "replica", onchange: () => restart() });
  const follow = h("input", { type: "checkbox", checked: true, onchange: () => follow.checked && scroll() });
  const search = h("input", { type: "search", placeholder: "search", "aria-label": "search", oninput: () => filter() });
  const state = h("span", { class: "muted small", role: "status" });
  const output = h("div", { class: "log", tabindex: "0", "aria-label": "log lines" });
  root.append(
    h("h1", {}, "Logs"),
    h("div", { class: "controls" }, h("label", {}, "Service ", service), h("label", {}, "Replica ", replica), h("label", {}, follow, " follow"), search, state),
    output,
  );
  output.addEventListener("scroll", () => {
    const atEnd = output.scrollHeight - output.scrollTop - output.clientHeight < 8;
    if (!atEnd && follow.checked && document.activeElement === output) follow.checked = false;
  });

  let services = [];
  let controller = null;
  let retry = null;

  function scroll() {
    output.scrollTop = output.scrollHeight;
  }

  function filter() {
    const text = search.value.toLowerCase();
    for (const line of output.children) line.hidden = text !== "" && !line.textContent.toLowerCase().includes(text);
  }

  function append(lines, several) {
    const text = search.value.toLowerCase();
    const made = lines.map((l) => {
      const shown = several ? `${l.replica} | ${l.text}` : l.text;
      const div = h("div", { class: "line" }, shown);
      div.hidden = text !== "" && !shown.toLowerCase().includes(text);
      return div;
    });
    output.append(...made);
    while (output.children.length > KEEP) output.firstChild.remove();
    if (follow.checked) scroll();
  }

  async function restart() {
    controller?.abort();
    clearTimeout(retry);
    clear(output);
    const chosen = services.find((s) => s.name === service.value);
    if (!chosen) return;
    if (replica.dataset.service !== chosen.name) {
      replica.dataset.service = chosen.name;
      clear(replica, h("option", { value: "" }, "all"), chosen.replicas.map((r) => h("option", { value: String(r.replica), selected: params.get("replica") === String(r.replica) }, r.label)));
    }
    const several = replica.value === "" && chosen.replicas.length > 1;
    const query = new URLSearchParams({ service: chosen.name, lines: String(FIRST_LINES) });
    if (replica.value !== "") query.set("replica", replica.value);
    history.replaceState(null, "", `#/logs?${query.toString().replace(/&?lines=\d+/, "")}`);
    const mine = new AbortController();
    controller = mine;
    state.textContent = "streaming";
    try {
      await streamEvents(`/admin/logs?${query}`, (name, data) => name === "message" && append([data], several), mine.signal);
      state.textContent = "the stream ended (the instance stopped?); reconnecting";
    } catch (error) {
      if (mine.signal.aborted) return;
      state.textContent = error instanceof ApiError ? error.message : `disconnected: ${error.message}; reconnecting`;
    }
    if (controller === mine) retry = setTimeout(restart, RETRY_MS);
  }

  (async () => {
    try {
      services = (await getJSON("/admin/overview")).services;
    } catch (error) {
      clear(output, note(error.message, "error"));
      return;
    }
    clear(service, services.map((s) => h("option", { value: s.name, selected: s.name === params.get("service") }, s.name)));
    restart();
  })();

  return () => {
    controller?.abort();
    controller = null;
    clearTimeout(retry);
  };
}
