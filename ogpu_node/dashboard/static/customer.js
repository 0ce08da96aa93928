// The customer dashboard: the user's tasks (live phase and progress, money, verdicts, results)
// and pools, and the transactions a customer signs here with the key file they load: cancel a
// task, top up or close a pool. The key never leaves the page (tx.js, wallet.js).

import { Rpc } from "./rpc.js";
import {
  AmountError, cancelTaskPayload, closePoolPayload, KeyFileError, parseOgpu, topUpPoolPayload,
  TX_KIND,
} from "./tx.js";
import {
  byId, connectionBadge, el, ogpu, replaceRows, setText, short, showError, showInfo,
} from "./ui.js";
import { Wallet } from "./wallet.js";

const MAX_TASKS = 50;
const MAX_POOLS = 200;
const LOW_POOL_REQUESTS = 10; // warn when a pool's budget pays fewer requests than this
const SPENT_EVENTS = new Set(["payment", "verifier_fee", "client_collateral_to_provider"]);

const rpc = new Rpc();
const wallet = new Wallet(rpc);
let signer = null; // wallet.signer once a key file is loaded
const tasks = new Map(); // task id -> task view (task_get)
const cancelling = new Map(); // task id -> state text of the cancel transaction

async function start() {
  connectionBadge(rpc);
  await rpc.connect();
  setText("chain-id", (await rpc.call("chain_status")).chainId);
  byId("key-file").addEventListener("change", (event) => loadKey(event.target.files[0]));
  await rpc.subscribe("task", {}, onTask);
  await rpc.subscribe("blocks", {}, () => signer && refreshAccount().catch(showError));
  drawTasks();
  drawPools([]);
}

async function loadKey(file) {
  if (!file) return;
  try {
    await wallet.load(file);
    signer = wallet.signer;
  } catch (error) {
    signer = null;
    showError(error instanceof KeyFileError ? `Key file refused: ${error.message}` : error);
    return;
  }
  setText("address", signer.address);
  showInfo(`Key loaded for ${signer.address}.`);
  tasks.clear();
  const list = await rpc.call("task_list", { client: signer.address, limit: MAX_TASKS });
  const views = await Promise.all(list.tasks.map((t) => rpc.call("task_get", { taskId: t.id })));
  for (const view of views) tasks.set(view.id, view);
  drawTasks();
  await refreshAccount();
}

async function refreshAccount() {
  const account = await rpc.call("account_get", { address: signer.address });
  setText("balance", ogpu(account.balance));
  await refreshPools();
}

function onTask(view) {
  if (!signer || view.client !== signer.address) return;
  tasks.set(view.id, view);
  drawTasks();
}

function spent(task) {
  return task.trail.filter((m) => SPENT_EVENTS.has(m.event) && m.address !== task.client)
    .reduce((sum, m) => sum + BigInt(m.amount), 0n);
}

function progress(task) {
  let bps = null;
  if (task.status === "running") bps = task.progressBps ?? 0;
  else if (task.status === "closed") bps = task.closeReason === "completed" ? 10000 : null;
  else if (["verifying", "releasing"].includes(task.status)) bps = 10000;
  if (bps === null) return "—";
  return el("span", { title: `${(bps / 100).toFixed(1)} %` },
    el("span", { class: "progress" }, el("div", { style: null, "data-bps": bps })),
    ` ${(bps / 100).toFixed(0)} %`);
}

function outcome(task) {
  const votes = task.verdicts.length
    ? ` · verdicts ${task.verdicts.filter((v) => v.accept).length} accept / ${task.verdicts.filter((v) => !v.accept).length} reject`
    : "";
  if (task.status !== "closed") return `${task.why ? `(${task.why})` : ""}${votes}`;
  return `${task.closeReason}${task.why ? ` (${task.why})` : ""}${votes}`;
}

function drawTasks() {
  const list = [...tasks.values()].sort((a, b) => b.createdMs - a.createdMs);
  const open = list.filter((t) => t.status !== "closed");
  setText("my-open-count", signer ? open.length : "—");
  setText("my-escrow", signer ? ogpu(list.reduce((s, t) => s + BigInt(t.escrow), 0n)) : "—");
  setText("my-spent", signer ? ogpu(list.reduce((s, t) => s + spent(t), 0n)) : "—");
  const rows = [];
  for (const task of list) {
    const phaseClass = task.status === "closed"
      ? `status closed ${task.closeReason === "completed" ? "completed" : ""} ${task.closeReason?.startsWith("cancelled") ? "cancelled" : ""}`
      : "status";
    rows.push(el("tr", { "data-task": task.id },
      el("td", { class: "mono", title: task.id }, short(task.id, 12)),
      el("td", {}, task.kind),
      el("td", {}, el("span", { class: phaseClass, "data-phase": task.status }, task.status)),
      el("td", {}, progress(task)),
      el("td", { class: "num budget", "data-units": task.budget }, ogpu(task.budget)),
      el("td", { class: "num" }, ogpu(task.escrow)),
      el("td", { class: "num" }, ogpu(spent(task))),
      el("td", {}, outcome(task)),
      el("td", {}, actions(task))));
    rows.push(el("tr", { class: "details" }, el("td", { colspan: 9 }, details(task))));
  }
  replaceRows(byId("tasks"), rows, signer ? "no tasks from this address" : "load your key file to see your tasks", 9);
  // Widths are set here, not inline in markup: the page's CSP refuses inline styles.
  for (const bar of document.querySelectorAll(".progress > div")) {
    bar.style.width = `${Number(bar.dataset.bps) / 100}%`;
  }
}

function actions(task) {
  const parts = [];
  if (task.status !== "closed") {
    const state = cancelling.get(task.id);
    parts.push(el("button", { class: "danger", id: `cancel-${task.id}`, disabled: Boolean(state),
      title: task.provider ? "Cancelling after the award costs your collateral" : "Free before the award",
      onclick: () => cancelTask(task).catch(showError) }, "Cancel"));
    if (state) parts.push(el("span", { class: "cancel-state" }, ` ${state}`));
  }
  if (task.result && task.result.outputId) {
    parts.push(el("button", { onclick: () => download(task).catch(showError),
      title: "The output file as stored: sealed for you; open it with `ogpu task result`" },
    "Download result"));
  }
  return parts;
}

function details(task) {
  const trail = task.trail.map((m) => el("li", {}, `${m.event}: ${ogpu(m.amount)} → `,
    el("code", {}, m.address)));
  return el("div", {},
    el("div", {}, `Max price ${ogpu(task.maxPrice)} per GFLOP × ${task.workUnits} GFLOP`,
      task.provider ? ` · provider ${task.provider} at ${ogpu(task.price)}` : ""),
    trail.length ? el("ul", { class: "trail" }, trail) : null);
}

async function cancelTask(task) {
  cancelling.set(task.id, "signing…");
  drawTasks();
  try {
    await wallet.sendAndWatch(TX_KIND.CANCEL_TASK, cancelTaskPayload(task.id), (receipt) => {
      cancelling.set(task.id, receipt.state === "finalized" ? "cancel final"
        : `cancel ${receipt.state}: ${receipt.reason ?? ""}`);
      drawTasks();
    });
    // the receipt may have come already (a fast block): keep what it said
    if (cancelling.get(task.id) === "signing…") cancelling.set(task.id, "sent, waiting for finality…");
    drawTasks();
  } catch (error) {
    cancelling.delete(task.id);
    drawTasks();
    throw error;
  }
}

async function download(task) {
  const manifest = await rpc.call("blob_manifest", { fileId: task.result.outputId });
  const parts = [];
  for (const chunkId of manifest.chunks) {
    const chunk = await rpc.call("blob_chunk", { chunkId });
    parts.push(Uint8Array.from(atob(chunk.data), (c) => c.charCodeAt(0)));
  }
  const url = URL.createObjectURL(new Blob(parts, { type: "application/octet-stream" }));
  const link = el("a", { href: url, download: `${task.id.slice(0, 16)}-output.sealed` });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

async function refreshPools() {
  const list = await rpc.call("pool_list", { limit: MAX_POOLS });
  const mine = list.pools.filter((p) => p.owner === signer.address);
  drawPools(await Promise.all(mine.map((p) => rpc.call("pool_get", { poolId: p.id }))));
}

function drawPools(pools) {
  setText("my-pool-count", signer ? pools.length : "—");
  // Rows are rebuilt after every block: keep what the user is typing in them.
  const typed = [...document.querySelectorAll("#pools input.amount")].map((i) => [i.id, i.value]);
  const focused = document.activeElement && document.activeElement.id;
  replaceRows(byId("pools"), pools.map((pool) => {
    const left = BigInt(pool.price) ? BigInt(pool.escrow) / BigInt(pool.price) : 0n;
    const low = !pool.closed && left < BigInt(LOW_POOL_REQUESTS);
    return el("tr", { "data-pool": pool.id },
      el("td", { class: "mono", title: pool.id }, short(pool.id, 12)),
      el("td", {}, pool.modelName ?? pool.model),
      el("td", { class: "num" }, ogpu(pool.price)),
      el("td", { class: "num" }, pool.served),
      el("td", { class: "num escrow", "data-units": pool.escrow }, ogpu(pool.escrow)),
      el("td", { class: low ? "num warn requests-left" : "num requests-left" }, pool.closed ? "closed"
        : `${left}${low ? " — low balance" : ""}`),
      el("td", {}, pool.closed ? null : [
        el("input", { id: `topup-amount-${pool.id}`, class: "amount", size: 8,
          placeholder: "OGPU", "aria-label": "amount to add, in OGPU" }),
        el("button", { id: `topup-${pool.id}`, title: "Add budget to this pool (TOP_UP_POOL)",
          onclick: () => topUpPool(pool).catch(showError) }, "Top up"),
        el("button", { class: "danger", id: `close-${pool.id}`,
          onclick: () => wallet.send(TX_KIND.CLOSE_POOL, closePoolPayload(pool.id))
            .then(() => showInfo("Pool close sent: its row turns closed once final."))
            .catch(showError) }, "Close")]));
  }), signer ? "no pools owned by this address" : "load your key file to see your pools", 7);
  for (const [id, value] of typed) if (byId(id)) byId(id).value = value;
  if (focused && focused.startsWith("topup-amount-") && byId(focused)) byId(focused).focus();
}

/** Sign TOP_UP_POOL for the amount typed in the pool's row; its budget grows once final. */
async function topUpPool(pool) {
  let amount;
  try {
    amount = parseOgpu(byId(`topup-amount-${pool.id}`).value);
  } catch (error) {
    if (error instanceof AmountError) throw new Error(`Top up: ${error.message}`);
    throw error;
  }
  if (amount === 0n) throw new Error("Top up: the amount must be more than 0");
  await wallet.sendAndWatch(TX_KIND.TOP_UP_POOL, topUpPoolPayload(pool.id, amount), (receipt) => {
    if (receipt.state === "finalized") {
      showInfo(`Pool ${short(pool.id, 12)} topped up by ${ogpu(amount)}.`);
      const field = byId(`topup-amount-${pool.id}`);
      if (field) field.value = "";
      refreshPools().catch(showError);
    } else {
      showError(`Top up ${receipt.state}: ${receipt.reason ?? ""}`);
    }
  });
  showInfo(`Top up of ${ogpu(amount)} sent, waiting for finality…`);
}

start().catch(showError);
