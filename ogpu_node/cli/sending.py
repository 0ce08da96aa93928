"""What the `ogpu` commands that sign and send transactions share: key options, amounts, sending
through the node and reporting the outcome."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import click

from ogpu_node.cli.common import emit
from ogpu_node.keys import PrivateKey, read_key_file
from ogpu_node.ledger.tx import Payload
from ogpu_node.sdk import TxReceipt
from ogpu_node.sdk.sync_client import send_transaction
from ogpu_node.types import Amount, parse_amount

JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
KEY_OPTION = click.option("--key", "key_path", type=click.Path(path_type=Path), default=None,
                          help="Key file of the sender.")
DEV_OPTION = click.option("--dev-account", type=click.IntRange(0, 999), default=None,
                          help="Sign with devnet account N instead (well-known keys).")
FEE_OPTION = click.option("--fee", default=None,
                          help="Fee in OGPU (default: the chain's least fee now, its min_fee).")
TIMEOUT_OPTION = click.option("--timeout", type=click.FloatRange(1, 120), default=30,
                              show_default=True, help="Seconds to wait for finality.")


def send_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options of every command that signs and sends a transaction: --key, --dev-account,
    --fee, --timeout and --json (in that order in its help)."""
    for option in reversed((KEY_OPTION, DEV_OPTION, FEE_OPTION, TIMEOUT_OPTION, JSON_OPTION)):
        command = option(command)
    return command


def parse_ogpu(text: str) -> Amount:
    """An amount in OGPU (`1.5`) as base units, or a click error naming the problem."""
    try:
        return parse_amount(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def signer(key_path: Path | None, dev_account: int | None) -> PrivateKey:
    if (key_path is None) == (dev_account is None):
        raise click.UsageError("give exactly one of --key or --dev-account")
    if dev_account is not None:
        from ogpu_node.genesis import dev_account_key

        return dev_account_key(dev_account)
    assert key_path is not None
    return read_key_file(key_path)


def send(rpc: str, key: PrivateKey, payload: Payload, fee: str | None, wait: bool,
         timeout: float) -> TxReceipt:
    """Sign `payload` with the sender's next nonce and send it; wait for finality if `wait`.
    With no `fee`, the chain's least fee now."""
    # a bad fee fails before anything is asked of the node
    fee_units = None if fee is None else parse_ogpu(fee)
    return send_transaction(rpc, key, payload, fee=fee_units, wait=wait, timeout=timeout)


def report(result: Mapping[str, Any], as_json: bool) -> None:
    """Print a receipt; exit 1 when the transaction was rejected."""
    if as_json:
        emit(dict(result), True)
        if result.get("state") == "rejected":
            raise SystemExit(1)
        return
    state = result.get("state")
    if state == "finalized":
        click.echo(f"finalized in block {result.get('height')}: tx {result.get('hash')}")
    elif state == "pending":
        click.echo(f"submitted, not final yet: tx {result.get('hash')} "
                   "(check with `ogpu tx HASH`)")
    else:
        click.echo(f"{state}: {result.get('reason') or ''} tx {result.get('hash')}")
        raise SystemExit(1)
