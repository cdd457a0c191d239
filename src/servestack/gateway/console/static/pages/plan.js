// Plan: the running stack's plan as `servestack plan` tells it (fit, memory per GPU, KV tokens, full-context
// sequences, findings with reason and fix), and `--explore-tp` for one service.

import { ApiError, getJSON } from "../api.js";
import { badge, bytes, clear, count, h, note } from "../dom.js";

export function mount(root) {
  const body = h("div", {}, note("Loading the plan…"));
  root.append(h("h1", {}, "Plan"), body);
  let alive = true;
  getJSON("/admin/plan").then(
    (plan) => alive && clear(body, render(plan)),
    (error) => alive && clear(body, note(error.message, "error")),
  );
  return () => {
    alive = false;
  };
}

function render(plan) {
  const inventory = plan.inventory;
  const gpus = inventory.gpus.length
    ? inventory.gpus.map((g) => `GPU ${g.index} ${g.name} ${bytes(g.total_bytes)}`).join(" · ")
    : "no GPU (CPU only)";
  return [
    h("p", {}, badge(plan.ok ? "fits" : "error", plan.ok ? "runnable" : "has errors"), ` GPUs (${inventory.source}): ${gpus}`),
    h("div", { class: "plan-grid" }, Object.entries(plan.services).map(([name, sp]) => serviceCard(name, sp))),
    residency(plan.residency),
    findings(plan.findings),
    explore(Object.keys(plan.services)),
  ];
}

function serviceCard(name, sp) {
  const rows = [
    ["model", sp.model],
    ["GPUs", sp.replica_gpus.length ? sp.replica_gpus.map((b, i) => `#${i}: ${b.join(",")}`).join("  ") : sp.gpus.join(",") || "cpu"],
    ["TP", sp.tp],
    ["load", sp.load],
  ];
  const memory = sp.memory_per_gpu;
  if (memory) {
    rows.push(["per GPU", `${bytes(memory.total_bytes)}${memory.fraction !== null ? `, memory fraction ${memory.fraction}` : ""}`]);
    rows.push(["  weights", bytes(memory.weights_bytes)], ["  KV cache", bytes(memory.kv_bytes)], ["  overhead", bytes(memory.overhead_bytes)]);
    rows.push(["  left free", memory.left_free_bytes < 0 ? `none: ${bytes(-memory.left_free_bytes)} short` : bytes(memory.left_free_bytes)]);
  } else if (sp.weights_bytes !== null) {
    rows.push(["weights", bytes(sp.weights_bytes)]);
  }
  rows.push(["KV tokens", count(sp.kv_tokens)], ["context", count(sp.context_length)], ["full sequences", count(sp.full_context_sequences)]);
  for (const decision of sp.decisions) rows.push(["decided", `${decision.flag} (${decision.reason})`]);
  if (sp.calibration) {
    for (const c of sp.calibration.compared) rows.push([`measured ${c.figure}`, `${count(c.allocated)} (plan ${count(c.predicted)})`]);
  }
  return h(
    "section",
    { class: "card", dataset: { service: name } },
    h("h2", {}, `${name} `, h("span", { class: "muted small" }, sp.engine), " ", badge(sp.verdict)),
    h("table", { class: "facts" }, h("tbody", {}, rows.map(([k, v]) => h("tr", {}, h("th", { scope: "row" }, k), h("td", {}, String(v)))))),
  );
}

function residency(res) {
  if (!res) return null;
  return h(
    "section",
    { class: "card" },
    h("h2", {}, "On-demand co-residency"),
    h("p", {}, "loaded together: ", res.groups.map((g) => g.join(" + ")).join("  |  ") || "–"),
    res.exclusions.length ? h("ul", {}, res.exclusions.map((x) => h("li", {}, `${x.services.join(" ✗ ")}: ${x.why}`))) : note("no two exclude each other"),
  );
}

function findings(list) {
  if (!list.length) return h("section", { class: "card" }, h("h2", {}, "Findings"), note("none"));
  return h(
    "section",
    { class: "card findings" },
    h("h2", {}, "Findings"),
    h("ul", {}, list.map((f) => h(
      "li",
      { dataset: { code: f.code } },
      h("div", {}, badge(f.severity), " ", h("strong", {}, f.key ? `${f.key}${f.line ? ` (line ${f.line})` : ""}` : f.service ?? ""), " ", f.message),
      f.reason ? h("div", { class: "small" }, h("span", { class: "muted" }, "why: "), f.reason) : null,
      f.fix ? h("div", { class: "small" }, h("span", { class: "muted" }, "fix: "), f.fix) : null,
    ))),
  );
}

function explore(names) {
  const picker = h("select", { "aria-label": "service to explore" }, names.map((n) => h("option", { value: n }, n)));
  const out = h("div", { class: "scroll" });
  const run = async () => {
    clear(out, note("exploring…"));
    try {
      clear(out, exploreTable(await getJSON(`/admin/plan/explore?service=${encodeURIComponent(picker.value)}`)));
    } catch (error) {
      clear(out, note(error instanceof ApiError ? error.message : String(error), "error"));
    }
  };
  return h("section", { class: "card explore" }, h("h2", {}, "Explore TP sizes"), h("div", { class: "controls" }, picker, h("button", { onclick: run }, "Explore")), out);
}

function exploreTable(result) {
  const head = ["TP", "GPUs", "weights/GPU", "KV/GPU", "KV tokens", "context", "full seqs", "verdict"];
  const rows = result.rows.map((r) => h("tr", { dataset: { tp: String(r.tp) } }, [
    r.tp, r.gpus.join(","), bytes(r.weights_per_gpu_bytes), bytes(r.kv_per_gpu_bytes), count(r.kv_tokens), count(r.context), count(r.full_context_sequences),
  ].map((c, i) => h("td", { dataset: { label: head[i] } }, String(c))).concat(h("td", { dataset: { label: "verdict" } }, badge(r.verdict)))));
  return [
    h("table", { class: "explore-table" }, h("thead", {}, h("tr", {}, head.map((c) => h("th", { scope: "col" }, c)))), h("tbody", {}, rows)),
    h("ul", { class: "small" }, result.rows.map((r) => h("li", {}, h("strong", {}, `TP ${r.tp}: `), r.reason))),
  ];
}
