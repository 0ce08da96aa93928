// The governance dashboard: the governable parameters (value, bounds, unit, changes pending and
// being voted on), the proposals with their tallies, one proposal's votes, and a vote signed
// here with a validator's key file (VOTE, through wallet.js). Re-read after every block.

import { Rpc } from "./rpc.js";
import { KeyFileError, TX_KIND, VOTE_OPTION, votePayload } from "./tx.js";
import {
  byId, connectionBadge, el, ogpu, oneAtATime, replaceRows, setText, shortAddress, showError,
  showInfo,
} from "./ui.js";
import { Wallet } from "./wallet.js";

const MAX_PROPOSALS = 50;
const rpc = new Rpc();
const wallet = new Wallet(rpc);
let selected = null; // the proposal number whose detail is shown
const voteStates = new Map(); // proposal number -> state text of our vote transaction

async function start() {
  connectionBadge(rpc);
  await rpc.connect();
  setText("chain-id", (await rpc.call("chain_status")).chainId);
  byId("key-file").addEventListener("change", (event) => loadKey(event.target.files[0]));
  const fromUrl = Number(new URLSearchParams(location.search).get("proposal"));
  if (Number.isSafeInteger(fromUrl) && fromUrl > 0) selected = fromUrl;
  await refresh();
  await rpc.subscribe("blocks", {}, () => refresh().catch(showError));
}

async function loadKey(file) {
  if (!file) return;
  try {
    setText("address", await wallet.load(file));
    showInfo(`Key loaded for ${wallet.address}.`);
  } catch (error) {
    setText("address", "— no key loaded");
    showError(error instanceof KeyFileError ? `Key file refused: ${error.message}` : error);
  }
  await refresh();
}

const refresh = oneAtATime(async () => {
  const [params, list] = await Promise.all([rpc.call("gov_params"),
    rpc.call("gov_list", { limit: MAX_PROPOSALS })]);
  const proposals = await Promise.all(list.proposals.map((s) =>
    rpc.call("gov_get", { proposalId: s.id })));
  drawParams(params);
  drawProposals(list, proposals);
  drawDetail(proposals.find((v) => v.id === selected) ?? null);
});

/** A parameter's value in its unit: amounts in OGPU, basis points as a percentage. */
function formatValue(value, unit) {
  if (unit === "units") return ogpu(value);
  if (unit === "bps") return `${(Number(value) / 100).toFixed(2)} %`;
  if (unit === "count") return Number(value).toLocaleString("en-US");
  return `${Number(value).toLocaleString("en-US")} ${unit}`;
}

function percent(bps) {
  return `${(bps / 100).toFixed(1)} %`;
}

function drawParams(view) {
  setText("gov-height", view.height.toLocaleString("en-US"));
  const byName = new Map(view.params.map((prm) => [prm.name, prm]));
  const quorum = byName.get("gov_quorum_bps");
  const threshold = byName.get("gov_threshold_bps");
  setText("quorum", quorum ? percent(quorum.value) : "—");
  setText("threshold", threshold ? percent(threshold.value) : "—");
  replaceRows(byId("gov-params"), view.params.map((prm) => el("tr", { "data-param": prm.name },
    el("td", { class: "mono" }, prm.name),
    el("td", { class: "num value", "data-value": String(prm.value) }, formatValue(prm.value, prm.unit)),
    el("td", { class: "num bounds", "data-low": String(prm.low), "data-high": String(prm.high) },
      `${formatValue(prm.low, prm.unit)} … ${formatValue(prm.high, prm.unit)}`),
    el("td", { "data-unit": prm.unit }, prm.unit === "units" ? "OGPU" : prm.unit),
    el("td", { class: "pending" }, prm.pending.map((c) => el("div", {},
      `${formatValue(c.value, prm.unit)} at height ${c.activationHeight} (#${c.proposalId})`))),
    el("td", { class: "proposed" }, prm.proposed.map((c) => el("div", {},
      `${formatValue(c.value, prm.unit)} (#${c.proposalId}, voting ends ${c.votingEnd})`))))),
  "no governable parameters", 6);
}

function drawProposals(list, proposals) {
  setText("proposal-count", list.total);
  setText("voting-count", proposals.filter((v) => v.status === "voting").length);
  replaceRows(byId("proposals"), proposals.map((v) => {
    const t = v.tally;
    const quorumMet = t.turnoutBps >= t.quorumBps;
    const thresholdMet = t.yesBps > t.thresholdBps;
    return el("tr", { "data-proposal": v.id, "data-status": v.status },
      el("td", { class: "num" }, v.id),
      el("td", {}, v.title || el("span", { class: "na" }, "untitled")),
      el("td", {}, el("span", { class: `status ${v.status}` }, v.status),
        t.final ? null : el("div", { class: "hint" }, `would be ${t.outcome}`)),
      el("td", { class: "mono" }, v.changes.map((c) => el("div", {}, `${c.name} = ${c.value}`))),
      el("td", { class: quorumMet ? "num turnout" : "num turnout warn", "data-bps": t.turnoutBps },
        `${percent(t.turnoutBps)} / ${percent(t.quorumBps)}`),
      el("td", { class: thresholdMet ? "num yes" : "num yes warn", "data-bps": t.yesBps },
        `${percent(t.yesBps)} / ${percent(t.thresholdBps)}`),
      el("td", { class: "num votes", "data-count": t.voteCount }, t.final ? "—" : t.voteCount),
      el("td", { class: "num" }, v.votingEnd),
      el("td", { class: "num" }, v.activationHeight ?? "—"),
      el("td", {}, el("button", { id: `show-${v.id}`, onclick: () => select(v.id) }, "Details"),
        voteButtons(v)));
  }), "no proposals yet (propose with `ogpu gov propose`)", 10);
}

function voteButtons(view) {
  if (view.status !== "voting" || !wallet.signer || view.height >= view.votingEnd) return null;
  const state = voteStates.get(view.id);
  return [...Object.keys(VOTE_OPTION).map((option) => el("button", {
    id: `vote-${view.id}-${option}`, disabled: state === "signing…",
    onclick: () => vote(view.id, option).catch(showError) }, option)),
  state ? el("span", { class: "vote-state" }, ` ${state}`) : null];
}

async function vote(proposalId, option) {
  voteStates.set(proposalId, "signing…");
  try {
    await wallet.sendAndWatch(TX_KIND.VOTE, votePayload(proposalId, option), (receipt) => {
      voteStates.set(proposalId, receipt.state === "finalized" ? `voted ${option}`
        : `vote ${receipt.state}: ${receipt.reason ?? ""}`);
      refresh().catch(showError);
    });
    // the receipt may have come already (a fast block): keep what it said
    if (voteStates.get(proposalId) === "signing…") {
      voteStates.set(proposalId, `${option}: sent, waiting for finality…`);
    }
  } catch (error) {
    voteStates.delete(proposalId);
    throw error;
  } finally {
    await refresh();
  }
}

function select(proposalId) {
  selected = proposalId;
  history.replaceState(null, "", `?proposal=${proposalId}`);
  refresh().catch(showError);
}

function drawDetail(view) {
  setText("detail-id", view ? `#${view.id}` : "—");
  const box = byId("proposal-detail");
  if (!view) {
    box.replaceChildren(el("p", { class: "na" }, selected ? `No proposal #${selected}.`
      : "Pick a proposal above."));
    return;
  }
  const t = view.tally;
  const facts = [["Title", view.title || "—"], ["Proposer", view.proposer],
    ["Status", view.status + (view.failure ? ` (${view.failure})` : "")],
    ["Deposit", ogpu(view.deposit)],
    ["Voting", `blocks ${view.submittedHeight + 1} … ${view.votingEnd}`],
    ["Activation height", view.activationHeight ?? "—"],
    ["Tally", `${t.final ? "final" : "running, would be " + t.outcome}: yes ${ogpu(t.yes)}, ` +
      `no ${ogpu(t.no)}, abstain ${ogpu(t.abstain)} of ${ogpu(t.bonded)} bonded`],
    ["Turnout", `${percent(t.turnoutBps)} (quorum ${percent(t.quorumBps)})`],
    ["Yes share", `${percent(t.yesBps)} (threshold above ${percent(t.thresholdBps)})`]];
  const votes = t.final
    ? el("p", { class: "na" }, "The tally keeps the totals; the individual votes are gone.")
    : el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "Voter"), el("th", {}, "Vote"),
      el("th", { class: "num" }, "Stake"))),
    el("tbody", { id: "votes" }, view.votes.length ? view.votes.map((vote) => el("tr", {
      "data-voter": vote.voter, "data-option": vote.option },
    el("td", { class: "mono", title: vote.voter }, shortAddress(vote.voter)),
    el("td", {}, vote.option), el("td", { class: "num" }, ogpu(vote.stake))))
      : el("tr", {}, el("td", { colspan: 3, class: "empty" }, "no votes yet"))));
  box.replaceChildren(
    el("table", {}, el("tbody", {}, facts.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v))))),
    el("h3", {}, "Changes"),
    el("table", {}, el("tbody", {}, view.changes.map((c) => el("tr", {},
      el("td", { class: "mono" }, c.name), el("td", { class: "num" }, String(c.value)))))),
    el("h3", {}, "Votes"), votes);
  box.dataset.proposal = view.id;
}

start().catch(showError);

