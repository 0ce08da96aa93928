// Small DOM helpers shared by the pages. Text is always set as text (never parsed as HTML).

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function byId(id) {
  return document.getElementById(id);
}

export function setText(id, text) {
  byId(id).textContent = String(text);
}

export function replaceRows(tbody, rows, emptyText, columns) {
  tbody.replaceChildren(...(rows.length ? rows
    : [el("tr", {}, el("td", { colspan: columns, class: "empty" }, emptyText))]));
}

export function short(hex, n = 10) {
  return hex ? `${hex.slice(0, n)}…` : "—";
}

export function shortAddress(address) {
  return address ? `${address.slice(0, 12)}…${address.slice(-6)}` : "—";
}

/** Base units (a decimal string) in OGPU, 9 decimals, trailing zeros dropped. */
export function ogpu(units) {
  const n = BigInt(units ?? 0);
  const whole = n / 1000000000n;
  const frac = (n % 1000000000n).toString().padStart(9, "0").replace(/0+$/, "");
  return `${whole.toLocaleString("en-US")}${frac ? "." + frac : ""} OGPU`;
}

export function when(ms) {
  if (!ms) return "—";
  return new Date(ms).toLocaleTimeString("en-GB", { hour12: false });
}

/** Show the connection state in the header badge. */
export function connectionBadge(rpc) {
  const badge = byId("connection");
  rpc.onState = (state) => {
    badge.textContent = state === "connected" ? "live" : "reconnecting…";
    badge.className = `badge ${state}`;
  };
}

/** Show an error in the page's message line (and not only in the console). */
export function showError(error) {
  const line = byId("message");
  line.textContent = String(error && error.message ? error.message : error);
  line.className = "message error";
}

export function showInfo(text) {
  const line = byId("message");
  line.textContent = text;
  line.className = "message info";
}

/**
 * `fn` (async) made to run one call at a time: a call while one runs is dropped, because what
 * asked for it (a block arriving during a refresh) is covered by the next one.
 */
export function oneAtATime(fn) {
  let running = false;
  return async (...args) => {
    if (running) return undefined;
    running = true;
    try {
      return await fn(...args);
    } finally {
      running = false;
    }
  };
}
