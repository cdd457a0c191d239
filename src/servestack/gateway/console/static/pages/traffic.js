// Traffic: requests/s, errors by status, TTFT and inter-token percentiles, tokens/s — per model or all —
// from the gateway's own metrics, a point a second (/admin/traffic keeps the last ten minutes).

import { ApiError, every, getJSON } from "../api.js";
import { lineChart } from "../chart.js";
import { clear, h, ms, note, rate } from "../dom.js";

const POLL_MS = 1000;
const KEEP = 600;
const ALL = "*";

export function mount(root, { params }) {
  let model = params.get("model") ?? ALL;
  const points = [];
  let seq = 0;
  const picker = h("select", { "aria-label": "model", onchange: () => { model = picker.value; draw(); } });
  const charts = h("div", { class: "charts" });
  const table = h("div", { class: "scroll" });
  const status = h("p", { class: "muted small" });
  const tableTitle = h("h2", {}, "By model");
  root.append(h("h1", {}, "Traffic"), h("div", { class: "controls" }, h("label", {}, "Model ", picker)), charts, tableTitle, table, status);

  function draw() {
    const models = [...new Set(points.flatMap((p) => Object.keys(p.models)))].sort();
    clear(picker, [ALL, ...models.filter((m) => m !== ALL)].map((m) => h("option", { value: m, selected: m === model }, m === ALL ? "all models" : m)));
    if (!points.length) {
      clear(charts, note("No traffic yet: the charts begin with the first request."));
      clear(table);
      return;
    }
    const times = points.map((p) => p.time);
    // A model without a point had no request yet: its rates are 0, its percentiles unknown.
    const of = (get, none = null) => points.map((p) => (p.models[model] ? get(p.models[model]) : none));
    const statuses = [...new Set(points.flatMap((p) => Object.keys(p.models[model]?.errors_per_s ?? {})))].sort();
    clear(
      charts,
      card("Requests/s", lineChart("requests per second", times, [
        { name: "requests/s", cls: "s0", values: of((m) => m.requests_per_s, 0) },
        { name: "errors/s", cls: "bad", values: of((m) => sum(m.errors_per_s), 0) },
      ], (v) => v.toFixed(1)), legend([["s0", "requests/s"], ["bad", "errors/s"]])),
      card("Time to first token", percentileChart("time to first token", times, of((m) => m.ttft)), legend(PCT)),
      card("Inter-token latency", percentileChart("inter-token latency", times, of((m) => m.itl)), legend(PCT)),
      card("Tokens/s", lineChart("tokens per second", times, [
        { name: "completion", cls: "s0", values: of((m) => m.completion_tokens_per_s, 0) },
        { name: "prompt", cls: "s1", values: of((m) => m.prompt_tokens_per_s, 0) },
      ], (v) => v.toFixed(0)), legend([["s0", "completion"], ["s1", "prompt"]])),
      card("Errors by status (per s)", lineChart("errors by status", times, statuses.map((code, i) => (
        { name: code, cls: `s${i % 4}`, values: of((m) => m.errors_per_s[code] ?? 0, 0) })), (v) => v.toFixed(1)),
        statuses.length ? legend(statuses.map((code, i) => [`s${i % 4}`, statusName(code)])) : note("no errors in this window", "muted small")),
    );
    clear(table, modelTable(points[points.length - 1]));
  }

  async function poll() {
    try {
      const answer = await getJSON(`/admin/traffic?since=${seq}`);
      if (answer.seq < seq) points.length = 0; // the gateway restarted
      points.push(...answer.points);
      points.splice(0, Math.max(0, points.length - KEEP));
      seq = answer.seq;
      status.textContent = `a point every ${answer.interval} s: rates over the last ${answer.rate_window} s, percentiles over the last ${answer.window} s`;
      tableTitle.textContent = `By model (last ${answer.rate_window} s)`;
      status.className = "muted small";
    } catch (error) {
      status.textContent = error instanceof ApiError ? error.message : `cannot reach the gateway: ${error.message}`;
      status.className = "error small";
    }
    draw();
  }

  return every(POLL_MS, poll);
}

const PCT = [["s0", "p50"], ["s1", "p95"], ["s2", "p99"]];

function percentileChart(title, times, values) {
  const pick = (key) => values.map((v) => (v ? v[key] : null));
  return lineChart(title, times, [
    { name: "p50", cls: "s0", values: pick("p50") },
    { name: "p95", cls: "s1", values: pick("p95") },
    { name: "p99", cls: "s2", values: pick("p99") },
  ], (v) => ms(v));
}

function card(title, chart, key) {
  return h("figure", { class: "card chart-card", dataset: { chart: title } }, h("figcaption", {}, title), chart, key);
}

function legend(items) {
  return h("ul", { class: "legend small" }, items.map(([cls, text]) => h("li", {}, h("span", { class: `swatch line-swatch ${cls}` }), text)));
}

function sum(errors) {
  return Object.values(errors).reduce((a, b) => a + b, 0);
}

function statusName(code) {
  return { 0: "no answer", 499: "499 client gone" }[code] ?? code;
}

function modelTable(point) {
  const names = Object.keys(point.models).filter((m) => m !== ALL).sort();
  const head = ["Model", "Requests/s", "Errors/s", "In flight", "TTFT p95", "ITL p95", "Tokens/s"];
  const rows = names.map((name) => {
    const m = point.models[name];
    const cells = [name, rate(m.requests_per_s), rate(sum(m.errors_per_s)), String(m.in_flight), ms(m.ttft?.p95), ms(m.itl?.p95), rate(m.completion_tokens_per_s, 0)];
    return h("tr", { dataset: { model: name } }, cells.map((c, i) => h("td", { dataset: { label: head[i] } }, c)));
  });
  return h("table", { class: "models" }, h("thead", {}, h("tr", {}, head.map((c) => h("th", { scope: "col" }, c)))), h("tbody", {}, rows));
}
