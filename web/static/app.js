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
  invalid: new Map(), // channel id → {value, error, fix}: a refused amount, marked in its card
  exact: new Set(), // amounts shown with all their decimals (tapped)
  disputes: [], // the dispute log, oldest first
  disputeKeys: new Set(),
  logged: new Map(), // channel id → the state the activity log last told
  closedHere: new Set(), // channels closed while this page looked on: they stay in the list
  showClosed: saved.get('showClosed') === '1', // the closed channels' list is open
  peerBalance: new Map(), // 'address/asset' → on-chain balance of a contact
};

// ---------- formatting ----------

function decimalsOf(symbol) {
  const a = state.info?.assets?.find((x) => x.symbol === symbol);
  return a ? a.decimals : 18;
}

/**
 * An amount element: whole units shown, exact base units on hover. An
 * amount cut to 6 decimals is a button: a tap (or a click, Enter) shows
 * all its decimals, and hides them again.
 */
function amountEl(base, symbol = 'ETH') {
  const full = formatUnits(base, decimalsOf(symbol));
  const cut = trimUnits(full);
  const title = `${BigInt(base).toLocaleString('en-US')} ${symbol === 'ETH' ? 'wei' : 'base units'} (exact)`;
  if (cut === full) return el('span', { class: 'amount', title, dataset: { base: String(base) } }, `${full} ${symbol}`);
  const key = `${symbol}:${base}`;
  const open = state.exact.has(key);
  return el('button', { type: 'button', class: 'amount more', title, 'aria-expanded': String(open), 'data-testid': 'exact',
    dataset: { base: String(base), key, full: `${full} ${symbol}`, cut: `${cut} ${symbol}` },
    onclick: () => {
      if (state.exact.has(key)) state.exact.delete(key); else state.exact.add(key);
      const now = state.exact.has(key);
      for (const b of document.querySelectorAll('button.amount.more')) {
        if (b.dataset.key !== key) continue;
        b.textContent = now ? b.dataset.full : b.dataset.cut;
        b.setAttribute('aria-expanded', String(now));
      }
    } }, open ? `${full} ${symbol}` : `${cut} ${symbol}`);
}

/**
 * Reads an amount typed in whole units. Returns {value} (base units) or
 * {error} with a sentence for the user and, where the intent is clear,
 * {fix}: the amount as it should be written ("0,5" → "0.5").
 * @param {{limit?: string|bigint, over?: (limit: string) => string, allowZero?: boolean}} [o]
 */
function checkAmount(text, asset, { limit, over, allowZero = false } = {}) {
  let s = String(text).trim();
  const dec = decimalsOf(asset);
  const unit = new RegExp(`^(.*?)\\s*${asset}$`, 'i').exec(s);
  if (unit && unit[1]) s = unit[1].trim();
  const plain = (x) => /^\d*\.?\d*$/.test(x) && /\d/.test(x);
  if (s === '') return { error: `Enter an amount in ${asset}, such as 0.5.` };
  if (/^\d{1,3}(,\d{3})+$/.test(s)) return { error: 'Write the amount without separators and with a point for decimals, such as 1000 or 1.5.' };
  if (/^\d*,\d+$/.test(s)) {
    const fix = s.replace(',', '.');
    return { error: `Write decimals with a point: ${fix}.`, fix };
  }
  if (/^\d{1,3}(,\d{3})+(\.\d*)?$/.test(s) || /^\d+( \d{3})+(\.\d*)?$/.test(s)) {
    const fix = s.replace(/[, ]/g, '');
    return { error: `Write the amount without separators: ${fix}.`, fix };
  }
  if (/^[-+−]/.test(s)) {
    const rest = s.slice(1).trim();
    return plain(rest) && !/^0*\.?0*$/.test(rest)
      ? { error: `Enter the amount without a sign: ${rest}.`, fix: rest }
      : { error: `Enter an amount above 0, such as 0.5.` };
  }
  if (/^\d*\.?\d*e[-+]?\d+$/i.test(s)) return { error: `Write the amount as a plain number, such as 0.5.` };
  let v;
  try {
    v = parseUnits(s, dec);
  } catch {
    if (plain(s) && (s.split('.')[1] ?? '').length > dec) return { error: `${asset} has at most ${dec} decimal places.` };
    return { error: `Enter a number in ${asset}, such as 0.5.` };
  }
  if (v === 0n && !allowZero) return { error: 'Enter an amount above 0.' };
  if (limit !== undefined && v > BigInt(limit)) return { error: over ? over(String(limit)) : `At most ${fmtAmt(limit, asset)}.` };
  return { value: v, text: s };
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

/**
 * Marks a field as refused, with the reason next to it (in slot, or under
 * the field) and a fix to click where the intent is clear.
 */
function markInvalid(input, message, fix, slot) {
  input.classList.add('invalid');
  input.setAttribute('aria-invalid', 'true');
  const id = `${input.id}-error`;
  let msg = document.getElementById(id);
  if (!msg) {
    msg = el('p', { class: 'field-error', id, role: 'alert', 'data-testid': 'field-error' });
    if (slot) slot.replaceChildren(msg);
    else (input.closest('.row') ?? input.closest('label') ?? input).insertAdjacentElement('afterend', msg);
  }
  msg.replaceChildren(message, fix ? ' ' : '', fix ? el('button', { type: 'button', class: 'link', 'data-testid': 'fix',
    onclick: () => { input.value = fix; clearInvalid(input); input.focus(); } }, `Use ${fix}`) : '');
  input.setAttribute('aria-describedby', id);
}

function clearInvalid(input, empty = false) {
  input.classList.remove('invalid');
  input.removeAttribute('aria-invalid');
  input.removeAttribute('aria-describedby');
  document.getElementById(`${input.id}-error`)?.remove();
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
    case ERR_CONNECTION: return conn.online ? 'The connection to the node broke during the call: the page shows what the node did once it answers again.' : UNREACHABLE;
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
      : 'Your session on the node has ended: the node restarted, or the session was closed.')
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
  if (!password) return markInvalid($('login-password'), 'Enter the password.');
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
  if (state.account && state.account.toLowerCase() !== s.address.toLowerCase()) {
    // Another account in this tab: nothing of the last one stays.
    for (const k of ['notes', 'invalid', 'logged']) state[k].clear();
    state.disputes = [];
    state.disputeKeys.clear();
    state.closedHere.clear();
    $('log').replaceChildren();
  }
  state.account = s.address;
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
  state.invalid.clear();
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
  const [channels, proposals, updates, contacts, disputes] = await Promise.all([
    client.channelList(), client.proposalList(), client.updateList(), client.contactsList(), client.disputeList()]);
  state.channels = new Map(channels.map((c) => [c.channelId, c]));
  for (const c of channels) if (!state.logged.has(c.channelId)) state.logged.set(c.channelId, c.state);
  state.proposals = new Map(proposals.map((p) => [p.proposalId, p]));
  state.updates = new Map(updates.map((u) => [u.updateId, u]));
  state.contacts = contacts;
  for (const d of disputes) addDispute(d, false);
  renderChannels();
  renderIncoming();
  renderContacts();
  renderDisputes();
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
  renderIncoming(); // a proposal may be fundable now
}

const later = (p) => { p.catch(() => {}); };

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
/** All decimals: for sentences about one amount (a notice), where nothing is cut. */
function fmtExact(v, asset = 'ETH') { return `${formatUnits(v, decimalsOf(asset))} ${asset}`; }

function onUpdate(u) {
  const ch = state.channels.get(u.channelId);
  const asset = ch?.asset ?? 'ETH';
  if (u.status === 'pending') {
    state.updates.set(u.updateId, u);
  } else {
    state.updates.delete(u.updateId);
  }
  const what = { payment: `pays you ${fmtExact(u.amount, asset)}`, request: `asks you for ${fmtExact(u.amount, asset)}`, close: 'wants to close the channel' }[u.kind];
  const status = { pending: '', accepted: ' — accepted', rejected: ' — rejected', expired: ' — expired' }[u.status] ?? '';
  log(`${u.peer} ${what}${status}.`);
  // In the channel's card, not over it.
  if (u.kind === 'payment' && u.status === 'accepted') note(u.channelId, `${u.peer} paid you ${fmtExact(u.amount, asset)}.`, 'ok');
  renderIncoming();
}

/** Tells the activity log (and the card) when a channel opened or closed, once, on either side. */
function tellState(c) {
  const before = state.logged.get(c.channelId);
  if (before === c.state) return;
  state.logged.set(c.channelId, c.state);
  const mine = fmtAmt(c.balance.mine, c.asset);
  switch (c.state) {
    case 'open':
      log(`Channel with ${c.peer} opened: you have ${mine} in it.`);
      later(refreshBalances());
      break;
    case 'closed':
      state.closedHere.add(c.channelId);
      if (c.closedBy === 'agreement') {
        log(`Channel with ${c.peer} closed by agreement: ${mine} is back in your on-chain account.`);
        note(c.channelId, `Closed by agreement: ${mine} is back in your on-chain account.`, 'ok');
      } else {
        log(`Channel with ${c.peer} closed through a dispute: ${mine} is back in your on-chain account.`);
      }
      later(refreshBalances());
      break;
    case 'registered':
      log(`Channel with ${c.peer}: a state is registered on chain; the money is paid out after the challenge period.`);
      break;
    case 'closing':
      log(`Channel with ${c.peer} is closing.`);
      break;
    default:
      log(`Channel with ${c.peer} is ${c.state}.`);
  }
}

function onChannel(c) {
  state.channels.set(c.channelId, c);
  tellState(c);
  renderChannels();
  renderDisputes(); // their sentences name the channel's outcome
}

// ---------- disputes ----------

const validTime = (t) => typeof t === 'string' && Date.parse(t) > Date.parse('2000-01-01T00:00:00Z');

function addDispute(d, live) {
  const key = [d.channelId, d.event, d.version, d.txHash ?? '', d.refutation ?? '', d.response ?? ''].join('|');
  if (state.disputeKeys.has(key)) return false;
  state.disputeKeys.add(key);
  const ch = state.channels.get(d.channelId);
  // What the user would get from the latest state, as it was when the event came.
  state.disputes.push({ ...d, seenAt: live ? Date.now() : null, mineThen: ch?.balance?.mine, assetThen: ch?.asset });
  return true;
}

/** The last registration of a channel that is still disputed (its challenge period). */
function registration(channelId) {
  for (let i = state.disputes.length - 1; i >= 0; i--) {
    const d = state.disputes[i];
    if (d.channelId === channelId && d.event === 'registered' && validTime(d.timeout)) return d;
  }
  return null;
}

/** Whether the log shows an event of a channel: a cooperative close is no dispute. */
function isDispute(d) {
  const ch = state.channels.get(d.channelId);
  if (ch?.closedBy === 'agreement') return false;
  if (d.event === 'concluded' || d.event === 'withdrawn') {
    return ch?.closedBy === 'dispute' || state.disputes.some((x) => x.channelId === d.channelId && x.event === 'registered');
  }
  return true;
}

/**
 * A dispute event in plain words, from its fields: {text, kind}. kind is
 * 'error' only where it cost the user or needs them; 'info' otherwise.
 */
function disputeText(d) {
  const ch = state.channels.get(d.channelId);
  const peer = ch?.peer ?? `the peer of channel ${short(d.channelId)}`;
  const asset = ch?.asset ?? d.assetThen ?? 'ETH';
  const at = validTime(d.timeout) ? clock(d.timeout) : null;
  const get = d.mineThen ?? ch?.balance?.mine;
  const receive = get !== undefined && at ? ` You receive ${fmtAmt(get, asset)} after the challenge period ends at ${at}.` : at ? ` The challenge period ends at ${at}.` : '';
  const latest = /version (\d+)/.exec(d.response ?? '')?.[1] ?? ch?.version;
  switch (d.event) {
    case 'registered':
      if (d.refutation === 'sending') {
        return { kind: 'info', text: `${d.byPeer ? peer : 'Someone'} published an old state (version ${d.version}) on chain; your node answers with version ${latest}${at ? ` before the challenge period ends at ${at}` : ''}. Nothing for you to do.` };
      }
      if (d.refutation === 'mined') {
        return { kind: 'info', text: `Your node answered with version ${d.version}: the old state no longer counts.${receive}` };
      }
      if (d.refutation === 'failed') {
        const why = (d.response ?? '').replace(/^refutation failed: /, '');
        return { kind: 'error', text: `Your node could not answer the old state yet${why ? ` (${why})` : ''}; it keeps trying${at ? ` until ${at}` : ''}.` };
      }
      if (/newer than this node's latest/.test(d.response ?? '')) {
        return { kind: 'info', text: `${peer} registered version ${d.version}, newer than the latest your node had: it stands.${at ? ` Your share of it is paid out after ${at}.` : ''}` };
      }
      if (d.byPeer) {
        return { kind: 'info', text: `${peer} is closing the channel on chain with the latest state (version ${d.version}). Nothing for you to do.${receive}` };
      }
      return { kind: 'info', text: `You registered the latest state (version ${d.version}) on chain to close the channel without ${peer}.${receive}` };
    case 'progressed':
      return { kind: 'info', text: `The channel with ${peer} moved on chain to version ${d.version}.` };
    case 'concluded':
      return { kind: 'info', text: `The chain settled version ${d.version} of the channel with ${peer}`
        + `${d.balance ? `: ${fmtAmt(d.balance.mine, asset)} for you, ${fmtAmt(d.balance.theirs, asset)} for ${peer}` : ''}. Your node withdraws your share.` };
    case 'withdrawn': {
      const got = d.amount !== undefined ? fmtAmt(d.amount, asset) : 'your share';
      const lostTo = /not the latest version (\d+)/.exec(d.response ?? '')?.[1];
      if (lostTo || (ch?.latestVersion !== undefined && ch.version === d.version)) {
        const diff = ch?.difference;
        const cost = diff === undefined ? ''
          : diff.startsWith('-') ? ` That is ${fmtAmt(diff.slice(1), asset)} less than your latest balance: the dispute cost you ${fmtAmt(diff.slice(1), asset)}.`
            : ` That is ${fmtAmt(diff, asset)} more than your latest balance.`;
        return { kind: diff === undefined || diff.startsWith('-') ? 'error' : 'info',
          text: `The chain settled version ${d.version} of the channel with ${peer}, not your latest version ${ch?.latestVersion ?? lostTo}: ${got} came back to your on-chain account.${cost}` };
      }
      return { kind: 'ok', text: `${got} from the channel with ${peer} (version ${d.version}) is back in your on-chain account.` };
    }
    default:
      return { kind: 'info', text: `${d.event} on chain, version ${d.version}: ${d.response}` };
  }
}

function onDispute(d) {
  if (!addDispute(d, true)) return;
  if (!isDispute(d)) return;
  const { text, kind } = disputeText(d);
  log(text);
  note(d.channelId, text, kind);
  renderDisputes();
}

function renderDisputes() {
  const list = $('disputes');
  const shown = state.disputes.filter(isDispute).reverse(); // newest first
  list.replaceChildren(...(shown.length ? shown.map((d) => {
    const { text, kind } = disputeText(d);
    return el('li', { class: kind, dataset: { event: d.event, channel: d.channelId, testid: 'dispute' } },
      d.seenAt ? el('time', {}, new Date(d.seenAt).toLocaleTimeString()) : null, text,
      d.txHash ? el('span', { class: 'small mono', title: d.txHash }, ` tx ${short(d.txHash)}`) : null);
  }) : [el('li', { class: 'empty' }, 'No on-chain disputes.')]));
}

// ---------- rendering ----------

/** Whether this user can fund a proposal now: the node's word at arrival, or the balance since. */
function fundable(p) {
  if (p.fundable !== false) return true;
  const have = state.balances[p.asset];
  return have !== undefined && BigInt(have) >= BigInt(p.balance.mine) && !p.stillShort;
}

function renderIncoming() {
  const box = $('incoming');
  const items = [];
  for (const p of state.proposals.values()) {
    const ok = fundable(p);
    items.push(el('div', { class: 'item', dataset: { testid: 'proposal', id: p.proposalId } },
      el('div', {}, el('strong', {}, p.peer), ` proposes a channel in ${p.asset}: you put in `, amountEl(p.balance.mine, p.asset),
        ', they put in ', amountEl(p.balance.theirs, p.asset), '. ', countdown(p.expiresAt, 'expires')),
      ok ? null
        : el('p', { class: 'warn', 'data-testid': 'unfundable' }, 'Your on-chain balance is ',
          amountEl(p.shortfall ?? p.balance.mine, p.asset), ' short of your deposit: to accept, add funds first. Or reject it.'),
      el('div', { class: 'buttons' },
        ok ? el('button', { class: 'good', 'data-testid': 'accept', onclick: (e) => busy(e.target, async () => {
          try {
            const ch = await client.proposalRespond(p.proposalId, true);
            state.proposals.delete(p.proposalId);
            if (ch.channelId) {
              state.channels.set(ch.channelId, ch);
              tellState(ch);
              state.notes.set(ch.channelId, { text: `Channel with ${p.peer} open.`, kind: 'ok', at: Date.now() });
              renderChannels();
            }
            renderIncoming();
            later(refreshBalances());
          } catch (err) {
            if (err instanceof PerundError && err.code === Codes.INSUFFICIENT_FUNDS) { p.stillShort = true; renderIncoming(); }
            throw err;
          }
        }) }, 'Accept') : null,
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
      el('div', {}, el('strong', {}, u.peer), ' ', ...text, '. ', countdown(u.expiresAt, 'expires')),
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

/** A live countdown to `until`: 'expires' (a proposal, an update) or 'challenge' (a registered state). */
function countdown(until, kind) {
  return el('span', { class: 'countdown', dataset: { until, kind, testid: `countdown-${kind}` } });
}

function tick() {
  for (const c of document.querySelectorAll('.countdown')) {
    const left = Math.max(0, Math.round((Date.parse(c.dataset.until) - Date.now()) / 1000));
    if (c.dataset.kind === 'challenge') {
      const mmss = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, '0')}`;
      c.textContent = left > 0 ? `ends in ${mmss}` : 'is over: paying out…';
    } else {
      c.textContent = left > 0 ? `expires in ${left} s` : 'expired';
    }
  }
}
setInterval(tick, 1000);

function usable(c) {
  const assets = ['ETH', ...(state.info?.assets ?? []).map((a) => a.symbol)];
  return assets.includes(c.asset);
}

function renderChannels() {
  const box = $('channels');
  const list = [...state.channels.values()].sort((a, b) => Date.parse(b.openedAt) - Date.parse(a.openedAt));
  if (!list.length) {
    box.replaceChildren(el('p', { class: 'empty' }, 'No channels yet. Open one with a contact.'));
    return;
  }
  // Keep typed amounts (and the focus) across re-renders.
  const typed = new Map([...box.querySelectorAll('input[data-amount-for]')].map((i) => [i.dataset.amountFor, i.value]));
  const focused = document.activeElement?.dataset?.amountFor;
  // Closed channels go into a collapsed list, unless they closed while this page looked on.
  const active = list.filter((c) => c.state !== 'closed' || state.closedHere.has(c.channelId));
  const closed = list.filter((c) => c.state === 'closed' && !state.closedHere.has(c.channelId));
  const parts = active.map((c) => channelCard(c, typed.get(c.channelId) ?? ''));
  if (!active.length) parts.push(el('p', { class: 'empty' }, 'No open channels.'));
  if (closed.length) {
    const details = el('details', { class: 'closed-list', 'data-testid': 'closed-channels', open: state.showClosed,
      ontoggle: (e) => { state.showClosed = e.target.open; saved.set('showClosed', e.target.open ? '1' : null); } },
    el('summary', {}, `Closed channels (${closed.length})`), ...closed.map((c) => channelCard(c, '')));
    parts.push(details);
  }
  box.replaceChildren(...parts);
  if (focused) box.querySelector(`input[data-amount-for="${focused}"]`)?.focus();
  tick();
}

function channelCard(c, typed) {
  const closed = c.state === 'closed';
  const inFlight = state.busy.has(c.channelId);
  const amount = el('input', { inputmode: 'decimal', placeholder: c.asset, value: typed, 'data-testid': 'amount',
    id: `amount-${c.channelId.slice(2, 14)}`, 'data-amount-for': c.channelId, 'aria-label': `amount in ${c.asset} for ${c.peer}`,
    autocomplete: 'off', oninput: () => { state.invalid.delete(c.channelId); clearInvalid(amount); } });
  const errorSlot = el('div', { class: 'error-slot' });
  const act = (label, cls, testid, fn, limit, over) => el('button', { class: cls, 'data-testid': testid,
    disabled: closed || inFlight || c.state !== 'open',
    onclick: () => {
      if (!conn.online) return note(c.channelId, UNREACHABLE, 'error');
      let v;
      if (limit !== undefined) {
        // Checked here, before the card is drawn again, so the mark lands on the field on the page.
        const r = checkAmount(amount.value, c.asset, { limit, over });
        if (r.error) {
          state.invalid.set(c.channelId, { value: amount.value, error: r.error, fix: r.fix });
          markInvalid(amount, r.error, r.fix, errorSlot);
          amount.focus();
          return undefined;
        }
        state.invalid.delete(c.channelId);
        clearInvalid(amount);
        v = r.value.toString();
      }
      return run(c, () => fn(v));
    } }, label);
  const reg = !closed && registration(c.channelId);
  const head = el('header', { class: 'ch-head' },
    el('div', {}, el('strong', {}, c.peer), el('span', { class: 'small' }, ` ${c.asset} · version ${c.version}`),
      c.unsynced ? el('span', { class: 'small', 'data-testid': 'unsynced', title: 'the peer was not reachable at login to compare states' }, ' · not synced with the peer yet') : null),
    el('span', { class: `state ${c.state}`, 'data-testid': 'state' }, c.state));
  const bal = el('div', { class: 'bal' },
    el('div', { 'data-testid': 'mine' }, el('span', { class: 'label' }, 'mine'), amountEl(c.balance.mine, c.asset)),
    el('div', { 'data-testid': 'theirs' }, el('span', { class: 'label' }, 'theirs'), amountEl(c.balance.theirs, c.asset)));
  const challenge = reg ? el('p', { class: 'challenge', 'data-testid': 'challenge' }, 'Challenge period ',
    countdown(reg.timeout, 'challenge'), ` (at ${clock(reg.timeout)}). `,
    `Then ${fmtAmt(c.balance.mine, c.asset)} goes back to your on-chain account.`) : null;
  let body;
  if (closed) {
    body = el('div', { class: 'small' }, `Closed${c.closedAt ? ' ' + clock(c.closedAt) : ''}${c.closedBy === 'dispute' ? ' through a dispute' : c.closedBy === 'agreement' ? ' by agreement' : ''}.`,
      c.latestVersion !== undefined
        ? el('div', { 'data-testid': 'outcome', class: c.difference?.startsWith('-') ? 'lost' : '' }, `The chain settled version ${c.version}, not your latest version ${c.latestVersion}: `
          + `${c.difference.startsWith('-') ? `you got ${fmtAmt(c.difference.slice(1), c.asset)} less` : `you got ${fmtAmt(c.difference, c.asset)} more`} than your latest balance.`)
        : null);
  } else if (!usable(c)) {
    body = el('p', { class: 'warn', 'data-testid': 'unusable' }, `This channel cannot be used: the node does not know its asset (“${c.asset}”) on its chain. `
      + 'Its money stays on that chain; the node tells more in its log.');
  } else {
    body = el('div', { class: 'actions' }, amount,
      act('Send', '', 'send', async (v) => {
        const r = await client.channelSend(c.channelId, v);
        amount.value = '';
        log(`You paid ${c.peer} ${fmtExact(v, c.asset)}.`);
        return r;
      }, c.balance.mine, (l) => `You have ${fmtAmt(l, c.asset)} in this channel.`),
      act('Request', 'secondary', 'request', async (v) => {
        const r = await client.channelRequest(c.channelId, v);
        amount.value = '';
        log(`${c.peer} paid your request of ${fmtExact(v, c.asset)}.`);
        return r;
      }, c.balance.theirs, (l) => `${c.peer} has ${fmtAmt(l, c.asset)} in this channel.`),
      act('Close', 'secondary', 'close', async () => {
        log(`Closing the channel with ${c.peer}…`);
        return client.channelClose(c.channelId);
      }),
      act('Force close', 'danger', 'force-close', async () => {
        if (!confirm(`Force close registers the latest state on-chain without asking ${c.peer}; the money is paid out after the challenge period (${c.challengeDuration} s). Go on?`)) return undefined;
        log(`Force-closing the channel with ${c.peer}: registering the latest state on chain…`);
        return client.channelForceClose(c.channelId);
      }),
      inFlight ? el('span', { class: 'small', role: 'status' }, 'working…') : null);
  }
  const card = el('article', { class: `channel ${c.state}`, dataset: { testid: 'channel', id: c.channelId, state: c.state, peer: c.peer } },
    head, bal, challenge, body, errorSlot, noteEl(state.notes.get(c.channelId)));
  const inv = state.invalid.get(c.channelId);
  if (inv && !closed && inv.value === typed) markInvalid(amount, inv.error, inv.fix, errorSlot);
  return card;
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

async function run(c, fn) {
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
      if (r.state === 'closed') {
        tellState(r);
        const mine = fmtAmt(r.balance.mine, r.asset);
        state.notes.set(c.channelId, { text: r.closedBy === 'dispute'
          ? `Closed through a dispute: ${mine} is back in your on-chain account.`
          : `Closed by agreement: ${mine} is back in your on-chain account.`, kind: 'ok', at: Date.now() });
      }
    }
  } catch (e) {
    state.notes.set(c.channelId, { text: explain(e), kind: 'error', at: Date.now() });
  } finally {
    state.busy.delete(c.channelId);
    renderChannels();
    renderDisputes();
    if (state.channels.get(c.channelId)?.state === 'closed') later(refreshBalances());
  }
}

function renderContacts() {
  const ul = $('contacts');
  ul.replaceChildren(...(state.contacts.length ? state.contacts.map((c) => el('li', { dataset: { alias: c.alias } },
    el('div', {}, el('strong', {}, c.alias), el('div', { class: 'mono small', title: `${c.address} at ${c.commAddress}` }, `${short(c.address)} · ${c.commAddress}`)),
    el('button', { class: 'danger', title: `remove ${c.alias}`, 'aria-label': `Remove ${c.alias}`, onclick: (e) => busy(e.target, async () => {
      if (!confirm(`Remove ${c.alias} from your contacts?`)) return;
      await client.contactsRemove(c.alias);
      state.contacts = await client.contactsList();
      renderContacts();
    }) }, 'Remove'))) : [el('li', { class: 'empty' }, 'No contacts yet.')]));
  const sel = $('open-peer');
  const prev = sel.value;
  sel.replaceChildren(...state.contacts.map((c) => el('option', { value: c.alias }, c.alias)));
  if (prev && state.contacts.some((c) => c.alias === prev)) sel.value = prev;
  later(checkPeerDeposit());
}

$('contact-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const alias = $('contact-alias').value.trim();
  const address = $('contact-address').value.trim();
  const commAddress = $('contact-comm').value.trim();
  for (const id of ['contact-alias', 'contact-address', 'contact-comm']) clearInvalid($(id));
  if (!alias) return markInvalid($('contact-alias'), 'Give the contact an alias, such as carol.');
  if (!/^0x[0-9a-fA-F]{40}$/.test(address)) return markInvalid($('contact-address'), 'The address is 0x followed by 40 hex digits.');
  if (!/^[^\s:]+:\d{1,5}$/.test(commAddress)) return markInvalid($('contact-comm'), 'The comm address is host:port, such as 127.0.0.1:5750.');
  busy(ev.submitter, async () => {
    await client.contactsAdd(alias, address, commAddress);
    state.contacts = await client.contactsList();
    renderContacts();
    ev.target.reset();
    toast(`${alias} added.`, 'ok');
  });
});
for (const id of ['contact-alias', 'contact-address', 'contact-comm', 'open-mine', 'open-theirs', 'login-password']) {
  $(id).addEventListener('input', () => clearInvalid($(id)));
}

/**
 * Warns the proposer when the peer's deposit is more than the peer's
 * on-chain balance (public): the peer could not accept.
 */
async function checkPeerDeposit() {
  const warn = $('open-warning');
  const contact = state.contacts.find((c) => c.alias === $('open-peer').value);
  const asset = $('open-asset').value || 'ETH';
  const r = checkAmount($('open-theirs').value || '0', asset, { allowZero: true });
  if (!contact || r.error || r.value === 0n) { warn.hidden = true; return; }
  const key = `${contact.address}/${asset}`;
  let have = state.peerBalance.get(key);
  if (have === undefined) {
    try { have = (await client.chainBalance({ address: contact.address, asset })).balance; } catch { return; }
    state.peerBalance.set(key, have);
    setTimeout(() => state.peerBalance.delete(key), 15000);
  }
  if (r.value > BigInt(have)) {
    warn.hidden = false;
    warn.textContent = `${contact.alias} has ${fmtAmt(have, asset)} on chain, less than the ${fmtAmt(r.value, asset)} you ask them to put in: they can accept only once they have it.`;
  } else {
    warn.hidden = true;
  }
}
for (const id of ['open-theirs', 'open-peer', 'open-asset']) $(id).addEventListener('input', () => later(checkPeerDeposit()));

$('open-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const peer = $('open-peer').value;
  const asset = $('open-asset').value || 'ETH';
  const mineIn = $('open-mine');
  const theirsIn = $('open-theirs');
  clearInvalid(mineIn);
  clearInvalid(theirsIn);
  const have = state.balances[asset];
  const m = checkAmount(mineIn.value || '0', asset, { allowZero: true, limit: have, over: (l) => `You have ${fmtAmt(l, asset)} on chain.` });
  if (m.error) return markInvalid(mineIn, m.error, m.fix);
  const t = checkAmount(theirsIn.value || '0', asset, { allowZero: true });
  if (t.error) return markInvalid(theirsIn, t.error, t.fix);
  if (!peer) return toast('Add a contact first.', 'error');
  if (m.value + t.value === 0n) return markInvalid(mineIn, 'Put in an amount above 0 on at least one side.');
  const mine = m.value;
  const theirs = t.value;
  log(`Proposing a channel in ${asset} to ${peer}…`);
  busy(ev.submitter, async () => {
    const ch = await client.channelOpen(peer, { mine: mine.toString(), theirs: theirs.toString() }, { asset });
    state.channels.set(ch.channelId, ch);
    tellState(ch);
    state.notes.set(ch.channelId, { text: `Channel with ${peer} open.`, kind: 'ok', at: Date.now() });
    renderChannels();
    mineIn.value = '';
    theirsIn.value = '0';
    $('open-warning').hidden = true;
    later(refreshBalances());
  });
});

// ---------- start ----------

$('endpoint').textContent = rpcURL;
conn.loop = reconnectLoop().finally(() => { conn.loop = null; });
