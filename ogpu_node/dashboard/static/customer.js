// The customer dashboard: the user's tasks (live phase and progress, money, verdicts, results)
// and pools, and the transactions a customer signs here with the key file they load: cancel a
// task, close a pool. The key never leaves the page (tx.js).

import { Rpc } from "./rpc.js";
import {
  cancelTaskPayload, closePoolPayload, DEFAULT_FEE, KeyFileError, loadKeyFile, signTransaction,
  TX_KIND,
} from "./tx.js";
import {
  byId, connectionBadge, el, ogpu, replaceRows, setText, short, showError, showInfo,
} from "./ui.js";

const MAX_TASKS = 50;
const MAX_POOLS = 200;
const LOW_POOL_REQUESTS = 10; // warn when a pool's budget pays fewer requests than this
const SPENT_EVENTS = new Set(["payment", "verifier_fee", "client_collateral_to_provider"]);

const rpc = new Rpc();
let signer = null;
let chainId = null;
const tasks = new Map(); // task id -> task view (task_get)
const cancelling = new Map(); // task id -> state text of the cancel transaction

async function start() {
  connectionBadge(rpc);
  await rpc.connect();
  chainId = (await rpc.call("chain_status")).chainId;
  setText("chain-id", chainId);
  byId("key-file").addEventListener("change", (event) => loadKey(event.target.files[0]));
  await rpc.subscribe("task", {}, onTask);
  await rpc.subscribe("blocks", {}, () => signer && refreshAccount().catch(showError));
  drawTasks();
  drawPools([]);
}

async function loadKey(file) {
  if (!file) return;
  try {
    signer = await loadKeyFile(await file.text());
  } catch (error) {
    signer = null;
    showError(error instanceof KeyFileError ? `Key file refused: ${error.message}` : error);
    return;
  }
  setText("address", signer.address);
  nextNonce = 0;
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

// account_get gives the finalised nonce: a second transaction sent before the first is final
// takes the next one.
let nextNonce = 0;

async function sendSigned(kind, payload) {
  const account = await rpc.call("account_get", { address: signer.address });
  const nonce = Math.max(account.nonce, nextNonce);
  const tx = await signTransaction(signer, { chainId, nonce, fee: DEFAULT_FEE, kind, payload });
  try {
    const receipt = await rpc.call("tx_send", { tx: tx.hex });
    nextNonce = nonce + 1;
    return { hash: tx.hash, receipt };
  } catch (error) {
    nextNonce = 0; // start again from the chain's nonce
    throw error;
  }
}

async function cancelTask(task) {
  cancelling.set(task.id, "signing…");
  drawTasks();
  try {
    const { hash } = await sendSigned(TX_KIND.CANCEL_TASK, cancelTaskPayload(task.id));
    cancelling.set(task.id, "sent, waiting for finality…");
    drawTasks();
    await rpc.subscribe("txStatus", { hash }, (receipt) => {
      cancelling.set(task.id, receipt.state === "finalized" ? "cancel final"
        : `cancel ${receipt.state}: ${receipt.reason ?? ""}`);
      drawTasks();
    });
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
  replaceRows(byId("pools"), pools.map((pool) => {
    const left = BigInt(pool.price) ? BigInt(pool.escrow) / BigInt(pool.price) : 0n;
    const low = !pool.closed && left < BigInt(LOW_POOL_REQUESTS);
    return el("tr", { "data-pool": pool.id },
      el("td", { class: "mono", title: pool.id }, short(pool.id, 12)),
      el("td", {}, pool.modelName ?? pool.model),
      el("td", { class: "num" }, ogpu(pool.price)),
      el("td", { class: "num" }, pool.served),
      el("td", { class: "num" }, ogpu(pool.escrow)),
      el("td", { class: low ? "num warn requests-left" : "num requests-left" }, pool.closed ? "closed"
        : `${left}${low ? " — low balance" : ""}`),
      el("td", {},
        el("button", { disabled: true, title: "No pool top-up transaction exists on this chain" }, "Top up"),
        pool.closed ? null : el("button", { class: "danger", id: `close-${pool.id}`,
          onclick: () => sendSigned(TX_KIND.CLOSE_POOL, closePoolPayload(pool.id))
            .then(() => showInfo("Pool close sent: its row turns closed once final."))
            .catch(showError) }, "Close")));
  }), signer ? "no pools owned by this address" : "load your key file to see your pools", 7);
}

start().catch(showError);
