// Keys and usage (admin key only): every key with its limits, and usage by key and by model over a window.

import { ApiError, getJSON } from "../api.js";
import { badge, clear, clock, count, h, ms, note } from "../dom.js";

const WINDOWS = [["15 minutes", 900], ["1 hour", 3600], ["24 hours", 86400], ["7 days", 604800], ["30 days", 2592000], ["all time", null]];

export function mount(root, { session, login }) {
  root.append(h("h1", {}, "Keys & usage"));
  if (!session.admin) {
    root.append(note(session.admin_api ? "Keys and usage need the admin key." : "The admin API is off: set SERVESTACK_ADMIN_KEY for the gateway."));
    if (session.admin_api) root.append(h("button", { onclick: () => login() }, "Log in"));
    return () => {};
  }
  const keys = h("div", { class: "scroll" }, note("Loading…"));
  const windowPick = h("select", { "aria-label": "window", onchange: () => usage() }, WINDOWS.map(([label, seconds]) => h("option", { value: seconds ?? "", selected: seconds === 86400 }, label)));
  const byKey = h("div", { class: "scroll" });
  const byModel = h("div", { class: "scroll" });
  root.append(h("h2", {}, "Keys"), keys, h("h2", {}, "Usage"), h("div", { class: "controls" }, h("label", {}, "Window ", windowPick)), h("h3", {}, "By key"), byKey, h("h3", {}, "By model"), byModel);

  getJSON("/admin/keys").then((data) => clear(keys, keyTable(data.keys)), (error) => clear(keys, note(error.message, "error")));

  async function usage() {
    const since = windowPick.value ? `&since=${Date.now() / 1000 - Number(windowPick.value)}` : "";
    for (const [by, out] of [["key", byKey], ["model", byModel]]) {
      try {
        clear(out, usageTable(by, (await getJSON(`/admin/usage?by=${by}${since}`)).totals));
      } catch (error) {
        clear(out, note(error instanceof ApiError ? error.message : String(error), "error"));
      }
    }
  }
  usage();
  return () => {};
}

function table(head, rows, cls) {
  return h("table", { class: cls }, h("thead", {}, h("tr", {}, head.map((c) => h("th", { scope: "col" }, c)))), h("tbody", {}, rows));
}

function keyTable(keys) {
  if (!keys.length) return note("No keys yet: `servestack keys create NAME` makes one.");
  const head = ["Name", "Id", "Key", "Status", "Models", "RPM", "TPM", "Concurrent", "Expires", "Created"];
  const rows = keys.map((k) => h("tr", { dataset: { key: k.name } }, [
    k.name, k.id, k.hint, badge(k.status), k.models ? k.models.join(", ") : "all", count(k.rpm), count(k.tpm), count(k.max_concurrent),
    k.expires_at ? clock(k.expires_at) : "never", clock(k.created_at),
  ].map((c, i) => h("td", { dataset: { label: head[i] } }, c))));
  return table(head, rows, "keys");
}

function usageTable(by, totals) {
  if (!totals.length) return note("No requests in this window.");
  const head = [by === "key" ? "Key" : "Model", "Requests", "Errors", "Prompt tokens", "Completion tokens", "Mean TTFT", "Mean duration"];
  const rows = totals.map((t) => h("tr", { dataset: { group: t.group } }, [
    t.group, count(t.requests), count(t.errors), count(t.prompt_tokens), count(t.completion_tokens), ms(t.mean_ttft), ms(t.mean_duration),
  ].map((c, i) => h("td", { dataset: { label: head[i] } }, c))));
  return table(head, rows, `usage by-${by}`);
}
