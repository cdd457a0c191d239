// A small SVG line chart: shared time axis, a few series, y from 0 to a rounded maximum.

import { s } from "./dom.js";

const WIDTH = 600;
const HEIGHT = 170;
const PAD = { left: 52, right: 8, top: 8, bottom: 20 };

// series: [{ name, cls, values: [number|null] }], times: [unix seconds]; format(y) labels the y axis.
export function lineChart(title, times, series, format) {
  const max = niceMax(Math.max(0, ...series.flatMap((x) => x.values.filter((v) => v !== null))));
  const first = times[0] ?? 0;
  const last = times[times.length - 1] ?? 1;
  const span = Math.max(last - first, 1);
  const x = (t) => PAD.left + ((t - first) / span) * (WIDTH - PAD.left - PAD.right);
  const y = (v) => HEIGHT - PAD.bottom - (v / max) * (HEIGHT - PAD.top - PAD.bottom);
  const grid = [0, 0.5, 1].map((f) => [
    s("line", { class: "grid", x1: PAD.left, x2: WIDTH - PAD.right, y1: y(max * f), y2: y(max * f) }),
    s("text", { class: "tick", x: PAD.left - 4, y: y(max * f) + 4, "text-anchor": "end" }, format(max * f)),
  ]);
  const ago = Math.round(span / 60);
  const axis = [
    s("text", { class: "tick", x: PAD.left, y: HEIGHT - 4 }, span >= 120 ? `−${ago} min` : `−${Math.round(span)} s`),
    s("text", { class: "tick", x: WIDTH - PAD.right, y: HEIGHT - 4, "text-anchor": "end" }, "now"),
  ];
  const lines = series.map((one) => s("path", { class: `line ${one.cls}`, d: path(times, one.values, x, y) }));
  const svg = s(
    "svg",
    { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: "chart", role: "img", "aria-label": title },
    s("title", {}, title),
    grid,
    axis,
    lines,
  );
  svg.dataset.points = String(times.length);
  svg.dataset.max = String(Math.max(0, ...series.flatMap((x) => x.values.filter((v) => v !== null))));
  return svg;
}

function path(times, values, x, y) {
  let d = "";
  let pen = "M";
  values.forEach((value, i) => {
    if (value === null || value === undefined) {
      pen = "M";
      return;
    }
    d += `${pen}${x(times[i]).toFixed(1)},${y(value).toFixed(1)} `;
    pen = "L";
  });
  return d.trim();
}

function niceMax(value) {
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  const step = [1, 2, 2.5, 5, 10].find((m) => m * power >= value);
  return step * power;
}
