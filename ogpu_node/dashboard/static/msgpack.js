// The canonical encoding (ogpu_node/encoding.py) in the browser: msgpack as msgpack-python's
// packb(use_bin_type=True) writes it, for the only types the protocol uses: unsigned integers
// (Number up to 2^53 - 1, or BigInt up to 2^64 - 1), byte strings (Uint8Array), text and arrays.
// Each value has exactly one encoding: the shortest header that holds it.

const U64_MAX = (1n << 64n) - 1n;

export class EncodeError extends Error {}

export function pack(value) {
  const out = [];
  write(out, value, 0);
  return Uint8Array.from(out);
}

function write(out, value, depth) {
  if (depth > 8) throw new EncodeError("nesting deeper than 8");
  if (typeof value === "number" || typeof value === "bigint") {
    writeUint(out, value);
  } else if (typeof value === "string") {
    const bytes = new TextEncoder().encode(value);
    const n = bytes.length;
    if (n <= 31) out.push(0xa0 | n);
    else if (n <= 0xff) out.push(0xd9, n);
    else if (n <= 0xffff) out.push(0xda, ...be(n, 2));
    else out.push(0xdb, ...be(n, 4));
    pushAll(out, bytes);
  } else if (value instanceof Uint8Array) {
    const n = value.length;
    if (n <= 0xff) out.push(0xc4, n);
    else if (n <= 0xffff) out.push(0xc5, ...be(n, 2));
    else out.push(0xc6, ...be(n, 4));
    pushAll(out, value);
  } else if (Array.isArray(value)) {
    const n = value.length;
    if (n <= 15) out.push(0x90 | n);
    else if (n <= 0xffff) out.push(0xdc, ...be(n, 2));
    else out.push(0xdd, ...be(n, 4));
    for (const item of value) write(out, item, depth + 1);
  } else {
    throw new EncodeError(`cannot encode ${typeof value}`);
  }
}

function writeUint(out, value) {
  if (typeof value === "number" && !(Number.isSafeInteger(value) && value >= 0)) {
    throw new EncodeError(`not an unsigned safe integer: ${value}`);
  }
  const n = BigInt(value);
  if (n < 0n || n > U64_MAX) throw new EncodeError(`integer out of range: ${value}`);
  if (n <= 0x7fn) out.push(Number(n));
  else if (n <= 0xffn) out.push(0xcc, Number(n));
  else if (n <= 0xffffn) out.push(0xcd, ...be(n, 2));
  else if (n <= 0xffffffffn) out.push(0xce, ...be(n, 4));
  else out.push(0xcf, ...be(n, 8));
}

function be(value, width) {
  let n = BigInt(value);
  const bytes = new Array(width);
  for (let i = width - 1; i >= 0; i--) {
    bytes[i] = Number(n & 0xffn);
    n >>= 8n;
  }
  return bytes;
}

function pushAll(out, bytes) {
  for (const b of bytes) out.push(b);
}
