// The network dashboard: head, validators and stake, recent blocks, finality latency, open tasks
// and pools, and this node's health (with its reasons when unhealthy). Live: each finalised block (a `blocks` subscription) updates the head and the
// latency, and triggers a re-read of what blocks change.

import { formatMs, LatencyHistogram } from "./latency.js";
import { Rpc } from "./rpc.js";
import {
  byId, connectionBadge, el, ogpu, oneAtATime, replaceRows, setText, short, shortAddress,
  showError, when,
} from "./ui.js";

const RECENT_BLOCKS = 12;
const HEALTH_POLL_MS = 5000; // a node that finalises nothing sends no block to refresh on
const rpc = new Rpc();
const latency = new LatencyHistogram();
const recent = []; // block views, newest first, each with `latencyMs` when seen live

async function start() {
  connectionBadge(rpc);
  await rpc.connect();
  const status = await rpc.call("chain_status");
  setText("chain-id", status.chainId);
  showHeight(status.height);
  if (status.height > 0) {
    const from = Math.max(1, status.height - RECENT_BLOCKS + 1);
    const blocks = await rpc.call("chain_getBlockRange", { from, to: status.height });
    for (const block of blocks) recent.unshift(block);
  }
  drawBlocks();
  drawLatency();
  await refresh();
  await rpc.subscribe("blocks", {}, onBlock);
  setInterval(() => rpc.call("node_health").then(drawHealth).catch(showError), HEALTH_POLL_MS);
}

function showHeight(height) {
  const node = byId("height");
  if (Number(node.dataset.height ?? -1) < height) {
    node.dataset.height = height;
    node.textContent = height.toLocaleString("en-US");
  }
}

async function onBlock(block) {
  block.latencyMs = Date.now() - block.timestampMs;
  latency.add(block.latencyMs);
  recent.unshift(block);
  recent.length = Math.min(recent.length, RECENT_BLOCKS);
  showHeight(block.height);
  drawBlocks();
  drawLatency();
  await refresh();
}

const refresh = oneAtATime(async () => {
  try {
    const [validators, tasks, pools, health] = await Promise.all([
      rpc.call("validators_list"),
      rpc.call("task_list", { open: true, limit: 50 }),
      rpc.call("pool_list", { open: true, limit: 50 }),
      rpc.call("node_health"),
    ]);
    drawHealth(health);
    drawValidators(validators);
    drawTasks(tasks);
    drawPools(pools);
  } catch (error) {
    showError(error);
  }
});

function drawBlocks() {
  replaceRows(byId("blocks"), recent.map((b) => el("tr", { "data-height": b.height },
    el("td", {}, b.height), el("td", {}, when(b.timestampMs)),
    el("td", { class: "mono", title: b.proposer }, shortAddress(b.proposer)),
    el("td", { class: "num" }, b.txCount),
    el("td", { class: "num" }, b.latencyMs === undefined ? "—" : formatMs(b.latencyMs)))),
  "no blocks yet", 5);
}

function drawLatency() {
  byId("latency-histogram").replaceChildren(latency.draw());
  const median = latency.median();
  setText("latency-median", median === null ? "waiting…" : formatMs(median));
  setText("latency-summary", `${latency.samples.length} blocks seen finalise on this page.`);
}

function drawHealth(view) {
  const card = byId("health");
  card.textContent = view.healthy ? "healthy" : "unhealthy";
  card.className = view.healthy ? "value" : "value warn";
  card.dataset.healthy = String(view.healthy);
  const reasons = view.reasons ?? [];
  byId("health-section").hidden = reasons.length === 0;
  replaceRows(byId("health-reasons"), reasons.map((r) => el("tr", { "data-code": r.code },
    el("td", { class: "mono" }, r.code), el("td", {}, r.message))), "", 2);
}

function drawValidators(view) {
  setText("validator-count", view.count);
  setText("total-stake", ogpu(view.totalStake));
  byId("total-stake").dataset.units = view.totalStake;
  const total = BigInt(view.totalStake) || 1n;
  const rows = [...view.validators]
    .sort((a, b) => (BigInt(b.stake) > BigInt(a.stake) ? 1 : -1))
    .map((v) => el("tr", {},
      el("td", { class: "mono" }, v.address),
      el("td", { class: "num" }, ogpu(v.stake)),
      el("td", { class: "num" }, `${(Number((BigInt(v.stake) * 10000n) / total) / 100).toFixed(2)} %`)));
  replaceRows(byId("validators"), rows, "no validators", 3);
}

function drawTasks(view) {
  setText("open-task-count", view.total);
  replaceRows(byId("open-tasks"), view.tasks.map((t) => el("tr", { "data-task": t.id },
    el("td", { class: "mono", title: t.id }, short(t.id)), el("td", {}, t.kind),
    el("td", {}, el("span", { class: "status" }, t.status)),
    el("td", { class: "num" }, t.workUnits.toLocaleString("en-US")),
    el("td", { class: "num" }, ogpu(t.maxPrice)))), "no open tasks", 5);
}

function drawPools(view) {
  setText("pool-count", view.count);
  replaceRows(byId("pools"), view.pools.map((p) => el("tr", {},
    el("td", { class: "mono", title: p.id }, short(p.id)), el("td", {}, p.modelName ?? p.model),
    el("td", { class: "num" }, p.members), el("td", { class: "num" }, p.served),
    el("td", { class: "num" }, ogpu(p.escrow)))), "no open pools", 5);
}

start().catch(showError);
