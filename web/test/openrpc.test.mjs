// The OpenRPC document that `perund dev` serves (rpc_discover): it passes
// @open-rpc/schema-utils-js (validation, dereferencing), and the node keeps
// to it. Every method is called with each of its examples (without
// examples: with {} where all its params are optional), and every answer is
// checked against the document: a result against the method's result
// schema, an error against the method's errors (its code listed, its data
// valid against the error's x-data-schema), a notification against its
// topic's schema in perun_subscribe's x-notifications.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket } from 'ws';
import AjvModule from 'ajv';
import addFormatsModule from 'ajv-formats';
import { validateOpenRPCDocument, dereferenceDocument, parseOpenRPCDocument } from '@open-rpc/schema-utils-js';
import { startDev } from './helpers.mjs';

const Ajv = AjvModule.default ?? AjvModule;
const addFormats = addFormatsModule.default ?? addFormatsModule;

/** Bound of one call; the dev chain mines at once, a channel opens in about a second. */
const CALL_MS = 15_000;

let dev;
let doc; // the document as rpc_discover answers it
let spec; // its schemas compiled (checker below)
let demo; // node_info.demoAccounts by name
const conns = [];

before(async () => {
  // A channel proposal nobody answers fails after 5 s rather than 30 s.
  dev = await startDev(['--set', 'channel.responseTimeout=5s']);
  const c = await Conn.open(dev.rpc);
  const res = await c.request('rpc_discover');
  assert.ok(res.result && typeof res.result === 'object', `rpc_discover: ${JSON.stringify(res.error)}`);
  doc = res.result;
  spec = checker(doc);
  checkAnswer('rpc_discover', res);
  const info = await c.request('node_info');
  checkAnswer('node_info', info);
  demo = Object.fromEntries(info.result.demoAccounts.map((d) => [d.name, d]));
  assert.ok(demo.alice && demo.bob, 'perund dev has the demo users alice and bob');
  c.close();
});

after(async () => {
  for (const c of conns) c.close();
  if (dev) {
    assert.equal(await dev.stop(), 0, dev.output());
    dev.cleanup();
  }
});

/** A JSON-RPC connection over WebSocket; answers are the raw responses. */
class Conn {
  static async open(url) {
    const ws = new WebSocket(url);
    await bounded(new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); }), 5_000, `connect ${url}`);
    const c = new Conn(ws);
    conns.push(c);
    return c;
  }

  constructor(ws) {
    this.ws = ws;
    this.nextId = 1;
    this.pending = new Map();
    this.notifications = []; // every perun_subscription, checked by checkNotifications
    this.topics = new Map(); // subscription id -> topic
    this.onNotification = () => {};
    ws.on('message', (raw) => {
      const msg = JSON.parse(raw.toString());
      if (msg.method !== undefined) {
        assert.equal(msg.method, 'perun_subscription', `unexpected notification ${raw}`);
        this.notifications.push(msg);
        this.onNotification(msg);
        return;
      }
      const p = this.pending.get(msg.id);
      assert.ok(p, `a response to no request: ${raw}`);
      this.pending.delete(msg.id);
      p.resolve(msg);
    });
    ws.on('close', () => {
      for (const p of this.pending.values()) p.reject(new Error('connection closed'));
      this.pending.clear();
    });
  }

  /** Sends a request; resolves to the response ({result} or {error}). */
  request(method, params, ms = CALL_MS) {
    const id = this.nextId++;
    const msg = { jsonrpc: '2.0', id, method };
    if (params !== undefined) msg.params = params;
    const answer = new Promise((resolve, reject) => { this.pending.set(id, { resolve, reject }); });
    this.ws.send(JSON.stringify(msg));
    return bounded(answer, ms, `${method} ${JSON.stringify(params)}`).then((res) => {
      assert.equal(res.jsonrpc, '2.0');
      assert.equal(res.id, id);
      assert.ok(('result' in res) !== ('error' in res), `${method}: a response has a result or an error: ${JSON.stringify(res)}`);
      return res;
    });
  }

  /** request, with the answer checked against the document. */
  async call(method, params, ms) {
    const res = await this.request(method, params, ms);
    checkAnswer(method, res);
    if (method === 'perun_subscribe' && res.result !== undefined) this.topics.set(res.result, params.topic ?? params[0]);
    if (method === 'session_open' || method === 'session_resume') this.bound = 'result' in res ? true : this.bound;
    if (method === 'session_close' && 'result' in res) this.bound = false;
    return res;
  }

  close() { this.ws.close(); }
}

function bounded(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms); });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * The document's schemas in Ajv (draft-07): each of components.schemas is
 * added under its own $id and the document's "#/components/schemas/NAME"
 * references are rewritten to it. Strict mode stays on: a keyword Ajv does
 * not know in one of the document's schemas fails the test.
 */
function checker(document) {
  const base = 'https://perund.invalid/openrpc/components/schemas/';
  const ajv = new Ajv({ allErrors: true, strict: true });
  addFormats(ajv);
  const rewrite = (v) => {
    if (Array.isArray(v)) return v.map(rewrite);
    if (v === null || typeof v !== 'object') return v;
    const out = {};
    for (const [k, x] of Object.entries(v)) {
      if (k === '$ref' && typeof x === 'string') {
        const m = /^#\/components\/schemas\/([^/]+)$/.exec(x);
        assert.ok(m, `a $ref the test does not resolve: ${x}`);
        assert.ok(m[1] in document.components.schemas, `$ref to a missing component: ${x}`);
        out[k] = base + m[1];
      } else {
        out[k] = rewrite(x);
      }
    }
    return out;
  };
  for (const [name, s] of Object.entries(document.components.schemas)) ajv.addSchema(rewrite(s), base + name);
  const compiled = new Map();
  return {
    /** null when value is valid against schema, else what is wrong. */
    validate(schema, value) {
      const key = JSON.stringify(schema);
      let v = compiled.get(key);
      if (!v) {
        v = ajv.compile(rewrite(schema));
        compiled.set(key, v);
      }
      return v(value) ? null : ajv.errorsText(v.errors, { dataVar: 'value' });
    },
  };
}

/** Resolves a local JSON pointer reference ("#/components/errors/NotFound"). */
function deref(ref) {
  assert.ok(ref.startsWith('#/'), `not a local reference: ${ref}`);
  let v = doc;
  for (const part of ref.slice(2).split('/')) {
    v = v?.[part.replaceAll('~1', '/').replaceAll('~0', '~')];
  }
  assert.ok(v !== undefined, `unresolved reference ${ref}`);
  return v;
}

function methodDoc(name) {
  const m = doc.methods.find((x) => x.name === name);
  assert.ok(m, `${name} is not in the document`);
  return m;
}

function errorsOf(m) { return m.errors.map((e) => (e.$ref ? deref(e.$ref) : e)); }

/** Asserts that a response of method agrees with the document. */
function checkAnswer(method, res) {
  const m = methodDoc(method);
  if ('result' in res) {
    const bad = spec.validate(m.result.schema, res.result);
    assert.equal(bad, null, `${method}: the result does not match its schema: ${bad}\n${JSON.stringify(res.result)}`);
    return;
  }
  const { code, message, data } = res.error;
  assert.ok(Number.isInteger(code) && typeof message === 'string', `${method}: error ${JSON.stringify(res.error)}`);
  const errs = errorsOf(m);
  const declared = errs.find((e) => e.code === code);
  assert.ok(declared, `${method}: error ${code} (${message}) is not one of its errors ${errs.map((e) => e.code).join(', ')}`);
  const dataSchema = declared['x-data-schema'];
  if (!dataSchema) {
    assert.equal(data, undefined, `${method}: error ${code} has data but the document declares none`);
    return;
  }
  // An error without data says nothing more: it is read as data {}.
  const bad = spec.validate(dataSchema, data ?? {});
  assert.equal(bad, null, `${method}: the data of error ${code} does not match its x-data-schema: ${bad}\n${JSON.stringify(data)}`);
}

/** Checks every notification the connection got against its topic's schema. */
function checkNotifications(c) {
  const notes = methodDoc('perun_subscribe')['x-notifications'];
  for (const n of c.notifications) {
    const topic = c.topics.get(n.params?.subscription);
    assert.ok(topic, `a notification of an unknown subscription: ${JSON.stringify(n)}`);
    const note = notes.find((x) => x.topic === topic);
    assert.ok(note, `topic ${topic} is not in x-notifications`);
    const bad = spec.validate(note.result, n.params.result);
    assert.equal(bad, null, `a ${topic} notification does not match its schema: ${bad}\n${JSON.stringify(n.params.result)}`);
  }
  return c.notifications.length;
}

/** Binds a session of the demo user to c unless one is bound. */
async function ensureSession(c, who = demo.alice) {
  if (c.bound) return;
  const res = await c.call('session_open', { account: who.address, password: who.password });
  assert.ok(res.result, `session_open ${who.name}: ${JSON.stringify(res.error)}`);
}

function outcome(res) {
  return 'result' in res ? 'result' : `error ${res.error.code}${res.error.data ? ' ' + JSON.stringify(res.error.data) : ''}`;
}

test('the document passes @open-rpc/schema-utils-js', async () => {
  assert.equal(doc.openrpc, '1.2.6');
  const valid = validateOpenRPCDocument(structuredClone(doc));
  assert.equal(valid, true, valid?.message);
  const dereferenced = await dereferenceDocument(structuredClone(doc));
  for (const m of dereferenced.methods) {
    for (const e of m.errors) assert.ok(Number.isInteger(e.code), `${m.name}: an error not dereferenced: ${JSON.stringify(e)}`);
  }
  // Validated, dereferenced and validated again.
  const parsed = await parseOpenRPCDocument(structuredClone(doc), { dereference: true, validate: true });
  assert.deepEqual(parsed.methods.map((m) => m.name), doc.methods.map((m) => m.name));
});

test('the examples agree with the schemas', () => {
  for (const m of doc.methods) {
    for (const ex of m.examples ?? []) {
      for (const p of ex.params) {
        const param = m.params.find((x) => x.name === p.name);
        assert.ok(param, `${m.name} example ${ex.name}: no param ${p.name}`);
        const bad = spec.validate(param.schema, p.value);
        assert.equal(bad, null, `${m.name} example ${ex.name}: param ${p.name}: ${bad}`);
      }
      for (const param of m.params.filter((x) => x.required)) {
        assert.ok(ex.params.some((p) => p.name === param.name), `${m.name} example ${ex.name}: required param ${param.name} missing`);
      }
      const bad = spec.validate(m.result.schema, ex.result.value);
      assert.equal(bad, null, `${m.name} example ${ex.name}: result: ${bad}`);
    }
  }
});

test('every method with its examples: each answer agrees with the document', { timeout: 90_000 }, async (t) => {
  const alice = await Conn.open(dev.rpc);
  // bob accepts every channel proposal (alice's channel_open example).
  const bob = await Conn.open(dev.rpc);
  await ensureSession(bob, demo.bob);
  const accepting = [];
  bob.onNotification = (n) => {
    const p = n.params.result;
    if (bob.topics.get(n.params.subscription) === 'proposals' && p.status === 'pending') {
      const answer = bob.call('proposal_respond', { proposalId: p.proposalId, accept: true });
      answer.catch(() => {}); // awaited below
      accepting.push(answer);
    }
  };
  assert.ok((await bob.call('perun_subscribe', { topic: 'proposals' })).result);
  // alice hears every topic, so that the notifications the calls cause are
  // checked too.
  await ensureSession(alice);
  for (const { topic } of methodDoc('perun_subscribe')['x-notifications']) {
    assert.ok((await alice.call('perun_subscribe', { topic })).result, topic);
  }

  // Without a session first, then session_open, then the methods that need
  // one, session_close last.
  const rank = (m) => (m.name === 'session_close' ? 3 : m.name === 'session_open' ? 1 : m['x-session'] ? 2 : 0);
  const methods = [...doc.methods].sort((a, b) => rank(a) - rank(b) || a.name.localeCompare(b.name));
  const called = [];
  const skipped = [];
  for (const m of methods) {
    const calls = (m.examples ?? []).map((ex) => [ex.name, Object.fromEntries(ex.params.map((p) => [p.name, p.value]))]);
    if (calls.length === 0) {
      if (m.params.some((p) => p.required)) {
        skipped.push(`${m.name} (no examples; required: ${m.params.filter((p) => p.required).map((p) => p.name).join(', ')})`);
        continue;
      }
      calls.push(['{}', {}]);
    }
    for (const [name, params] of calls) {
      if (m['x-session']) await ensureSession(alice);
      const res = await alice.call(m.name, params, m['x-timeout'].class === 'quick' ? CALL_MS : 30_000);
      called.push(`${m.name} [${name}]: ${outcome(res)}`);
    }
  }
  for (const res of await bounded(Promise.all(accepting), 20_000, 'proposal_respond')) {
    called.push(`(bob) proposal_respond [accept]: ${outcome(res)}`);
  }
  const notes = checkNotifications(alice) + checkNotifications(bob);
  for (const line of called) t.diagnostic(line);
  t.diagnostic(`skipped: ${skipped.join('; ') || 'none'}`);
  t.diagnostic(`notifications checked: ${notes}`);
  assert.equal(called.length + skipped.length >= doc.methods.length, true);
});

test('params by name or position; errors name the nested field', async () => {
  for (const m of doc.methods) assert.equal(m.paramStructure, 'either', `${m.name}: paramStructure`);

  // x-session: each such method without a session answers 1001.
  const anon = await Conn.open(dev.rpc);
  for (const m of doc.methods.filter((x) => x['x-session'])) {
    const res = await anon.call(m.name, {});
    assert.equal(res.error?.code, 1001, `${m.name} without a session: ${JSON.stringify(res)}`);
  }

  const c = await Conn.open(dev.rpc);
  await ensureSession(c);
  const unknown = '0x' + '5e'.repeat(32);
  // The values in the order of the document's params.
  const byPosition = await c.call('channel_get', methodDoc('channel_get').params.map((p) => ({ channelId: unknown })[p.name]));
  assert.equal(byPosition.error?.code, 1002, JSON.stringify(byPosition));
  assert.equal(byPosition.error.data.resource, 'channel');
  assert.equal(byPosition.error.data.id, unknown);

  const extra = await c.call('channel_open', { peer: 'x', balance: { mine: '1', theirs: '0', extra: 1 } });
  assert.equal(extra.error?.code, -32602, JSON.stringify(extra));
  assert.equal(extra.error.data.field, 'balance.extra');
});
