// The provider dashboard: declaration (devices, benchmark, floor), stake, reputation and flags,
// bids and wins, earnings over time. Node-local views are shown where the node serves them:
// `agent_status` (this node's provider agent: device, benchmark history, running jobs, its
// recent decisions with the reason for each skip, refused models) and `provider_earnings`
// (earnings by hour, day or epoch).

import { bucketLabel, netBars } from "./earnings_bars.js";
import { Rpc } from "./rpc.js";
import {
  byId, connectionBadge, el, ogpu, oneAtATime, replaceRows, setText, short, showError, svg,
  when,
} from "./ui.js";

const MAX_WON = 50;
const MAX_DECISIONS_SHOWN = 30;
const MAX_EARNING_PERIODS = 48;
const EARNING_EVENTS = new Set(["payment", "client_collateral_to_provider"]);
const rpc = new Rpc();
let address = null;
let period = "day"; // provider_earnings' period: hour, day or epoch
const closedTasks = new Map(); // task id -> its final view

async function start() {
  connectionBadge(rpc);
  await rpc.connect();
  const status = await rpc.call("chain_status");
  setText("chain-id", status.chainId);
  const input = byId("provider-address");
  // Default: the provider this node's agent runs, else the node's validator address.
  const agent = (await rpc.has("agent_status")) ? await rpc.call("agent_status") : null;
  input.value = new URLSearchParams(location.search).get("address")
    ?? agent?.provider?.address ?? status.validator ?? "";
  for (const button of document.querySelectorAll("#period-switch button")) {
    button.addEventListener("click", () => {
      period = button.dataset.period;
      drawEarningsByPeriod().catch(showError);
    });
  }
  byId("provider-show").addEventListener("click", () => show(input.value.trim()).catch(showError));
  if (input.value) await show(input.value);
  await rpc.subscribe("blocks", {}, () => address && refresh().catch(showError));
}

async function show(addr) {
  address = addr;
  await refresh();
}

const refresh = oneAtATime(refreshNow);

async function refreshNow() {
  let view;
  try {
    view = await rpc.call("provider_get", { address });
  } catch (error) {
    setText("provider-active", error.code === -32001 ? "not a provider" : "—");
    return;
  }
  setText("provider-active", view.active ? "active" : "inactive");
  setText("reputation", `${(view.reputationBps / 100).toFixed(1)} %`);
  setText("flags", view.flags.length ? view.flags.join(", ") : "none");
  byId("flags").className = view.flags.length ? "value warn" : "value";
  setText("earned", ogpu(view.earnings.earned));
  setText("stake", `${ogpu(view.freeStake)} / ${ogpu(view.locked)}`);
  setText("benchmark", view.benchmark.toLocaleString("en-US"));
  setText("delivered", view.deliveredGflops === null ? "no result yet" : `${view.deliveredGflops} GFLOP/s`);
  setText("floor", `${ogpu(view.priceFloor)} per GFLOP`);
  replaceRows(byId("devices"), view.devices.map((d) => el("tr", {},
    el("td", {}, d.model), el("td", { class: "num" }, `${d.memoryMb.toLocaleString("en-US")} MB`))),
  "no devices declared", 2);
  const c = view.counters;
  const rows = [["Bids", c.bids], ["Bids never revealed", c.unrevealed], ["Completed (won and paid)", c.completed],
    ["Failed", c.failed], ["Failures in a row", c.failStreak], ["Work done (GFLOP)", c.workDone],
    ["Paid tasks", view.earnings.paidTasks], ["Verifier fees", ogpu(view.earnings.verifierFees)],
    ["Slashed", ogpu(view.earnings.slashed)]];
  replaceRows(byId("counters"), rows.map(([k, v]) => el("tr", {}, el("th", {}, k),
    el("td", { class: "num" }, v))), "", 2);
  await drawWon();
  await drawNodeLocal();
}

async function drawWon() {
  const list = await rpc.call("task_list", { provider: address, limit: MAX_WON });
  replaceRows(byId("won-tasks"), list.tasks.map((t) => el("tr", {},
    el("td", { class: "mono", title: t.id }, short(t.id, 12)), el("td", {}, t.kind),
    el("td", {}, el("span", { class: "status" }, t.status)), el("td", {}, t.closeReason ?? "—"),
    el("td", { class: "num" }, t.workUnits))), "no won tasks", 5);
  // A closed task no longer changes: read it once.
  const views = await Promise.all(list.tasks.map(async (t) => {
    if (!closedTasks.has(t.id)) {
      const view = await rpc.call("task_get", { taskId: t.id });
      if (view.status !== "closed") return view;
      closedTasks.set(t.id, view);
    }
    return closedTasks.get(t.id);
  }));
  const points = [];
  for (const task of views) {
    const earned = task.trail.filter((m) => EARNING_EVENTS.has(m.event) && m.address === address)
      .reduce((sum, m) => sum + BigInt(m.amount), 0n);
    if (earned > 0n) points.push([task.resultMs ?? task.awardedMs ?? task.createdMs, earned]);
  }
  const since = Math.min(...views.map((t) => t.createdMs));
  byId("earnings-plot").replaceChildren(cumulativePlot(points, since));
}

/** A step line of cumulative earnings from `since` to now (SVG drawn here, no chart library). */
function cumulativePlot(points, since) {
  if (!points.length) return el("p", { class: "na" }, "No earnings yet.");
  points.sort((a, b) => a[0] - b[0]);
  let total = 0n;
  const series = points.map(([t, v]) => [t, Number(total += v) / 1e9]);
  const [w, h, pad] = [900, 200, 40];
  const t0 = Math.min(since, series[0][0]);
  const t1 = Math.max(Date.now(), series.at(-1)[0], t0 + 1);
  const top = series.at(-1)[1] || 1;
  const x = (t) => pad + ((t - t0) / (t1 - t0)) * (w - 2 * pad);
  const y = (v) => h - pad / 2 - (v / top) * (h - pad);
  let d = `M ${x(t0)} ${y(0)}`;
  for (const [t, v] of series) d += ` H ${x(t)} V ${y(v)}`;
  d += ` H ${x(t1)}`;
  return svg("svg", { viewBox: `0 0 ${w} ${h}`, width: "100%", role: "img",
    "aria-label": "cumulative earnings" },
  svg("line", { class: "axis", x1: pad, y1: y(0), x2: w - pad, y2: y(0) }),
  svg("path", { class: "line", d }),
  svg("text", { x: pad, y: 12 }, `${top} OGPU`),
  svg("text", { x: pad, y: h - 2 }, when(t0)),
  svg("text", { x: w - pad - 90, y: h - 2 }, `${when(t1)} (now)`));
}

/** Sections fed by node-local methods that not every node serves. */
async function drawNodeLocal() {
  await drawAgent();
  await drawEarningsByPeriod();
}

function notAvailable(text) {
  return el("p", { class: "na" }, text);
}

async function drawAgent() {
  const state = byId("agent-state");
  const body = byId("agent-body");
  if (!(await rpc.has("agent_status"))) {
    state.replaceChildren(notAvailable("Not available on this node (it serves no agent_status)."));
    body.hidden = true;
    return;
  }
  const agent = await rpc.call("agent_status");
  const mine = agent.provider;
  if (!mine) {
    state.replaceChildren(notAvailable("Not available on this node: it runs no provider agent."));
    body.hidden = true;
    return;
  }
  if (mine.address !== address) {
    state.replaceChildren(notAvailable(`Not available for this address: this node's agent is ` +
      `provider ${mine.address}.`));
    body.hidden = true;
    return;
  }
  body.hidden = false;
  state.dataset.running = String(agent.running.provider === true);
  state.replaceChildren(agent.running.provider ? "Running" : el("span", { class: "warn" },
    "Not running (failed, waiting to restart)"),
  ` · at most ${mine.maxConcurrent} task${mine.maxConcurrent === 1 ? "" : "s"} at once · price floor ` +
    `${ogpu(mine.priceFloor)} per GFLOP`);
  const device = mine.device;
  setText("agent-device", `${device ? `${device.name} (${device.kind}, ` +
    `${device.memoryMb.toLocaleString("en-US")} MB)` : "no device"} · benchmark ` +
    `${mine.benchmark.toLocaleString("en-US")} GFLOP/s, ${mine.benchmarkMeasured ? "measured" : "declared"}`);
  byId("benchmarks").replaceChildren(mine.benchmarks.length ? benchmarkHistory(mine.benchmarks)
    : notAvailable("A declared benchmark: the agent measures none."));
  replaceRows(byId("agent-jobs"), mine.jobs.map((j) => el("tr", { "data-task": j.id },
    el("td", { class: "mono", title: j.id }, short(j.id, 12)),
    el("td", { class: "num" }, j.attempt),
    el("td", {}, `${(j.progress * 100).toFixed(0)} %`))), "no job running", 3);
  replaceRows(byId("models-refused"), mine.modelsRefused.map((m) => el("tr", {},
    el("td", { class: "mono", title: m.fileId }, short(m.fileId, 12)), el("td", {}, m.code),
    el("td", {}, m.text))), "none", 3);
  replaceRows(byId("decisions"), mine.decisions.slice(0, MAX_DECISIONS_SHOWN).map((d) => el("tr", {
    "data-task": d.taskId, "data-code": d.code, "data-height": d.height },
  el("td", { class: "mono", title: d.taskId }, short(d.taskId, 12)),
  el("td", { class: "num" }, d.attempt), el("td", {}, d.kind), el("td", { class: "num" }, d.height),
  el("td", { class: d.outcome ? "decision outcome" : "decision skip" }, d.outcome ? d.code : `skip: ${d.code}`),
  el("td", {}, d.text))), "no decision yet: the agent has seen no open task", 6);
}

/** The latest measures: a table, and a line when there are two or more. */
function benchmarkHistory(points) {
  const table = el("table", {}, el("thead", {}, el("tr", {}, el("th", { class: "num" }, "Height"),
    el("th", { class: "num" }, "GFLOP/s"))), el("tbody", { id: "benchmark-rows" },
    [...points].reverse().map((b) => el("tr", { "data-height": b.height, "data-gflops": b.gflops },
      el("td", { class: "num" }, b.height), el("td", { class: "num" }, b.gflops)))));
  if (points.length < 2) return table;
  const [w, h, pad] = [420, 90, 30];
  const top = Math.max(...points.map((b) => b.gflops)) || 1;
  const x = (i) => pad + (i / (points.length - 1)) * (w - 2 * pad);
  const y = (v) => h - 14 - (v / top) * (h - 24);
  const d = points.map((b, i) => `${i ? "L" : "M"} ${x(i)} ${y(b.gflops)}`).join(" ");
  return el("div", {}, svg("svg", { viewBox: `0 0 ${w} ${h}`, width: "100%", role: "img",
    "aria-label": "benchmark history" }, svg("line", { class: "axis", x1: pad, y1: y(0), x2: w - pad,
    y2: y(0) }), svg("path", { class: "line", d }), svg("text", { x: 0, y: 10 }, `${top}`),
  svg("text", { x: pad, y: h - 2 }, `height ${points[0].height}`),
  svg("text", { x: w - pad - 70, y: h - 2 }, `height ${points.at(-1).height}`)), table);
}

async function drawEarningsByPeriod() {
  for (const button of document.querySelectorAll("#period-switch button")) {
    button.setAttribute("aria-pressed", String(button.dataset.period === period));
  }
  const box = byId("earnings-periods");
  if (!(await rpc.has("provider_earnings"))) {
    box.replaceChildren(notAvailable("Not available on this node (it serves no provider_earnings)."));
    return;
  }
  const asked = period;
  const view = await rpc.call("provider_earnings", { address, period, limit: MAX_EARNING_PERIODS });
  if (asked !== period) return; // the user switched while this was on its way
  box.dataset.period = view.period;
  box.dataset.buckets = view.buckets.length;
  if (!view.buckets.length) {
    box.replaceChildren(notAvailable(`No earnings in any ${view.period} yet.`));
    return;
  }
  const amount = (units) => el("td", { class: "num" }, ogpu(units));
  box.replaceChildren(netBars(view.buckets),
    el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, view.period), el("th", { class: "num" }, "Paid"),
      el("th", { class: "num" }, "Verifier fees"), el("th", { class: "num" }, "Slashed"),
      el("th", { class: "num" }, "Net"))),
    el("tbody", {}, view.buckets.map((b) => el("tr", { "data-net": b.net },
      el("td", {}, bucketLabel(b)), amount(b.paid), amount(b.verifierFees), amount(b.slashed),
      el("td", { class: BigInt(b.net) < 0n ? "num warn" : "num" }, signedOgpu(b.net)))))),
    view.truncated ? el("p", { class: "hint" }, `Older ${view.period}s not shown.`) : null);
}

function signedOgpu(units) {
  const n = BigInt(units);
  return n < 0n ? `−${ogpu(-n)}` : ogpu(n);
}

start().catch(showError);
