// The JS client against a running `perund dev`: calls and error codes,
// subscriptions, timeouts and automatic reconnect with session_resume and
// re-subscription (through a TCP proxy the test cuts).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect } from 'node:net';
import { WebSocket } from 'ws';
import { PerundClient, PerundError, Codes, ERR_CONNECTION, ERR_TIMEOUT, formatUnits, parseUnits } from '../client/perund.js';
import { startDev } from './helpers.mjs';

let dev;
let demo;
const clients = [];
function newClient(url = dev.rpc, opts = {}) {
  const c = new PerundClient(url, { WebSocket, reconnectDelay: 100, ...opts });
  clients.push(c);
  return c;
}

before(async () => {
  dev = await startDev(['--set', 'channel.responseTimeout=5s']);
  const c = newClient();
  demo = Object.fromEntries((await c.nodeInfo()).demoAccounts.map((d) => [d.name, d]));
});
after(async () => {
  for (const c of clients) c.close();
  assert.equal(await dev.stop(), 0);
  dev.cleanup();
});

/**
 * Subscribes (and waits until the subscription is in place); `next`
 * resolves with the first event for which pred holds, within 60 s.
 */
async function watch(client, topic, pred) {
  let resolve;
  let reject;
  const next = new Promise((res, rej) => { resolve = res; reject = rej; });
  const off = await client.subscribe(topic, (ev) => { if (pred(ev)) resolve(ev); });
  const timer = setTimeout(() => reject(new Error(`no ${topic} event in time`)), 60_000);
  return { next: next.finally(() => { clearTimeout(timer); off(); }) };
}

test('units', () => {
  const cases = [['1', 10n ** 18n], ['0.5', 5n * 10n ** 17n], ['1.000000000000000001', 10n ** 18n + 1n], ['.25', 25n * 10n ** 16n], ['0', 0n]];
  for (const [text, base] of cases) {
    assert.equal(parseUnits(text), base);
    assert.equal(parseUnits(formatUnits(base)), base);
  }
  for (const bad of ['', '-1', '1e3', 'abc', '1.0000000000000000001', '.']) assert.throws(() => parseUnits(bad), RangeError, bad);
  assert.equal(formatUnits('1500000000000000000'), '1.5');
  assert.equal(formatUnits(1234n, 2), '12.34');
});

test('error codes are PerundErrors with code and data', async () => {
  const c = newClient();
  const cases = [
    ['no session', () => c.channelList(), Codes.UNAUTHORIZED, undefined],
    ['wrong password', () => c.sessionOpen(demo.alice.address, 'nope'), Codes.UNAUTHORIZED, undefined],
    ['unknown method', () => c.call('no_such_method'), Codes.METHOD_NOT_FOUND, undefined],
  ];
  for (const [name, fn, code] of cases) {
    await assert.rejects(fn, (e) => e instanceof PerundError && e.code === code, name);
  }
  await c.sessionOpen(demo.alice.address, demo.alice.password);
  const id = '0x' + 'ab'.repeat(32);
  await assert.rejects(c.channelGet(id), (e) => e.code === Codes.NOT_FOUND && e.data.resource === 'channel' && e.method === 'channel_get');
  await assert.rejects(c.channelSend(id, '-5'), (e) => e.code === Codes.INVALID_PARAMS && e.data.field === 'amount');
  await assert.rejects(c.contactsGet('nobody'), (e) => e.code === Codes.NOT_FOUND);
  await assert.rejects(c.channelOpen('bob', { mine: (10n ** 24n).toString(), theirs: '0' }),
    (e) => e.code === Codes.INSUFFICIENT_FUNDS && typeof e.data.available === 'string');
  const info = await c.sessionInfo();
  assert.equal(info.address, demo.alice.address);
});

test('subscriptions: a channel opened, paid and closed between two clients', { timeout: 120_000 }, async () => {
  const alice = newClient();
  const bob = newClient();
  await alice.sessionOpen(demo.alice.address, demo.alice.password);
  await bob.sessionOpen(demo.bob.address, demo.bob.password);
  const proposal = (await watch(bob, 'proposals', (p) => p.status === 'pending')).next;
  const opening = alice.channelOpen('bob', { mine: '1000', theirs: '1000' });
  const p = await proposal;
  assert.equal(p.peer, 'alice');
  assert.deepEqual(p.balance, { mine: '1000', theirs: '1000' });
  await bob.proposalRespond(p.proposalId, true);
  const ch = await opening;
  assert.equal(ch.state, 'open');

  const seen = [];
  const unsubscribe = await bob.subscribe('channels', (c) => { if (c.channelId === ch.channelId) seen.push(c); });
  const paid = (await watch(bob, 'updates', (u) => u.kind === 'payment' && u.status === 'accepted')).next;
  const after = await alice.channelSend(ch.channelId, '100');
  assert.equal(after.balance.mine, '900');
  assert.equal((await paid).amount, '100');
  await waitFor(() => seen.some((c) => c.balance.mine === '1100'));
  assert.equal(await unsubscribe(), true);

  const closeAsk = (await watch(bob, 'updates', (u) => u.kind === 'close' && u.status === 'pending')).next;
  const closing = alice.channelClose(ch.channelId);
  await bob.updateRespond((await closeAsk).updateId, true);
  const closed = await closing;
  assert.equal(closed.state, 'closed');
  assert.equal(closed.balance.mine, '900');
});

test('a call that gets no answer in time rejects with ERR_TIMEOUT', async () => {
  // carol proposes a channel to bob, who does not answer (the node waits
  // for him for the 5 s response timeout); the client gives up after 300 ms.
  const c = newClient();
  const { address } = await c.accountNew('carol-pw');
  await c.sessionOpen(address, 'carol-pw');
  const bob = (await c.nodeInfo()).demoAccounts.find((d) => d.name === 'bob');
  const probe = newClient();
  const bs = await probe.sessionOpen(bob.address, bob.password);
  await c.contactsAdd('bob', bob.address, bs.commAddress);
  await assert.rejects(c.call('channel_open', { peer: 'bob', balance: { mine: '1', theirs: '0' } }, { timeout: 300 }),
    (e) => e.code === ERR_TIMEOUT && e.data.timeout === 300);
  await c.nodeInfo(); // the connection is still fine
});

test('reconnect: the session is resumed and subscriptions renewed', { timeout: 120_000 }, async () => {
  // A TCP proxy in front of the node; cutting its sockets drops the client.
  const sockets = new Set();
  const proxy = createServer((down) => {
    const up = connect(dev.port, '127.0.0.1');
    sockets.add(down); sockets.add(up);
    down.pipe(up); up.pipe(down);
    const end = () => { down.destroy(); up.destroy(); sockets.delete(down); sockets.delete(up); };
    down.on('error', end); up.on('error', end); down.on('close', end); up.on('close', end);
  });
  await new Promise((r) => proxy.listen(0, '127.0.0.1', r));
  try {
    const bob = newClient(`ws://127.0.0.1:${proxy.address().port}/rpc`);
    const alice = newClient();
    const bs = await bob.sessionOpen(demo.bob.address, demo.bob.password);
    await alice.sessionOpen(demo.alice.address, demo.alice.password);
    const updates = [];
    await bob.subscribe('updates', (u) => updates.push(u));

    let reconnects = 0;
    const back = new Promise((resolve) => bob.on('reconnect', () => { reconnects++; resolve(); }));
    const lost = new Promise((resolve) => bob.on('close', resolve));
    for (const s of sockets) s.destroy();
    await lost;
    // A call made while the connection is down waits for the reconnect.
    const info = await bob.sessionInfo();
    assert.equal(info.sessionId, bs.sessionId, 'same session after the reconnect');
    await back;
    assert.equal(reconnects, 1);

    // The renewed subscription delivers: alice opens and pays.
    const proposal = (await watch(bob, 'proposals', (p) => p.status === 'pending')).next;
    const opening = alice.channelOpen('bob', { mine: '500', theirs: '0' });
    await bob.proposalRespond((await proposal).proposalId, true);
    const ch = await opening;
    await alice.channelSend(ch.channelId, '7');
    await waitFor(() => updates.some((u) => u.channelId === ch.channelId && u.amount === '7' && u.status === 'accepted'));

    // Pending calls fail with ERR_CONNECTION when the connection drops.
    const hanging = bob.call('channel_open', { peer: 'alice', balance: { mine: '1', theirs: '0' } });
    await new Promise((r) => setTimeout(r, 100));
    for (const s of sockets) s.destroy();
    await assert.rejects(hanging, (e) => e.code === ERR_CONNECTION);
  } finally {
    proxy.close();
    for (const s of sockets) s.destroy();
  }
});

/** A TCP proxy in front of the node; close() stops it and cuts its connections. */
async function proxyToNode() {
  const sockets = new Set();
  const server = createServer((down) => {
    const up = connect(dev.port, '127.0.0.1');
    sockets.add(down); sockets.add(up);
    down.pipe(up); up.pipe(down);
    const end = () => { down.destroy(); up.destroy(); sockets.delete(down); sockets.delete(up); };
    down.on('error', end); up.on('error', end); down.on('close', end); up.on('close', end);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `ws://127.0.0.1:${server.address().port}/rpc`,
    close: () => { server.close(); for (const s of sockets) s.destroy(); },
  };
}

test('a list of URLs: the first that answers, and the next one after a lost connection', { timeout: 120_000 }, async () => {
  // Three ways to the same node, as the nodes of a cluster behind their
  // own addresses: a dead one first, then a and b.
  const dead = await proxyToNode();
  dead.close();
  const a = await proxyToNode();
  const b = await proxyToNode();
  try {
    const bob = newClient([dead.url, a.url, b.url]);
    const bs = await bob.sessionOpen(demo.bob.address, demo.bob.password);
    assert.equal(bob.url, a.url, 'the first URL that answers');
    const updates = [];
    await bob.subscribe('updates', (u) => updates.push(u));

    // a goes away (its node was killed): the client resumes on b.
    const back = new Promise((resolve) => bob.on('reconnect', resolve));
    a.close();
    await back;
    assert.equal(bob.url, b.url, 'the next URL that answers');
    const info = await bob.sessionInfo();
    assert.equal(info.sessionId, bs.sessionId, 'the session was resumed');

    // The renewed subscription delivers.
    const alice = newClient();
    await alice.sessionOpen(demo.alice.address, demo.alice.password);
    const proposal = (await watch(bob, 'proposals', (p) => p.status === 'pending')).next;
    const opening = alice.channelOpen('bob', { mine: '500', theirs: '0' });
    await bob.proposalRespond((await proposal).proposalId, true);
    const ch = await opening;
    await alice.channelSend(ch.channelId, '9');
    await waitFor(() => updates.some((u) => u.channelId === ch.channelId && u.amount === '9' && u.status === 'accepted'));
  } finally {
    a.close();
    b.close();
  }
});

async function waitFor(cond, ms = 20_000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}
