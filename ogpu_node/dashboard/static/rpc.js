// JSON-RPC over the node's WebSocket (/ws on this page's origin): calls, and subscriptions that
// are renewed after a reconnect. One connection per page.

const RECONNECT_MS = [500, 1000, 2000, 5000];

export class RpcError extends Error {
  constructor(error) {
    super(error.message);
    this.code = error.code;
    this.data = error.data;
  }
}

export class Rpc {
  constructor(url = defaultUrl()) {
    this.url = url;
    this.nextId = 1;
    this.pending = new Map(); // id -> {resolve, reject}
    this.subscriptions = new Map(); // local key -> {kind, params, onResult, remoteId}
    this.byRemote = new Map(); // remote id -> local key
    this.onState = () => {};
    this.attempt = 0;
    this.methods = null;
    this._waitForOpen();
  }

  // `ready` settles when the socket is open; calls made while it is not wait for the next one.
  _waitForOpen() {
    this.ready = new Promise((resolve) => {
      this._opened = resolve;
    });
  }

  connect() {
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.onopen = async () => {
      this.attempt = 0;
      this.onState("connected");
      this._opened();
      for (const [key, sub] of this.subscriptions) await this._subscribe(key, sub);
    };
    ws.onmessage = (event) => this._receive(JSON.parse(event.data));
    ws.onclose = () => {
      this._waitForOpen();
      this.onState("disconnected");
      for (const { reject } of this.pending.values()) reject(new Error("connection lost"));
      this.pending.clear();
      this.byRemote.clear();
      const wait = RECONNECT_MS[Math.min(this.attempt++, RECONNECT_MS.length - 1)];
      setTimeout(() => this.connect(), wait);
    };
    return this.ready;
  }

  async call(method, params = {}) {
    await this.ready;
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.ws.send(JSON.stringify({ jsonrpc: "2.0", id, method, params }));
    });
  }

  /** Whether the node serves `method` (methods other helpers add may be missing). */
  async has(method) {
    if (this.methods === null) this.methods = new Set(await this.call("rpc_methods"));
    return this.methods.has(method);
  }

  /** Subscribe to `kind` ("blocks", "task", "txStatus"); `onResult` gets each notification. */
  async subscribe(kind, params, onResult) {
    const key = this.nextId++;
    const sub = { kind, params, onResult, remoteId: null };
    this.subscriptions.set(key, sub);
    await this.ready;
    await this._subscribe(key, sub);
    return key;
  }

  async unsubscribe(key) {
    const sub = this.subscriptions.get(key);
    this.subscriptions.delete(key);
    if (sub && sub.remoteId) {
      this.byRemote.delete(sub.remoteId);
      await this.call("sub_unsubscribe", { subscription: sub.remoteId }).catch(() => false);
    }
  }

  async _subscribe(key, sub) {
    sub.remoteId = await this.call("sub_subscribe", { kind: sub.kind, ...sub.params });
    this.byRemote.set(sub.remoteId, key);
  }

  _receive(message) {
    if (message.method === "sub_notification" || message.method === "sub_closed") {
      const key = this.byRemote.get(message.params.subscription);
      const sub = this.subscriptions.get(key);
      if (!sub) return;
      if (message.method === "sub_closed") {
        this.subscriptions.delete(key);
        return;
      }
      // A txStatus subscription ends on the server after its one notification.
      if (sub.kind === "txStatus") this.subscriptions.delete(key);
      sub.onResult(message.params.result);
      return;
    }
    const waiter = this.pending.get(message.id);
    if (!waiter) return;
    this.pending.delete(message.id);
    if (message.error) waiter.reject(new RpcError(message.error));
    else waiter.resolve(message.result);
  }
}

function defaultUrl() {
  return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
}
