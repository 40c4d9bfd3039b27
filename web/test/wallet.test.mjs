// The web wallet in a real Chromium (Debian's package, driven by
// playwright-core): alice on a desktop and bob on a phone, in two browser
// contexts against `perund dev`, open a channel, pay, request and close,
// by clicking and typing only. Screenshots of every step go to
// TEST_OUTPUT_DIR (default web/test/output).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { PerundClient } from '../client/perund.js';
import { WebSocket } from 'ws';
import { startDev } from './helpers.mjs';
import { DESKTOP, ETH, PHONE, axe, channel, launch, login, shooter, waitMine, waitState, watch } from './browser.mjs';

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

const shot = shooter();

async function onChainShown(page) {
  return BigInt(await page.getByTestId('balance-ETH').locator('.amount').getAttribute('data-base'));
}

/** Whether any toast on the page covers one of the channel's buttons. */
async function toastsCoverButtons(page) {
  return page.evaluate(() => {
    const boxes = (sel) => [...document.querySelectorAll(sel)].map((e) => e.getBoundingClientRect()).filter((r) => r.width && r.height);
    const over = (a, b) => a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
    const toasts = boxes('.toast');
    return boxes('[data-testid=channel] button').some((b) => toasts.some((t) => over(t, b)));
  });
}

test('alice and bob: open, payments, a request, bad amounts, an unfundable proposal, close', { timeout: 300_000 }, async () => {
  const alice = await (await browser.newContext(DESKTOP)).newPage();
  const bob = await (await browser.newContext(PHONE)).newPage();
  const urls = [];
  const problems = watch({ alice, bob }, { urls });
  const a11y = []; // axe's violations on every screen, at both sizes

  await alice.goto(dev.url + '/');
  await alice.locator('#login-account option').first().waitFor({ state: 'attached' });
  a11y.push(...await axe(alice, 'login'));
  await alice.getByTestId('login-submit').click(); // no password: the field is marked
  await alice.getByTestId('field-error').filter({ hasText: 'Enter the password.' }).waitFor();
  a11y.push(...await axe(alice, 'login without a password'));
  await login(alice, dev.url, 'alice');
  await login(bob, dev.url, 'bob');
  await shot(alice, 'alice-logged-in');
  a11y.push(...await axe(alice, 'wallet'));
  await shot(bob, 'bob-logged-in');
  const aliceStart = await onChainShown(alice);
  const bobStart = await onChainShown(bob);
  assert.equal(aliceStart, 100n * ETH);
  // The address is on one line on the phone: it never breaks inside the hex.
  const addr = await bob.getByTestId('me-address').evaluate((e) => ({ h: e.getBoundingClientRect().height, line: parseFloat(getComputedStyle(e).lineHeight), w: e.scrollWidth, cw: e.clientWidth }));
  assert.ok(addr.h < addr.line * 1.5 && addr.w <= addr.cw, `bob's address wraps or overflows: ${JSON.stringify(addr)}`);

  // An unfundable proposal: alice asks bob for 5000 ETH; her form warns
  // (bob's on-chain balance is public), bob sees the shortfall and no Accept.
  await alice.getByTestId('open-peer').selectOption('bob');
  await alice.getByTestId('open-mine').fill('1');
  await alice.getByTestId('open-theirs').fill('5000');
  await alice.getByTestId('open-warning').filter({ hasText: /bob has 100 ETH on chain, less than the 5000 ETH you ask them to put in/ }).waitFor({ timeout: 10_000 });
  await shot(alice, 'alice-warned-unfundable');
  a11y.push(...await axe(alice, 'open form with a warning'));
  await alice.getByTestId('open-submit').click();
  const big = bob.getByTestId('proposal');
  await big.waitFor();
  assert.match(await big.getByTestId('unfundable').textContent(), /Your on-chain balance is 4900 ETH short of your deposit/);
  assert.equal(await big.getByTestId('accept').count(), 0, 'no Accept for a proposal bob cannot fund');
  await shot(bob, 'bob-sees-unfundable-proposal');
  a11y.push(...await axe(bob, 'unfundable proposal'));
  await big.getByTestId('reject').click();
  await alice.locator('.toast', { hasText: /bob said no/ }).waitFor({ timeout: 30_000 });
  await big.waitFor({ state: 'detached' });

  // alice proposes 10 ETH from her, 5 from bob.
  await alice.getByTestId('open-mine').fill('10');
  await alice.getByTestId('open-theirs').fill('5');
  await alice.getByTestId('open-warning').waitFor({ state: 'hidden' });
  await alice.getByTestId('open-submit').click();
  const proposal = bob.getByTestId('proposal');
  await proposal.waitFor();
  assert.match(await proposal.textContent(), /alice proposes a channel in ETH: you put in 5 ETH, they put in 10 ETH/);
  assert.match(await proposal.locator('.countdown').textContent(), /expires in \d+ s/);
  await shot(bob, 'bob-sees-proposal');
  a11y.push(...await axe(bob, 'proposal'));
  await proposal.getByTestId('accept').click();
  await waitState(alice, 'bob', 'open');
  await waitState(bob, 'alice', 'open');
  await waitMine(bob, 'alice', 5n * ETH);
  for (const p of [alice, bob]) assert.match(await p.getByTestId('log').textContent(), /Channel with (bob|alice) opened/);
  // The state badge sits at the right of the card's header; the placeholder fits.
  const head = await channel(alice, 'bob').evaluate((card) => {
    const h = card.querySelector('header').getBoundingClientRect();
    const b = card.querySelector('[data-testid=state]').getBoundingClientRect();
    const i = card.querySelector('[data-testid=amount]');
    const probe = document.createElement('span');
    probe.style.font = getComputedStyle(i).font;
    probe.textContent = i.placeholder;
    document.body.append(probe);
    const need = probe.getBoundingClientRect().width;
    probe.remove();
    return { gap: h.right - b.right, need, have: i.clientWidth };
  });
  assert.ok(head.gap < 2, `the badge is ${head.gap} px from the header's right end`);
  assert.ok(head.need < head.have, `the placeholder needs ${head.need} px, has ${head.have}`);
  await shot(alice, 'alice-channel-open');
  a11y.push(...await axe(alice, 'channel open'));
  await shot(bob, 'bob-channel-open');

  // Bad amounts are refused in the page, before anything is sent: the
  // field is marked, the message says what to type.
  const amount = channel(alice, 'bob').getByTestId('amount');
  for (const [bad, message, fix] of [
    ['-1', 'Enter the amount without a sign: 1.', '1'],
    ['0,5', 'Write decimals with a point: 0.5.', '0.5'],
    ['1000', 'You have 10 ETH in this channel.'],
    ['0', 'Enter an amount above 0.'],
    ['abc', 'Enter a number in ETH, such as 0.5.'],
    ['0.0000000000000000001', 'ETH has at most 18 decimal places.'],
  ]) {
    await amount.fill(bad);
    await channel(alice, 'bob').getByTestId('send').click();
    const err = channel(alice, 'bob').getByTestId('field-error');
    await err.filter({ hasText: message }).waitFor({ timeout: 5000 });
    assert.match(await amount.getAttribute('class'), /\binvalid\b/, `${bad}: the field is marked`);
    assert.equal(await amount.getAttribute('aria-invalid'), 'true');
    assert.equal(await amount.getAttribute('aria-describedby'), await err.getAttribute('id'));
    assert.doesNotMatch(await err.textContent(), /not a non-negative|non-negative/);
    assert.equal(await err.getByTestId('fix').count(), fix ? 1 : 0);
    if (bad === '0,5') {
      await shot(alice, 'alice-bad-amount');
      a11y.push(...await axe(alice, 'bad amount'));
      await err.getByTestId('fix').click(); // "Use 0.5"
      assert.equal(await amount.inputValue(), '0.5');
      assert.equal(await amount.getAttribute('aria-invalid'), null, 'the mark goes with the fix');
    }
  }
  await amount.fill('');
  assert.equal(await channel(alice, 'bob').getByTestId('field-error').count(), 0, 'typing clears the mark');
  assert.equal(await channel(alice, 'bob').getAttribute('data-state'), 'open');
  assert.match(await channel(alice, 'bob').textContent(), /version 0/);

  // Three payments; bob's page shows each, in the card: no toast covers
  // the channel's buttons on his phone.
  let paid = 0n;
  for (const [i, [text, wei]] of [['0.25', 25n * ETH / 100n], ['0.015', 15n * ETH / 1000n], ['0.0001234567', 1234567n * 10n ** 8n]].entries()) {
    await amount.fill(text);
    await channel(alice, 'bob').getByTestId('send').click();
    paid += wei;
    await waitMine(bob, 'alice', 5n * ETH + paid);
    await waitMine(alice, 'bob', 10n * ETH - paid);
    await alice.waitForFunction(() => document.querySelector('[data-testid=channel][data-peer=bob] [data-testid=amount]')?.value === '');
    await channel(bob, 'alice').getByTestId('note').filter({ hasText: `alice paid you ${text} ETH` }).waitFor();
    assert.equal(await toastsCoverButtons(bob), false, 'a toast covers the channel buttons on the phone');
    await shot(bob, `bob-sees-payment-${i + 1}`);
  }
  assert.match(await bob.getByTestId('log').textContent(), /alice pays you 0\.0001234567 ETH — accepted/);
  // The exact amount by a tap on the phone: 5.2651234567 is cut to 6 decimals.
  const mine = channel(bob, 'alice').getByTestId('mine').locator('.amount');
  assert.equal(await mine.textContent(), '5.265123… ETH');
  await mine.tap();
  assert.equal(await mine.textContent(), '5.2651234567 ETH');
  await shot(bob, 'bob-exact-amount');
  a11y.push(...await axe(bob, 'payment notice, exact amount'));
  await mine.tap();
  assert.equal(await mine.textContent(), '5.265123… ETH');

  // bob requests 0.5 ETH; alice pays from her page.
  await channel(bob, 'alice').getByTestId('amount').fill('0.5');
  await channel(bob, 'alice').getByTestId('request').click();
  const req = alice.getByTestId('update-request');
  await req.waitFor();
  await shot(alice, 'alice-sees-request');
  a11y.push(...await axe(alice, 'payment request'));
  await req.getByTestId('accept').click();
  const bobShare = 5n * ETH + paid + ETH / 2n;
  const aliceShare = 10n * ETH - paid - ETH / 2n;
  await waitMine(bob, 'alice', bobShare);
  await waitMine(alice, 'bob', aliceShare);
  await shot(bob, 'bob-request-paid');

  // alice closes; bob agrees on his page.
  await channel(alice, 'bob').getByTestId('close').click();
  const closeReq = bob.getByTestId('update-close');
  await closeReq.waitFor({ timeout: 60_000 });
  await shot(bob, 'bob-sees-close');
  a11y.push(...await axe(bob, 'close request'));
  await closeReq.getByTestId('accept').click();
  await waitState(alice, 'bob', 'closed');
  await waitState(bob, 'alice', 'closed');
  // Both are told, in the card and the activity log; a cooperative close is no dispute.
  for (const [p, peer] of [[alice, 'bob'], [bob, 'alice']]) {
    await channel(p, peer).getByTestId('note').filter({ hasText: /Closed by agreement: .* is back in your on-chain account/ }).waitFor({ timeout: 30_000 });
    assert.match(await p.getByTestId('log').textContent(), new RegExp(`Channel with ${peer} closed by agreement`));
    assert.equal(await p.getByTestId('disputes').locator('[data-testid=dispute]').count(), 0, 'a cooperative close is not a dispute');
  }

  // The new on-chain balances: what the node says, and the channel's final
  // share less at most 0.01 ETH of gas.
  for (const [page, name, start, share, deposit] of [[alice, 'alice', aliceStart, aliceShare, 10n * ETH], [bob, 'bob', bobStart, bobShare, 5n * ETH]]) {
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
  a11y.push(...await axe(alice, 'closed'));
  // After a reload the closed channel is in the collapsed list.
  await bob.reload();
  await bob.locator('body[data-ready=true]').waitFor();
  const closedList = bob.getByTestId('closed-channels');
  assert.equal(await closedList.evaluate((d) => d.open), false);
  assert.equal(await channel(bob, 'alice').isVisible(), false);
  await closedList.locator('summary').tap();
  assert.equal(await channel(bob, 'alice').isVisible(), true);
  a11y.push(...await axe(bob, 'closed channels list'));
  // Works offline: every request went to the node itself.
  const foreign = urls.filter((u) => !u.startsWith(dev.url + '/') && !u.startsWith(`ws://127.0.0.1:${dev.port}/`));
  assert.deepEqual(foreign, [], 'requests beyond the node');
  assert.deepEqual(problems, [], 'no page error, console error or failed connection');
  assert.deepEqual(a11y, [], 'axe finds no violation');
});
