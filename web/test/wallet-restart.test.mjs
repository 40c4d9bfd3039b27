// The web wallet through a kill -9 and restart of the node (issue 19.1)
// and through a force close (19.2): alice on a desktop, bob on a phone,
// both pages open while `perund dev` is killed and started again on the
// same port and data dir. Screenshots: web/test/output/restart-*.png.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startDev } from './helpers.mjs';
import { DESKTOP, ETH, PHONE, axe, channel, launch, login, openChannel, shooter, sleep, waitMine, watch } from './browser.mjs';

// A short challenge period, so that the force close settles within the test.
const devArgs = ['--set', 'channel.challengeDuration=15'];
let dev;
let browser;
let alice;
let bob;
let outage = false;
let problems = [];
const a11y = []; // axe's violations on every screen, at both sizes
const shot = shooter('restart');

before(async () => {
  dev = await startDev(devArgs);
  browser = await launch();
  alice = await (await browser.newContext(DESKTOP)).newPage();
  bob = await (await browser.newContext(PHONE)).newPage();
  problems = watch({ alice, bob }, { tolerate: () => outage });
});
after(async () => {
  await browser?.close();
  const code = await dev?.stop();
  dev?.cleanup();
  assert.equal(code, 0, 'perund dev exits 0 on SIGTERM');
});

test('kill -9 and restart of the node with both pages open', { timeout: 180_000 }, async () => {
  await login(alice, dev.url, 'alice');
  await login(bob, dev.url, 'bob');
  await openChannel(alice, bob, '2', '1');
  await waitMine(bob, 'alice', 1n * ETH);
  // alice has typed an amount; bob has scrolled down to the channel.
  await channel(alice, 'bob').getByTestId('amount').fill('0.5');
  await channel(bob, 'alice').scrollIntoViewIfNeeded();
  await sleep(300); // the page remembers the scroll position (on scroll)
  const bobScroll = await bob.evaluate(() => scrollY);

  outage = true;
  await dev.kill();
  for (const p of [alice, bob]) {
    await p.getByTestId('banner').filter({ hasText: /The node is unreachable since .*Reconnecting/ }).waitFor({ timeout: 10_000 });
    assert.match(await p.getByTestId('conn').getAttribute('class'), /down/);
  }
  // A Send while the node is down says so at once; the amount stays.
  const t0 = Date.now();
  await channel(alice, 'bob').getByTestId('send').click();
  await channel(alice, 'bob').getByTestId('note').filter({ hasText: 'The node is unreachable: nothing was sent' }).waitFor({ timeout: 2000 });
  assert.ok(Date.now() - t0 < 1500, `the refusal took ${Date.now() - t0} ms`);
  assert.equal(await channel(alice, 'bob').getByTestId('amount').inputValue(), '0.5');
  assert.equal(await channel(alice, 'bob').getAttribute('data-state'), 'open');
  await shot(alice, 'alice-node-down');
  await shot(bob, 'bob-node-down');
  a11y.push(...await axe(alice, 'node unreachable'));
  // bob reloads: the node serves the page, so the browser shows its error page.
  await assert.rejects(bob.reload({ timeout: 10_000 }));
  await sleep(3000); // long enough for a backoff to grow

  dev = await startDev(devArgs, dev.dataDir, dev.port);
  const up = Date.now();
  // The open page: what happened, the same account, only the password.
  const note = alice.getByTestId('login-note');
  await note.waitFor({ timeout: 5000 });
  const took = Date.now() - up;
  assert.ok(took < 2000, `alice's page came back ${took} ms after the node`);
  assert.match(await note.textContent(), /The node was unreachable from .* and has restarted, which ended your session\. .*password of alice/);
  assert.equal(await alice.locator('#login-title').textContent(), 'Continue as alice');
  assert.equal(await alice.getByTestId('login-account').isVisible(), false, 'no account choice');
  const aliceAddr = await alice.getByTestId('login-account').inputValue();
  assert.match(aliceAddr, /^0x70997970/i);
  assert.equal(await alice.getByTestId('login-password').evaluate((e) => e === document.activeElement), true, 'the password field has the focus');
  await shot(alice, 'alice-after-restart');
  a11y.push(...await axe(alice, 'password after a restart'));

  // bob's page, reloaded now the node is back: the same.
  await bob.goto(dev.url + '/');
  const bobNote = bob.getByTestId('login-note');
  await bobNote.waitFor({ timeout: 10_000 });
  assert.match(await bobNote.textContent(), /The node was unreachable from .* and has restarted.*password of bob/);
  assert.equal(await bob.locator('#login-title').textContent(), 'Continue as bob');
  assert.match(await bob.getByTestId('login-account').inputValue(), /^0x3C44CdDd/i);
  assert.equal(await bob.evaluate(() => JSON.stringify(sessionStorage).includes('"bob"') || JSON.stringify(localStorage).includes('"bob"')), false,
    'no password in the browser storage');
  await shot(bob, 'bob-reloaded-after-restart');
  outage = false;

  // The password only, and back where they were.
  for (const [p, name] of [[alice, 'alice'], [bob, 'bob']]) {
    await p.getByTestId('login-password').fill(name);
    await p.getByTestId('login-submit').click();
    await p.locator('body[data-ready=true]').waitFor({ timeout: 30_000 });
    await p.getByTestId('me-name').filter({ hasText: name }).waitFor();
  }
  assert.equal(await channel(alice, 'bob').getByTestId('amount').inputValue(), '0.5', 'the typed amount is still there');
  assert.equal(await channel(alice, 'bob').getAttribute('data-state'), 'open');
  const y = await bob.evaluate(() => scrollY);
  assert.ok(Math.abs(y - bobScroll) < 80, `bob's page is scrolled to ${y}, was ${bobScroll}`);
  assert.ok(await channel(bob, 'alice').isVisible());
  assert.equal(await alice.getByTestId('banner').isVisible(), false);
  await shot(bob, 'bob-back');

  // The channel works as before: alice sends the 0.5 ETH she had typed.
  await channel(alice, 'bob').getByTestId('send').click();
  await waitMine(bob, 'alice', 15n * ETH / 10n);
  await waitMine(alice, 'bob', 15n * ETH / 10n);
  await shot(alice, 'alice-paid-after-restart');
  assert.deepEqual(problems, [], 'no page error, console error or failed connection outside the outage');
});

test('a force close: its countdown, plain dispute entries, a notice for the peer', { timeout: 180_000 }, async () => {
  // The channel of the test above (version 1: alice 1.5 ETH, bob 1.5 ETH).
  alice.once('dialog', (d) => d.accept()); // "Force close … Go on?"
  await channel(alice, 'bob').getByTestId('force-close').click();
  const time = String.raw`\d{1,2}:\d{2}:\d{2}(?: [AP]M)?`;
  for (const [p, peer] of [[alice, 'bob'], [bob, 'alice']]) {
    const challenge = channel(p, peer).getByTestId('challenge');
    await challenge.waitFor({ timeout: 30_000 });
    assert.match(await challenge.textContent(), new RegExp(`^Challenge period ends in 0:\\d\\d \\(at ${time}\\)\\. Then 1\\.5 ETH goes back to your on-chain account\\.$`));
  }
  // It counts down.
  const count = channel(alice, 'bob').getByTestId('countdown-challenge');
  const first = await count.textContent();
  await alice.waitForFunction((f) => document.querySelector('[data-testid=channel][data-peer=bob] [data-testid=countdown-challenge]')?.textContent !== f, first, { timeout: 3000 });
  assert.equal(await channel(alice, 'bob').getAttribute('data-state'), 'registered');
  // The dispute log in plain words, with the wall-clock end of the challenge period.
  const aliceLog = alice.getByTestId('disputes');
  assert.match(await aliceLog.locator('[data-event=registered]').textContent(),
    new RegExp(`You registered the latest state \\(version 1\\) on chain to close the channel without bob\\. You receive 1\\.5 ETH after the challenge period ends at ${time}\\.`));
  // bob is told, and it is no error: nothing is asked of him.
  const bobNote = channel(bob, 'alice').getByTestId('note');
  await bobNote.filter({ hasText: 'alice is closing the channel on chain with the latest state (version 1). Nothing for you to do.' }).waitFor({ timeout: 10_000 });
  assert.doesNotMatch(await bobNote.getAttribute('class'), /error/);
  assert.equal(await bob.locator('.toast.error, .note.error').count(), 0);
  await shot(alice, 'alice-force-close-countdown');
  a11y.push(...await axe(alice, 'force close countdown'), ...await axe(bob, 'force close notice'));
  await shot(bob, 'bob-sees-force-close');

  // After the challenge period both are paid out.
  for (const [p, peer] of [[alice, 'bob'], [bob, 'alice']]) {
    await p.locator(`[data-testid=channel][data-peer=${peer}][data-state=closed]`).waitFor({ state: 'attached', timeout: 90_000 });
    await p.getByTestId('disputes').locator('[data-event=withdrawn]')
      .filter({ hasText: `1.5 ETH from the channel with ${peer} (version 1) is back in your on-chain account.` }).waitFor({ timeout: 30_000 });
    const all = await p.getByTestId('disputes').textContent();
    assert.doesNotMatch(all, /1970|undefined|NaN/);
    assert.match(await channel(p, peer).textContent(), /Closed .* through a dispute\./);
    assert.equal(await channel(p, peer).getByTestId('challenge').count(), 0);
  }
  await shot(alice, 'alice-force-closed');
  await shot(bob, 'bob-force-closed');
  a11y.push(...await axe(alice, 'closed through a dispute'));
  assert.deepEqual(problems, [], 'no page error, console error or failed connection');
  assert.deepEqual(a11y, [], 'axe finds no violation');
});
