"""A network of the client's own as TOML (`ogpu task submit --spec net.toml`), read into a
`NetTrainSpec` (workload kind 5, `train_net`).

The schema (every key but `input_shape`, `layers`, `batch`, `steps` and `[optimizer]` has a
default; unknown keys are refused):

```toml
input_shape = [1, 28, 28]    # one row of "x": (C, H, W) for convolutions, (T,) for embeddings
loss = "cross_entropy"       # or "mse" (then the inputs file has "targets", not "labels")
seed = 7                     # initial weights (unless --init), the validation split,
                             # minibatches and dropout masks; default 0
batch = 64                   # rows per step
steps = 2000
checkpoint_every = 100       # default: min(steps, 200)
val_split = 0.1              # share of the rows held out for validation, 0.0001..0.5
                             # (default 0.1); n_samples is the number of rows of "x"

[optimizer]
kind = "adamw"               # sgd | adam | adamw
lr = 0.001                   # every rate is a decimal with at most 6 decimals
beta1 = 0.9                  # adam/adamw (default 0.9); sgd: momentum = 0.9 (default 0)
beta2 = 0.999                # adam/adamw (default 0.999)
weight_decay = 0.01          # default 0

[schedule]                   # optional; default: constant
kind = "cosine"              # constant | step | cosine
warmup_steps = 100           # linear warm-up (default 0)
floor = 0.0001               # cosine: the final rate (default 0)
# every = 500                # step: multiply the rate by gamma every this many steps
# gamma = 0.5

[[layers]]
kind = "conv2d"
channels = 16
kernel = 3
padding = 1                  # default 0; stride default 1
[[layers]]
kind = "relu"
[[layers]]
kind = "max_pool"            # and avg_pool: kernel, stride (default: the kernel)
kernel = 2
[[layers]]
kind = "flatten"
[[layers]]
kind = "dropout"
rate = 0.1
[[layers]]
kind = "dense"
units = 10
```

Layer kinds and their keys: `dense` (units), `conv2d` (channels, kernel, stride = 1,
padding = 0), `max_pool` and `avg_pool` (kernel, stride = kernel), `flatten`, `layer_norm`,
`embedding` (vocab, dim; first layer only), `dropout` (rate, below 1), and the activations
`relu`, `gelu`, `tanh`, `sigmoid`. The conventions (channels first, dense on the last axis, ...)
are `ogpu_node.workloads.net`'s. The same file may hold the task's terms (`max_price`,
`min_benchmark`, `exec_s`, `ttl_s`) and `inputs`/`init` paths relative to it, before its first
table (TOML puts a key that follows `[optimizer]` into that table); flags win.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

import click

from ogpu_node.workloads.net import (
    BPS,
    LAYER_ARGS,
    MICROS,
    Layer,
    LayerKind,
    LossKind,
    NetTrainSpec,
    Optimizer,
    OptimizerKind,
    Schedule,
    ScheduleKind,
)
from ogpu_node.workloads.spec import MAX_CHECKPOINT_INTERVAL

NET_KEYS = ("input_shape", "loss", "seed", "batch", "steps", "checkpoint_every", "val_split",
            "optimizer", "schedule", "layers")
DEFAULT_VAL_SPLIT = "0.1"
ADAM_BETAS = ("0.9", "0.999")
LAYER_DEFAULTS: dict[LayerKind, dict[str, int]] = {
    LayerKind.CONV2D: {"stride": 1, "padding": 0},
}
LAYER_KEYS: dict[LayerKind, tuple[str, ...]] = {
    **LAYER_ARGS, LayerKind.DROPOUT: ("rate",)}
"""The keys of each layer kind in a file (dropout's rate is a fraction, not basis points)."""


def _whole(value: object, what: str, least: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise click.UsageError(f"{what}: expected a whole number >= {least}, got {value!r}")
    return value


def _scaled(value: object, what: str, scale: int) -> int:
    """A decimal (`0.001`, `1e-3`, `2`) as a whole number of 1/`scale`; refused when it has
    more precision than that."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise click.UsageError(f"{what}: expected a number, got {value!r}")
    try:
        # the shortest text of a float is what the user wrote: 0.001, not 0.001000000000000000020
        scaled = Decimal(repr(value) if isinstance(value, float) else str(value)) * scale
    except InvalidOperation:
        raise click.UsageError(f"{what}: expected a number, got {value!r}") from None
    if not scaled.is_finite() or scaled != scaled.to_integral_value() or scaled < 0:
        digits = len(str(scale)) - 1
        raise click.UsageError(f"{what}: expected a number >= 0 with at most {digits} "
                               f"decimals, got {value!r}")
    return int(scaled)


def _micros(value: object, what: str) -> int:
    return _scaled(value, what, MICROS)


def _table(value: object, what: str, keys: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise click.UsageError(f"{what}: expected a table ([{what}]), got {value!r}")
    unknown = sorted(set(value) - set(keys))
    if unknown:
        raise click.UsageError(f"{what}: unknown key(s) {', '.join(unknown)} (expected "
                               f"{', '.join(keys)})")
    return value


def _choice(value: object, what: str, choices: dict[str, Any]) -> Any:
    if value not in choices:
        raise click.UsageError(f"{what}: expected one of {', '.join(choices)}, got {value!r}")
    return choices[value]


def _names(enum: Any) -> dict[str, Any]:
    return {member.name.lower(): member for member in enum}


def parse_layer(value: object, index: int) -> Layer:
    """One `[[layers]]` table as a `Layer`."""
    what = f"layers[{index}]"
    if not isinstance(value, dict):
        raise click.UsageError(f"{what}: expected a table ([[layers]]), got {value!r}")
    kind = _choice(value.get("kind"), f"{what}.kind", _names(LayerKind))
    keys = LAYER_KEYS[kind]
    fields = dict(_table(value, f"{what} ({kind.name.lower()})", ("kind", *keys)))
    fields.pop("kind")
    defaults: dict[str, int] = dict(LAYER_DEFAULTS.get(kind, {}))
    if kind in (LayerKind.MAX_POOL, LayerKind.AVG_POOL) and "kernel" in fields:
        defaults["stride"] = _whole(fields["kernel"], f"{what}.kernel", 1)
    missing = [k for k in keys if k not in fields and k not in defaults]
    if missing:
        raise click.UsageError(f"{what} ({kind.name.lower()}): missing {', '.join(missing)}")
    if kind is LayerKind.DROPOUT:
        return Layer(kind, (_scaled(fields["rate"], f"{what}.rate", BPS),))
    return Layer(kind, tuple(_whole(fields.get(k, defaults.get(k)), f"{what}.{k}")
                             for k in keys))


def parse_optimizer(value: object) -> Optimizer:
    """The `[optimizer]` table."""
    if not isinstance(value, dict):
        raise click.UsageError(f"optimizer: expected a table ([optimizer]) with kind and lr, "
                               f"got {value!r}")
    kind = _choice(value.get("kind"), "optimizer.kind", _names(OptimizerKind))
    if kind is OptimizerKind.SGD:
        fields = _table(value, "optimizer (sgd)", ("kind", "lr", "momentum", "weight_decay"))
        beta1, beta2 = fields.get("momentum", 0), 0
    else:
        fields = _table(value, f"optimizer ({kind.name.lower()})",
                        ("kind", "lr", "beta1", "beta2", "weight_decay"))
        beta1, beta2 = fields.get("beta1", ADAM_BETAS[0]), fields.get("beta2", ADAM_BETAS[1])
    if "lr" not in fields:
        raise click.UsageError("optimizer: missing lr (the learning rate, e.g. 0.001)")
    return Optimizer(kind, _micros(fields["lr"], "optimizer.lr"),
                     _micros(beta1, "optimizer.momentum" if kind is OptimizerKind.SGD
                             else "optimizer.beta1"),
                     _micros(beta2, "optimizer.beta2"),
                     _micros(fields.get("weight_decay", 0), "optimizer.weight_decay"))


def parse_schedule(value: object) -> Schedule:
    """The `[schedule]` table (absent: a constant rate)."""
    if value is None:
        return Schedule()
    if not isinstance(value, dict):
        raise click.UsageError(f"schedule: expected a table ([schedule]), got {value!r}")
    kind = _choice(value.get("kind", "constant"), "schedule.kind", _names(ScheduleKind))
    keys = {ScheduleKind.CONSTANT: (), ScheduleKind.STEP: ("every", "gamma"),
            ScheduleKind.COSINE: ("floor",)}[kind]
    fields = _table(value, f"schedule ({kind.name.lower()})", ("kind", "warmup_steps", *keys))
    if kind is ScheduleKind.STEP and not {"every", "gamma"} <= set(fields):
        raise click.UsageError("schedule (step): needs every and gamma")
    return Schedule(kind, _whole(fields.get("warmup_steps", 0), "schedule.warmup_steps"),
                    _whole(fields.get("every", 0), "schedule.every"),
                    _micros(fields.get("gamma", 0), "schedule.gamma"),
                    _micros(fields.get("floor", 0), "schedule.floor"))


def parse_net(fields: dict[str, Any], n_samples: int, inputs: bytes, init: bytes = b""
              ) -> NetTrainSpec:
    """The `NetTrainSpec` of a network file's `fields` (task terms already taken out) for an
    inputs file of `n_samples` rows with id `inputs`; a usage error naming every problem."""
    unknown = sorted(set(fields) - set(NET_KEYS))
    if unknown:
        raise click.UsageError(f"unknown key(s) for a network: {', '.join(unknown)} (expected "
                               f"{', '.join(NET_KEYS)} and the task's terms)")
    missing = [k for k in ("input_shape", "layers", "batch", "steps", "optimizer")
               if k not in fields]
    if missing:
        raise click.UsageError(f"missing key(s) for a network: {', '.join(missing)}")
    shape, layers = fields["input_shape"], fields["layers"]
    if not isinstance(shape, list) or not shape:
        raise click.UsageError(f"input_shape: expected a list like [1, 28, 28], got {shape!r}")
    if not isinstance(layers, list) or not layers:
        raise click.UsageError("layers: expected one [[layers]] table per layer")
    steps = _whole(fields["steps"], "steps", 1)
    spec = NetTrainSpec(
        seed=_whole(fields.get("seed", 0), "seed"),
        input_shape=tuple(_whole(d, "input_shape", 1) for d in shape),
        layers=tuple(parse_layer(layer, i) for i, layer in enumerate(layers)),
        loss=_choice(fields.get("loss", "cross_entropy"), "loss", _names(LossKind)),
        optimizer=parse_optimizer(fields["optimizer"]),
        schedule=parse_schedule(fields.get("schedule")),
        n_samples=n_samples,
        val_bps=_scaled(fields.get("val_split", DEFAULT_VAL_SPLIT), "val_split", BPS),
        batch=_whole(fields["batch"], "batch", 1), steps=steps,
        checkpoint_every=_whole(fields.get("checkpoint_every",
                                           min(steps, MAX_CHECKPOINT_INTERVAL)),
                                "checkpoint_every", 1),
        inputs=inputs, init=init)
    problems = spec.problems()
    if problems:
        raise click.UsageError("network: " + "; ".join(problems))
    return spec
