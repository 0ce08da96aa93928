// Keys, addresses and transactions in the browser, byte for byte as the node makes them:
// ogpu_node/keys.py (key files, the signing prefix), ogpu_node/hashing.py (digest),
// ogpu_node/address.py (bech32m) and ogpu_node/ledger/tx.py (the envelope). The private key is
// imported into WebCrypto as a non-extractable key and never sent anywhere.

import { pack } from "./msgpack.js";

export const SIG_DOMAIN = "ogpu/sig/v1";
export const SIGN_KIND_TX = "tx";
export const KEY_FILE_TYPE = "ogpu/ed25519";
export const TX_KIND = {
  TRANSFER: 1, CANCEL_TASK: 11, CLOSE_POOL: 18, PROPOSE: 27, VOTE: 28, TOP_UP_POOL: 29,
};
export const VOTE_OPTION = { yes: 1, no: 2, abstain: 3 }; // ledger/governance/records.py
export const DEFAULT_FEE = 1000; // base units: the CLI's default --fee, 0.000001 OGPU
// Governance may raise min_fee up to 1 OGPU (ledger/governance/bounds.py); the page pays what
// the chain asks but never more than that, whatever a node says.
export const MAX_FEE = 1_000_000_000;
const PKCS8_ED25519_PREFIX = hexToBytes("302e020100300506032b657004220420");

export class KeyFileError extends Error {}
export class AmountError extends Error {}

export function hexToBytes(hex) {
  if (typeof hex !== "string" || hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) {
    throw new KeyFileError("not hex");
  }
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(i * 2, 2), 16);
  return out;
}

export function bytesToHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** SHA-256 of len(tag) || tag || data (hashing.digest). */
export async function digest(tag, data) {
  const t = new TextEncoder().encode(tag);
  const hash = await crypto.subtle.digest("SHA-256", concat(Uint8Array.of(t.length), t, data));
  return new Uint8Array(hash);
}

export function signingPrefix(chainId, kind) {
  return pack([SIG_DOMAIN, chainId, kind]);
}

// --- addresses: bech32m with the prefix "ogpu" (BIP-350) ---------------------------------------

const CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";
const GEN = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];
const BECH32M_CONST = 0x2bc830a3;

function polymod(values) {
  let chk = 1;
  for (const v of values) {
    const top = chk >>> 25;
    chk = (((chk & 0x1ffffff) << 5) ^ v) >>> 0;
    for (let i = 0; i < 5; i++) if ((top >>> i) & 1) chk = (chk ^ GEN[i]) >>> 0;
  }
  return chk;
}

export function addressToText(address, hrp = "ogpu") {
  const data = [];
  let acc = 0;
  let bits = 0;
  for (const b of address) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      data.push((acc >>> bits) & 31);
    }
    acc &= (1 << bits) - 1;
  }
  if (bits) data.push((acc << (5 - bits)) & 31);
  const expanded = [...[...hrp].map((c) => c.charCodeAt(0) >> 5), 0,
    ...[...hrp].map((c) => c.charCodeAt(0) & 31)];
  const poly = (polymod([...expanded, ...data, 0, 0, 0, 0, 0, 0]) ^ BECH32M_CONST) >>> 0;
  const checksum = [0, 1, 2, 3, 4, 5].map((i) => (poly >>> (5 * (5 - i))) & 31);
  return hrp + "1" + [...data, ...checksum].map((d) => CHARSET[d]).join("");
}

export async function addressOf(publicKey) {
  return (await digest("address", publicKey)).slice(0, 20);
}

// --- key files ----------------------------------------------------------------------------------

/**
 * A signer from the text of a key file the CLI writes ({type, address, public_key, private_key}).
 * The seed is imported as PKCS#8 into a non-extractable WebCrypto key; the file's public key and
 * address must match it (checked by signing and verifying a probe).
 */
export async function loadKeyFile(text) {
  let doc;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new KeyFileError("not a key file (not JSON)");
  }
  if (!doc || doc.type !== KEY_FILE_TYPE) throw new KeyFileError(`not an ${KEY_FILE_TYPE} key file`);
  const seed = hexToBytes(String(doc.private_key ?? ""));
  const publicKey = hexToBytes(String(doc.public_key ?? ""));
  if (seed.length !== 32 || publicKey.length !== 32) throw new KeyFileError("malformed key file");
  const privateKey = await crypto.subtle.importKey(
    "pkcs8", concat(PKCS8_ED25519_PREFIX, seed), { name: "Ed25519" }, false, ["sign"]);
  seed.fill(0);
  const verifier = await crypto.subtle.importKey("raw", publicKey, { name: "Ed25519" }, false,
    ["verify"]);
  const probe = new TextEncoder().encode("ogpu dashboard key check");
  const probeSig = await crypto.subtle.sign({ name: "Ed25519" }, privateKey, probe);
  if (!(await crypto.subtle.verify({ name: "Ed25519" }, verifier, probeSig, probe))) {
    throw new KeyFileError("the public key does not match the private key");
  }
  const address = addressToText(await addressOf(publicKey));
  if (doc.address !== address) throw new KeyFileError("the address does not match the key");
  return { privateKey, publicKey, address };
}

/** A signer from a raw 32-byte seed (tests compare the encoding with Python's). */
export async function signerFromSeed(seed) {
  const privateKey = await crypto.subtle.importKey(
    "pkcs8", concat(PKCS8_ED25519_PREFIX, seed), { name: "Ed25519" }, true, ["sign"]);
  const jwk = await crypto.subtle.exportKey("jwk", privateKey);
  const b64 = jwk.x.replace(/-/g, "+").replace(/_/g, "/");
  const publicKey = Uint8Array.from(atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4)),
    (c) => c.charCodeAt(0));
  return { privateKey, publicKey, address: addressToText(await addressOf(publicKey)) };
}

// --- transactions -------------------------------------------------------------------------------

/**
 * Sign and encode a transaction (ledger/tx.py sign_transaction): the signature covers
 * signingPrefix(chainId, "tx") || pack([chainId, senderKey, nonce, fee, kind, payload]).
 * Returns {encoded (bytes), hex, hash (hex)}.
 */
export async function signTransaction(signer, { chainId, nonce, fee, kind, payload }) {
  const body = [chainId, signer.publicKey, nonce, fee, kind, payload];
  const signingBytes = pack(body);
  const signature = new Uint8Array(await crypto.subtle.sign(
    { name: "Ed25519" }, signer.privateKey, concat(signingPrefix(chainId, SIGN_KIND_TX), signingBytes)));
  const encoded = pack([...body, signature]);
  const hash = bytesToHex(await digest("tx", signingBytes));
  return { encoded, hex: bytesToHex(encoded), hash };
}

export function cancelTaskPayload(taskIdHex) {
  return pack([hexToBytes(taskIdHex)]);
}

export function closePoolPayload(poolIdHex) {
  return pack([hexToBytes(poolIdHex)]);
}

export function transferPayload(toAddressBytes, amount) {
  return pack([toAddressBytes, amount]);
}

/** TOP_UP_POOL: the owner adds `amount` base units (BigInt) to its open pool's escrow. */
export function topUpPoolPayload(poolIdHex, amount) {
  return pack([hexToBytes(poolIdHex), amount]);
}

/** PROPOSE: `changes` as [[name, value], ...] (values in the parameter's unit), a deposit. */
export function proposePayload(changes, deposit, title = "") {
  return pack([changes, deposit, title]);
}

/** VOTE on proposal number `proposalId` with `option` ("yes", "no" or "abstain"). */
export function votePayload(proposalId, option) {
  const code = VOTE_OPTION[option];
  if (!code) throw new AmountError(`no vote option ${option}`);
  return pack([proposalId, code]);
}

const UNITS_PER_OGPU = 1000000000n;
const OGPU_DECIMALS = 9;

/** "1.5" (OGPU, at most 9 decimals, under 10^10 whole: fits in a uint64) as base units (BigInt). */
export function parseOgpu(text) {
  const match = /^\s*(\d{1,10})(?:\.(\d{1,9}))?\s*$/.exec(String(text));
  if (!match) throw new AmountError(`not an amount in OGPU: "${text}" (at most 9 decimals)`);
  const frac = (match[2] ?? "").padEnd(OGPU_DECIMALS, "0");
  return BigInt(match[1]) * UNITS_PER_OGPU + BigInt(frac);
}
