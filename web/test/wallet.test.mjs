// The web wallet in a real Chromium (Debian's package, driven by
// playwright-core): alice and bob in two browser contexts against
// `perund dev` open a channel, pay, request and close. Screenshots of every
// step go to TEST_OUTPUT_DIR (default web/test/output).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { PerundClient } from '../client/perund.js';
import { WebSocket } from 'ws';
import { root, startDev } from './helpers.mjs';

const ETH = 10n ** 18n;
const out = process.env.TEST_OUTPUT_DIR ?? join(root, 'web', 'test', 'output');
mkdirSync(out, { recursive: true });

export const chromiumArgs = ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-quic'];

/** Launches Chromium; Playwright gives it a fresh --user-data-dir of its own. */
export function launch() {
  return chromium.launch({ executablePath: process.env.CHROMIUM_BIN ?? '/usr/bin/chromium', headless: true, args: chromiumArgs });
}

let dev;
let browser;
before(async () => {
  dev = await startDev();
  browser = await launch();
});
after(async () => {
  await browser?.close();
  const code = await dev?.stop();
  dev?.cleanup();
  assert.equal(code, 0, 'perund dev exits 0 on SIGTERM');
});

let step = 0;
async function shot(page, name) {
  step++;
  await page.screenshot({ path: join(out, `${String(step).padStart(2, '0')}-${name}.png`), fullPage: true });
}

async function login(page, name) {
  await page.goto(dev.url + '/');
  await page.getByRole('button', { name: new RegExp(`^${name} \\(password`) }).click();
  await page.getByTestId('login-submit').click();
  await page.getByTestId('me-name').filter({ hasText: name }).waitFor();
  await page.locator('body[data-ready=true]').waitFor();
}

const channel = (page, peer) => page.locator(`[data-testid=channel][data-peer=${peer}]`);

/** Waits until the channel card shows `mine` = want (exact wei, from the hover data). */
async function waitMine(page, peer, want) {
  await page.waitForFunction(([p, w]) => document.querySelector(`[data-testid=channel][data-peer=${p}] [data-testid=mine] .amount`)?.dataset.base === w,
    [peer, want.toString()], { timeout: 60_000 });
}

async function waitState(page, peer, state) {
  await page.locator(`[data-testid=channel][data-peer=${peer}][data-state=${state}]`).waitFor({ timeout: 120_000 });
}

async function onChainShown(page) {
  return BigInt(await page.getByTestId('balance-ETH').locator('.amount').getAttribute('data-base'));
}

test('alice and bob: open, three payments, a request, close', { timeout: 300_000 }, async () => {
  const alice = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
  // bob is on a phone-sized screen.
  const bob = await (await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true })).newPage();
  const urls = [];
  // Collected and asserted at the end: an assert inside a listener would
  // not fail the test cleanly.
  const problems = [];
  for (const [who, p] of [['alice', alice], ['bob', bob]]) {
    p.on('pageerror', (e) => problems.push(`${who}: page error: ${e.message}`));
    p.on('console', (m) => { if (m.type() === 'error') problems.push(`${who}: console error: ${m.text()}`); });
    p.on('requestfailed', (r) => problems.push(`${who}: request failed: ${r.url()} ${r.failure()?.errorText ?? ''}`));
    p.on('websocket', (ws) => ws.on('socketerror', (e) => problems.push(`${who}: WebSocket error on ${ws.url()}: ${e}`)));
    p.on('request', (r) => urls.push(r.url()));
  }

  await login(alice, 'alice');
  await login(bob, 'bob');
  await shot(alice, 'alice-logged-in');
  await shot(bob, 'bob-logged-in');
  const aliceStart = await onChainShown(alice);
  const bobStart = await onChainShown(bob);
  assert.equal(aliceStart, 100n * ETH);

  // alice proposes 10 ETH from her, 5 from bob.
  await alice.getByTestId('open-peer').selectOption('bob');
  await alice.getByTestId('open-mine').fill('10');
  await alice.getByTestId('open-theirs').fill('5');
  await alice.getByTestId('open-submit').click();
  const proposal = bob.getByTestId('proposal');
  await proposal.waitFor();
  assert.match(await proposal.textContent(), /alice proposes a channel in ETH: you put in 5 ETH, they put in 10 ETH/);
  assert.match(await proposal.locator('.countdown').textContent(), /expires in \d+ s/);
  await shot(bob, 'bob-sees-proposal');
  await proposal.getByTestId('accept').click();
  await waitState(alice, 'bob', 'open');
  await waitState(bob, 'alice', 'open');
  await waitMine(bob, 'alice', 5n * ETH);
  await shot(alice, 'alice-channel-open');
  await shot(bob, 'bob-channel-open');

  // Bad amounts are refused in the page, before anything is sent.
  for (const [bad, message] of [['-1', /Enter an amount in ETH/], ['1000', /Only 10 ETH available/], ['0', /more than 0/]]) {
    await channel(alice, 'bob').getByTestId('amount').fill(bad);
    await channel(alice, 'bob').getByTestId('send').click();
    await channel(alice, 'bob').getByTestId('note').filter({ hasText: message }).waitFor();
  }
  assert.equal(await channel(alice, 'bob').getAttribute('data-state'), 'open');
  assert.match(await channel(alice, 'bob').textContent(), /version 0/);

  // Three payments of 1 ETH; bob's page shows each.
  for (let i = 1; i <= 3; i++) {
    await channel(alice, 'bob').getByTestId('amount').fill('1');
    await channel(alice, 'bob').getByTestId('send').click();
    await waitMine(bob, 'alice', (5n + BigInt(i)) * ETH);
    await waitMine(alice, 'bob', (10n - BigInt(i)) * ETH);
    await alice.waitForFunction(() => document.querySelector('[data-testid=channel][data-peer=bob] [data-testid=amount]')?.value === '');
    await shot(bob, `bob-sees-payment-${i}`);
  }
  assert.match(await bob.getByTestId('log').textContent(), /alice pays you 1 ETH — accepted/);

  // bob requests 0.5 ETH; alice pays from her page.
  await channel(bob, 'alice').getByTestId('amount').fill('0.5');
  await channel(bob, 'alice').getByTestId('request').click();
  const req = alice.getByTestId('update-request');
  await req.waitFor();
  await shot(alice, 'alice-sees-request');
  await req.getByTestId('accept').click();
  await waitMine(bob, 'alice', 85n * ETH / 10n);
  await waitMine(alice, 'bob', 65n * ETH / 10n);
  await shot(bob, 'bob-request-paid');

  // alice closes; bob agrees on his page.
  await channel(alice, 'bob').getByTestId('close').click();
  const closeReq = bob.getByTestId('update-close');
  await closeReq.waitFor({ timeout: 60_000 });
  await shot(bob, 'bob-sees-close');
  await closeReq.getByTestId('accept').click();
  await waitState(alice, 'bob', 'closed');
  await waitState(bob, 'alice', 'closed');

  // The new on-chain balances: what the node says, and the channel's final
  // share less at most 0.01 ETH of gas.
  for (const [page, name, start, share, deposit] of [[alice, 'alice', aliceStart, 65n * ETH / 10n, 10n * ETH], [bob, 'bob', bobStart, 85n * ETH / 10n, 5n * ETH]]) {
    const api = new PerundClient(dev.rpc, { WebSocket });
    const demo = (await api.nodeInfo()).demoAccounts.find((d) => d.name === name);
    await api.sessionOpen(demo.address, demo.password); // attaches to the page's session
    const { balance } = await api.chainBalance();
    api.close();
    await page.waitForFunction((want) => document.querySelector('[data-testid=balance-ETH] .amount')?.dataset.base === want, balance, { timeout: 60_000 });
    const expected = start - deposit + share;
    const shown = await onChainShown(page);
    assert.ok(shown <= expected && shown > expected - ETH / 100n, `${name}: shown ${shown}, expected about ${expected}`);
  }
  await shot(alice, 'alice-closed');
  await shot(bob, 'bob-closed');
  // Works offline: every request went to the node itself.
  const foreign = urls.filter((u) => !u.startsWith(dev.url + '/') && !u.startsWith(`ws://127.0.0.1:${dev.port}/`));
  assert.deepEqual(foreign, [], 'requests beyond the node');
  assert.deepEqual(problems, [], 'no page error, console error or failed connection');
});
