// Each GPU's memory as the plan divides it (weights, KV cache, overhead per service; a fraction for engines
// the planner cannot size), what is left, and NVML's used memory beside it when the GPUs are this machine's.

import { bytes, h } from "../dom.js";

export function gpuCards(data) {
  if (!data.gpus.length) {
    return [h("p", { class: "muted" }, "No GPU in the plan: every service runs on the CPU.")];
  }
  const hues = new Map(data.services.map((s, i) => [s.name, i % 8]));
  const source = data.gpu_source === "nvml" ? "" : ` (${data.gpu_source}: planned, not measured)`;
  return [
    h("h2", {}, `GPU memory${source}`),
    h("div", { class: "gpu-grid" }, data.gpus.map((gpu) => gpuCard(gpu, hues))),
    legend(data.gpus),
  ];
}

function gpuCard(gpu, hues) {
  const bar = h("div", { class: "bar", role: "img" });
  let held = 0;
  const labels = [];
  for (const part of gpu.parts) {
    const hue = `c${hues.get(part.service) ?? 0}`;
    const idle = part.held ? "" : " idle";
    const pieces = part.claim_bytes !== undefined
      ? [["claim", part.claim_bytes]]
      : [["weights", part.weights_bytes], ["kv", part.kv_bytes], ["overhead", part.overhead_bytes]];
    for (const [kind, size] of pieces) {
      const segment = h("div", { class: `seg ${kind} ${hue}${idle}`, title: `${part.label}: ${kind} ${bytes(size)}${part.held ? "" : " (not loaded)"}` });
      segment.style.width = `${Math.max(0, (100 * size) / gpu.total_bytes)}%`;
      bar.append(segment);
    }
    const total = pieces.reduce((sum, [, size]) => sum + size, 0);
    if (part.held) held += total;
    labels.push(h("li", { class: idle.trim() }, h("span", { class: `swatch ${hue}` }), `${part.label} ${bytes(total)}${part.held ? "" : " (not loaded)"}`));
  }
  const free = gpu.total_bytes - held;
  bar.setAttribute("aria-label", `GPU ${gpu.index}: ${bytes(held)} held by the plan, ${bytes(free)} free`);
  const lines = [h("span", {}, `plan: ${bytes(held)} held, ${bytes(free)} free`)];
  if (gpu.used_bytes !== null) {
    const marker = h("div", { class: "used", title: `NVML: ${bytes(gpu.used_bytes)} used` });
    marker.style.left = `${Math.min(100, (100 * gpu.used_bytes) / gpu.total_bytes)}%`;
    bar.append(marker);
    lines.push(h("span", { class: "nvml" }, ` · NVML: ${bytes(gpu.used_bytes)} used`));
  }
  return h(
    "div",
    { class: "card gpu", dataset: { gpu: String(gpu.index) } },
    h("div", { class: "gpu-title" }, h("strong", {}, `GPU ${gpu.index}`), ` ${gpu.name} · ${bytes(gpu.total_bytes)}`),
    bar,
    h("div", { class: "small" }, lines),
    h("ul", { class: "parts small" }, labels),
  );
}

// The legend of what the bars show: only the kinds of part present.
function legend(gpus) {
  const parts = gpus.flatMap((g) => g.parts);
  const item = (kind, text) => h("li", {}, h("span", { class: `swatch seg ${kind} c0` }), text);
  const items = [];
  if (parts.some((p) => p.weights_bytes !== undefined)) {
    items.push(item("weights", "weights"), item("kv", "KV cache"), item("overhead", "overhead"));
  }
  if (parts.some((p) => p.claim_bytes !== undefined)) items.push(item("claim", "memory fraction (an engine the planner does not size)"));
  if (parts.some((p) => !p.held)) items.push(item("weights idle", "on demand, not loaded"));
  if (gpus.some((g) => g.used_bytes !== null)) items.push(h("li", {}, h("span", { class: "swatch used-swatch" }), "NVML used"));
  return h("ul", { class: "legend small" }, items);
}
