"""Genesis files: the schema, its validation, and building one for a new network.

A genesis file is JSON (like CometBFT's genesis.json). Amounts are decimal strings of base units,
because OGPU amounts exceed the 2**53 integers JSON readers in other languages keep exactly.

    {
      "chain_id": "ogpu-devnet",
      "genesis_time_ms": 1764000000000,
      "params": {"min_fee": "1000", ..., "epoch_length": 100},
      "allocations": [{"address": "ogpu1...", "amount": "1000000000000"}],
      "validators": [{"name": "node0", "address": "ogpu1...", "public_key": "<hex>",
                      "stake": "10000000000000"}]
    }

`load_genesis` reports every problem it finds at once, each naming the field, in a `GenesisError`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ogpu_node.address import address_from_text, address_to_text
from ogpu_node.encoding import pack
from ogpu_node.errors import AddressError, OgpuError
from ogpu_node.hashing import digest
from ogpu_node.keys import PrivateKey, address_of
from ogpu_node.ledger import Params, State, make_genesis_state
from ogpu_node.ledger.params import FIRST_LATER_PARAM
from ogpu_node.types import MAX_SUPPLY, PUBKEY_LEN, Address, Hash32, format_amount

CHAIN_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
MAX_GENESIS_BYTES = 16 * 1024 * 1024
MAX_ALLOCATIONS = 100_000
MAX_VALIDATORS = 10_000
TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "genesis"


class GenesisError(OgpuError):
    """A genesis file that cannot be used; `problems` lists every reason found."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid genesis:\n  - " + "\n  - ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class GenesisValidator:
    name: str
    public_key: bytes
    stake: int

    @property
    def address(self) -> Address:
        return address_of(self.public_key)


@dataclass(frozen=True)
class Genesis:
    """A validated genesis document."""

    chain_id: str
    genesis_time_ms: int
    params: Params
    allocations: tuple[tuple[Address, int], ...]
    validators: tuple[GenesisValidator, ...]

    @property
    def hash(self) -> Hash32:
        """The id of the chain's height 0: the parent hash of block 1."""
        return digest(b"genesis", pack([
            self.chain_id, self.genesis_time_ms, self.params.to_fields(),
            [[a, amount] for a, amount in self.allocations],
            [[v.name, v.public_key, v.stake] for v in self.validators],
        ]))

    def state(self) -> State:
        """The ledger state at height 0."""
        return make_genesis_state(
            chain_id=self.chain_id, params=self.params, genesis_hash=self.hash,
            timestamp=self.genesis_time_ms, allocations=self.allocations,
            validators=[(v.public_key, v.stake) for v in self.validators],
        )

    def to_json(self) -> str:
        doc = {
            "chain_id": self.chain_id,
            "genesis_time_ms": self.genesis_time_ms,
            "params": {f.name: _amount_or_int(f.name, getattr(self.params, f.name))
                       for f in fields(Params)},
            "allocations": [{"address": address_to_text(a), "amount": str(amount)}
                            for a, amount in self.allocations],
            "validators": [{"name": v.name, "address": address_to_text(v.address),
                            "public_key": v.public_key.hex(), "stake": str(v.stake)}
                           for v in self.validators],
        }
        return json.dumps(doc, indent=2) + "\n"

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json())


_AMOUNT_PARAMS = {"min_fee", "initial_block_reward", "min_validator_stake", "provider_min_stake",
                  "verifier_silence_penalty", "verifier_wrong_accept_penalty", "bid_deposit_min",
                  "model_registration_fee", "gov_min_deposit"}


def _amount_or_int(name: str, value: int) -> str | int:
    return str(value) if name in _AMOUNT_PARAMS else value


# --- parsing and validation --------------------------------------------------------------------


class _Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, text: str) -> None:
        self.items.append(text)

    def amount(self, value: Any, where: str) -> int:
        if isinstance(value, str) and value.isdigit() and len(value) <= 20:
            number = int(value)
        elif type(value) is int:
            number = value
        else:
            self.add(f"{where}: expected a decimal string of base units, got {value!r}")
            return 0
        if not 0 <= number <= MAX_SUPPLY:
            self.add(f"{where}: {number} outside 0..{MAX_SUPPLY}")
            return 0
        return number


def _expect_keys(doc: Any, required: set[str], where: str, problems: _Problems,
                 optional: frozenset[str] = frozenset()) -> dict[str, Any]:
    if not isinstance(doc, dict):
        problems.add(f"{where}: expected an object")
        return {}
    missing = sorted(required - doc.keys())
    unknown = sorted(doc.keys() - required - optional)
    if missing:
        problems.add(f"{where}: missing {', '.join(missing)}")
    if unknown:
        problems.add(f"{where}: unknown field(s) {', '.join(unknown)}")
    return doc


def parse_genesis(doc: Any) -> Genesis:
    """Validate a parsed JSON document; raise `GenesisError` listing every problem."""
    p = _Problems()
    top = _expect_keys(doc, {"chain_id", "genesis_time_ms", "params", "allocations", "validators"},
                       "genesis", p)
    chain_id = top.get("chain_id")
    if not isinstance(chain_id, str) or not CHAIN_ID_PATTERN.match(chain_id):
        p.add(f"chain_id: {chain_id!r} must be 1-64 characters of a-z, 0-9 and '-'")
        chain_id = ""
    time_ms = top.get("genesis_time_ms")
    if type(time_ms) is not int or time_ms < 0:
        p.add(f"genesis_time_ms: expected a non-negative integer, got {time_ms!r}")
        time_ms = 0
    params = _parse_params(top.get("params", {}), p)
    allocations = _parse_allocations(top.get("allocations", []), p)
    validators = _parse_validators(top.get("validators", []), params, p)
    total = sum(a for _, a in allocations) + sum(v.stake for v in validators)
    if total > MAX_SUPPLY:
        p.add(f"allocations and stakes total {format_amount(total)} OGPU, above the "
              f"{format_amount(MAX_SUPPLY)} OGPU cap")
    elif total + params.max_emission() > MAX_SUPPLY:
        p.add(f"allocations and stakes ({format_amount(total)} OGPU) plus the emission schedule "
              f"({format_amount(params.max_emission())} OGPU) exceed the "
              f"{format_amount(MAX_SUPPLY)} OGPU cap")
    if p.items:
        raise GenesisError(p.items)
    return Genesis(chain_id, time_ms, params, tuple(allocations), tuple(validators))


def _parse_params(doc: Any, p: _Problems) -> Params:
    names = [f.name for f in fields(Params)]
    # parameters added after launch may be left out (their defaults): older files stay valid
    later = names.index(FIRST_LATER_PARAM)
    raw = _expect_keys(doc, set(names[:later]), "params", p, frozenset(names[later:]))
    values = {}
    for name in sorted(raw.keys() & set(names)):
        value = raw[name]
        if name in _AMOUNT_PARAMS:
            values[name] = p.amount(value, f"params.{name}")
        elif type(value) is int and value >= 0:
            values[name] = value
        else:
            p.add(f"params.{name}: expected a non-negative integer, got {value!r}")
    params = Params(**values)
    for problem in params.check():
        p.add(f"params: {problem}")
    return params


def _parse_allocations(doc: Any, p: _Problems) -> list[tuple[Address, int]]:
    if not isinstance(doc, list) or len(doc) > MAX_ALLOCATIONS:
        p.add(f"allocations: expected a list of at most {MAX_ALLOCATIONS} entries")
        return []
    out: list[tuple[Address, int]] = []
    seen: set[bytes] = set()
    for i, entry in enumerate(doc):
        where = f"allocations[{i}]"
        item = _expect_keys(entry, {"address", "amount"}, where, p)
        try:
            address = address_from_text(item.get("address", ""))
        except AddressError as exc:
            p.add(f"{where}.address: {exc}")
            continue
        if address in seen:
            p.add(f"{where}.address: {item['address']} is allocated twice")
        seen.add(address)
        amount = p.amount(item.get("amount"), f"{where}.amount")
        if amount == 0:
            p.add(f"{where}.amount: must be positive")
        out.append((address, amount))
    return out


def _parse_validators(doc: Any, params: Params, p: _Problems) -> list[GenesisValidator]:
    if not isinstance(doc, list) or not 1 <= len(doc) <= MAX_VALIDATORS:
        p.add(f"validators: expected a list of 1 to {MAX_VALIDATORS} validators")
        return []
    out: list[GenesisValidator] = []
    seen: set[bytes] = set()
    for i, entry in enumerate(doc):
        where = f"validators[{i}]"
        item = _expect_keys(entry, {"name", "address", "public_key", "stake"}, where, p)
        try:
            key = bytes.fromhex(item.get("public_key", ""))
            if len(key) != PUBKEY_LEN:
                raise ValueError
        except (ValueError, TypeError):
            p.add(f"{where}.public_key: expected {PUBKEY_LEN} bytes of hex")
            continue
        name = item.get("name", "")
        if not isinstance(name, str) or not 0 < len(name) <= 64:
            p.add(f"{where}.name: expected 1-64 characters")
            name = ""
        try:
            if address_from_text(item.get("address", "")) != address_of(key):
                p.add(f"{where}.address: does not match the public key")
        except AddressError as exc:
            p.add(f"{where}.address: {exc}")
        if key in seen:
            p.add(f"{where}.public_key: validator listed twice")
        seen.add(key)
        stake = p.amount(item.get("stake"), f"{where}.stake")
        if stake < params.min_validator_stake:
            p.add(f"{where}.stake: {format_amount(stake)} OGPU is below the minimum validator "
                  f"stake of {format_amount(params.min_validator_stake)} OGPU")
        out.append(GenesisValidator(name, key, stake))
    return out


def load_genesis(path: Path) -> Genesis:
    """Read and validate a genesis file."""
    try:
        if path.stat().st_size > MAX_GENESIS_BYTES:
            raise GenesisError([f"{path}: larger than {MAX_GENESIS_BYTES} bytes"])
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise GenesisError([f"{path}: {exc.strerror}"]) from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GenesisError([f"{path}: not valid JSON ({exc})"]) from exc
    return parse_genesis(doc)


# --- building ----------------------------------------------------------------------------------


def dev_account_key(index: int) -> PrivateKey:
    """The well-known devnet account `index` (like anvil's): never use these keys for real funds."""
    return PrivateKey.from_seed(digest(b"ogpu/devnet-account", index.to_bytes(4, "big")))


def load_template(path: Path | None = None) -> dict[str, Any]:
    """A genesis template: a genesis document whose validators are filled in by `build_genesis`."""
    path = path or TEMPLATE_DIR / "devnet.json"
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise GenesisError([f"template {path}: {exc}"]) from exc
    if not isinstance(doc, dict):
        raise GenesisError([f"template {path}: expected a JSON object"])
    return doc


def build_genesis(
    template: dict[str, Any],
    validators: list[tuple[str, bytes]],
    *,
    genesis_time_ms: int,
    chain_id: str | None = None,
    dev_accounts: int = 0,
    dev_balance: int | None = None,
    validator_stake: int | None = None,
    validator_balance: int = 0,
) -> Genesis:
    """Fill a template with validators (name, public key) and dev accounts, then validate it.

    `validator_balance` also funds each validator's account (for fees and a provider bond)."""
    doc = dict(template)
    if chain_id is not None:
        doc["chain_id"] = chain_id
    doc["genesis_time_ms"] = genesis_time_ms
    problems = _Problems()
    params = _parse_params(doc.get("params", {}), problems)
    if problems.items:
        raise GenesisError(problems.items)
    stake = validator_stake if validator_stake is not None else params.min_validator_stake
    doc["validators"] = [
        {"name": name, "address": address_to_text(address_of(key)), "public_key": key.hex(),
         "stake": str(stake)}
        for name, key in validators
    ]
    allocations = list(doc.get("allocations", []))
    balance = dev_balance if dev_balance is not None else 1_000_000 * 10**9
    allocations += [{"address": address_to_text(dev_account_key(i).address), "amount": str(balance)}
                    for i in range(dev_accounts)]
    if validator_balance:
        allocations += [{"address": address_to_text(address_of(key)),
                         "amount": str(validator_balance)} for _, key in validators]
    doc["allocations"] = allocations
    return parse_genesis(doc)
