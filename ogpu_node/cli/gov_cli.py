"""`ogpu gov ...`: governance by stake from the command line.

`params` shows the governable parameters (value, bounds, changes pending); `list` and `get` the
proposals and their tallies; `propose --set NAME=VALUE ...` sends `PROPOSE` with the deposit
(the chain's minimum unless `--deposit` says more) and prints the proposal's number once final;
`vote ID yes|no|abstain` sends `VOTE` (bonded stake only; the weight is the stake the voter holds
when voting ends).

Values are integers in the parameter's unit (`ogpu gov params` shows it): base units for
amounts, or OGPU with an `ogpu` suffix (`provider_min_stake=50ogpu`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from ogpu_node.cli.common import emit, handle_errors
from ogpu_node.cli.sending import (
    JSON_OPTION,
    parse_ogpu,
    report,
    send,
    send_options,
    signer,
)
from ogpu_node.ledger.governance.bounds import BASE_UNITS, GOVERNABLE, MAX_CHANGES, Change
from ogpu_node.ledger.governance.records import MAX_TITLE_LEN, Propose, Vote, VoteOption
from ogpu_node.sdk.sync_client import rpc_call
from ogpu_node.types import format_amount

STATUSES = ("voting", "passed", "activated", "rejected", "no_quorum", "failed")


@click.group()
def gov() -> None:
    """Governance by stake: parameters, proposals and votes."""


MAX_VALUE_DIGITS = 30
"""Longest value `--set` reads (every bound is far shorter; Python refuses over 4,300)."""


def parse_change(text: str) -> Change:
    """`NAME=VALUE` for a governable parameter, within its bounds (the chain checks again, with
    the other parameters)."""
    name, sep, raw = text.partition("=")
    bounds = GOVERNABLE.get(name.strip())
    if not sep or bounds is None:
        raise click.BadParameter(f"expected NAME=VALUE with a governable NAME (see `ogpu gov "
                                 f"params`), got {text!r}", param_hint="--set")
    raw = raw.strip()
    if bounds.unit == BASE_UNITS and raw.lower().endswith("ogpu"):
        value = int(parse_ogpu(raw[:-4].strip()))
    elif raw.isascii() and raw.isdigit() and len(raw) <= MAX_VALUE_DIGITS:
        value = int(raw)  # isdigit alone passes '²', which int() refuses
    else:
        raise click.BadParameter(f"{name}: expected an integer in {bounds.unit}, got {raw!r}",
                                 param_hint="--set")
    if not bounds.contains(value):
        raise click.BadParameter(f"{name} = {value} is outside {bounds.low}..{bounds.high}",
                                 param_hint="--set")
    return name.strip(), value


def _shown(value: int | str, unit: str) -> str:
    if unit == BASE_UNITS:
        return f"{format_amount(int(value))} OGPU"
    return f"{value} {unit}"


@gov.command("params")
@JSON_OPTION
@click.pass_obj
@handle_errors
def gov_params(rpc: str, as_json: bool) -> None:
    """The governable parameters: current value, bounds, changes passed and pending."""
    view = rpc_call(rpc, "gov_params", {})
    if as_json:
        emit(view, True)
        return
    click.echo(f"{len(view['params'])} governable parameters at height {view['height']}")
    for row in view["params"]:
        unit = row["unit"]
        line = (f"{row['name']:<30} {_shown(row['value'], unit):<24} "
                f"[{_shown(row['low'], unit)} .. {_shown(row['high'], unit)}]")
        for change in row["pending"]:
            line += (f"  -> {_shown(change['value'], unit)} at height "
                     f"{change['activationHeight']} (#{change['proposalId']})")
        for change in row["proposed"]:
            line += f"  (#{change['proposalId']} proposes {_shown(change['value'], unit)})"
        click.echo(line)


def _changes(view: dict[str, Any]) -> str:
    return ", ".join(f"{c['name']}={c['value']}" for c in view["changes"])


@gov.command("list")
@click.option("--status", type=click.Choice(STATUSES), default=None)
@click.option("--limit", type=click.IntRange(1, 200), default=20, show_default=True)
@JSON_OPTION
@click.pass_obj
@handle_errors
def gov_list(rpc: str, status: str | None, limit: int, as_json: bool) -> None:
    """Proposals, newest first."""
    listed = rpc_call(rpc, "gov_list", {"status": status, "limit": limit})
    if as_json:
        emit(listed, True)
        return
    click.echo(f"{len(listed['proposals'])} of {listed['total']} proposal(s) at height "
               f"{listed['height']}, newest first")
    for row in listed["proposals"]:
        when = (f"activates at {row['activationHeight']}" if row["activationHeight"]
                else f"voting ends at {row['votingEnd']}")
        click.echo(f"#{row['id']:<4} {row['status']:<10} {when:<24} {_changes(row)}  "
                   f"{row['title']!r}")


@gov.command("get")
@click.argument("proposal_id", type=click.IntRange(1))
@JSON_OPTION
@click.pass_obj
@handle_errors
def gov_get(rpc: str, proposal_id: int, as_json: bool) -> None:
    """One proposal: changes, status, tally (running while voting) and votes."""
    view = rpc_call(rpc, "gov_get", {"proposalId": proposal_id})
    if as_json:
        emit(view, True)
        return
    tally = view["tally"]
    kind = "tally" if tally["final"] else "running tally"
    emit({"proposal": f"#{view['id']} {view['title']!r}", "status": view["status"],
          "proposer": view["proposer"], "changes": _changes(view),
          "deposit": f"{view['depositOgpu']} OGPU",
          "voting": f"blocks {view['submittedHeight'] + 1}..{view['votingEnd']}",
          "activation": str(view["activationHeight"] or "-"),
          kind: (f"yes {tally['yesOgpu']}, no {tally['noOgpu']}, abstain "
                 f"{tally['abstainOgpu']} of {tally['bondedOgpu']} OGPU bonded "
                 f"(turnout {tally['turnoutBps'] / 100:.2f}%, yes {tally['yesBps'] / 100:.2f}%"
                 f" of yes+no) -> {tally['outcome']}"),
          "votes": ", ".join(f"{v['voter']} {v['option']} ({v['stakeOgpu']})"
                             for v in view["votes"]) or "-",
          **({"failure": view["failure"]} if view["failure"] else {}),
          "height": str(view["height"])}, False)


@gov.command("propose")
@click.option("--set", "changes", multiple=True, required=True, metavar="NAME=VALUE",
              help=f"A change (repeat, at most {MAX_CHANGES}); see `ogpu gov params`.")
@click.option("--deposit", default=None,
              help="Deposit in OGPU (default: the chain's minimum, gov_min_deposit). Refunded "
                   "when the vote reaches quorum, burned when it does not.")
@click.option("--title", default="", help=f"A short title (at most {MAX_TITLE_LEN} characters).")
@send_options
@click.pass_obj
@handle_errors
def gov_propose(rpc: str, changes: tuple[str, ...], deposit: str | None, title: str,
                key_path: Path | None, dev_account: int | None, fee: str | None, timeout: float,
                as_json: bool) -> None:
    """Propose parameter changes; print the proposal's number once final.

    \b
      ogpu gov propose --set min_fee=2000 --set bid_window_ms=4000 --title "Slower bids" \\
          --key me.json
    """
    parsed = tuple(parse_change(text) for text in changes)
    if len(parsed) > MAX_CHANGES:
        raise click.UsageError(f"at most {MAX_CHANGES} changes in one proposal")
    if len(title) > MAX_TITLE_LEN:
        raise click.BadParameter(f"at most {MAX_TITLE_LEN} characters", param_hint="--title")
    key = signer(key_path, dev_account)
    if deposit is None:
        minimum = next(p for p in rpc_call(rpc, "gov_params", {})["params"]
                       if p["name"] == "gov_min_deposit")
        amount = int(minimum["value"])
    else:
        amount = int(parse_ogpu(deposit))
    receipt = send(rpc, key, Propose(parsed, amount, title), fee, True, timeout)
    if receipt.get("state") != "finalized":
        report(receipt, as_json)
        return
    number = _proposal_made(rpc, receipt, parsed, title)
    emit({"proposalId": number, "hash": receipt["hash"], "height": receipt["height"],
          **({} if number is None else _schedule(rpc, number))}, as_json)


def _proposal_made(rpc: str, receipt: Mapping[str, Any], changes: tuple[Change, ...],
                   title: str) -> int | None:
    """The number of the proposal the finalised `receipt` made (the newest in its block with
    these changes and title)."""
    listed = rpc_call(rpc, "gov_list", {"limit": 200})
    wanted = [{"name": name, "value": str(value) if GOVERNABLE[name].unit == BASE_UNITS
               else value} for name, value in changes]
    for row in listed["proposals"]:  # newest first
        if (row["submittedHeight"] == receipt["height"] and row["changes"] == wanted
                and row["title"] == title):
            number: int = row["id"]
            return number
    return None


def _schedule(rpc: str, number: int) -> dict[str, Any]:
    view = rpc_call(rpc, "gov_get", {"proposalId": number})
    return {"votingEnd": view["votingEnd"], "deposit": view["deposit"]}


@gov.command("vote")
@click.argument("proposal_id", type=click.IntRange(1))
@click.argument("option", type=click.Choice([o.name.lower() for o in VoteOption]))
@send_options
@click.pass_obj
@handle_errors
def gov_vote(rpc: str, proposal_id: int, option: str, key_path: Path | None,
             dev_account: int | None, fee: str | None, timeout: float, as_json: bool) -> None:
    """Vote on a proposal with your bonded stake (a later vote replaces this one)."""
    key = signer(key_path, dev_account)
    receipt = send(rpc, key, Vote(proposal_id, VoteOption[option.upper()]), fee, True, timeout)
    report(receipt, as_json)
