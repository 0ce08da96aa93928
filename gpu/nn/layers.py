"""Forward and backward passes of every layer kind of `ogpu_node.workloads.net`, over a batch.

Each op takes its parameters `p` (views into the network's flat parameter buffer) and an input
batch, and returns its output and what its backward pass needs (`cache`). Backward writes the
parameters' gradients into `g` (views into the flat gradient buffer; every element is written,
so the buffer needs no zeroing) and returns the input's gradient when `need_dx`. No op writes
into its input, so an output may alias it (flatten, dropout at evaluation).

Convolution is im2col (one strided copy per kernel offset) then one matmul; its backward adds
the columns back offset by offset, so every sum has a fixed order (no scatter with atomics).
An embedding's gradient is the product of the one-hot rows of the batch's distinct ids
(`xp.unique`, sorted) with the output's gradient: deterministic on every device, where a
scatter-add on a GPU is not.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

from gpu.device import Array
from ogpu_node.workloads.net import LAYER_NORM_EPS, Layer, LayerKind, Shape

GELU_C = math.sqrt(2.0 / math.pi)
GELU_A = 0.044715


class Op(Protocol):
    """One layer over a batch (rows along the first axis)."""

    def forward(self, p: list[Array], x: Array, mask: Array | None) -> tuple[Array, Any]:
        """The output and the cache; `mask` is dropout's (None: evaluation)."""
        ...

    def backward(self, p: list[Array], g: list[Array], cache: Any, dy: Array,
                 need_dx: bool) -> Array | None:
        ...


class Dense:
    def __init__(self, xp: Any) -> None:
        self.xp = xp

    def forward(self, p: list[Array], x: Array, mask: Array | None) -> tuple[Array, Any]:
        w, b = p
        x2 = x.reshape(-1, w.shape[0])
        y = x2 @ w
        y += b
        return y.reshape(*x.shape[:-1], w.shape[1]), x2

    def backward(self, p: list[Array], g: list[Array], cache: Any, dy: Array,
                 need_dx: bool) -> Array | None:
        w, _ = p
        x2 = cache
        dy2 = dy.reshape(-1, w.shape[1])
        self.xp.matmul(x2.T, dy2, out=g[0])
        g[1][...] = dy2.sum(axis=0)
        if not need_dx:
            return None
        return (dy2 @ w.T).reshape(*dy.shape[:-1], w.shape[0])


def _window(k_offset: int, stride: int, count: int) -> slice:
    """The input positions that kernel offset `k_offset` meets over `count` output positions."""
    return slice(k_offset, k_offset + stride * (count - 1) + 1, stride)


class Conv2d:
    def __init__(self, xp: Any, kernel: int, stride: int, padding: int) -> None:
        self.xp, self.k, self.s, self.pad = xp, kernel, stride, padding

    def _padded(self, x: Array) -> Array:
        if not self.pad:
            return x
        n, c, h, w = x.shape
        pad = self.pad
        out = self.xp.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=x.dtype)
        out[:, :, pad:pad + h, pad:pad + w] = x
        return out

    def forward(self, p: list[Array], x: Array, mask: Array | None) -> tuple[Array, Any]:
        w, b = p
        k, s = self.k, self.s
        n, c = x.shape[:2]
        xpad = self._padded(x)
        oh = (xpad.shape[2] - k) // s + 1
        ow = (xpad.shape[3] - k) // s + 1
        cols = self.xp.empty((n, oh, ow, c, k, k), dtype=x.dtype)
        for i in range(k):
            for j in range(k):
                cols[..., i, j] = xpad[:, :, _window(i, s, oh), _window(j, s, ow)].transpose(
                    0, 2, 3, 1)
        del xpad
        cols2 = cols.reshape(n * oh * ow, c * k * k)
        y2 = cols2 @ w.reshape(w.shape[0], -1).T
        y2 += b
        y = self.xp.ascontiguousarray(y2.reshape(n, oh, ow, w.shape[0]).transpose(0, 3, 1, 2))
        return y, (cols2, x.shape)

    def backward(self, p: list[Array], g: list[Array], cache: Any, dy: Array,
                 need_dx: bool) -> Array | None:
        w, _ = p
        cols2, x_shape = cache
        n, out_c, oh, ow = dy.shape
        dy2 = self.xp.ascontiguousarray(dy.transpose(0, 2, 3, 1)).reshape(-1, out_c)
        self.xp.matmul(dy2.T, cols2, out=g[0].reshape(out_c, -1))
        g[1][...] = dy2.sum(axis=0)
        if not need_dx:
            return None
        k, s, pad = self.k, self.s, self.pad
        c, h, width = x_shape[1:]
        dcols = (dy2 @ w.reshape(out_c, -1)).reshape(n, oh, ow, c, k, k)
        dx = self.xp.zeros((n, c, h + 2 * pad, width + 2 * pad), dtype=dy.dtype)
        for i in range(k):
            for j in range(k):
                dx[:, :, _window(i, s, oh), _window(j, s, ow)] += dcols[..., i, j].transpose(
                    0, 3, 1, 2)
        if pad:
            dx = self.xp.ascontiguousarray(dx[:, :, pad:pad + h, pad:pad + width])
        return dx


class Pool:
    """Max or average pooling over k x k windows every `stride` positions, no padding."""

    def __init__(self, xp: Any, kernel: int, stride: int, is_max: bool) -> None:
        self.xp, self.k, self.s, self.is_max = xp, kernel, stride, is_max

    def _windows(self, shape: Shape) -> list[tuple[slice, slice]]:
        oh = (shape[2] - self.k) // self.s + 1
        ow = (shape[3] - self.k) // self.s + 1
        return [(_window(i, self.s, oh), _window(j, self.s, ow))
                for i in range(self.k) for j in range(self.k)]

    def forward(self, p: list[Array], x: Array, mask: Array | None) -> tuple[Array, Any]:
        xp = self.xp
        windows = self._windows(x.shape)
        rows, cols = windows[0]
        y = x[:, :, rows, cols].copy()
        if not self.is_max:
            for rows, cols in windows[1:]:
                y += x[:, :, rows, cols]
            y *= 1.0 / len(windows)
            return y, (x.shape, None)
        arg = xp.zeros(y.shape, dtype=xp.int16)  # which window offset holds the maximum
        for n, (rows, cols) in enumerate(windows[1:], start=1):
            v = x[:, :, rows, cols]
            better = v > y  # the first maximum wins a tie
            xp.copyto(y, v, where=better)
            arg[better] = n
        return y, (x.shape, arg)

    def backward(self, p: list[Array], g: list[Array], cache: Any, dy: Array,
                 need_dx: bool) -> Array | None:
        if not need_dx:
            return None
        x_shape, arg = cache
        dx = self.xp.zeros(x_shape, dtype=dy.dtype)
        windows = self._windows(x_shape)
        share = dy if self.is_max else dy * (1.0 / len(windows))
        for n, (rows, cols) in enumerate(windows):
            dx[:, :, rows, cols] += share * (arg == n) if self.is_max else share
        return dx


class Flatten:
    def forward(self, p: list[Array], x: Array, mask: Array | None) -> tuple[Array, Any]:
        return x.reshape(x.shape[0], -1), x.shape

    def backward(self, p: list[Array], g: list[Array], cache: Any, dy: Array,
                 need_dx: bool) -> Array | None:
        return dy.reshape(cache) if need_dx else None


class LayerNorm:
    """Normalises the last axis: y = (x - mean) / sqrt(var + eps) * w + b."""

    def __init__(self, xp: Any) -> None:
        self.xp = xp

    def forward(self, p: list[Array], x: Array, mask: Array | None) -> tuple[Array, Any]:
        w, b = p
        xhat = x - x.mean(axis=-1, keepdims=True)
        var = (xhat * xhat).mean(axis=-1, keepdims=True)
        var += LAYER_NORM_EPS
        rstd = 1.0 / self.xp.sqrt(var)
        xhat *= rstd
        y = xhat * w
        y += b
        return y, (xhat, rstd)

    def backward(self, p: list[Array], g: list[Array], cache: Any, dy: Array,
                 need_dx: bool) -> Array | None:
        w, _ = p
        xhat, rstd = cache
        d = w.shape[0]
        g[0][...] = (dy * xhat).reshape(-1, d).sum(axis=0)
        g[1][...] = dy.reshape(-1, d).sum(axis=0)
        if not need_dx:
            return None
        dxhat = dy * w
        dx = dxhat - dxhat.mean(axis=-1, keepdims=True)
        dx -= xhat * (dxhat * xhat).mean(axis=-1, keepdims=True)
        dx *= rstd
        return dx


class Embedding:
    """Rows of the table for integer ids (whole-number floats) in the input."""

    def __init__(self, xp: Any) -> None:
        self.xp = xp

    def forward(self, p: list[Array], x: Array, mask: Array | None) -> tuple[Array, Any]:
        ids = x.astype(self.xp.int64)
        return p[0][ids], ids

    def backward(self, p: list[Array], g: list[Array], cache: Any, dy: Array,
                 need_dx: bool) -> Array | None:
        xp = self.xp
        ids = cache.reshape(-1)
        dy2 = dy.reshape(ids.shape[0], -1)
        distinct, inverse = xp.unique(ids, return_inverse=True)
        onehot = xp.zeros((distinct.shape[0], ids.shape[0]), dtype=dy.dtype)
        onehot[inverse.reshape(-1), xp.arange(ids.shape[0])] = 1
        g[0][...] = 0
        g[0][distinct] = onehot @ dy2
        return None  # ids have no gradient


class Dropout:
    """x * mask while training (the mask holds 0 or 1 / (1 - rate)); the identity else."""

    def forward(self, p: list[Array], x: Array, mask: Array | None) -> tuple[Array, Any]:
        return (x if mask is None else x * mask), mask

    def backward(self, p: list[Array], g: list[Array], cache: Any, dy: Array,
                 need_dx: bool) -> Array | None:
        if not need_dx:
            return None
        return dy if cache is None else dy * cache


class Activation:
    def __init__(self, xp: Any, kind: LayerKind) -> None:
        self.xp, self.kind = xp, kind

    def forward(self, p: list[Array], x: Array, mask: Array | None) -> tuple[Array, Any]:
        xp = self.xp
        if self.kind is LayerKind.RELU:
            y = xp.maximum(x, 0)
            return y, y
        if self.kind is LayerKind.TANH:
            y = xp.tanh(x)
            return y, y
        if self.kind is LayerKind.SIGMOID:
            y = xp.tanh(x * 0.5)  # 1 / (1 + exp(-x)) without exp's overflow
            y *= 0.5
            y += 0.5
            return y, y
        t = xp.tanh((x * x * GELU_A + 1.0) * x * GELU_C)  # GELU, tanh approximation
        y = (t + 1.0) * x * 0.5
        return y, (x, t)

    def backward(self, p: list[Array], g: list[Array], cache: Any, dy: Array,
                 need_dx: bool) -> Array | None:
        if not need_dx:
            return None
        if self.kind is LayerKind.RELU:
            return dy * (cache > 0)
        if self.kind is LayerKind.TANH:
            return dy * (1.0 - cache * cache)
        if self.kind is LayerKind.SIGMOID:
            return dy * cache * (1.0 - cache)
        x, t = cache
        x2 = x * x
        slope = (1.0 - t * t) * x * (x2 * (3 * GELU_A) + 1.0) * (0.5 * GELU_C)
        slope += (t + 1.0) * 0.5
        slope *= dy
        return slope


def make_op(layer: Layer, xp: Any) -> Op:
    """The op of `layer` on the array module `xp`."""
    kind = layer.kind
    if kind is LayerKind.DENSE:
        return Dense(xp)
    if kind is LayerKind.CONV2D:
        return Conv2d(xp, layer.arg("kernel"), layer.arg("stride"), layer.arg("padding"))
    if kind in (LayerKind.MAX_POOL, LayerKind.AVG_POOL):
        return Pool(xp, layer.arg("kernel"), layer.arg("stride"), kind is LayerKind.MAX_POOL)
    if kind is LayerKind.FLATTEN:
        return Flatten()
    if kind is LayerKind.LAYER_NORM:
        return LayerNorm(xp)
    if kind is LayerKind.EMBEDDING:
        return Embedding(xp)
    if kind is LayerKind.DROPOUT:
        return Dropout()
    return Activation(xp, kind)
