// Actions on services (admin key, or localhost when the stack allows it): the buttons, a second click to
// confirm what takes a service away, and a panel with each action's progress and result.

import { every, getJSON, postJSON } from "../api.js";
import { badge, clear, clock, h } from "../dom.js";

const POLL_MS = 1000;
const CONFIRM_MS = 4000;
const SHOWN_FOR_S = 600; // finished actions stay in the panel this long
const NEEDS_CONFIRM = new Set(["stop", "restart", "unload"]);
const UP = new Set(["ready", "starting", "restarting", "draining", "stopping", "loading", "loaded", "sleeping"]);

export class ActionPanel {
  constructor(session, refresh) {
    this.session = session;
    this.refresh = refresh;
    this.onChange = () => {};
    this.actions = [];
    this.confirming = null; // "service:action" awaiting its second click
    this.list = h("ul", { class: "actions" });
    this.node = h("section", { class: "card actions-panel", hidden: true, "aria-label": "actions" }, h("h2", {}, "Actions"), this.list);
  }

  start() {
    return every(POLL_MS, () => this.poll());
  }

  async poll() {
    try {
      const { actions } = await getJSON("/admin/actions");
      const before = this.signatureAll();
      this.actions = actions;
      this.show();
      if (this.signatureAll() !== before) this.onChange();
    } catch {
      // the overview says when the gateway is unreachable
    }
  }

  signatureAll() {
    return JSON.stringify(this.actions.filter((a) => a.state === "running").map((a) => a.id));
  }

  signature(service) {
    const running = this.actions.some((a) => a.service === service && a.state === "running");
    return JSON.stringify([running, this.confirming?.startsWith(`${service}:`) ? this.confirming : null, this.session.can_act]);
  }

  running(service) {
    return this.actions.some((a) => a.service === service && a.state === "running");
  }

  async ask(service, action) {
    const key = `${service}:${action}`;
    if (NEEDS_CONFIRM.has(action) && this.confirming !== key) {
      this.confirming = key;
      this.onChange();
      setTimeout(() => {
        if (this.confirming === key) {
          this.confirming = null;
          this.onChange();
        }
      }, CONFIRM_MS);
      return;
    }
    this.confirming = null;
    try {
      const { action: record } = await postJSON("/admin/actions", { service, action });
      this.actions = [record, ...this.actions];
    } catch (error) {
      const now = Date.now() / 1000;
      const failure = { ok: false, error: error.message };
      this.actions = [{ id: `local-${now}`, service, action, state: "failed", started_at: now, finished_at: now, result: failure }, ...this.actions];
    }
    this.show();
    this.onChange();
    this.refresh();
  }

  show() {
    const now = Date.now() / 1000;
    const shown = this.actions.filter((a) => a.state === "running" || now - (a.finished_at ?? now) < SHOWN_FOR_S);
    this.node.hidden = shown.length === 0;
    clear(this.list, shown.map((a) => actionItem(a, now)));
  }
}

function actionItem(action, now) {
  const seconds = ((action.finished_at ?? now) - action.started_at).toFixed(1);
  const title = h("div", {}, badge(action.state), ` ${action.action} ${action.service} `,
    h("span", { class: "muted small" }, action.state === "running" ? `running for ${seconds}s` : `${clock(action.finished_at)}, took ${seconds}s`));
  const result = action.result ?? {};
  const details = [];
  if (action.state === "failed") {
    details.push(h("p", { class: "error" }, result.error ?? "failed"));
    if (result.fix) details.push(h("p", { class: "small" }, `fix: ${result.fix}`));
    if (result.log_tail?.length) details.push(h("pre", { class: "tail" }, result.log_tail.join("\n")));
  }
  return h("li", { dataset: { action: action.action, service: action.service, state: action.state } }, title, details);
}

export function actionButtons(service, panel) {
  if (!panel.session.can_act) return [];
  const busy = panel.running(service.name);
  const up = service.replicas.some((r) => UP.has(r.state));
  const verbs = service.load === "on-demand"
    ? (service.on_demand?.state === "unloaded" ? ["load"] : ["unload", "restart", "stop"])
    : up ? ["restart", "stop"] : ["start"];
  return verbs.map((verb) => {
    const confirming = panel.confirming === `${service.name}:${verb}`;
    return h(
      "button",
      {
        class: confirming ? "danger" : "",
        disabled: busy,
        dataset: { action: verb },
        onclick: () => panel.ask(service.name, verb),
      },
      confirming ? `Confirm ${verb}` : verb[0].toUpperCase() + verb.slice(1),
    );
  });
}
