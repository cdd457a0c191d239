// Overview: every service and replica with its state, each GPU's memory, and the actions of the day.
// Polls /admin/overview every second; rows are kept while they do not change (an open error stays open).

import { ApiError, every, getJSON } from "../api.js";
import { badge, bytes, clear, duration, h, note } from "../dom.js";
import { ActionPanel, actionButtons } from "./actions.js";
import { gpuCards } from "./gpus.js";

const POLL_MS = 1000;

export function mount(root, { session }) {
  const summary = h("p", { class: "summary" });
  const gpus = h("section", { class: "gpus", "aria-label": "GPU memory" });
  const tbody = h("tbody");
  const head = h("thead");
  const table = h("table", { class: "replicas" }, head, tbody);
  const status = h("p", { class: "muted small" });
  const panel = new ActionPanel(session, () => refresh());
  root.append(h("h1", {}, "Overview"), summary, panel.node, gpus, h("div", { class: "scroll" }, table), status);

  const rows = new Map(); // key → { sig, tr, uptime }
  let last = null;
  let hasNode = null;

  function render(data) {
    last = data;
    clear(summary, describe(data));
    clear(gpus, gpuCards(data));
    const nodeColumn = data.services.some((s) => s.replicas.some((r) => r.node || r.node_name));
    if (nodeColumn !== hasNode) {
      hasNode = nodeColumn;
      rows.clear();
      clear(head, h("tr", {}, columns(nodeColumn).map((c) => h("th", { scope: "col" }, c))));
    }
    const ordered = [];
    for (const service of data.services) {
      ordered.push(row(rows, `service:${service.name}`, serviceSig(service, panel), () => serviceRow(service, panel, nodeColumn)));
      for (const replica of service.replicas) {
        const entry = row(rows, `replica:${replica.label}`, replicaSig(replica), () => replicaRow(replica, nodeColumn));
        entry.uptime.textContent = duration(replica.uptime_seconds);
        ordered.push(entry);
      }
    }
    const trs = ordered.map((e) => e.tr);
    if (trs.length !== tbody.children.length || trs.some((tr, i) => tbody.children[i] !== tr)) tbody.replaceChildren(...trs);
  }

  async function refresh() {
    try {
      render(await getJSON("/admin/overview"));
      status.textContent = `updated ${new Date().toLocaleTimeString("en-GB")}`;
    } catch (error) {
      status.textContent = error instanceof ApiError ? error.message : `cannot reach the gateway: ${error.message}`;
      status.className = "error small";
      return;
    }
    status.className = "muted small";
  }

  panel.onChange = () => last && render(last);
  const stopPolling = every(POLL_MS, refresh);
  const stopActions = panel.start();
  return () => {
    stopPolling();
    stopActions();
  };
}

function columns(nodeColumn) {
  const names = ["Service", "State", "Engine", "GPUs", "Port", "Uptime", "Restarts", "Models", "Last error"];
  if (nodeColumn) names.splice(3, 0, "Node");
  return names;
}

function row(rows, key, sig, make) {
  const known = rows.get(key);
  if (known && known.sig === sig) return known;
  const made = make();
  const entry = { sig, tr: made.tr ?? made, uptime: made.uptime ?? h("span") };
  rows.set(key, entry);
  return entry;
}

function describe(data) {
  const replicas = data.services.flatMap((s) => s.replicas);
  const ready = replicas.filter((r) => r.state === "ready" || r.state === "loaded").length;
  const instance = data.instance;
  const up = instance ? ` · up ${duration(data.time - instance.started_at)}` : "";
  return [
    h("strong", {}, instance ? instance.stack : "servestack"),
    `${up} · ${data.services.length} services · `,
    h("span", { class: "ready-count" }, `${ready}/${replicas.length} replicas ready`),
  ];
}

function serviceSig(service, panel) {
  const states = service.replicas.map((r) => r.state).join(",");
  return JSON.stringify([states, service.on_demand?.state, panel.signature(service.name)]);
}

function serviceRow(service, panel, nodeColumn) {
  const states = service.replicas.map((r) => r.state);
  const ready = states.filter((s) => s === "ready" || s === "loaded").length;
  const demand = service.on_demand;
  const info = [
    h("strong", {}, service.name),
    h("span", { class: "muted" }, ` ${service.engine} · ${service.load} · ${ready}/${states.length} ready`),
  ];
  if (demand) info.push(h("span", { class: "muted" }, onDemandText(demand)));
  const logs = h("a", { href: `#/logs?service=${encodeURIComponent(service.name)}`, class: "small" }, "logs");
  const cells = h(
    "td",
    { colSpan: nodeColumn ? 10 : 9 },
    h("div", { class: "service-head" }, h("div", {}, info), h("div", { class: "buttons" }, actionButtons(service, panel), logs)),
  );
  return h("tr", { class: "service", dataset: { service: service.name } }, cells);
}

function onDemandText(demand) {
  const parts = [` · ${demand.state}`];
  if (demand.claimed_bytes && demand.state !== "unloaded") parts.push(`holds ${bytes(demand.claimed_bytes)}`);
  if (demand.idle_seconds !== null) parts.push(`idle ${duration(demand.idle_seconds)}`);
  if (demand.unloads_in_seconds !== null) parts.push(`unloads in ${duration(demand.unloads_in_seconds)}`);
  parts.push(`${demand.in_flight} in flight, ${demand.waiting} waiting`);
  return parts.join(", ");
}

function replicaSig(replica) {
  const { uptime_seconds: _, ...rest } = replica;
  return JSON.stringify(rest);
}

function replicaRow(replica, nodeColumn) {
  const uptime = h("span", {}, duration(replica.uptime_seconds));
  const cell = (label, ...content) => h("td", { dataset: { label } }, ...content);
  const cells = [
    cell("Service", replica.label),
    cell("State", badge(replica.state), replica.status === "sleeping" ? h("span", { class: "muted small" }, " asleep") : null),
    cell("Engine", replica.engine),
    cell("GPUs", replica.gpus.length ? replica.gpus.join(",") : "cpu"),
    cell("Port", replica.port ?? "–"),
    cell("Uptime", uptime),
    cell("Restarts", String(replica.restarts)),
    cell("Models", replica.models.join(", ")),
    cell("Last error", lastError(replica)),
  ];
  if (nodeColumn) cells.splice(3, 0, cell("Node", replica.node_name ?? replica.node ?? "this machine"));
  return { tr: h("tr", { class: "replica", dataset: { replica: replica.label, state: replica.state } }, cells), uptime };
}

function lastError(replica) {
  const failure = replica.last_failure;
  const message = replica.why_not_ready ?? failure?.message ?? replica.last_error;
  if (!message) return h("span", { class: "muted" }, "–");
  const summary = h("summary", { class: replica.why_not_ready ? "error" : "" }, message);
  if (!failure || !failure.log_tail.length) return h("details", {}, summary, note("no log lines were kept"));
  return h("details", {}, summary, h("pre", { class: "tail" }, failure.log_tail.join("\n")));
}
