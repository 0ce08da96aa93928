// The provider dashboard: declaration (devices, benchmark, floor), stake, reputation and flags,
// bids and wins, earnings over time. Node-local views (`agent_status`: benchmark history and skip
// reasons; `provider_earnings`: earnings by period) are shown where the node serves them.

import { Rpc } from "./rpc.js";
import {
  byId, connectionBadge, el, ogpu, replaceRows, setText, short, showError, svg, when,
} from "./ui.js";

const MAX_WON = 50;
const EARNING_EVENTS = new Set(["payment", "client_collateral_to_provider"]);
const rpc = new Rpc();
let address = null;
const closedTasks = new Map(); // task id -> its final view

async function start() {
  connectionBadge(rpc);
  await rpc.connect();
  const status = await rpc.call("chain_status");
  setText("chain-id", status.chainId);
  const input = byId("provider-address");
  input.value = new URLSearchParams(location.search).get("address") ?? status.validator ?? "";
  byId("provider-show").addEventListener("click", () => show(input.value.trim()).catch(showError));
  if (input.value) await show(input.value);
  await rpc.subscribe("blocks", {}, () => address && refresh().catch(showError));
}

async function show(addr) {
  address = addr;
  await refresh();
}

let refreshing = false;
async function refresh() {
  if (refreshing) return; // a block arriving during a refresh is covered by the next one
  refreshing = true;
  try {
    await refreshNow();
  } finally {
    refreshing = false;
  }
}

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
  if (await rpc.has("agent_status")) {
    const agent = await rpc.call("agent_status", {});
    const skips = agent.skips ?? agent.recentSkips ?? [];
    byId("skip-reasons").replaceChildren(skips.length
      ? el("table", {}, el("tbody", {}, skips.map((s) => el("tr", {},
        el("td", { class: "mono" }, short(s.taskId ?? s.task ?? "", 12)),
        el("td", {}, s.reason ?? s.code ?? JSON.stringify(s))))))
      : el("p", { class: "na" }, "The agent skipped no recent task."));
    const benchmarks = agent.benchmarks ?? [];
    byId("benchmarks").replaceChildren(benchmarks.length
      ? el("ul", {}, benchmarks.map((b) => el("li", {}, JSON.stringify(b))))
      : el("p", { class: "na" }, "No benchmark recorded."));
  } else {
    for (const id of ["skip-reasons", "benchmarks"]) {
      byId(id).replaceChildren(el("p", { class: "na" },
        "Not available on this node (it serves no agent_status)."));
    }
  }
  if (await rpc.has("provider_earnings")) {
    const earnings = await rpc.call("provider_earnings", { address });
    const buckets = earnings.buckets ?? [];
    byId("earnings-periods").replaceChildren(buckets.length
      ? el("table", {}, el("tbody", {}, buckets.map((b) => el("tr", {},
        el("td", {}, b.period ?? when(b.startMs)), el("td", { class: "num" }, ogpu(b.earned ?? b.amount ?? 0))))))
      : el("p", { class: "na" }, "No earnings in any period yet."));
  } else {
    byId("earnings-periods").replaceChildren(el("p", { class: "na" },
      "Not available on this node (it serves no provider_earnings)."));
  }
}

start().catch(showError);
