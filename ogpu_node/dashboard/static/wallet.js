// The page's signer: the key file the user loads (tx.js keeps the key in WebCrypto), the nonce
// of its next transaction, and sending what it signs. Shared by the pages that send
// transactions (customer, governance).

import { DEFAULT_FEE, MAX_FEE, loadKeyFile, signTransaction } from "./tx.js";

export class Wallet {
  constructor(rpc) {
    this.rpc = rpc;
    this.signer = null;
    this.chainId = null;
    // account_get gives the finalised nonce: a second transaction sent before the first is
    // final takes the next one.
    this.nextNonce = 0;
  }

  get address() {
    return this.signer ? this.signer.address : null;
  }

  /** Load a key file (a File from an <input type=file>); throws KeyFileError when refused. */
  async load(file) {
    this.signer = null;
    this.signer = await loadKeyFile(await file.text());
    this.nextNonce = 0;
    return this.signer.address;
  }

  /** Sign `payload` as a transaction of `kind` and send it; returns {hash, receipt}. */
  async send(kind, payload) {
    if (!this.signer) throw new Error("load your key file first");
    if (this.chainId === null) this.chainId = (await this.rpc.call("chain_status")).chainId;
    const account = await this.rpc.call("account_get", { address: this.signer.address });
    const nonce = Math.max(account.nonce, this.nextNonce);
    const fee = await this.fee();
    const tx = await signTransaction(this.signer,
      { chainId: this.chainId, nonce, fee, kind, payload });
    try {
      const receipt = await this.rpc.call("tx_send", { tx: tx.hex });
      this.nextNonce = nonce + 1;
      return { hash: tx.hash, receipt };
    } catch (error) {
      this.nextNonce = 0; // start again from the chain's nonce
      throw error;
    }
  }

  /** The fee to pay: the chain's min_fee now (a vote may have raised it above the default). */
  async fee() {
    const { params } = await this.rpc.call("gov_params");
    const minFee = params.find((p) => p.name === "min_fee");
    const asked = minFee ? Number(minFee.value) : DEFAULT_FEE;
    if (!Number.isSafeInteger(asked) || asked < 0 || asked > MAX_FEE) {
      throw new Error(`the node asks a fee of ${minFee.value} base units: refused`);
    }
    return Math.max(DEFAULT_FEE, asked);
  }

  /** Send, then call `onFinal(receipt)` once the transaction is final or rejected. */
  async sendAndWatch(kind, payload, onFinal) {
    const { hash } = await this.send(kind, payload);
    await this.rpc.subscribe("txStatus", { hash }, onFinal);
    return hash;
  }
}
