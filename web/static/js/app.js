// chatd web UI. Plain ES modules, no build step, no framework.
// Security rule of this file: user content only ever becomes text nodes
// (see text.js); never assign it to innerHTML.

import { api, auth, ApiError, q } from './api.js';
import { ChatSocket } from './socket.js';
import { cmpId, maxId, nextId, SortedIds } from './ids.js';
import { linkify, safeHighlight, formatTime, fullTime, dayKey, dayLabel, el } from './text.js';

const $ = (id) => document.getElementById(id);
const PAGE = 50;
const TYPING_SEND_MS = 3000;
const TYPING_SHOW_MS = 5000;
const SEND_TIMEOUT_MS = 15000;
const USERNAME_RE = /^[a-z0-9_.-]{3,32}$/;

// ---------------------------------------------------------------- state

class RoomState {
  constructor(id) {
    this.id = id;
    this.messages = new Map();   // id -> message
    this.ids = new SortedIds();  // ascending
    this.pending = new Map();    // nonce -> {nonce, roomId, body, status, error, timer}
    this.hasOlder = true;
    this.loadingOlder = false;
    this.loadedLatest = false;   // REST latest page fetched at least once
    this.lastSeen = null;        // newest message id received: `since` on rejoin
    this.joined = false;
    this.everJoined = false;
    this.unread = 0;
    this.typing = new Map();     // user_id -> {username, until}
    this.gapAfter = null;        // id after which newer messages are missing (rare, after a far jump)
  }
}

const state = {
  me: null,
  rooms: new Map(),   // id -> room
  rs: new Map(),      // id -> RoomState
  current: null,
  left: new Set(),    // public rooms the user left: not auto-joined
  els: new Map(),     // message id -> <li>, for the current room only
  pendingEls: new Map(), // nonce -> <li>
  lastTypingSent: 0,
  socket: null,
  roomTimer: null,
  search: { q: '', roomId: '', cursor: null },
  highlighted: null,
};

function rs(id) {
  let r = state.rs.get(id);
  if (!r) { r = new RoomState(id); state.rs.set(id, r); }
  return r;
}

function leftKey() { return `chatd_left_${state.me ? state.me.id : ''}`; }
function loadLeft() {
  try { state.left = new Set(JSON.parse(localStorage.getItem(leftKey()) || '[]')); } catch { state.left = new Set(); }
}
function saveLeft() {
  try { localStorage.setItem(leftKey(), JSON.stringify([...state.left])); } catch { /* ignore */ }
}

function newNonce() {
  // crypto.randomUUID exists only in secure contexts; getRandomValues everywhere.
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

// ---------------------------------------------------------------- notices

let noticeTimer = null;
function notice(text, kind = 'info') {
  const n = $('notice');
  n.textContent = text;
  n.dataset.kind = kind;
  n.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { n.hidden = true; }, 6000);
}

function errText(e) {
  if (e instanceof ApiError) {
    if (e.status === 429) return `Too many requests${e.retryAfter != null ? `, try again in ${e.retryAfter} s` : ''}.`;
    if (e.status === 0) return 'Cannot reach the server.';
    return e.message || `Error ${e.status}`;
  }
  return String(e && e.message ? e.message : e);
}

// ---------------------------------------------------------------- auth view

function fieldError(id, text) {
  const p = $(`${id}-error`);
  const input = $(id);
  p.textContent = text || '';
  if (input) {
    if (text) input.setAttribute('aria-invalid', 'true'); else input.removeAttribute('aria-invalid');
  }
}

function clearErrors(form) {
  for (const p of form.querySelectorAll('.field-error, .form-error')) p.textContent = '';
  for (const i of form.querySelectorAll('[aria-invalid]')) i.removeAttribute('aria-invalid');
}

function selectTab(which) {
  const login = which === 'login';
  $('tab-login').setAttribute('aria-selected', String(login));
  $('tab-register').setAttribute('aria-selected', String(!login));
  $('tab-login').tabIndex = login ? 0 : -1;
  $('tab-register').tabIndex = login ? -1 : 0;
  $('login-form').hidden = !login;
  $('register-form').hidden = login;
  (login ? $('login-username') : $('register-username')).focus();
}

function showAuth(message) {
  $('chat-view').hidden = true;
  $('auth-view').hidden = false;
  $('conn-banner').hidden = true;
  document.title = 'chatd';
  if (message) $('login-form-error').textContent = message;
  selectTab('login');
}

function rateLimitText(e) {
  return `Too many attempts. Try again in ${e.retryAfter != null ? e.retryAfter : 'a few'} seconds.`;
}

async function onLogin(ev) {
  ev.preventDefault();
  const form = $('login-form');
  clearErrors(form);
  const username = $('login-username').value.trim().toLowerCase();
  const password = $('login-password').value;
  let bad = false;
  if (!username) { fieldError('login-username', 'Enter your username.'); bad = true; }
  if (!password) { fieldError('login-password', 'Enter your password.'); bad = true; }
  if (bad) return;
  const btn = form.querySelector('button[type=submit]');
  btn.disabled = true;
  try {
    await login(username, password);
    $('login-password').value = '';
  } catch (e) {
    if (e.status === 401) fieldError('login-password', 'Wrong username or password.');
    else if (e.status === 429) $('login-form-error').textContent = rateLimitText(e);
    else if (e.status === 400) fieldError(/password/i.test(e.message) ? 'login-password' : 'login-username', e.message || 'Invalid input.');
    else $('login-form-error').textContent = errText(e);
  } finally {
    btn.disabled = false;
  }
}

async function login(username, password) {
  const s = await api('POST', '/sessions', { username, password });
  auth.token = s.token;
  await startChat(s.user);
}

async function onRegister(ev) {
  ev.preventDefault();
  const form = $('register-form');
  clearErrors(form);
  const username = $('register-username').value.trim();
  const password = $('register-password').value;
  const display = $('register-display').value.trim();
  let bad = false;
  if (!USERNAME_RE.test(username)) {
    fieldError('register-username', 'Use 3–32 characters: lowercase letters, digits, _ . -');
    bad = true;
  }
  if (password.length < 8) { fieldError('register-password', 'Use at least 8 characters.'); bad = true; }
  if (bad) { form.querySelector('[aria-invalid]').focus(); return; }
  const btn = form.querySelector('button[type=submit]');
  btn.disabled = true;
  try {
    const body = { username, password };
    if (display) body.display_name = display;
    await api('POST', '/users', body);
    await login(username, password);
    $('register-password').value = '';
  } catch (e) {
    if (e.status === 409) { fieldError('register-username', 'That username is taken.'); $('register-username').focus(); }
    else if (e.status === 400) {
      const m = e.message || 'Invalid input.';
      if (/password/i.test(m)) fieldError('register-password', m);
      else if (/display/i.test(m)) fieldError('register-display', m);
      else fieldError('register-username', m);
    } else if (e.status === 429) $('register-form-error').textContent = rateLimitText(e);
    else $('register-form-error').textContent = errText(e);
  } finally {
    btn.disabled = false;
  }
}

async function logout() {
  try { await api('DELETE', '/sessions/current'); } catch { /* logging out anyway */ }
  endSession();
  showAuth();
}

function endSession() {
  auth.token = '';
  if (state.socket) state.socket.stop();
  state.socket = null;
  clearInterval(state.roomTimer);
  for (const r of state.rs.values()) for (const p of r.pending.values()) { clearTimeout(p.timer); clearTimeout(p.retryTimer); }
  state.me = null;
  state.rooms.clear();
  state.rs.clear();
  state.current = null;
  state.els.clear();
  state.pendingEls.clear();
  $('message-list').replaceChildren();
  $('room-list').replaceChildren();
  $('search-panel').hidden = true;
  history.replaceState(null, '', '/');
}

// Any 401 while signed in means the session ended elsewhere (logout, expiry).
async function call(method, path, body) {
  try {
    return await api(method, path, body);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401 && state.me) {
      endSession();
      showAuth('Your session has ended. Please sign in again.');
    }
    throw e;
  }
}

// ---------------------------------------------------------------- chat start

async function startChat(user) {
  state.me = user;
  loadLeft();
  $('auth-view').hidden = true;
  $('chat-view').hidden = false;
  $('me-name').textContent = user.display_name ? `${user.display_name} (@${user.username})` : `@${user.username}`;
  state.socket = new ChatSocket({
    url: () => {
      const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
      const t = auth.token;
      return `${proto}//${location.host}/api/v1/ws${t ? `?token=${q(t)}` : ''}`;
    },
    onOpen: onSocketOpen,
    onFrame: onFrame,
    onDown: onSocketDown,
    onGiveUpCheck: checkSession,
  });
  state.socket.start();
  await refreshRooms();
  clearInterval(state.roomTimer);
  state.roomTimer = setInterval(() => { refreshRooms().catch(() => {}); }, 20000);

  const m = location.pathname.match(/^\/rooms\/(\d+)/);
  let target = m ? m[1] : null;
  if (!target || !state.rooms.has(target)) {
    try { target = localStorage.getItem('chatd_last_room'); } catch { target = null; }
  }
  if (!target || !state.rooms.has(target)) target = sortedRooms()[0]?.id || null;
  if (target) await openRoom(target);
  else renderRoomHeader();
}

async function checkSession() {
  try { await call('GET', '/users/me'); } catch { /* 401 handled by call() */ }
}

// ---------------------------------------------------------------- socket

function onSocketOpen() {
  $('conn-banner').hidden = true;
  $('conn-banner').textContent = '';
  document.body.classList.remove('offline');
  for (const id of state.rooms.keys()) join(id);
  // Messages that were in flight when the connection dropped: send again
  // with the same nonce; the server dedupes, so this cannot double them.
  for (const r of state.rs.values()) {
    for (const p of r.pending.values()) if (p.status === 'sending') transmit(p);
  }
  refreshRooms().catch(() => {});
}

function onSocketDown(attempt, delay) {
  for (const r of state.rs.values()) r.joined = false;
  const b = $('conn-banner');
  b.hidden = false;
  b.textContent = 'Reconnecting…';
  b.title = `Attempt ${attempt}, next in ${Math.ceil(delay / 1000)} s`;
  document.body.classList.add('offline');
}

function join(id) {
  if (!state.socket || !state.socket.connected) return;
  if (state.left.has(id)) return;
  const r = rs(id);
  const frame = { type: 'join', room_id: id };
  if (r.lastSeen) frame.since = r.lastSeen;
  r.joinSince = r.lastSeen;
  state.socket.send(frame);
}

function onFrame(f) {
  switch (f.type) {
    case 'joined': onJoined(f); break;
    case 'left': if (state.rs.has(f.room_id)) rs(f.room_id).joined = false; break;
    case 'message': if (f.message) onLiveMessage(f.message); break;
    case 'ack': onAck(f); break;
    case 'typing': onTyping(f); break;
    case 'error': onErrorFrame(f); break;
    case 'room_deleted': roomGone(f.room_id, 'was deleted'); break;
    case 'removed': roomGone(f.room_id, 'is no longer available to you: you were removed'); break;
    case 'pong': break;
    default: break;
  }
}

function onJoined(f) {
  const id = f.room_id;
  if (!state.rooms.has(id)) return;
  const r = rs(id);
  // After the first join, whatever the server replays is new to us.
  const wasRejoin = r.everJoined;
  r.joined = true;
  r.everJoined = true;
  const msgs = Array.isArray(f.messages) ? f.messages : [];
  if (f.truncated) {
    // More was missed than the server replays: start over from the latest page.
    resetRoom(id);
    if (id === state.current) { renderMessages(); loadLatest(id).then(() => scrollToBottom(), () => {}); } else {
      r.unread += msgs.filter((m) => m.user_id !== state.me.id).length;
      renderRoomList();
      loadLatest(id).catch(() => {});
    }
    return;
  }
  const added = addMessages(id, msgs, { live: true });
  if (wasRejoin && id !== state.current) {
    r.unread += added.filter((m) => m.user_id !== state.me.id).length;
    renderRoomList();
  }
}

function onLiveMessage(m) {
  if (!state.rooms.has(m.room_id)) return;
  const r = rs(m.room_id);
  const added = addMessages(m.room_id, [m], { live: true });
  r.typing.delete(m.user_id);
  if (m.room_id === state.current) renderTyping();
  if (added.length && m.user_id !== state.me.id && m.room_id !== state.current) {
    r.unread++;
    renderRoomList();
  }
}

function onAck(f) {
  if (!f.message) return;
  const m = f.message;
  if (!m.nonce) m.nonce = f.nonce;
  for (const r of state.rs.values()) {
    const p = r.pending.get(f.nonce);
    if (p) { clearTimeout(p.timer); break; }
  }
  addMessages(m.room_id, [m], { live: true, own: true });
}

function onTyping(f) {
  if (!state.me || f.user_id === state.me.id || !state.rooms.has(f.room_id)) return;
  const r = rs(f.room_id);
  r.typing.set(f.user_id, { username: f.username || 'Someone', until: Date.now() + TYPING_SHOW_MS });
  if (f.room_id === state.current) renderTyping();
  setTimeout(() => { if (f.room_id === state.current) renderTyping(); }, TYPING_SHOW_MS + 50);
}

function onErrorFrame(f) {
  if (f.nonce) {
    for (const r of state.rs.values()) {
      const p = r.pending.get(f.nonce);
      if (!p) continue;
      if (f.code === 'rate_limited') rateLimited(p, f.retry_after_ms || 1000);
      else failPending(p, f.message || f.code);
      return;
    }
  }
  if (f.room_id && (f.code === 'not_found' || f.code === 'forbidden')) {
    roomGone(f.room_id, 'is not available');
    return;
  }
  if (f.code !== 'unauthenticated') notice(f.message || f.code || 'Server error', 'error');
  else checkSession();
}

function roomGone(id, why) {
  const room = state.rooms.get(id);
  if (!room) return;
  state.rooms.delete(id);
  const r = state.rs.get(id);
  if (r) for (const p of r.pending.values()) { clearTimeout(p.timer); clearTimeout(p.retryTimer); }
  state.rs.delete(id);
  if (state.current === id) {
    state.current = null;
    renderRoomHeader();
    renderMessages();
    history.replaceState(null, '', '/');
  }
  renderRoomList();
  notice(`Room “${room.name}” ${why}.`, 'warn');
}

// ---------------------------------------------------------------- messages model

function resetRoom(id) {
  const r = rs(id);
  r.messages.clear();
  r.ids.clear();
  r.hasOlder = true;
  r.loadedLatest = false;
  r.gapAfter = null;
  r.lastSeen = null;
  if (id === state.current) { state.els.clear(); }
}

// addMessages merges messages into a room (dedupe by id), resolves pending
// sends by nonce, and updates the DOM if the room is open. Returns the new ones.
function addMessages(roomId, msgs, { live = false, own = false } = {}) {
  const r = rs(roomId);
  const added = [];
  const isCurrent = roomId === state.current;
  const wasNearBottom = isCurrent && nearBottom();
  for (const m of msgs) {
    if (!m || !m.id) continue;
    if (m.nonce && state.me && m.user_id === state.me.id) resolvePending(r, m.nonce);
    if (r.messages.has(m.id)) continue;
    r.messages.set(m.id, m);
    const after = r.ids.insert(m.id);
    r.lastSeen = maxId(r.lastSeen, m.id);
    added.push(m);
    if (isCurrent) insertEl(m, after);
  }
  if (isCurrent && added.length && !r.loadingOlder) renderHistoryStatus();
  if (isCurrent && added.length && live) {
    if (wasNearBottom || own) scrollToBottom();
    else {
      $('jump-latest').hidden = false;
    }
  }
  return added;
}

function resolvePending(r, nonce) {
  const p = r.pending.get(nonce);
  if (!p) return;
  clearTimeout(p.timer);
  clearTimeout(p.retryTimer);
  r.pending.delete(nonce);
  const e = state.pendingEls.get(nonce);
  if (e) { e.remove(); state.pendingEls.delete(nonce); }
}

// ---------------------------------------------------------------- messages DOM

function messageEl(m) {
  const mine = state.me && m.user_id === state.me.id;
  const time = el('time', { datetime: m.created_at, title: fullTime(m.created_at) }, formatTime(m.created_at));
  const body = el('div', { class: 'body' });
  body.append(linkify(String(m.body ?? '')));
  return el('li', { class: `msg${mine ? ' own' : ''}`, id: `msg-${m.id}`, tabindex: '-1', dataset: { id: m.id } },
    el('div', { class: 'meta' }, el('span', { class: 'author' }, m.username || 'unknown'), ' ', time,
      m.edited_at ? el('span', { class: 'edited' }, ' (edited)') : null),
    body);
}

function insertEl(m, afterId) {
  const list = $('message-list');
  const e = messageEl(m);
  state.els.set(m.id, e);
  const ref = afterId ? state.els.get(afterId) : null;
  if (ref) list.insertBefore(e, ref);
  else {
    // Newest message: after every final one, before the pending sends.
    const firstPending = list.querySelector(':scope > .msg.pending');
    if (firstPending) list.insertBefore(e, firstPending); else list.append(e);
  }
  regroup(e);
  const next = e.nextElementSibling;
  if (next && next.dataset.id) regroup(next);
  const r = rs(m.room_id);
  if (r.gapAfter) placeGap();
}

// A message right after one by the same author (within five minutes) drops
// its visible header, as chat apps do; the header stays for screen readers.
// The first message of a day has the day's heading before it.
function regroup(e) {
  let prev = e.previousElementSibling;
  while (prev && prev.classList.contains('day')) prev = prev.previousElementSibling;
  const msgs = state.rs.get(state.current)?.messages;
  const a = prev && prev.dataset.id && msgs?.get(prev.dataset.id);
  const b = msgs?.get(e.dataset.id);
  const newDay = !!b && (!a || dayKey(a.created_at) !== dayKey(b.created_at));
  const cont = !!(a && b && !newDay && a.user_id === b.user_id && Date.parse(b.created_at) - Date.parse(a.created_at) < 300000);
  e.classList.toggle('cont', cont);
  placeDay(e, newDay ? dayLabel(b.created_at) : '');
}

// placeDay keeps e's day heading (label) right before e, or removes it
// when label is empty. A message inserted between a heading and the
// message it belongs to moves the heading when that one is regrouped.
function placeDay(e, label) {
  let sep = e._day;
  if (!label) {
    sep?.remove();
    e._day = null;
    return;
  }
  if (!sep) {
    sep = el('li', { class: 'day', role: 'separator', 'aria-label': label }, el('span', {}, label));
    e._day = sep;
  } else if (sep.textContent !== label) {
    sep.firstChild.textContent = label;
    sep.setAttribute('aria-label', label);
  }
  if (e.previousElementSibling !== sep) e.before(sep);
}

function pendingEl(p) {
  const status = el('span', { class: 'status' });
  const retry = el('button', { type: 'button', class: 'small-btn', onclick: () => transmit(p) }, 'Retry');
  const discard = el('button', { type: 'button', class: 'link-btn', onclick: () => discardPending(p) }, 'Discard');
  const actions = el('span', { class: 'pending-actions' }, retry, ' ', discard);
  const body = el('div', { class: 'body' });
  body.append(linkify(p.body));
  const li = el('li', { class: 'msg own pending', dataset: { nonce: p.nonce } },
    el('div', { class: 'meta' }, el('span', { class: 'author' }, state.me.username), ' ', status, actions),
    body);
  li._status = status;
  li._actions = actions;
  return li;
}

function updatePendingEl(p) {
  const e = state.pendingEls.get(p.nonce);
  if (!e) return;
  e.classList.toggle('failed', p.status === 'failed');
  e._status.textContent = p.status === 'failed' ? `Not sent: ${p.error}` : 'Sending…';
  e._actions.hidden = p.status !== 'failed';
}

// A log region announces additions; a rebuild or a page of history is not
// news, so the list is marked busy while it happens.
function quietly(fn) {
  const list = $('message-list');
  list.setAttribute('aria-busy', 'true');
  try { return fn(); } finally { requestAnimationFrame(() => list.removeAttribute('aria-busy')); }
}

function renderMessages() { quietly(renderMessagesNow); }

function renderMessagesNow() {
  const list = $('message-list');
  state.els.clear();
  state.pendingEls.clear();
  list.replaceChildren();
  $('jump-latest').hidden = true;
  const id = state.current;
  $('empty-room').hidden = !!id;
  if (!id) { $('history-status').textContent = ''; return; }
  const r = rs(id);
  const frag = document.createDocumentFragment();
  for (const mid of r.ids.ids) {
    const e = messageEl(r.messages.get(mid));
    state.els.set(mid, e);
    frag.append(e);
  }
  for (const p of r.pending.values()) {
    const e = pendingEl(p);
    state.pendingEls.set(p.nonce, e);
    frag.append(e);
  }
  list.append(frag);
  for (const e of state.els.values()) regroup(e);
  for (const p of r.pending.values()) updatePendingEl(p);
  placeGap();
  renderHistoryStatus();
}

function placeGap() {
  const list = $('message-list');
  list.querySelector(':scope > .gap')?.remove();
  const r = state.current && rs(state.current);
  if (!r || !r.gapAfter) return;
  const after = state.els.get(r.gapAfter);
  if (!after) return;
  const gap = el('li', { class: 'gap' },
    el('button', { type: 'button', class: 'small-btn', onclick: () => fillNewer(state.current, r.gapAfter) }, 'Load newer messages'));
  after.after(gap);
}

function renderHistoryStatus(text) {
  const r = state.current && rs(state.current);
  const s = $('history-status');
  if (text) s.textContent = text;
  else if (r && !r.hasOlder) s.textContent = r.ids.length ? 'Beginning of the room.' : 'No messages yet. Say hello!';
  else s.textContent = '';
}

function nearBottom() {
  const sc = $('messages');
  return sc.scrollHeight - sc.scrollTop - sc.clientHeight < 80;
}

function scrollToBottom() {
  const sc = $('messages');
  sc.scrollTop = sc.scrollHeight;
  $('jump-latest').hidden = true;
}

// ---------------------------------------------------------------- loading history

async function loadLatest(id) {
  const r = rs(id);
  const data = await call('GET', `/rooms/${id}/messages?limit=${PAGE}`);
  const msgs = data.messages || [];
  r.loadedLatest = true;
  if (msgs.length < PAGE || ('next_before' in data && !data.next_before)) r.hasOlder = false;
  addMessages(id, msgs);
  if (id === state.current) renderHistoryStatus();
}

async function loadOlder(id) {
  const r = rs(id);
  if (r.loadingOlder || !r.hasOlder) return;
  r.loadingOlder = true;
  if (id === state.current) renderHistoryStatus('Loading older messages…');
  try {
    const before = r.ids.first();
    const data = await call('GET', `/rooms/${id}/messages?limit=${PAGE}${before ? `&before=${before}` : ''}`);
    const msgs = data.messages || [];
    if (msgs.length < PAGE || ('next_before' in data && !data.next_before)) r.hasOlder = false;
    if (id !== state.current) { addMessages(id, msgs); return; }
    // Keep what the reader is looking at in place: note where the text of
    // the first visible message is, insert above, then scroll by exactly
    // as much as that text moved (inserting may also regroup it).
    const sc = $('messages');
    const anchor = firstVisibleBody(sc);
    const anchorTop = anchor ? anchor.getBoundingClientRect().top : 0;
    const prevHeight = sc.scrollHeight;
    const prevTop = sc.scrollTop;
    const added = quietly(() => addMessages(id, msgs));
    if (anchor && anchor.isConnected) sc.scrollTop += anchor.getBoundingClientRect().top - anchorTop;
    else sc.scrollTop = prevTop + (sc.scrollHeight - prevHeight);
    if (!added.length && r.hasOlder && msgs.length) r.hasOlder = false; // a server that repeats pages
  } catch (e) {
    if (id === state.current) renderHistoryStatus(`Could not load older messages: ${errText(e)}`);
    r.loadingOlder = false;
    return;
  }
  r.loadingOlder = false;
  if (id === state.current) {
    renderHistoryStatus();
    requestAnimationFrame(maybeLoadOlder);
  }
}

function firstVisibleBody(sc) {
  const top = sc.getBoundingClientRect().top;
  for (const e of $('message-list').children) {
    if (!e.dataset.id) continue; // a day heading or the gap
    if (e.getBoundingClientRect().bottom > top) return e.querySelector('.body');
  }
  return null;
}

function maybeLoadOlder() {
  const id = state.current;
  if (!id) return;
  const sc = $('messages');
  const r = rs(id);
  if (r.hasOlder && !r.loadingOlder && (sc.scrollTop < 300 || sc.scrollHeight <= sc.clientHeight + 10)) loadOlder(id);
}

// ---------------------------------------------------------------- rooms

function sortedRooms() {
  return [...state.rooms.values()].sort((a, b) => a.name.localeCompare(b.name) || cmpId(a.id, b.id));
}

async function refreshRooms() {
  if (!state.me) return;
  let data;
  try {
    data = await call('GET', '/rooms');
  } catch (e) {
    if (e.status !== 401) $('no-rooms').textContent = `Could not load rooms: ${errText(e)}`;
    return;
  }
  const seen = new Set();
  for (const room of data.rooms || []) {
    seen.add(room.id);
    const isNew = !state.rooms.has(room.id);
    state.rooms.set(room.id, room);
    if (isNew) join(room.id);
  }
  for (const id of [...state.rooms.keys()]) {
    if (!seen.has(id)) roomGone(id, 'is no longer available');
  }
  renderRoomList();
  if (state.current) renderRoomHeader();
}

function renderRoomList() {
  const list = $('room-list');
  const rooms = sortedRooms();
  $('no-rooms').hidden = rooms.length > 0;
  if (!rooms.length) $('no-rooms').textContent = 'No rooms yet. Create one with +.';
  let total = 0;
  // Rebuilding the list must not steal keyboard focus from a room button.
  const focused = document.activeElement && list.contains(document.activeElement) ? document.activeElement.dataset.roomId : null;
  list.replaceChildren(...rooms.map((room) => {
    const r = rs(room.id);
    total += r.unread;
    const current = room.id === state.current;
    const label = [room.name, room.private ? 'private' : null, r.unread ? `${r.unread} unread` : null,
      state.left.has(room.id) ? 'not joined' : null].filter(Boolean).join(', ');
    return el('li', {},
      el('button', {
        type: 'button', class: `room-btn${state.left.has(room.id) ? ' left' : ''}`,
        'aria-current': current ? 'page' : null, 'aria-label': label, dataset: { roomId: room.id },
        onclick: () => openRoom(room.id),
      },
      el('span', { class: 'room-icon', 'aria-hidden': 'true' }, room.private ? '🔒' : '#'),
      el('span', { class: 'room-name' }, room.name),
      r.unread ? el('span', { class: 'badge', 'aria-hidden': 'true' }, r.unread > 99 ? '99+' : String(r.unread)) : null));
  }));
  if (focused) list.querySelector(`[data-room-id="${focused}"]`)?.focus();
  document.title = total ? `(${total}) chatd` : 'chatd';
}

function renderRoomHeader() {
  const room = state.current && state.rooms.get(state.current);
  $('room-name').textContent = room ? `${room.private ? '🔒 ' : '# '}${room.name}` : 'Select a room';
  $('room-desc').textContent = room ? room.description || '' : '';
  $('room-actions').hidden = !room;
  $('composer').hidden = !room;
  const owner = room && state.me && room.owner_id === state.me.id;
  $('rename-room-btn').hidden = !owner;
  $('delete-room-btn').hidden = !owner;
  $('add-member-btn').hidden = !(owner && room.private);
  $('members-btn').hidden = !(room && room.private);
  $('search-scope').querySelector('option[value=room]').disabled = !room;
}

async function openRoom(id, { skipLoad = false } = {}) {
  if (!state.rooms.has(id)) return;
  if (state.left.has(id)) {
    state.left.delete(id);
    saveLeft();
    join(id);
  }
  const changed = state.current !== id;
  state.current = id;
  const r = rs(id);
  r.unread = 0;
  try { localStorage.setItem('chatd_last_room', id); } catch { /* ignore */ }
  if (location.pathname !== `/rooms/${id}`) history.replaceState(null, '', `/rooms/${id}`);
  $('chat-view').classList.remove('sidebar-open');
  $('toggle-sidebar').setAttribute('aria-expanded', 'false');
  renderRoomList();
  renderRoomHeader();
  if (changed) {
    renderMessages();
    renderTyping();
    scrollToBottom();
  }
  if (!r.loadedLatest && !skipLoad) {
    try {
      await loadLatest(id);
    } catch (e) {
      renderHistoryStatus(`Could not load messages: ${errText(e)}`);
    }
    if (state.current === id) scrollToBottom();
  }
  if (state.current === id && !skipLoad) requestAnimationFrame(maybeLoadOlder);
}

// Dialog helpers: <dialog> gives focus trapping and Escape for free.
function openDialog(d) {
  clearErrors(d);
  d.showModal();
}

function onNewRoom() {
  const d = $('room-dialog');
  d.dataset.mode = 'create';
  $('room-dialog-title').textContent = 'New room';
  $('room-submit').textContent = 'Create';
  $('room-name-input').value = '';
  $('room-desc-input').value = '';
  $('room-private-input').checked = false;
  $('room-private-field').hidden = false;
  openDialog(d);
}

function onRenameRoom() {
  const room = state.rooms.get(state.current);
  if (!room) return;
  const d = $('room-dialog');
  d.dataset.mode = 'edit';
  $('room-dialog-title').textContent = 'Rename room';
  $('room-submit').textContent = 'Save';
  $('room-name-input').value = room.name;
  $('room-desc-input').value = room.description || '';
  $('room-private-field').hidden = true;
  openDialog(d);
}

async function onRoomSubmit(ev) {
  ev.preventDefault();
  const d = $('room-dialog');
  clearErrors(d);
  const name = $('room-name-input').value.trim();
  const description = $('room-desc-input').value.trim();
  if (!name) { fieldError('room-name-input', 'Give the room a name.'); return; }
  try {
    if (d.dataset.mode === 'edit') {
      const room = await call('PATCH', `/rooms/${state.current}`, { name, description });
      state.rooms.set(room.id, room);
      d.close();
      renderRoomList();
      renderRoomHeader();
    } else {
      const room = await call('POST', '/rooms', { name, description, private: $('room-private-input').checked });
      state.rooms.set(room.id, room);
      join(room.id);
      d.close();
      await openRoom(room.id);
      $('composer-input').focus();
    }
  } catch (e) {
    if (e.status === 400 || e.status === 409) fieldError('room-name-input', e.status === 409 ? (e.message || 'That name is taken.') : (e.message || 'Invalid name.'));
    else if (e.status === 403) $('room-form-error').textContent = 'Only the owner can change this room.';
    else $('room-form-error').textContent = errText(e);
  }
}

async function onAddMember(ev) {
  ev.preventDefault();
  const d = $('member-dialog');
  clearErrors(d);
  const username = $('member-username').value.trim().toLowerCase();
  if (!username) { fieldError('member-username', 'Enter a username.'); return; }
  try {
    await call('POST', `/rooms/${state.current}/members`, { username });
    d.close();
    notice(`Added @${username} to the room.`);
  } catch (e) {
    if (e.status === 404) fieldError('member-username', 'No such user.');
    else if (e.status === 409) fieldError('member-username', 'Already a member.');
    else if (e.status === 403) fieldError('member-username', 'Only the owner can add members.');
    else fieldError('member-username', errText(e));
  }
}

// ---------------------------------------------------------------- members

const membersPage = 200;
let membersAfter = null; // next_after of the last page shown, null when done

async function onShowMembers() {
  const room = state.rooms.get(state.current);
  if (!room) return;
  const d = $('members-dialog');
  d.dataset.roomId = room.id;
  $('members-dialog-title').textContent = `Members of ${room.name}`;
  $('members-list').replaceChildren();
  membersAfter = null;
  openDialog(d);
  await loadMembers();
}

async function loadMembers() {
  const d = $('members-dialog');
  const room = state.rooms.get(d.dataset.roomId);
  if (!room) return;
  const after = membersAfter ? `&after=${encodeURIComponent(membersAfter)}` : '';
  try {
    const page = await call('GET', `/rooms/${room.id}/members?limit=${membersPage}${after}`);
    for (const m of page.members) $('members-list').append(memberItem(room, m));
    membersAfter = page.next_after;
    $('members-more').hidden = !membersAfter;
  } catch (e) {
    $('members-error').textContent = errText(e);
  }
}

function memberItem(room, m) {
  const name = m.display_name && m.display_name !== m.username ? `${m.display_name} (@${m.username})` : `@${m.username}`;
  const li = el('li', {}, el('span', { class: 'member-name' }, name));
  if (m.id === room.owner_id) {
    li.append(el('span', { class: 'muted' }, 'owner'));
  } else if (state.me && room.owner_id === state.me.id) {
    const remove = async (ev) => {
      const b = ev.currentTarget;
      $('members-error').textContent = '';
      b.disabled = true;
      try {
        await call('DELETE', `/rooms/${room.id}/members/${m.id}`);
        li.remove();
        notice(`Removed @${m.username} from the room.`);
      } catch (e) {
        // Already gone (removed elsewhere, or left): the list was stale.
        if (e.status === 404) li.remove();
        else { b.disabled = false; $('members-error').textContent = errText(e); }
      }
    };
    li.append(el('button', { type: 'button', class: 'small-btn danger', 'aria-label': `Remove @${m.username}`, onclick: remove }, 'Remove'));
  }
  return li;
}

let confirmAction = null;
function confirmDialog(title, text, okLabel, action) {
  $('confirm-title').textContent = title;
  $('confirm-text').textContent = text;
  $('confirm-ok').textContent = okLabel;
  confirmAction = action;
  openDialog($('confirm-dialog'));
}

async function onConfirm(ev) {
  ev.preventDefault();
  if (!confirmAction) return;
  try {
    await confirmAction();
    $('confirm-dialog').close();
  } catch (e) {
    $('confirm-error').textContent = errText(e);
  }
}

function onDeleteRoom() {
  const room = state.rooms.get(state.current);
  if (!room) return;
  confirmDialog('Delete room', `Delete “${room.name}” and all its messages for everyone?`, 'Delete', async () => {
    await call('DELETE', `/rooms/${room.id}`);
    state.rooms.delete(room.id);
    state.rs.delete(room.id);
    state.current = null;
    history.replaceState(null, '', '/');
    renderRoomList();
    renderRoomHeader();
    renderMessages();
    notice(`Deleted “${room.name}”.`);
  });
}

function onLeaveRoom() {
  const room = state.rooms.get(state.current);
  if (!room) return;
  confirmDialog('Leave room', `Leave “${room.name}”?`, 'Leave', async () => {
    try {
      await call('DELETE', `/rooms/${room.id}/members/${state.me.id}`);
    } catch (e) {
      // Not being a member of a public room is fine: we stop following it.
      if (!(e.status === 404 && !room.private)) throw e;
    }
    if (state.socket) state.socket.send({ type: 'leave', room_id: room.id });
    state.current = null;
    state.rs.delete(room.id);
    if (room.private) state.rooms.delete(room.id);
    else { state.left.add(room.id); saveLeft(); }
    history.replaceState(null, '', '/');
    renderRoomList();
    renderRoomHeader();
    renderMessages();
    notice(`You left “${room.name}”.`);
  });
}

// ---------------------------------------------------------------- sending

function onComposerKey(ev) {
  if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing && !ev.altKey && !ev.ctrlKey && !ev.metaKey) {
    ev.preventDefault();
    $('composer').requestSubmit();
  }
}

function autoGrow() {
  const t = $('composer-input');
  t.style.height = 'auto';
  t.style.height = `${Math.min(t.scrollHeight, 200)}px`;
}

function onComposerInput() {
  autoGrow();
  const now = Date.now();
  if (state.current && $('composer-input').value.trim() && now - state.lastTypingSent > TYPING_SEND_MS && state.socket) {
    if (state.socket.send({ type: 'typing', room_id: state.current })) state.lastTypingSent = now;
  }
}

function onSend(ev) {
  ev.preventDefault();
  const input = $('composer-input');
  const body = input.value.trim();
  if (!body || !state.current) return;
  if ([...body].length > 4000) { notice('A message can have at most 4,000 characters.', 'error'); return; }
  const r = rs(state.current);
  const p = { nonce: newNonce(), roomId: state.current, body, status: 'sending', error: '', timer: null, retryTimer: null, autoRetries: 0 };
  r.pending.set(p.nonce, p);
  const e = pendingEl(p);
  state.pendingEls.set(p.nonce, e);
  $('message-list').append(e);
  updatePendingEl(p);
  input.value = '';
  autoGrow();
  state.lastTypingSent = 0;
  scrollToBottom();
  transmit(p);
}

function transmit(p) {
  clearTimeout(p.retryTimer);
  p.status = 'sending';
  p.error = '';
  updatePendingEl(p);
  clearTimeout(p.timer);
  const frame = { type: 'send', room_id: p.roomId, body: p.body, nonce: p.nonce };
  if (state.socket && state.socket.send(frame)) {
    p.timer = setTimeout(() => failPending(p, 'no answer from the server'), SEND_TIMEOUT_MS);
    return;
  }
  // No live socket: REST takes the same path on the server, same nonce.
  call('POST', `/rooms/${p.roomId}/messages`, { body: p.body, nonce: p.nonce })
    .then((m) => { if (!m.nonce) m.nonce = p.nonce; addMessages(p.roomId, [m], { live: true, own: true }); })
    .catch((e) => {
      if (e.status === 429) rateLimited(p, (e.retryAfter ?? 1) * 1000);
      else failPending(p, errText(e));
    });
}

// rateLimited marks a send as held back and tries it again, with the same
// nonce, once the server's window has passed (a few times at most).
function rateLimited(p, ms) {
  const s = Math.max(1, Math.ceil(ms / 1000));
  p.autoRetries = (p.autoRetries || 0) + 1;
  if (p.autoRetries > 5) { failPending(p, `sending too fast: retry in ${s} s`); return; }
  failPending(p, `sending too fast: retrying in ${s} s`);
  clearTimeout(p.retryTimer);
  p.retryTimer = setTimeout(() => {
    const r = state.rs.get(p.roomId);
    if (r && r.pending.has(p.nonce) && p.status === 'failed') transmit(p);
  }, ms + 50);
}

function failPending(p, msg) {
  const r = state.rs.get(p.roomId);
  if (!r || !r.pending.has(p.nonce)) return;
  clearTimeout(p.timer);
  p.status = 'failed';
  p.error = msg;
  p.timer = null;
  updatePendingEl(p);
}

function discardPending(p) {
  const r = state.rs.get(p.roomId);
  if (r) resolvePending(r, p.nonce);
}

function renderTyping() {
  const t = $('typing');
  const r = state.current && state.rs.get(state.current);
  if (!r) { t.textContent = ''; return; }
  const now = Date.now();
  for (const [uid, v] of r.typing) if (v.until < now) r.typing.delete(uid);
  const names = [...r.typing.values()].map((v) => v.username);
  if (!names.length) t.textContent = '';
  else if (names.length === 1) t.textContent = `${names[0]} is typing…`;
  else if (names.length === 2) t.textContent = `${names[0]} and ${names[1]} are typing…`;
  else t.textContent = 'Several people are typing…';
}

// ---------------------------------------------------------------- search

async function onSearch(ev) {
  ev.preventDefault();
  const text = $('search-input').value.trim();
  if (!text) return;
  const scope = $('search-scope').value;
  state.search = { q: text, roomId: scope === 'room' && state.current ? state.current : '', cursor: null };
  $('search-results').replaceChildren();
  $('search-panel').hidden = false;
  const where = state.search.roomId ? ` in “${state.rooms.get(state.search.roomId)?.name ?? ''}”` : '';
  $('search-title').textContent = `Results for “${text}”${where}`;
  await runSearch();
}

async function runSearch() {
  const s = state.search;
  $('search-status').textContent = 'Searching…';
  $('search-more').hidden = true;
  let path = `/search?q=${q(s.q)}&limit=20`;
  if (s.roomId) path += `&room_id=${q(s.roomId)}`;
  if (s.cursor) path += `&cursor=${q(s.cursor)}`;
  let data;
  try {
    data = await call('GET', path);
  } catch (e) {
    $('search-status').textContent = `Search failed: ${errText(e)}`;
    return;
  }
  const hits = data.hits || [];
  const list = $('search-results');
  for (const h of hits) {
    const m = h.message;
    if (!m) continue;
    const room = state.rooms.get(m.room_id);
    const snippet = el('div', { class: 'hl' });
    if (typeof h.highlight === 'string' && h.highlight) snippet.append(safeHighlight(h.highlight));
    else snippet.append(document.createTextNode(m.body || ''));
    list.append(el('li', {},
      el('button', { type: 'button', class: 'result', dataset: { messageId: m.id, roomId: m.room_id }, onclick: () => jumpTo(m) },
        el('div', { class: 'meta' },
          el('span', { class: 'room' }, room ? `#${room.name}` : 'room'), ' · ',
          el('span', { class: 'author' }, m.username || ''), ' · ',
          el('time', { datetime: m.created_at }, formatTime(m.created_at))),
        snippet)));
  }
  const shown = list.children.length;
  const total = typeof data.total === 'number' ? data.total : shown;
  // "gte": counting stopped at the cap (10,000); more matched.
  const count = data.total_relation === 'gte' ? `${total.toLocaleString('en-US')}+` : total;
  $('search-status').textContent = shown ? `${count} result${total === 1 ? '' : 's'}` : 'No results.';
  s.cursor = data.next_cursor || null;
  $('search-more').hidden = !s.cursor;
}

function closeSearch() {
  $('search-panel').hidden = true;
  $('search-input').focus();
}

// jumpTo opens a message's room with history loaded around it, contiguous up
// to the latest message, and scrolls to it.
async function jumpTo(m) {
  const id = m.room_id;
  if (!state.rooms.has(id)) await refreshRooms();
  if (!state.rooms.has(id)) { notice('That room is not available.', 'warn'); return; }
  $('search-panel').hidden = true;
  await openRoom(id, { skipLoad: true });
  const r = rs(id);
  if (!r.messages.has(m.id)) {
    renderHistoryStatus('Loading…');
    try {
      const data = await call('GET', `/rooms/${id}/messages?limit=${PAGE}&before=${nextId(m.id)}`);
      const msgs = data.messages || [];
      if (msgs.length < PAGE || ('next_before' in data && !data.next_before)) r.hasOlder = false;
      addMessages(id, msgs);
      await fillNewer(id, m.id, m.created_at);
      r.loadedLatest = true;
    } catch (e) {
      renderHistoryStatus(`Could not load messages: ${errText(e)}`);
      return;
    }
    renderHistoryStatus();
  }
  if (state.current !== id) return;
  highlight(m.id);
}

// fillNewer loads the messages between fromId and the newest one, so the
// loaded range has no hole: first forward through /history (time range),
// then backward from the newest page until the two meet.
async function fillNewer(id, fromId, fromTime) {
  const r = rs(id);
  let top = fromId; // every message from fromId up to `top` is loaded
  if (!fromTime) fromTime = r.messages.get(fromId)?.created_at;
  if (fromTime) {
    try {
      let cursor = null;
      for (let i = 0; i < 10; i++) {
        const data = await call('GET', `/rooms/${id}/history?from=${q(fromTime)}&limit=200${cursor ? `&cursor=${q(cursor)}` : ''}`);
        const msgs = data.messages || [];
        addMessages(id, msgs);
        for (const x of msgs) top = maxId(top, x.id);
        cursor = data.next_cursor;
        if (!cursor || !msgs.length) break;
      }
    } catch { /* the search index may be unavailable: page the store instead */ }
  }
  let before = null;
  let joined = false;
  for (let i = 0; i < 10; i++) {
    const data = await call('GET', `/rooms/${id}/messages?limit=200${before ? `&before=${before}` : ''}`);
    const msgs = data.messages || [];
    addMessages(id, msgs);
    if (!msgs.length || cmpId(msgs[0].id, top) <= 0) { joined = true; break; }
    before = msgs[0].id;
    if ('next_before' in data && !data.next_before) { joined = true; break; }
  }
  r.gapAfter = joined ? null : top;
  if (id === state.current) placeGap();
}

function highlight(mid) {
  if (state.highlighted) state.highlighted.classList.remove('highlighted');
  const e = state.els.get(mid);
  if (!e) return;
  e.classList.add('highlighted');
  state.highlighted = e;
  e.scrollIntoView({ block: 'center' });
  e.focus({ preventScroll: true });
}

// ---------------------------------------------------------------- wiring

function wire() {
  document.querySelector('.skip-link').addEventListener('click', (ev) => {
    ev.preventDefault();
    const c = $('composer');
    (c.hidden ? $('room-list').querySelector('button') || $('new-room-btn') : $('composer-input')).focus();
  });
  $('tab-login').addEventListener('click', () => selectTab('login'));
  $('tab-register').addEventListener('click', () => selectTab('register'));
  for (const t of [$('tab-login'), $('tab-register')]) {
    t.addEventListener('keydown', (ev) => {
      if (ev.key === 'ArrowLeft' || ev.key === 'ArrowRight') {
        selectTab(t.id === 'tab-login' ? 'register' : 'login');
        ev.preventDefault();
      }
    });
  }
  $('login-form').addEventListener('submit', onLogin);
  $('register-form').addEventListener('submit', onRegister);
  $('logout-btn').addEventListener('click', logout);
  $('new-room-btn').addEventListener('click', onNewRoom);
  $('refresh-rooms').addEventListener('click', () => refreshRooms());
  $('rename-room-btn').addEventListener('click', onRenameRoom);
  $('delete-room-btn').addEventListener('click', onDeleteRoom);
  $('leave-room-btn').addEventListener('click', onLeaveRoom);
  $('add-member-btn').addEventListener('click', () => { $('member-username').value = ''; openDialog($('member-dialog')); });
  $('room-form').addEventListener('submit', onRoomSubmit);
  $('member-form').addEventListener('submit', onAddMember);
  $('members-btn').addEventListener('click', onShowMembers);
  $('members-more').addEventListener('click', loadMembers);
  $('confirm-form').addEventListener('submit', onConfirm);
  for (const b of document.querySelectorAll('dialog [data-close]')) {
    b.addEventListener('click', () => b.closest('dialog').close());
  }
  $('composer').addEventListener('submit', onSend);
  $('composer-input').addEventListener('keydown', onComposerKey);
  $('composer-input').addEventListener('input', onComposerInput);
  $('messages').addEventListener('scroll', () => {
    maybeLoadOlder();
    if (nearBottom()) $('jump-latest').hidden = true;
  }, { passive: true });
  $('jump-latest').addEventListener('click', () => { scrollToBottom(); $('composer-input').focus(); });
  $('search-form').addEventListener('submit', onSearch);
  $('close-search').addEventListener('click', closeSearch);
  $('search-more').addEventListener('click', runSearch);
  $('search-panel').addEventListener('keydown', (ev) => { if (ev.key === 'Escape') closeSearch(); });
  $('toggle-sidebar').addEventListener('click', () => {
    const open = $('chat-view').classList.toggle('sidebar-open');
    $('toggle-sidebar').setAttribute('aria-expanded', String(open));
    if (open) $('room-list').querySelector('button')?.focus();
  });
  $('sidebar').addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape' && $('chat-view').classList.contains('sidebar-open')) {
      $('chat-view').classList.remove('sidebar-open');
      $('toggle-sidebar').setAttribute('aria-expanded', 'false');
      $('toggle-sidebar').focus();
    }
  });
  window.addEventListener('online', () => state.socket && state.socket.kick());
  window.addEventListener('focus', () => { if (state.me) refreshRooms().catch(() => {}); });
  setInterval(() => { if (state.current) renderTyping(); }, 1000);
}

// resume signs in from a stored token, or just the HttpOnly cookie. While the
// server is unreachable (a restart) it keeps trying instead of asking for a
// password the user has already given.
async function resume(attempt = 0) {
  if (state.me) return;
  try {
    const me = await api('GET', '/users/me');
    if (!state.me) await startChat(me);
  } catch (e) {
    const down = e instanceof ApiError && (e.status === 0 || e.status >= 500);
    if (e instanceof ApiError && e.status === 401) auth.token = '';
    if (down && auth.token) {
      $('auth-view').hidden = true;
      const b = $('conn-banner');
      b.hidden = false;
      b.textContent = 'Reconnecting…';
      setTimeout(() => resume(attempt + 1), Math.min(10000, 1000 * 2 ** attempt) * (0.5 + Math.random() / 2));
      return;
    }
    showAuth(down ? errText(e) : '');
  }
}

function boot() {
  wire();
  resume();
}

boot();
