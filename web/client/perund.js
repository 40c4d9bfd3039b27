// perund JavaScript client: JSON-RPC 2.0 over WebSocket for perund's user
// API (docs/api.md). An ES module without dependencies; it runs in browsers
// and in Node.js (pass a WebSocket implementation such as the `ws` package
// where there is no global one). The typed wrapper of each method, the
// method table (timeouts) and the error codes are generated from the API's
// OpenRPC document into api.js; the types are declared in perund.d.ts.
import { Codes, METHODS, PerundAPI } from './api.js';

export { Codes, METHODS, PerundAPI };

/** Error code of a call that failed because the connection was lost. */
export const ERR_CONNECTION = -32000;
/** Error code of a call that got no answer within its timeout. */
export const ERR_TIMEOUT = -32001;

/** An error answer of the node (or of the transport): message, JSON-RPC code and data. */
export class PerundError extends Error {
  /**
   * @param {string} message
   * @param {number} code
   * @param {any} [data]
   * @param {string} [method]
   */
  constructor(message, code, data, method) {
    super(message);
    this.name = 'PerundError';
    /** @type {number} */ this.code = code;
    /** @type {any} */ this.data = data;
    /** @type {string|undefined} */ this.method = method;
  }
}


/**
 * A connection to perund's /rpc. Calls return promises; subscriptions call
 * a handler per event. After a lost connection the client reconnects,
 * resumes the session (session_resume) and subscribes again. Given several
 * URLs (the nodes of an active/standby cluster), it connects to the first
 * that answers and, when a connection is lost, tries the one it had first,
 * then the next ones in turn.
 */
export class PerundClient extends PerundAPI {
  /**
   * @param {string|string[]} url ws:// or wss:// URL of /rpc, or a list of them
   * @param {import('./perund.d.ts').ClientOptions} [options]
   */
  constructor(url, options = {}) {
    super();
    const list = Array.isArray(url) ? url : [url];
    if (list.length === 0) throw new Error('no URL');
    const withToken = (u) => (options.token ? `${u}${u.includes('?') ? '&' : '?'}token=${encodeURIComponent(options.token)}` : u);
    /** The URLs, tried in turn; urlIndex is the one in use. */
    this.urls = list.map(withToken);
    this.urlIndex = 0;
    this.WebSocket = options.WebSocket ?? globalThis.WebSocket;
    if (!this.WebSocket) throw new Error('no WebSocket implementation: pass options.WebSocket');
    this.timeout = options.timeout ?? 30000;
    this.reconnectEnabled = options.reconnect ?? true;
    this.reconnectDelay = options.reconnectDelay ?? 500;
    this.reconnectMaxDelay = options.reconnectMaxDelay ?? 10000;
    /** @type {WebSocket|null} */ this.ws = null;
    this.nextId = 1;
    /** @type {Map<string, {resolve: Function, reject: Function, timer: any, method: string}>} */
    this.pending = new Map();
    /** Subscriptions by local key; each remembers its topic, handler and current server id. */
    /** @type {Map<number, {topic: string, handler: Function, serverId: string|null}>} */
    this.subs = new Map();
    this.nextSub = 1;
    /** @type {{sessionId: string, token: string}|null} */ this.session = null;
    /** @type {Map<string, Set<Function>>} */ this.listeners = new Map();
    this.closedByUser = false;
    this.reconnecting = false;
    this.connected = false;
    /** @type {Promise<void>|null} */ this.ready = null;
  }

  /**
   * Opens the connection (calls do this on their own).
   * @returns {Promise<void>}
   */
  connect() {
    if (!this.ready) {
      this.closedByUser = false;
      this.ready = this.#openAny();
      this.ready.catch(() => { this.ready = null; });
    }
    return this.ready;
  }

  /** Closes the connection for good (no reconnect). */
  close() {
    this.closedByUser = true;
    this.ready = null;
    if (this.ws) this.ws.close(1000, 'client closed');
    this.#failPending(new PerundError('connection closed by the client', ERR_CONNECTION));
  }

  /**
   * Listens to client events: 'open', 'close' ({code, reason}), 'reconnect'
   * (after the session and subscriptions are back), 'error'.
   * @param {'open'|'close'|'reconnect'|'error'} event
   * @param {(detail?: any) => void} fn
   * @returns {() => void} removes the listener
   */
  on(event, fn) {
    if (!this.listeners.has(event)) this.listeners.set(event, new Set());
    this.listeners.get(event).add(fn);
    return () => this.listeners.get(event)?.delete(fn);
  }

  #emit(event, detail) {
    for (const fn of this.listeners.get(event) ?? []) {
      try { fn(detail); } catch (e) { console.error(e); }
    }
  }

  /** The URL of the current (or last) connection. */
  get url() {
    return this.urls[this.urlIndex];
  }

  /**
   * Connects to the current URL, or else to the others in turn (each tried
   * once); the first that answers becomes current.
   */
  async #openAny() {
    let last;
    for (let i = 0; i < this.urls.length; i++) {
      try {
        await this.#open();
        return;
      } catch (e) {
        last = e;
        if (this.closedByUser) throw e;
        this.urlIndex = (this.urlIndex + 1) % this.urls.length;
      }
    }
    throw last;
  }

  #open() {
    return new Promise((resolve, reject) => {
      let opened = false;
      const ws = new this.WebSocket(this.url);
      this.ws = ws;
      ws.onopen = () => {
        opened = true;
        this.connected = true;
        this.#emit('open');
        resolve();
      };
      ws.onmessage = (ev) => this.#onMessage(typeof ev.data === 'string' ? ev.data : String(ev.data));
      ws.onerror = () => {
        if (!opened) reject(new PerundError(`cannot connect to ${this.url}`, ERR_CONNECTION));
        this.#emit('error');
      };
      ws.onclose = (ev) => {
        this.connected = false;
        if (!opened) {
          reject(new PerundError(`cannot connect to ${this.url} (${ev.code})`, ERR_CONNECTION));
          return;
        }
        if (this.ws !== ws) return;
        this.#emit('close', { code: ev.code, reason: ev.reason });
        this.#failPending(new PerundError(`connection lost (${ev.code}${ev.reason ? ' ' + ev.reason : ''})`, ERR_CONNECTION, { code: ev.code }));
        for (const s of this.subs.values()) s.serverId = null;
        if (this.reconnecting) return; // the running reconnect loop tries again
        if (this.closedByUser || !this.reconnectEnabled) {
          this.ready = null;
          return;
        }
        this.ready = this.#reconnect();
        this.ready.catch(() => { this.ready = null; });
      };
    });
  }

  async #reconnect() {
    this.reconnecting = true;
    try {
      await this.#reconnectLoop();
    } finally {
      this.reconnecting = false;
    }
  }

  async #reconnectLoop() {
    let delay = this.reconnectDelay;
    for (;;) {
      await new Promise((r) => setTimeout(r, delay));
      if (this.closedByUser) throw new PerundError('connection closed by the client', ERR_CONNECTION);
      try {
        await this.#openAny();
        if (this.session) {
          await this.#send('session_resume', { sessionId: this.session.sessionId, token: this.session.token }, this.timeout);
        }
        for (const s of this.subs.values()) {
          s.serverId = await this.#send('perun_subscribe', [s.topic], this.timeout);
        }
        this.#emit('reconnect');
        return;
      } catch (e) {
        if (e instanceof PerundError && e.code === Codes.UNAUTHORIZED) {
          this.session = null; // the session is gone (node restarted): log in again
          this.#emit('reconnect');
          return;
        }
        delay = Math.min(delay * 2, this.reconnectMaxDelay);
      }
    }
  }

  #failPending(err) {
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new PerundError(err.message, err.code, err.data, p.method));
      this.pending.delete(id);
    }
  }

  #onMessage(text) {
    let msg;
    try { msg = JSON.parse(text); } catch { return; }
    for (const m of Array.isArray(msg) ? msg : [msg]) {
      if (m.method === 'perun_subscription' && m.params) {
        for (const s of this.subs.values()) {
          if (s.serverId === m.params.subscription) {
            try { s.handler(m.params.result); } catch (e) { console.error(e); }
          }
        }
        continue;
      }
      const p = this.pending.get(String(m.id));
      if (!p) continue;
      this.pending.delete(String(m.id));
      clearTimeout(p.timer);
      if (m.error) p.reject(new PerundError(m.error.message, m.error.code, m.error.data, p.method));
      else p.resolve(m.result);
    }
  }

  /**
   * Sends on the current socket without waiting for readiness; it gives up
   * after timeout ms. total is the call's whole timeout, which the error
   * reports (timeout is what was left of it after connecting).
   */
  #send(method, params, timeout, total = timeout) {
    return new Promise((resolve, reject) => {
      const ws = this.ws;
      if (!ws || ws.readyState !== 1) {
        reject(new PerundError('not connected', ERR_CONNECTION, undefined, method));
        return;
      }
      const id = String(this.nextId++);
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new PerundError(`${method}: no answer within ${total} ms`, ERR_TIMEOUT, { timeout: total }, method));
      }, timeout);
      this.pending.set(id, { resolve, reject, timer, method });
      const req = { jsonrpc: '2.0', id, method };
      if (params !== undefined) req.params = params;
      ws.send(JSON.stringify(req));
    });
  }

  /**
   * Calls a method. Waits for the connection (and a reconnect) first.
   * @param {string} method
   * @param {any} [params] object (by name) or array
   * @param {{timeout?: number}} [opts] timeout in ms
   * @returns {Promise<any>} the result; rejects with a PerundError
   */
  async call(method, params, opts = {}) {
    // A call that waits for the peer or the chain gets the time the node
    // gives it (the document's x-timeout), a quick one the client's.
    const slow = METHODS[method] && METHODS[method].class !== 'quick';
    const timeout = opts.timeout ?? (slow ? METHODS[method].timeout : this.timeout);
    const deadline = Date.now() + timeout;
    let timer;
    try {
      await Promise.race([this.connect(), new Promise((_, reject) => {
        timer = setTimeout(() => reject(new PerundError(`${method}: not connected within ${timeout} ms`, ERR_TIMEOUT, { timeout }, method)), timeout);
      })]);
    } finally {
      clearTimeout(timer);
    }
    const result = await this.#send(method, params, Math.max(deadline - Date.now(), 1), timeout);
    if (method === 'session_open' || method === 'session_resume') {
      this.session = { sessionId: result.sessionId, token: result.token ?? params.token };
    } else if (method === 'session_close') {
      this.session = null;
    }
    return result;
  }

  /**
   * Subscribes to a topic; the subscription is renewed after reconnects.
   * @param {Topic} topic
   * @param {(event: any) => void} handler
   * @returns {Promise<() => Promise<boolean>>} unsubscribe
   */
  async subscribe(topic, handler) {
    const key = this.nextSub++;
    const s = { topic, handler, serverId: null };
    this.subs.set(key, s);
    try {
      s.serverId = await this.call('perun_subscribe', [topic]);
    } catch (e) {
      this.subs.delete(key);
      throw e;
    }
    return async () => {
      this.subs.delete(key);
      if (!s.serverId || !this.connected) return false;
      return this.call('perun_unsubscribe', [s.serverId]);
    };
  }
}

/**
 * Formats an amount in base units as a decimal string in whole units
 * (e.g. wei → ETH), without rounding.
 * @param {string|bigint} amount @param {number} [decimals] 18 for ETH
 * @returns {string}
 */
export function formatUnits(amount, decimals = 18) {
  let v = BigInt(amount);
  const neg = v < 0n;
  if (neg) v = -v;
  const base = 10n ** BigInt(decimals);
  const whole = v / base;
  let frac = (v % base).toString().padStart(decimals, '0').replace(/0+$/, '');
  return `${neg ? '-' : ''}${whole}${frac ? '.' + frac : ''}`;
}

/**
 * Parses a decimal string in whole units (e.g. "1.5" ETH) into base units.
 * Throws a RangeError for anything but a non-negative decimal number with at
 * most `decimals` fractional digits.
 * @param {string} text @param {number} [decimals] 18 for ETH
 * @returns {bigint}
 */
export function parseUnits(text, decimals = 18) {
  const s = String(text).trim();
  const m = /^(\d*)(?:\.(\d*))?$/.exec(s);
  if (!m || s === '' || s === '.' ) throw new RangeError(`"${text}" is not a non-negative number`);
  const [, whole = '', frac = ''] = m;
  if (frac.length > decimals) throw new RangeError(`at most ${decimals} decimal places`);
  return BigInt(whole || '0') * 10n ** BigInt(decimals) + BigInt((frac || '').padEnd(decimals, '0') || '0');
}
