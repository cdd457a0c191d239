// Building the page: elements from data (text only, never HTML from the server) and number formats.

export function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  setProps(node, props);
  node.append(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false).map(asNode));
  return node;
}

const SVG_NS = "http://www.w3.org/2000/svg";

export function s(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined) node.setAttribute(name, String(value));
  }
  node.append(...children.flat(Infinity).filter((c) => c !== null && c !== undefined).map(asNode));
  return node;
}

function asNode(child) {
  return child instanceof Node ? child : document.createTextNode(String(child));
}

function setProps(node, props) {
  for (const [name, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name in node && typeof value !== "string") node[name] = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
}

export function clear(node, ...children) {
  node.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false).map(asNode));
  return node;
}

export function bytes(value) {
  if (value === null || value === undefined) return "–";
  const abs = Math.abs(value);
  if (abs >= 2 ** 30) return `${(value / 2 ** 30).toFixed(1)} GiB`;
  if (abs >= 2 ** 20) return `${(value / 2 ** 20).toFixed(0)} MiB`;
  return `${value} B`;
}

export function count(value) {
  return value === null || value === undefined ? "–" : Number(value).toLocaleString("en-US");
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const total = Math.floor(seconds);
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const secs = total % 60;
  if (hours >= 24) return `${Math.floor(hours / 24)}d${String(hours % 24).padStart(2, "0")}h`;
  return hours ? `${hours}h${String(minutes).padStart(2, "0")}m` : `${minutes}m${String(secs).padStart(2, "0")}s`;
}

export function clock(unixSeconds) {
  if (!unixSeconds) return "–";
  const date = new Date(unixSeconds * 1000);
  const today = new Date().toDateString() === date.toDateString();
  return today ? date.toLocaleTimeString("en-GB") : date.toLocaleString("en-GB");
}

export function rate(value, digits = 1) {
  return value === null || value === undefined ? "–" : value.toFixed(digits);
}

export function ms(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  return seconds >= 1 ? `${seconds.toFixed(2)} s` : `${(seconds * 1000).toFixed(0)} ms`;
}

// The colour class of a state, one vocabulary for the whole console.
const STATE_CLASS = {
  ready: "ok", loaded: "ok", fits: "ok", active: "ok", done: "ok",
  starting: "busy", loading: "busy", restarting: "bad", draining: "busy", stopping: "busy", running: "busy",
  failed: "bad", lost: "bad", "does-not-fit": "bad", invalid: "bad", error: "bad", revoked: "off", expired: "off",
  exited: "warn", warning: "warn", unchecked: "warn",
  stopped: "off", unloaded: "off", sleeping: "off", cpu: "info",
};

export function badge(state, label = state) {
  return h("span", { class: `badge ${STATE_CLASS[state] ?? "off"}` }, label);
}

export function note(text, kind = "muted") {
  return h("p", { class: kind }, text);
}
