// Talking to the gateway: JSON admin routes and the log stream, with the admin key from this tab's
// session storage as a Bearer header (never in a URL). Every request goes to the page's own origin.

const KEY = "servestack.adminKey";

export const adminKey = () => sessionStorage.getItem(KEY);
export const setAdminKey = (key) => sessionStorage.setItem(KEY, key);
export const clearAdminKey = () => sessionStorage.removeItem(KEY);

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function headers(extra = {}) {
  const key = adminKey();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

async function answer(response) {
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const message = data?.error?.message ?? (typeof data?.error === "string" ? data.error : null);
    throw new ApiError(response.status, message ?? `HTTP ${response.status}`);
  }
  return data;
}

export async function getJSON(path, { signal } = {}) {
  const response = await fetch(path, { headers: headers({ Accept: "application/json" }), cache: "no-store", signal });
  return answer(response);
}

export async function postJSON(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: headers({ "Content-Type": "application/json", Accept: "application/json" }),
    body: JSON.stringify(body),
    cache: "no-store",
  });
  return answer(response);
}

// Server-sent events over fetch (EventSource cannot send the key in a header). Calls onEvent(name, data)
// for each event; resolves when the stream ends, rejects on an HTTP error or when aborted.
export async function streamEvents(path, onEvent, signal) {
  const response = await fetch(path, { headers: headers({ Accept: "text/event-stream" }), cache: "no-store", signal });
  if (!response.ok) await answer(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      if (data.length) onEvent(name, JSON.parse(data.join("\n")));
    }
  }
}

// Call `tick` now and then every `ms` after each call finishes (never two at once); returns a stop function.
export function every(ms, tick) {
  let timer = null;
  let stopped = false;
  const run = async () => {
    try {
      await tick();
    } finally {
      if (!stopped) timer = setTimeout(run, ms);
    }
  };
  run();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
