// Browser helpers of the wallet tests: Debian's Chromium driven by
// playwright-core, pages of alice (desktop) and bob (phone), screenshots
// in TEST_OUTPUT_DIR (default web/test/output), and the checks every
// wallet test shares.
import { mkdirSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { root } from './helpers.mjs';

export const ETH = 10n ** 18n;
export const out = process.env.TEST_OUTPUT_DIR ?? join(root, 'web', 'test', 'output');
mkdirSync(out, { recursive: true });

export const chromiumArgs = ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-quic'];

/** Launches Chromium; Playwright gives it a fresh --user-data-dir of its own. */
export function launch() {
  return chromium.launch({ executablePath: process.env.CHROMIUM_BIN ?? '/usr/bin/chromium', headless: true, args: chromiumArgs });
}

export const DESKTOP = { viewport: { width: 1280, height: 800 } };
export const PHONE = { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true };

/** Screenshots named PREFIX-NN-name.png (or NN-name.png without a prefix), in order. */
export function shooter(prefix = '') {
  // The last run's screenshots of this series go first: no stale step stays.
  const mine = new RegExp(`^${prefix ? prefix + '-' : ''}\\d\\d-.*\\.png$`);
  for (const f of readdirSync(out)) if (mine.test(f)) rmSync(join(out, f));
  let step = 0;
  return async (page, name) => {
    step++;
    await page.screenshot({ path: join(out, `${prefix ? prefix + '-' : ''}${String(step).padStart(2, '0')}-${name}.png`), fullPage: true });
  };
}

/**
 * Collects what goes wrong in the pages (asserted at the end: an assert in
 * a listener would not fail the test cleanly). While tolerate() returns
 * true (the node is down on purpose), failed connections are expected.
 */
export function watch(pages, { tolerate = () => false, urls = [] } = {}) {
  const problems = [];
  const refused = (text) => tolerate() && /ERR_CONNECTION_REFUSED|ERR_CONNECTION_RESET|ERR_ABORTED|WebSocket connection to .* failed|connection.*(closed|refused)/i.test(text);
  for (const [who, p] of Object.entries(pages)) {
    p.on('pageerror', (e) => problems.push(`${who}: page error: ${e.message}`));
    p.on('console', (m) => { if (m.type() === 'error' && !refused(m.text())) problems.push(`${who}: console error: ${m.text()}`); });
    p.on('requestfailed', (r) => {
      const text = `${r.url()} ${r.failure()?.errorText ?? ''}`;
      if (!refused(text)) problems.push(`${who}: request failed: ${text}`);
    });
    p.on('websocket', (ws) => ws.on('socketerror', (e) => { if (!refused(String(e))) problems.push(`${who}: WebSocket error on ${ws.url()}: ${e}`); }));
    p.on('request', (r) => urls.push(r.url()));
  }
  return problems;
}

/** Logs in through the demo hint (the account and its password filled in). */
export async function login(page, url, name) {
  await page.goto(url + '/');
  await page.getByRole('button', { name: new RegExp(`^${name} \\(password`) }).click();
  await page.getByTestId('login-submit').click();
  await page.getByTestId('me-name').filter({ hasText: name }).waitFor();
  await page.locator('body[data-ready=true]').waitFor();
}

export const channel = (page, peer) => page.locator(`[data-testid=channel][data-peer=${peer}]`);

/** Waits until the channel card shows `mine` = want (exact wei, from the amount's data). */
export async function waitMine(page, peer, want) {
  await page.waitForFunction(([p, w]) => document.querySelector(`[data-testid=channel][data-peer=${p}] [data-testid=mine] .amount`)?.dataset.base === w,
    [peer, want.toString()], { timeout: 60_000 });
}

export async function waitState(page, peer, state, timeout = 120_000) {
  await page.locator(`[data-testid=channel][data-peer=${peer}][data-state=${state}]`).waitFor({ state: 'attached', timeout });
}

/** alice proposes a channel to bob on her page; bob accepts on his. */
export async function openChannel(alice, bob, mine, theirs) {
  await alice.getByTestId('open-peer').selectOption('bob');
  await alice.getByTestId('open-mine').fill(mine);
  await alice.getByTestId('open-theirs').fill(theirs);
  await alice.getByTestId('open-submit').click();
  const proposal = bob.getByTestId('proposal');
  await proposal.waitFor();
  await proposal.getByTestId('accept').click();
  await waitState(alice, 'bob', 'open');
  await waitState(bob, 'alice', 'open');
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const SIZES = { desktop: DESKTOP.viewport, phone: PHONE.viewport };

/**
 * Runs axe-core on the page as it is, at the desktop and the phone size
 * (the page is resized and put back), and returns the violations as lines
 * "screen @size: rule (impact): help: targets".
 */
export async function axe(page, screen) {
  const was = page.viewportSize();
  const found = [];
  for (const [size, viewport] of Object.entries(SIZES)) {
    await page.setViewportSize(viewport);
    if (!(await page.evaluate(() => typeof window.axe === 'object'))) await page.evaluate(axeSource);
    const r = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
    for (const v of r.violations) {
      found.push(`${screen} @${size}: ${v.id} (${v.impact}): ${v.help}: ${v.nodes.map((n) => `${n.target.join(' ')} [${(n.failureSummary ?? '').replace(/\s+/g, ' ')}]`).join('; ')}`);
    }
  }
  await page.setViewportSize(was);
  return found;
}
