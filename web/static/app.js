// perund's web wallet: a page over the JS client (/client/perund.js). No
// framework and no build step; everything is served by perund itself.
import { PerundClient, PerundError, Codes, ERR_CONNECTION, ERR_TIMEOUT, formatUnits, parseUnits } from '/client/perund.js';

const $ = (id) => document.getElementById(id);
const rpcURL = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/rpc';
// A node with rpc.authToken: open the wallet as /?token=T.
const rpcToken = new URLSearchParams(location.search).get('token') ?? undefined;

// The wallet reconnects by itself (reconnectLoop), at most a second apart:
// the client's own loop backs off up to 10 s, so a page came back up to
// 10 s after the node did. Each attempt is a fresh client.
function makeClient() {
  const c = new PerundClient(rpcURL, { token: rpcToken, reconnect: false });
  c.on('open', () => { if (c === client) setConn('up', 'connected'); });
  c.on('close', () => { if (c === client) nodeLost(); });
  return c;
}
let client = makeClient();

// What this tab remembers across reloads (sessionStorage: one tab, one
// user) and across tabs (localStorage: the last account, preselected).
// Never a password.
const saved = {
  session() { try { return JSON.parse(sessionStorage.getItem('perund.session')) ?? null; } catch { return null; } },
  setSession(v) { if (v) sessionStorage.setItem('perund.session', JSON.stringify(v)); else sessionStorage.removeItem('perund.session'); },
  get(key) { return sessionStorage.getItem(`perund.${key}`); },
  set(key, v) { if (v === null || v === undefined) sessionStorage.removeItem(`perund.${key}`); else sessionStorage.setItem(`perund.${key}`, String(v)); },
  lastAccount() { try { return localStorage.getItem('perund.account'); } catch { return null; } },
  setLastAccount(a) { try { localStorage.setItem('perund.account', a); } catch { /* storage off */ } },
};

const state = {
  info: null,
  session: null,
  channels: new Map(),
  proposals: new Map(),
  updates: new Map(),
  contacts: [],
  balances: {},
  busy: new Set(), // channel ids with a call in flight
  notes: new Map(), // channel id → {text, kind, at}: what happened to it last, shown in its card
};

// ---------- formatting ----------

function decimalsOf(symbol) {
  const a = state.info?.assets?.find((x) => x.symbol === symbol);
  return a ? a.decimals : 18;
}

/** An amount element: whole units shown, exact base units on hover. */
function amountEl(base, symbol = 'ETH') {
  const span = document.createElement('span');
  span.className = 'amount';
  span.textContent = `${trimUnits(formatUnits(base, decimalsOf(symbol)))} ${symbol}`;
  span.title = `${BigInt(base).toLocaleString('en-US')} ${symbol === 'ETH' ? 'wei' : 'base units'} (exact)`;
  span.dataset.base = String(base);
  return span;
}

function trimUnits(s) {
  const [w, f] = s.split('.');
  if (!f) return w;
  return f.length > 6 ? `${w}.${f.slice(0, 6)}…` : s;
}

function short(addr) { return addr ? `${addr.slice(0, 8)}…${addr.slice(-6)}` : ''; }

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}

// ---------- fields ----------

/** Marks a field as refused, with the reason under it (and a fix to click, if any). */
function markInvalid(input, message, fix) {
  input.classList.add('invalid');
  input.setAttribute('aria-invalid', 'true');
  const id = `${input.id || input.dataset.amountFor?.slice(0, 18) || 'field'}-error`;
  let msg = input.parentElement.querySelector(`.field-error[data-for="${input.id || input.dataset.amountFor}"]`);
  if (!msg) {
    msg = el('p', { class: 'field-error', id, role: 'alert', 'data-testid': 'field-error', dataset: { for: input.id || input.dataset.amountFor } });
    input.insertAdjacentElement('afterend', msg);
  }
  msg.replaceChildren(message, fix ? ' ' : '', fix ? el('button', { type: 'button', class: 'link', 'data-testid': 'fix',
    onclick: () => { input.value = fix; clearInvalid(input); input.focus(); } }, `Use ${fix}`) : '');
  input.setAttribute('aria-describedby', id);
}

function clearInvalid(input, empty = false) {
  input.classList.remove('invalid');
  input.removeAttribute('aria-invalid');
  input.removeAttribute('aria-describedby');
  input.parentElement?.querySelector(`.field-error[data-for="${input.id || input.dataset.amountFor}"]`)?.remove();
  if (empty) input.value = '';
}

// ---------- messages ----------

/** A sentence for an error of the node, by its code. */
function explain(err) {
  if (!(err instanceof PerundError)) return String(err?.message ?? err);
  const d = err.data ?? {};
  const fmt = (v) => { try { return `${trimUnits(formatUnits(v))} ETH`; } catch { return v; } };
  switch (err.code) {
    case Codes.UNAUTHORIZED:
      if (d.retryAfter) return `Too many wrong passwords: try again in ${d.retryAfter} s.`;
      if (/wrong password/.test(err.message)) return 'Wrong password for this account.';
      if (/no session bound/.test(err.message)) return 'Please log in again.';
      return err.message.replace(/^unauthorized: /, 'Not allowed: ');
    case Codes.NOT_FOUND: return `Not found: ${d.resource ?? ''} ${d.id ?? ''}`.trim();
    case Codes.CONFLICT: return `Conflict: ${err.message}`;
    case Codes.PEER_UNREACHABLE: return `Your peer ${d.peer ?? ''} cannot be reached${d.commAddress ? ` at ${d.commAddress}` : ''}. Are they online?`;
    case Codes.PEER_REJECTED: return `${d.peer ?? 'The peer'} said no${d.reason ? `: ${d.reason}` : ''}.`;
    case Codes.TIMED_OUT: return `Timed out${d.timeout ? ` after ${d.timeout} s` : ''}: ${err.message}`;
    case Codes.INSUFFICIENT_FUNDS: return `Not enough funds: ${fmt(d.available)} available, ${fmt(d.needed)} needed.`;
    case Codes.CHAIN: return `The chain did not take the transaction${d.txHash ? ` (${short(d.txHash)})` : ''}.`;
    case Codes.WRONG_STATE: return `Not possible while the channel is ${d.state}.`;
    case Codes.INVALID_PARAMS: return `Invalid ${d.field ?? 'input'}: ${err.message.replace(/^invalid params: /, '')}`;
    case ERR_CONNECTION: return conn.online ? 'The node is unreachable: nothing was sent.' : UNREACHABLE;
    case ERR_TIMEOUT: return 'The node did not answer in time.';
    default: return err.message;
  }
}

function toast(text, kind = 'info', ms = 6000) {
  const t = el('div', { class: `toast ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, text);
  $('toasts').append(t);
  while ($('toasts').children.length > 3) $('toasts').firstChild.remove();
  setTimeout(() => t.remove(), ms);
}

function log(text) {
  const list = $('log');
  list.querySelector('.empty')?.remove();
  list.prepend(el('li', {}, el('time', {}, new Date().toLocaleTimeString()), text));
  while (list.children.length > 200) list.lastChild.remove();
}

const UNREACHABLE = 'The node is unreachable: nothing was sent. Try again once it answers.';

/** Runs fn with the button disabled; errors become toasts. */
async function busy(button, fn) {
  if (!conn.online) {
    toast(UNREACHABLE, 'error');
    return undefined;
  }
  if (button) button.disabled = true;
  try {
    return await fn();
  } catch (e) {
    toast(explain(e), 'error', 9000);
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

// ---------- connection ----------

const conn = { online: false, since: null, loop: null };

function setConn(cls, text) {
  $('conn').className = `conn ${cls}`;
  $('conn-text').textContent = text;
}

function clock(t) {
  const d = new Date(t);
  return d.toDateString() === new Date().toDateString() ? d.toLocaleTimeString() : d.toLocaleString();
}

function banner(text) {
  const b = $('banner');
  b.hidden = !text;
  b.textContent = text ?? '';
}

/** The connection to the node broke: say so and reconnect. */
function nodeLost() {
  conn.online = false;
  if (!conn.since) {
    conn.since = Date.now();
    saved.set('outage', conn.since);
  }
  setConn('down', 'node unreachable');
  banner(`The node is unreachable since ${clock(conn.since)}. Reconnecting… Nothing you do here reaches it until then.`);
  if (!conn.loop) conn.loop = reconnectLoop().finally(() => { conn.loop = null; });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const retryable = (e) => e instanceof PerundError && (e.code === ERR_CONNECTION || e.code === ERR_TIMEOUT);

/**
 * Connects a fresh client, at once and then every 250 ms, 500 ms, 1 s,
 * 1 s…, until the node answers; then takes up the session (or asks for the
 * password when the node forgot it).
 */
async function reconnectLoop() {
  for (let delay = 0; ; delay = Math.min(Math.max(2 * delay, 250), 1000)) {
    if (delay) await sleep(delay);
    const c = makeClient();
    let info;
    try {
      info = await c.call('node_info', undefined, { timeout: 5000 });
    } catch (e) {
      c.close();
      if (!conn.since) nodeLost(); // the first attempt (page load) failed
      continue;
    }
    const old = client;
    client = c;
    if (old !== c) old.close();
    conn.online = true;
    setConn('up', 'connected');
    try {
      await connected(info);
      return;
    } catch (e) {
      if (!retryable(e)) {
        toast(explain(e), 'error', 9000);
        return;
      }
      conn.online = false; // lost again: try again
    }
  }
}

/** The node answers: its assets, then the session. */
async function connected(info) {
  state.info = info;
  $('node-line').textContent = `perund ${info.version} · chain ${info.chainId}`;
  const assets = ['ETH', ...(info.assets ?? []).map((a) => a.symbol).filter((s) => s !== 'ETH')];
  const sel = $('open-asset');
  const prev = sel.value;
  sel.replaceChildren(...assets.map((s) => el('option', { value: s }, s)));
  if (prev && assets.includes(prev)) sel.value = prev;
  const outage = conn.since ?? (saved.get('outage') ? Number(saved.get('outage')) : null);
  const s = saved.session();
  if (s) {
    try {
      const r = await client.sessionResume(s.sessionId, s.token);
      banner(null);
      conn.since = null;
      await enterWallet({ ...r, token: s.token }, { again: Boolean(outage) });
      return;
    } catch (e) {
      if (!(e instanceof PerundError) || e.code !== Codes.UNAUTHORIZED) throw e;
      // The node no longer knows the session: it restarted (or the
      // session was closed). Ask for this account's password only.
    }
  }
  const wasIn = state.session !== null || s !== null;
  state.session = null;
  document.body.dataset.ready = 'false';
  banner(null);
  conn.since = null;
  await showLogin(wasIn ? { address: s?.address ?? saved.lastAccount(), manualAccept: s?.manualAccept, outage } : {});
}

// ---------- login ----------

const demoByAddress = () => new Map((state.info.demoAccounts ?? []).map((d) => [d.address.toLowerCase(), d]));
const nameOf = (address) => demoByAddress().get(address.toLowerCase())?.name ?? short(address);

/**
 * The login form. again: the node forgot this tab's session (it
 * restarted): the account stays chosen and only its password is asked.
 * @param {{address?: string, manualAccept?: boolean, outage?: number|null}} [again]
 */
async function showLogin(again = {}) {
  // Where the user was, to come back to after the password.
  if (!$('wallet-view').hidden) saved.set('scroll', Math.round(scrollY));
  $('wallet-view').hidden = true;
  $('login-view').hidden = false;
  document.title = 'perund wallet';
  const accounts = await client.accountList();
  const demo = demoByAddress();
  const sel = $('login-account');
  const name = (a) => demo.get(a.toLowerCase())?.name ?? '~' + a;
  accounts.sort((a, b) => name(a).localeCompare(name(b)));
  sel.replaceChildren(...accounts.map((a) => {
    const d = demo.get(a.toLowerCase());
    return el('option', { value: a }, d ? `${d.name} — ${short(a)}` : a);
  }));
  const want = again.address ?? saved.lastAccount();
  const match = want && accounts.find((a) => a.toLowerCase() === want.toLowerCase());
  if (match) sel.value = match;
  const resuming = Boolean(again.address && match);
  loginMode.again = resuming ? again : null;
  $('login-title').textContent = resuming ? `Continue as ${nameOf(match)}` : 'Log in';
  $('login-account-label').hidden = resuming;
  $('login-manual-label').hidden = resuming;
  $('login-other').hidden = !resuming;
  $('login-submit').textContent = resuming ? 'Continue' : 'Log in';
  const note = $('login-note');
  note.hidden = !resuming;
  if (resuming) {
    note.textContent = (again.outage
      ? `The node was unreachable from ${clock(again.outage)} and has restarted, which ended your session.`
      : 'Your session on the node has ended: the node restarted.')
      + ` Enter the password of ${nameOf(match)} (${short(match)}) to continue where you were.`;
  }
  if (demo.size && !resuming) {
    const hint = $('demo-hint');
    hint.hidden = false;
    hint.replaceChildren('Demo accounts: ', ...[...demo.values()].flatMap((d, i) => [i ? ', ' : '',
      el('button', { type: 'button', class: 'link', onclick: () => { sel.value = d.address; $('login-password').value = d.password; } },
        `${d.name} (password “${d.password}”)`)]), '. Open a second window to be the other one.');
  } else {
    $('demo-hint').hidden = true;
  }
  $('create-account').hidden = resuming || !state.info.accountCreation;
  $('login-password').focus();
}

const loginMode = { again: null };

$('login-other').addEventListener('click', () => {
  saved.setSession(null);
  showLogin().catch((e) => toast(explain(e), 'error'));
});

$('login-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const account = $('login-account').value;
  const password = $('login-password').value;
  if (!account) return toast('Choose an account.', 'error');
  if (!password) return toast('Enter the password.', 'error');
  const again = loginMode.again;
  const manualAccept = again ? Boolean(again.manualAccept) : $('login-manual').checked;
  busy(ev.submitter, async () => {
    const s = await client.sessionOpen(account, password, { manualAccept });
    $('login-password').value = '';
    await enterWallet(s, { again: Boolean(again), manualAccept });
  });
});

$('create-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const p1 = $('create-password').value;
  const p2 = $('create-password2').value;
  if (p1.length < 4) return toast('Use a password of at least 4 characters.', 'error');
  if (p1 !== p2) return toast('The passwords differ.', 'error');
  busy(ev.submitter, async () => {
    const { address } = await client.accountNew(p1);
    toast(`Account ${short(address)} created.`, 'ok');
    await showLogin();
    $('login-account').value = address;
    $('login-password').value = p1;
  });
});

$('logout').addEventListener('click', () => {
  // The session stays on the node (its channels keep being watched); this
  // window only forgets it.
  saved.setSession(null);
  saved.set('scroll', null);
  location.reload();
});

function myName() {
  return nameOf(state.session.address);
}

/**
 * Shows the wallet of session s: subscribes, loads, and (again: after the
 * node restarted or the page reloaded) returns to where the user was.
 */
async function enterWallet(s, { again = false, manualAccept } = {}) {
  state.session = s;
  const prev = saved.session();
  saved.setSession({ sessionId: s.sessionId, token: s.token ?? client.session?.token, address: s.address,
    manualAccept: manualAccept ?? prev?.manualAccept ?? false });
  saved.setLastAccount(s.address);
  saved.set('outage', null);
  loginMode.again = null;
  $('login-view').hidden = true;
  $('wallet-view').hidden = false;
  $('me-name').textContent = myName();
  $('me-address').textContent = s.address;
  $('me-comm').textContent = s.commAddress;
  document.title = `${myName()} · perund wallet`;
  // A refused amount is not kept for the new session.
  for (const input of document.querySelectorAll('#wallet-view input.invalid')) clearInvalid(input, true);
  await Promise.all([
    client.subscribe('proposals', onProposal),
    client.subscribe('updates', onUpdate),
    client.subscribe('channels', onChannel),
    client.subscribe('disputes', onDispute),
  ]);
  log(again ? `Back as ${myName()}: the node answers again.` : `Logged in as ${myName()}.`);
  await refreshAll();
  const y = Number(saved.get('scroll'));
  if (y > 0) scrollTo(0, y);
  document.body.dataset.ready = 'true'; // subscribed and loaded (tests wait for it)
}

addEventListener('scroll', () => {
  if (!$('wallet-view').hidden && state.session) saved.set('scroll', Math.round(scrollY));
}, { passive: true });

$('copy-me').addEventListener('click', async () => {
  const line = `${myName()} ${state.session.address} ${state.session.commAddress}`;
  try { await navigator.clipboard.writeText(line); toast('Copied: ' + line, 'ok'); } catch { toast(line); }
});

// ---------- data ----------

async function refreshAll() {
  const [channels, proposals, updates, contacts] = await Promise.all([
    client.channelList(), client.proposalList(), client.updateList(), client.contactsList()]);
  state.channels = new Map(channels.map((c) => [c.channelId, c]));
  state.proposals = new Map(proposals.map((p) => [p.proposalId, p]));
  state.updates = new Map(updates.map((u) => [u.updateId, u]));
  state.contacts = contacts;
  renderChannels();
  renderIncoming();
  renderContacts();
  await refreshBalances();
}

async function refreshBalances() {
  const symbols = ['ETH', ...(state.info.assets ?? []).map((a) => a.symbol).filter((s) => s !== 'ETH')];
  const results = await Promise.all(symbols.map((asset) => client.chainBalance({ asset }).catch(() => null)));
  const box = $('balances');
  if (!results.some(Boolean)) return; // the node is away: keep what it said last
  box.replaceChildren(...results.filter(Boolean).map((r) => {
    state.balances[r.asset] = r.balance;
    return el('div', { dataset: { asset: r.asset, testid: `balance-${r.asset}` } }, el('div', { class: 'label' }, `on-chain ${r.asset}`), amountEl(r.balance, r.asset));
  }));
}

// ---------- events ----------

function onProposal(p) {
  if (p.status === 'pending') {
    state.proposals.set(p.proposalId, p);
    log(`${p.peer} proposes a channel in ${p.asset}: they put in ${fmtAmt(p.balance.theirs, p.asset)}, you ${fmtAmt(p.balance.mine, p.asset)}.`);
  } else {
    state.proposals.delete(p.proposalId);
    if (p.status === 'expired') log(`The channel proposal of ${p.peer} expired.`);
  }
  renderIncoming();
}

function fmtAmt(v, asset = 'ETH') { return `${trimUnits(formatUnits(v, decimalsOf(asset)))} ${asset}`; }

function onUpdate(u) {
  const ch = state.channels.get(u.channelId);
  const asset = ch?.asset ?? 'ETH';
  if (u.status === 'pending') {
    state.updates.set(u.updateId, u);
  } else {
    state.updates.delete(u.updateId);
  }
  const what = { payment: `pays you ${fmtAmt(u.amount, asset)}`, request: `asks you for ${fmtAmt(u.amount, asset)}`, close: 'wants to close the channel' }[u.kind];
  const status = { pending: '', accepted: ' — accepted', rejected: ' — rejected', expired: ' — expired' }[u.status] ?? '';
  log(`${u.peer} ${what}${status}.`);
  if (u.kind === 'payment' && u.status === 'accepted') toast(`${u.peer} paid you ${fmtAmt(u.amount, asset)}`, 'ok');
  renderIncoming();
}

function onChannel(c) {
  const before = state.channels.get(c.channelId);
  state.channels.set(c.channelId, c);
  if (!before || before.state !== c.state) {
    log(`Channel with ${c.peer} is ${c.state}${c.state === 'closed' && c.closedBy ? ` (${c.closedBy})` : ''}.`);
    if (c.state === 'open' || c.state === 'closed') refreshBalances();
  }
  renderChannels();
}

function onDispute(d) {
  const list = $('disputes');
  list.querySelector('.empty')?.remove();
  const ch = state.channels.get(d.channelId);
  const what = { registered: 'registered on-chain', progressed: 'progressed on-chain', concluded: 'concluded on-chain' }[d.event] ?? d.event;
  const until = Date.parse(d.timeout) > 0 && d.event === 'registered' ? ` (challenge period ends ${new Date(d.timeout).toLocaleString()})` : '';
  list.prepend(el('li', { dataset: { event: d.event } }, el('time', {}, new Date().toLocaleTimeString()),
    `Version ${d.version} of the channel with ${ch?.peer ?? short(d.channelId)} ${what}`,
    d.byPeer ? ' by the peer' : ' by you', d.response ? ` — ${d.response}` : '', until));
  if (d.event === 'registered') toast(`Dispute: ${ch?.peer ?? 'a channel'} ${d.byPeer ? 'registered' : 'is registered at'} version ${d.version} on-chain${d.response ? ` — ${d.response}` : ''}`, d.byPeer ? 'error' : 'info', 12000);
}

// ---------- rendering ----------

function renderIncoming() {
  const box = $('incoming');
  const items = [];
  for (const p of state.proposals.values()) {
    items.push(el('div', { class: 'item', dataset: { testid: 'proposal', id: p.proposalId } },
      el('div', {}, el('strong', {}, p.peer), ` proposes a channel in ${p.asset}: you put in `, amountEl(p.balance.mine, p.asset),
        ', they put in ', amountEl(p.balance.theirs, p.asset), '. ', countdown(p.expiresAt)),
      p.fundable === false
        ? el('div', { class: 'warn', 'data-testid': 'unfundable' }, 'You cannot fund your share: ', amountEl(p.shortfall, p.asset), ' missing on chain.')
        : '',
      el('div', { class: 'buttons' },
        el('button', { class: 'good', 'data-testid': 'accept', disabled: p.fundable === false, onclick: (e) => busy(e.target, async () => {
          const ch = await client.proposalRespond(p.proposalId, true);
          state.proposals.delete(p.proposalId);
          if (ch.channelId) { state.channels.set(ch.channelId, ch); renderChannels(); }
          renderIncoming();
          toast(`Channel with ${p.peer} open.`, 'ok');
          refreshBalances();
        }) }, 'Accept'),
        el('button', { class: 'danger', 'data-testid': 'reject', onclick: (e) => busy(e.target, async () => {
          await client.proposalRespond(p.proposalId, false, { reason: 'rejected in the wallet' });
          state.proposals.delete(p.proposalId);
          renderIncoming();
        }) }, 'Reject'))));
  }
  for (const u of state.updates.values()) {
    const ch = state.channels.get(u.channelId);
    const asset = ch?.asset ?? 'ETH';
    const text = {
      payment: ['pays you ', amountEl(u.amount, asset)],
      request: ['asks you to pay ', amountEl(u.amount, asset)],
      close: ['wants to close the channel; you get ', amountEl(u.balance.mine, asset)],
    }[u.kind];
    items.push(el('div', { class: 'item', dataset: { testid: `update-${u.kind}`, id: u.updateId } },
      el('div', {}, el('strong', {}, u.peer), ' ', ...text, '. ', countdown(u.expiresAt)),
      el('div', { class: 'buttons' },
        el('button', { class: 'good', 'data-testid': 'accept', onclick: (e) => busy(e.target, async () => {
          await client.updateRespond(u.updateId, true);
          state.updates.delete(u.updateId);
          renderIncoming();
        }) }, u.kind === 'request' ? 'Pay' : 'Accept'),
        el('button', { class: 'danger', 'data-testid': 'reject', onclick: (e) => busy(e.target, async () => {
          await client.updateRespond(u.updateId, false, { reason: 'rejected in the wallet' });
          state.updates.delete(u.updateId);
          renderIncoming();
        }) }, 'Reject'))));
  }
  box.replaceChildren(...(items.length ? items : [el('p', { class: 'empty' }, 'Nothing to answer.')]));
  $('incoming-count').textContent = items.length ? String(items.length) : '';
  tick();
}

function countdown(expiresAt) {
  return el('span', { class: 'countdown', dataset: { expires: expiresAt } });
}

function tick() {
  for (const c of document.querySelectorAll('.countdown')) {
    const left = Math.max(0, Math.round((Date.parse(c.dataset.expires) - Date.now()) / 1000));
    c.textContent = left > 0 ? `expires in ${left} s` : 'expired';
  }
}
setInterval(tick, 1000);

function renderChannels() {
  const box = $('channels');
  const list = [...state.channels.values()].sort((a, b) => {
    const rank = (c) => (c.state === 'closed' ? 1 : 0);
    return rank(a) - rank(b) || Date.parse(b.openedAt) - Date.parse(a.openedAt);
  });
  if (!list.length) {
    box.replaceChildren(el('p', { class: 'empty' }, 'No channels yet. Open one with a contact.'));
    return;
  }
  // Keep typed amounts across re-renders.
  const typed = new Map([...box.querySelectorAll('input[data-amount-for]')].map((i) => [i.dataset.amountFor, i.value]));
  box.replaceChildren(...list.map((c) => channelCard(c, typed.get(c.channelId) ?? '')));
}

function channelCard(c, typed) {
  const closed = c.state === 'closed';
  const inFlight = state.busy.has(c.channelId);
  const amount = el('input', { inputmode: 'decimal', placeholder: `amount in ${c.asset}`, value: typed, 'data-testid': 'amount',
    'data-amount-for': c.channelId, 'aria-label': 'amount' });
  const act = (label, cls, testid, fn) => el('button', { class: cls, 'data-testid': testid, disabled: closed || inFlight || c.state !== 'open',
    onclick: (e) => run(c, e.target, fn) }, label);
  const validAmount = (limit) => {
    let v;
    try { v = parseUnits(amount.value, decimalsOf(c.asset)); } catch (e) {
      amount.classList.add('invalid');
      throw new Error(`Enter an amount in ${c.asset}: ${e.message}`);
    }
    if (v <= 0n) { amount.classList.add('invalid'); throw new Error('The amount must be more than 0.'); }
    if (limit !== undefined && v > BigInt(limit)) {
      amount.classList.add('invalid');
      throw new Error(`Only ${fmtAmt(limit, c.asset)} available in this channel.`);
    }
    amount.classList.remove('invalid');
    return v.toString();
  };
  return el('article', { class: `channel ${c.state}`, dataset: { testid: 'channel', id: c.channelId, state: c.state, peer: c.peer } },
    el('header', {}, el('strong', {}, c.peer), ' ', el('span', { class: `state ${c.state}`, 'data-testid': 'state' }, c.state),
      el('span', { class: 'small' }, ` ${c.asset} · version ${c.version}`),
      c.unsynced ? el('span', { class: 'small', 'data-testid': 'unsynced', title: 'the peer was not reachable at login to compare states' }, ' · not synced with the peer yet') : null),
    el('div', { class: 'bal' },
      el('div', { 'data-testid': 'mine' }, el('span', { class: 'label' }, 'mine'), amountEl(c.balance.mine, c.asset)),
      el('div', { 'data-testid': 'theirs' }, el('span', { class: 'label' }, 'theirs'), amountEl(c.balance.theirs, c.asset))),
    closed
      ? el('div', { class: 'small' }, `Closed${c.closedAt ? ' ' + new Date(c.closedAt).toLocaleString() : ''}${c.closedBy ? ` by ${c.closedBy}` : ''}.`,
        c.latestVersion !== undefined
          ? el('div', { 'data-testid': 'outcome' }, `The chain concluded version ${c.version}, not your latest version ${c.latestVersion}: `
            + `${c.difference.startsWith('-') ? fmtAmt(c.difference.slice(1), c.asset) + ' less' : fmtAmt(c.difference, c.asset) + ' more'} than your latest balance.`)
          : null)
      : el('div', { class: 'actions' }, amount,
        act('Send', '', 'send', async () => {
          const v = validAmount(c.balance.mine);
          const r = await client.channelSend(c.channelId, v);
          amount.value = '';
          log(`You paid ${c.peer} ${fmtAmt(v, c.asset)}.`);
          return r;
        }),
        act('Request', 'secondary', 'request', async () => {
          const v = validAmount(c.balance.theirs);
          const r = await client.channelRequest(c.channelId, v);
          amount.value = '';
          log(`${c.peer} paid your request of ${fmtAmt(v, c.asset)}.`);
          return r;
        }),
        act('Close', 'secondary', 'close', async () => {
          log(`Closing the channel with ${c.peer}…`);
          const r = await client.channelClose(c.channelId);
          toast(`Channel with ${c.peer} closed${r.closedBy === 'dispute' ? ' through a dispute' : ''}.`, 'ok');
          return r;
        }),
        act('Force close', 'danger', 'force-close', async () => {
          if (!confirm(`Force close registers the latest state on-chain without asking ${c.peer}; the money is paid out after the challenge period (${c.challengeDuration} s). Go on?`)) return undefined;
          log(`Force-closing the channel with ${c.peer}; waiting for the challenge period…`);
          return client.channelForceClose(c.channelId);
        }),
        inFlight ? el('span', { class: 'small' }, 'working…') : null),
    noteEl(state.notes.get(c.channelId)));
}

function noteEl(n) {
  if (!n) return null;
  return el('p', { class: `note ${n.kind}`, role: n.kind === 'error' ? 'alert' : 'status', 'data-testid': 'note' },
    el('time', {}, new Date(n.at).toLocaleTimeString()), ' ', n.text);
}

/** A notice about a channel, shown in its card (not over it). */
function note(channelId, text, kind = 'info') {
  state.notes.set(channelId, { text, kind, at: Date.now() });
  renderChannels();
}

async function run(c, button, fn) {
  if (!conn.online) {
    note(c.channelId, UNREACHABLE, 'error');
    return;
  }
  state.notes.delete(c.channelId);
  state.busy.add(c.channelId);
  renderChannels();
  try {
    const r = await fn();
    if (r && r.channelId) {
      state.channels.set(r.channelId, r);
      const input = document.querySelector(`input[data-amount-for="${c.channelId}"]`);
      if (input) input.value = ''; // done: do not keep the amount for the next render
    }
  } catch (e) {
    note(c.channelId, explain(e), 'error');
  } finally {
    state.busy.delete(c.channelId);
    renderChannels();
    if (state.channels.get(c.channelId)?.state === 'closed') refreshBalances().catch(() => {});
  }
}

function renderContacts() {
  const ul = $('contacts');
  ul.replaceChildren(...(state.contacts.length ? state.contacts.map((c) => el('li', { dataset: { alias: c.alias } },
    el('div', {}, el('strong', {}, c.alias), el('div', { class: 'mono small', title: `${c.address} at ${c.commAddress}` }, `${short(c.address)} · ${c.commAddress}`)),
    el('button', { class: 'danger', title: `remove ${c.alias}`, onclick: (e) => busy(e.target, async () => {
      if (!confirm(`Remove ${c.alias} from your contacts?`)) return;
      await client.contactsRemove(c.alias);
      state.contacts = await client.contactsList();
      renderContacts();
    }) }, 'Remove'))) : [el('li', { class: 'empty' }, 'No contacts yet.')]));
  const sel = $('open-peer');
  const prev = sel.value;
  sel.replaceChildren(...state.contacts.map((c) => el('option', { value: c.alias }, c.alias)));
  if (prev) sel.value = prev;
}

$('contact-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const alias = $('contact-alias').value.trim();
  const address = $('contact-address').value.trim();
  const commAddress = $('contact-comm').value.trim();
  const bad = (id, msg) => { $(id).classList.add('invalid'); toast(msg, 'error'); };
  for (const id of ['contact-alias', 'contact-address', 'contact-comm']) $(id).classList.remove('invalid');
  if (!alias) return bad('contact-alias', 'Give the contact an alias.');
  if (!/^0x[0-9a-fA-F]{40}$/.test(address)) return bad('contact-address', 'The address is 0x followed by 40 hex digits.');
  if (!/^[^\s:]+:\d{1,5}$/.test(commAddress)) return bad('contact-comm', 'The comm address is host:port, e.g. 127.0.0.1:5750.');
  busy(ev.submitter, async () => {
    await client.contactsAdd(alias, address, commAddress);
    state.contacts = await client.contactsList();
    renderContacts();
    ev.target.reset();
    toast(`${alias} added.`, 'ok');
  });
});

$('open-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const peer = $('open-peer').value;
  const asset = $('open-asset').value || 'ETH';
  const dec = decimalsOf(asset);
  const field = (id) => {
    const input = $(id);
    try {
      const v = parseUnits(input.value || '0', dec);
      input.classList.remove('invalid');
      return v;
    } catch (e) {
      input.classList.add('invalid');
      throw e;
    }
  };
  let mine;
  let theirs;
  try {
    mine = field('open-mine');
    theirs = field('open-theirs');
  } catch (e) {
    return toast(`Enter the deposits in ${asset}: ${e.message}`, 'error');
  }
  if (!peer) return toast('Add a contact first.', 'error');
  if (mine + theirs === 0n) return toast('At least one deposit must be more than 0.', 'error');
  const have = state.balances[asset];
  if (have !== undefined && mine > BigInt(have)) return toast(`You have only ${fmtAmt(have, asset)} on-chain.`, 'error');
  log(`Proposing a channel in ${asset} to ${peer}…`);
  busy(ev.submitter, async () => {
    const ch = await client.channelOpen(peer, { mine: mine.toString(), theirs: theirs.toString() }, { asset });
    state.channels.set(ch.channelId, ch);
    renderChannels();
    toast(`Channel with ${peer} open.`, 'ok');
    $('open-mine').value = '';
    $('open-theirs').value = '0';
    refreshBalances();
  });
});

// ---------- start ----------

$('endpoint').textContent = rpcURL;
conn.loop = reconnectLoop().finally(() => { conn.loop = null; });
