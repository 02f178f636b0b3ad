// Browser end-to-end tests of the web UI against a real chatd binary.
// Run with CHATD_BIN=/path/to/chatd node --test tests/ (see ../run.sh).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  Server, launch, newPage, registerUI, loginUI, createRoomUI, openRoomUI, roomButton, sendUI,
  finalBodies, shownIds, waitForBody, shot, sleep, ARTIFACTS,
} from './helpers.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

function assertAscendingUnique(ids, what) {
  assert.equal(new Set(ids).size, ids.length, `${what}: duplicate message ids`);
  for (let i = 1; i < ids.length; i++) {
    assert.ok(BigInt(ids[i - 1]) < BigInt(ids[i]), `${what}: ids out of order at ${i}`);
  }
}

function noErrors(...pages) {
  for (const p of pages) {
    assert.deepEqual(p.errors, [], 'page errors or CSP violations');
    assert.deepEqual(p.dialogs, [], 'a JavaScript dialog fired');
  }
}

async function withServer(fn) {
  const server = await Server.create();
  try {
    await fn(server);
  } catch (e) {
    e.message += `\n--- chatd log tail ---\n${server.tail()}`;
    throw e;
  } finally {
    await server.close();
  }
}

test('accounts: register, field errors, reload keeps the session, logout', () => withServer(async (server) => {
  await server.newUser('taken');
  const page = await newPage(browser, server);
  await shot(page, 'login');

  // Client-side validation, then the server's 409 next to the username.
  await page.click('#tab-register');
  await page.fill('#register-username', 'No Spaces!');
  await page.fill('#register-password', 'short');
  await page.click('#register-form button[type=submit]');
  await assertText(page, '#register-username-error', /3–32/);
  await assertText(page, '#register-password-error', /8 characters/);
  await page.fill('#register-username', 'taken');
  await page.fill('#register-password', 'long enough password');
  await page.click('#register-form button[type=submit]');
  await assertText(page, '#register-username-error', /taken/i);
  assert.equal(await page.getAttribute('#register-username', 'aria-invalid'), 'true');

  // Wrong password: 401 next to the password field.
  await page.click('#tab-login');
  await page.fill('#login-username', 'taken');
  await page.fill('#login-password', 'wrong password!!');
  await page.click('#login-form button[type=submit]');
  await assertText(page, '#login-password-error', /wrong username or password/i);

  // Too many attempts: 429 with Retry-After, said on the form.
  for (let i = 0; i < 12; i++) {
    const res = await fetch(`${server.url}/api/v1/sessions`, { method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ username: 'taken', password: 'wrong password!!' }) });
    if (res.status === 429) break;
  }
  await page.click('#login-form button[type=submit]');
  await assertText(page, '#login-form-error', /Too many attempts\. Try again in \d+ seconds/);

  await registerUI(page, 'carol');
  assert.match(await page.textContent('#me-name'), /carol/);
  await page.reload();
  await page.waitForSelector('#chat-view:not([hidden])');
  assert.match(await page.textContent('#me-name'), /carol/);
  // The API answering 503 at load (a server starting up): the UI keeps the
  // session and retries instead of asking for the password again.
  let refusals = 2;
  await page.route('**/api/v1/users/me', (route) => (refusals-- > 0
    ? route.fulfill({ status: 503, contentType: 'application/json', headers: { 'x-e2e-injected': '1' }, body: '{"error":{"code":"unavailable","message":"starting"}}' })
    : route.fallback()));
  await page.reload();
  await page.waitForSelector('#conn-banner:not([hidden])');
  assert.ok(await page.isHidden('#auth-view'));
  await page.waitForSelector('#chat-view:not([hidden])', { timeout: 20000 });
  assert.ok(await page.isHidden('#conn-banner'));
  await page.unroute('**/api/v1/users/me');

  // A second tab shares the session; logging out in one ends the other,
  // whose WebSocket the server closes.
  const tab2 = await page.context().newPage();
  tab2.errors = []; tab2.dialogs = [];
  tab2.on('pageerror', (e) => tab2.errors.push(e.message));
  tab2.on('dialog', (d) => { tab2.dialogs.push(d.message()); d.dismiss().catch(() => {}); });
  await tab2.goto('/');
  await tab2.waitForSelector('#chat-view:not([hidden])');
  await page.click('#logout-btn');
  await page.waitForSelector('#auth-view:not([hidden])');
  await tab2.waitForSelector('#auth-view:not([hidden])', { timeout: 20000 });
  await assertText(tab2, '#login-form-error', /session has ended/);
  noErrors(tab2);
  await tab2.close();
  await page.reload();
  await page.waitForSelector('#auth-view:not([hidden])');
  await loginUI(page, 'carol');
  noErrors(page);
  await page.context().close();
}));

async function assertText(page, sel, re) {
  await page.waitForFunction(([s, src, flags]) => new RegExp(src, flags).test(document.querySelector(s).textContent),
    [sel, re.source, re.flags]);
}

test('two users chat both ways live, with typing and unread counts', () => withServer(async (server) => {
  const alice = await newPage(browser, server);
  const bob = await newPage(browser, server);
  await registerUI(alice, 'alice');
  await registerUI(bob, 'bob');
  await createRoomUI(alice, 'general', { description: 'Everything and nothing' });
  await createRoomUI(alice, 'random');
  await openRoomUI(alice, 'general');
  await openRoomUI(bob, 'general');

  await sendUI(alice, 'hello from alice');
  await waitForBody(bob, 'hello from alice');
  await waitForBody(alice, 'hello from alice');

  // Typing indicator reaches the other side.
  await bob.type('#composer-input', 'hi al');
  await alice.waitForFunction(() => /bob is typing/.test(document.getElementById('typing').textContent));
  await bob.fill('#composer-input', 'hi alice,\nhow are you?');
  // Shift+Enter made a newline above; Enter sends.
  await bob.press('#composer-input', 'Enter');
  await waitForBody(alice, 'how are you?');
  const bodies = await finalBodies(alice);
  assert.deepEqual(bodies, ['hello from alice', 'hi alice,\nhow are you?']);

  await bob.fill('#composer-input', 'line one');
  await bob.press('#composer-input', 'Shift+Enter');
  await bob.type('#composer-input', 'line two');
  assert.equal(await bob.inputValue('#composer-input'), 'line one\nline two');
  await bob.press('#composer-input', 'Enter');
  await waitForBody(alice, 'line two');

  // Unread count on a room that is not open.
  await openRoomUI(alice, 'random');
  await sendUI(bob, 'are you there?');
  const badge = roomButton(alice, 'general').locator('.badge');
  await badge.waitFor();
  assert.equal(await badge.textContent(), '1');
  await openRoomUI(alice, 'general');
  assert.equal(await roomButton(alice, 'general').locator('.badge').count(), 0);
  await waitForBody(alice, 'are you there?');
  // Keyboard only: the skip link leads to the message box.
  await alice.reload();
  await alice.waitForSelector('#composer:not([hidden])');
  await waitForBody(alice, 'are you there?');
  await alice.keyboard.press('Tab');
  assert.equal(await alice.evaluate(() => document.activeElement.className), 'skip-link');
  await alice.keyboard.press('Enter');
  assert.equal(await alice.evaluate(() => document.activeElement.id), 'composer-input');
  await alice.keyboard.type('yes, see https://example.com/docs');
  await alice.keyboard.press('Enter');
  await waitForBody(bob, 'yes, see');
  await sleep(300);
  assertAscendingUnique(await shownIds(alice), 'alice');
  assertAscendingUnique(await shownIds(bob), 'bob');
  assert.equal((await finalBodies(bob)).length, 5);
  await shot(alice, 'chat');
  if (process.env.UPDATE_SCREENSHOT) copyFileSync(join(ARTIFACTS, 'chat.png'), new URL('../screenshot-chat.png', import.meta.url));

  // Phone width and dark mode.
  const phone = await newPage(browser, server, { viewport: { width: 390, height: 780 }, colorScheme: 'dark' });
  await loginUI(phone, 'bob');
  await phone.waitForFunction(() => document.querySelectorAll('#message-list .msg').length >= 5);
  await shot(phone, 'chat-phone-dark');
  await phone.click('#toggle-sidebar');
  await roomButton(phone, 'random').waitFor({ state: 'visible' });
  await shot(phone, 'rooms-phone-dark');
  await roomButton(phone, 'random').click();
  await phone.waitForFunction(() => document.getElementById('room-name').textContent.includes('random'));
  noErrors(alice, bob, phone);
  await Promise.all([alice.context().close(), bob.context().close(), phone.context().close()]);
}));

test('room management: private room, add member, rename, leave, delete', () => withServer(async (server) => {
  const alice = await newPage(browser, server);
  const bob = await newPage(browser, server);
  await registerUI(alice, 'alice');
  await registerUI(bob, 'bob');
  await createRoomUI(alice, 'secret', { isPrivate: true });
  await bob.click('#refresh-rooms');
  await sleep(300);
  assert.equal(await roomButton(bob, 'secret').count(), 0, 'private room visible to a non-member');

  await alice.click('#add-member-btn');
  await alice.fill('#member-username', 'nobody-here');
  await alice.click('#member-form button[type=submit]');
  await assertText(alice, '#member-username-error', /no such user/i);
  await alice.fill('#member-username', 'bob');
  await alice.click('#member-form button[type=submit]');
  await alice.waitForSelector('#member-dialog', { state: 'hidden' });
  await openRoomUI(bob, 'secret');
  await sendUI(bob, 'thanks for the invite');
  await waitForBody(alice, 'thanks for the invite');
  assert.ok(await bob.isHidden('#delete-room-btn'), 'non-owner sees Delete');

  await alice.click('#rename-room-btn');
  await alice.fill('#room-name-input', 'secret-renamed');
  await alice.click('#room-submit');
  await alice.waitForFunction(() => document.getElementById('room-name').textContent.includes('secret-renamed'));
  await bob.click('#refresh-rooms');
  await roomButton(bob, 'secret-renamed').waitFor();

  await bob.click('#leave-room-btn');
  await bob.click('#confirm-ok');
  await bob.waitForSelector('#confirm-dialog', { state: 'hidden' });
  await bob.click('#refresh-rooms');
  await sleep(300);
  assert.equal(await roomButton(bob, 'secret-renamed').count(), 0, 'left private room still listed');

  // A deletion reaches others live (room_deleted), with no refresh.
  await createRoomUI(alice, 'doomed');
  await openRoomUI(bob, 'doomed');
  await alice.click('#delete-room-btn');
  await alice.click('#confirm-ok');
  await alice.waitForSelector('#confirm-dialog', { state: 'hidden' });
  await roomButton(bob, 'doomed').waitFor({ state: 'detached' });
  await assertText(bob, '#notice', /doomed.*was deleted/);
  assert.ok(await bob.isHidden('#composer'));

  await openRoomUI(alice, 'secret-renamed');
  await alice.click('#delete-room-btn');
  await alice.click('#confirm-ok');
  await alice.waitForSelector('#confirm-dialog', { state: 'hidden' });
  assert.equal(await roomButton(alice, 'secret-renamed').count(), 0);
  await alice.click('#refresh-rooms');
  await sleep(300);
  assert.equal(await roomButton(alice, 'secret-renamed').count(), 0, 'deleted room still listed');
  noErrors(alice, bob);
  await Promise.all([alice.context().close(), bob.context().close()]);
}));

test('members: everyone in a private room sees the list, the owner removes a member who is told at once', () => withServer(async (server) => {
  const alice = await newPage(browser, server);
  const bob = await newPage(browser, server);
  await registerUI(alice, 'alice');
  await registerUI(bob, 'bob');
  await createRoomUI(alice, 'club', { isPrivate: true });
  await alice.click('#add-member-btn');
  await alice.fill('#member-username', 'bob');
  await alice.click('#member-form button[type=submit]');
  await alice.waitForSelector('#member-dialog', { state: 'hidden' });
  await bob.click('#refresh-rooms');
  await openRoomUI(bob, 'club');

  // bob sees both members and no Remove button: only the owner removes.
  await bob.click('#members-btn');
  await bob.waitForFunction(() => document.querySelectorAll('#members-list li').length === 2);
  const bobView = await bob.locator('#members-list').innerText();
  assert.match(bobView, /@alice[\s\S]*owner/);
  assert.match(bobView, /@bob/);
  assert.equal(await bob.locator('#members-list button').count(), 0, 'a member can remove others');
  await bob.click('#members-dialog [data-close]');

  // alice removes bob: the list drops him and his open room goes away live.
  await alice.click('#members-btn');
  await alice.locator('#members-list button', { hasText: 'Remove' }).waitFor();
  assert.equal(await alice.locator('#members-list button').count(), 1, 'the owner can be removed');
  await alice.click('#members-list button[aria-label="Remove @bob"]');
  await alice.waitForFunction(() => document.querySelectorAll('#members-list li').length === 1);
  await assertText(alice, '#notice', /removed @bob/i);
  await roomButton(bob, 'club').waitFor({ state: 'detached' });
  await assertText(bob, '#notice', /club.*no longer available/);
  assert.ok(await bob.isHidden('#composer'));
  noErrors(alice, bob);
  await Promise.all([alice.context().close(), bob.context().close()]);
}));

test('scrolling up loads 200 older messages smoothly, without jumps or duplicates', () => withServer(async (server) => {
  const u = await server.newUser('reader');
  const room = await server.api('POST', '/rooms', { name: 'archive' }, u.token);
  const pad = (i) => String(i).padStart(3, '0');
  for (let i = 1; i <= 200; i++) {
    await server.api('POST', `/rooms/${room.id}/messages`, { body: `older message ${pad(i)}` }, u.token);
  }
  const page = await newPage(browser, server);
  await loginUI(page, 'reader');
  await openRoomUI(page, 'archive');
  await waitForBody(page, 'older message 200');
  // The newest message is in view at once.
  assert.ok(await page.locator('.msg', { hasText: 'older message 200' }).isVisible());

  for (let round = 0; round < 20; round++) {
    const count = (await shownIds(page)).length;
    if (count >= 200) break;
    // Scroll to the very top and remember where the first message sits.
    const anchor = await page.evaluate(() => {
      const sc = document.getElementById('messages');
      sc.scrollTop = 0;
      const first = document.querySelector('#message-list .msg[data-id]');
      return { id: first.dataset.id, top: first.querySelector('.body').getBoundingClientRect().top };
    });
    await page.waitForFunction((n) => document.querySelectorAll('#message-list .msg[data-id]').length > n, count);
    await page.waitForFunction(() => !/Loading/.test(document.getElementById('history-status').textContent));
    // The text the reader was looking at has not moved.
    const after = await page.evaluate((id) => document.querySelector(`[data-id="${id}"] .body`).getBoundingClientRect().top, anchor.id);
    assert.ok(Math.abs(after - anchor.top) <= 1, `view jumped by ${after - anchor.top}px when older messages loaded`);
  }
  const ids = await shownIds(page);
  assert.equal(ids.length, 200);
  assertAscendingUnique(ids, 'history');
  const bodies = await finalBodies(page);
  assert.deepEqual(bodies, Array.from({ length: 200 }, (_, i) => `older message ${pad(i + 1)}`));
  // At the top the UI finds out there is nothing older (maybe after one empty page).
  await page.evaluate(() => { document.getElementById('messages').scrollTop = 0; });
  await page.waitForFunction(() => /Beginning/.test(document.getElementById('history-status').textContent));
  assert.equal((await shownIds(page)).length, 200);
  await shot(page, 'history-top');

  // Reading old messages: a new one does not yank the view down, it offers a jump.
  const topBefore = await page.evaluate(() => document.getElementById('messages').scrollTop);
  await server.api('POST', `/rooms/${room.id}/messages`, { body: 'brand new' }, u.token);
  await page.waitForSelector('#jump-latest:not([hidden])');
  assert.equal(await page.evaluate(() => document.getElementById('messages').scrollTop), topBefore);
  await page.click('#jump-latest');
  assert.ok(await page.locator('.msg', { hasText: 'brand new' }).isVisible());
  assert.ok(await page.isHidden('#jump-latest'));
  noErrors(page);
  await page.context().close();
}));

test('search all rooms or one room, and jump to a result', () => withServer(async (server) => {
  const u = await server.newUser('finder');
  const alpha = await server.api('POST', '/rooms', { name: 'alpha' }, u.token);
  const beta = await server.api('POST', '/rooms', { name: 'beta' }, u.token);
  let target;
  for (let i = 1; i <= 150; i++) {
    const body = i === 20 ? 'the pineapple protocol is unique' : `filler line ${i}`;
    const m = await server.api('POST', `/rooms/${alpha.id}/messages`, { body }, u.token);
    if (i === 20) target = m;
  }
  await server.api('POST', `/rooms/${beta.id}/messages`, { body: 'a <b>pineapple</b> & <img src=x onerror=alert(1)> in beta' }, u.token);

  const page = await newPage(browser, server);
  await loginUI(page, 'finder');
  await openRoomUI(page, 'beta');

  // The index may lag the store a little: search until both hits are there.
  const deadline = Date.now() + 20000;
  for (;;) {
    await page.fill('#search-input', 'pineapple');
    await page.selectOption('#search-scope', 'all');
    await page.click('#search-form button[type=submit]');
    await page.waitForFunction(() => !/Searching/.test(document.getElementById('search-status').textContent));
    if ((await page.locator('#search-results .result').count()) >= 2) break;
    if (Date.now() > deadline) throw new Error('search never returned both hits');
    await sleep(500);
  }
  // Highlights: only text and <mark>; the escaped markup shows as text.
  const marks = await page.$$eval('#search-results .hl mark', (ms) => ms.map((m) => m.textContent.toLowerCase()));
  assert.ok(marks.length >= 2 && marks.every((m) => m.includes('pineapple')), `marks: ${marks}`);
  const tags = await page.$$eval('#search-results .hl *', (es) => [...new Set(es.map((e) => e.localName))]);
  assert.deepEqual(tags, ['mark']);
  const betaText = await page.locator('#search-results .result', { hasText: 'in beta' }).textContent();
  assert.match(betaText, /<b>pineapple<\/b> & <img src=x onerror=alert\(1\)>/);
  await shot(page, 'search');

  // Scope to the current room (beta): only its hit.
  await page.selectOption('#search-scope', 'room');
  await page.click('#search-form button[type=submit]');
  await page.waitForFunction(() => !/Searching/.test(document.getElementById('search-status').textContent));
  assert.equal(await page.locator('#search-results .result').count(), 1);
  assert.match(await page.locator('#search-results .result').textContent(), /in beta/);

  // Jump: open alpha with history around message 20, highlighted and in view.
  await page.selectOption('#search-scope', 'all');
  await page.click('#search-form button[type=submit]');
  // Keyboard: the result is a button, Enter opens it.
  await page.locator('#search-results .result', { hasText: 'protocol' }).focus();
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => document.getElementById('room-name').textContent.includes('alpha'));
  const hl = page.locator('#message-list .msg.highlighted');
  await hl.waitFor();
  assert.equal(await hl.getAttribute('data-id'), target.id);
  assert.ok(await hl.isVisible());
  const inView = await hl.evaluate((e) => {
    const r = e.getBoundingClientRect();
    const c = document.getElementById('messages').getBoundingClientRect();
    return r.top >= c.top && r.bottom <= c.bottom;
  });
  assert.ok(inView, 'jumped-to message is not in view');
  // Loaded from around the hit up to the latest, contiguous, no duplicates.
  const bodies = await finalBodies(page);
  assert.ok(bodies.includes('filler line 19') && bodies.includes('filler line 21'), 'no context around the hit');
  assert.equal(bodies[bodies.length - 1], 'filler line 150');
  const ids = await shownIds(page);
  assertAscendingUnique(ids, 'after jump');
  const first = bodies.indexOf(bodies.find((b) => b.startsWith('filler line')));
  const nums = bodies.slice(first).map((b) => (b.startsWith('the pineapple') ? 20 : Number(b.split(' ').pop())));
  for (let i = 1; i < nums.length; i++) assert.equal(nums[i], nums[i - 1] + 1, `gap after message ${nums[i - 1]}`);
  await shot(page, 'search-jump');
  assert.ok(page.apiCalls.some((c) => /\/rooms\/\d+\/history$/.test(c)), 'jump did not use /history');
  // Live messages still arrive after the jump.
  await server.api('POST', `/rooms/${alpha.id}/messages`, { body: 'live after jump' }, u.token);
  await waitForBody(page, 'live after jump');
  noErrors(page);
  await page.context().close();
}));

test('server restart: reconnecting banner, then resume with nothing missed or doubled', () => withServer(async (server) => {
  const alice = await newPage(browser, server);
  const bob = await newPage(browser, server);
  await registerUI(alice, 'alice');
  await registerUI(bob, 'bob');
  await createRoomUI(alice, 'ops');
  await createRoomUI(alice, 'quiet');
  await openRoomUI(alice, 'ops');
  await openRoomUI(bob, 'ops');
  await sendUI(alice, 'before restart');
  await waitForBody(bob, 'before restart');
  assert.doesNotMatch(await alice.textContent('#history-status'), /No messages yet/);

  // E2E_KILL_SIGNAL=SIGKILL makes this a crash test of the server too.
  await server.stop(process.env.E2E_KILL_SIGNAL || 'SIGTERM');
  for (const p of [alice, bob]) {
    await p.waitForSelector('#conn-banner:not([hidden])');
    assert.match(await p.textContent('#conn-banner'), /Reconnecting…/);
  }
  await shot(alice, 'reconnecting');
  await server.start();

  // Messages sent right after the restart, maybe before the UIs are back:
  // they must arrive once, through the rejoin (`since`) or live.
  const s = await server.api('POST', '/sessions', { username: 'bob', password: 'correct horse battery' });
  const rooms = await server.api('GET', '/rooms', undefined, s.token);
  const ops = rooms.rooms.find((r) => r.name === 'ops');
  const quiet = rooms.rooms.find((r) => r.name === 'quiet');
  for (let i = 1; i <= 3; i++) {
    await server.api('POST', `/rooms/${ops.id}/messages`, { body: `while away ${i}` }, s.token);
  }
  await server.api('POST', `/rooms/${quiet.id}/messages`, { body: 'missed in quiet' }, s.token);

  for (const p of [alice, bob]) {
    await p.waitForSelector('#conn-banner', { state: 'hidden', timeout: 30000 });
    await waitForBody(p, 'while away 3', 30000);
  }
  await sendUI(bob, 'after restart');
  await waitForBody(alice, 'after restart');
  await sleep(500);
  const want = ['before restart', 'while away 1', 'while away 2', 'while away 3', 'after restart'];
  for (const [name, p] of [['alice', alice], ['bob', bob]]) {
    assert.deepEqual(await finalBodies(p), want, `${name} sees the wrong messages`);
    assertAscendingUnique(await shownIds(p), name);
  }
  // The other room caught up too and counts it as unread.
  const badge = roomButton(alice, 'quiet').locator('.badge');
  await badge.waitFor({ timeout: 15000 });
  assert.equal(await badge.textContent(), '1');
  await openRoomUI(alice, 'quiet');
  await waitForBody(alice, 'missed in quiet');
  assert.deepEqual(await finalBodies(alice), ['missed in quiet']);
  noErrors(alice, bob);
  await Promise.all([alice.context().close(), bob.context().close()]);
}));

test('own message is pending at once, final on ack, retry after an error', () => withServer(async (server) => {
  // Sit between the page and the server's WebSocket: hold one send, and
  // answer another with an error, as a rate-limited server would.
  let failed = false;
  let limited = false;
  const setup = (context) => context.routeWebSocket(/\/api\/v1\/ws/, (ws) => {
    const srv = ws.connectToServer();
    ws.onMessage((m) => {
      let f = {};
      try { f = JSON.parse(m); } catch { /* forward as is */ }
      if (f.type === 'send' && f.body === 'fail me once' && !failed) {
        failed = true;
        ws.send(JSON.stringify({ type: 'error', code: 'unavailable', message: 'try later', nonce: f.nonce, room_id: f.room_id }));
        return;
      }
      if (f.type === 'send' && f.body === 'rate me once' && !limited) {
        limited = true;
        ws.send(JSON.stringify({ type: 'error', code: 'rate_limited', message: 'slow down', nonce: f.nonce, retry_after_ms: 1500 }));
        return;
      }
      if (f.type === 'send' && f.body === 'slow ack') { setTimeout(() => srv.send(m), 1500); return; }
      srv.send(m);
    });
    srv.onMessage((m) => ws.send(m));
  });
  const alice = await newPage(browser, server, { setup });
  const bob = await newPage(browser, server);
  await registerUI(alice, 'alice');
  await registerUI(bob, 'bob');
  await createRoomUI(alice, 'acks');
  await openRoomUI(bob, 'acks');

  await sendUI(alice, 'slow ack');
  const pending = alice.locator('#message-list .msg.pending', { hasText: 'slow ack' });
  await pending.waitFor({ timeout: 1000 });
  assert.match(await pending.textContent(), /Sending…/);
  await waitForBody(alice, 'slow ack');
  await pending.waitFor({ state: 'detached' });

  await sendUI(alice, 'fail me once');
  const failedEl = alice.locator('#message-list .msg.failed', { hasText: 'fail me once' });
  await failedEl.waitFor();
  assert.match(await failedEl.textContent(), /Not sent: try later/);
  await shot(alice, 'send-failed');
  await failedEl.getByRole('button', { name: 'Retry' }).click();
  await waitForBody(alice, 'fail me once');
  await failedEl.waitFor({ state: 'detached' });
  await waitForBody(bob, 'fail me once');

  // rate_limited: shown, then retried by itself after retry_after_ms.
  await sendUI(alice, 'rate me once');
  const held = alice.locator('#message-list .msg.failed', { hasText: 'rate me once' });
  await held.waitFor();
  assert.match(await held.textContent(), /sending too fast: retrying in 2 s/);
  await waitForBody(bob, 'rate me once');
  await held.waitFor({ state: 'detached' });
  await sleep(300);
  for (const p of [alice, bob]) {
    assert.deepEqual(await finalBodies(p), ['slow ack', 'fail me once', 'rate me once']);
    assert.equal(await p.locator('#message-list .msg.pending').count(), 0);
  }
  noErrors(alice, bob);
  await Promise.all([alice.context().close(), bob.context().close()]);
}));

test('with the real send limit, a burst of sends is held back and retried, none lost or doubled', async () => {
  const server = await Server.create({ CHATD_LIMITS_SEND_RATE: '1', CHATD_LIMITS_SEND_BURST: '1', CHATD_LIMITS_SEND_PERIOD: '1s' });
  try {
    const page = await newPage(browser, server);
    await registerUI(page, 'hasty');
    await createRoomUI(page, 'burst');
    const want = ['one', 'two', 'three', 'four'];
    for (const w of want) await sendUI(page, w);
    await page.locator('#message-list .msg.failed', { hasText: 'sending too fast' }).first().waitFor({ timeout: 5000 });
    await page.waitForFunction(() => document.querySelectorAll('#message-list .msg.pending').length === 0, null, { timeout: 30000 });
    const got = await finalBodies(page);
    assert.deepEqual([...got].sort(), [...want].sort());
    assertAscendingUnique(await shownIds(page), 'burst');
    const held = page.apiCalls.length; // no REST fallback storm either
    assert.ok(held < 40, `${held} API calls`);
    noErrors(page);
    await page.context().close();
  } finally {
    await server.close();
  }
});

test('a dropped connection rejoins with since; a truncated replay reloads the room', () => withServer(async (server) => {
  // Between page and server: while `deaf`, message frames from the server
  // are lost; cut() drops the connection so the UI reconnects and rejoins.
  let deaf = false;
  let current = null;
  const setup = (context) => context.routeWebSocket(/\/api\/v1\/ws/, (ws) => {
    const srv = ws.connectToServer();
    current = ws;
    ws.onMessage((m) => srv.send(m));
    srv.onMessage((m) => {
      if (deaf && /"type":"message"/.test(m)) return;
      ws.send(m);
    });
  });
  const cut = async () => { deaf = false; await current.close({ code: 1001, reason: 'test cut' }); };
  const page = await newPage(browser, server, { setup });
  await registerUI(page, 'alice');
  const bob = await server.newUser('bob');
  await createRoomUI(page, 'busy');
  const roomId = await page.evaluate(() => location.pathname.split('/').pop());
  const post = (body) => server.api('POST', `/rooms/${roomId}/messages`, { body }, bob.token);
  await post('first');
  await waitForBody(page, 'first');

  deaf = true;
  for (let i = 1; i <= 3; i++) await post(`missed ${i}`);
  await sleep(300);
  assert.deepEqual(await finalBodies(page), ['first'], 'the route did not drop live frames');
  await cut();
  await waitForBody(page, 'missed 3');
  await page.waitForSelector('#conn-banner', { state: 'hidden' });
  await sleep(300);
  assert.deepEqual(await finalBodies(page), ['first', 'missed 1', 'missed 2', 'missed 3']);

  // More than the server replays (1,000): joined says truncated, and the UI
  // reloads the newest page over REST instead of showing a hole.
  deaf = true;
  // One at a time, so ID order is the numbering order.
  for (let i = 1; i <= 1010; i++) await post(`bulk ${String(i).padStart(4, '0')}`);
  await cut();
  await waitForBody(page, 'bulk 1010', 30000);
  await sleep(500);
  const bodies = await finalBodies(page);
  assert.equal(bodies[bodies.length - 1], 'bulk 1010');
  assert.ok(!bodies.includes('bulk 0001'), 'the truncated replay was shown instead of the newest page');
  assertAscendingUnique(await shownIds(page), 'after truncation');
  // The reloaded page is contiguous: bulk N, N+1, ... 1010.
  const nums = bodies.map((b) => Number(b.split(' ')[1]));
  for (let i = 1; i < nums.length; i++) assert.equal(nums[i], nums[i - 1] + 1);
  noErrors(page);
  await page.context().close();
}));

test('day headings separate the messages of different days', () => withServer(async (server) => {
  const u = await server.newUser('diarist');
  const room = await server.api('POST', '/rooms', { name: 'diary' }, u.token);
  for (const b of ['d1', 'd2', 'd3', 'd4', 'd5']) await server.api('POST', `/rooms/${room.id}/messages`, { body: b }, u.token);
  // Every message is from today; the page sees d1 as three days old and
  // d2, d3 as yesterday's, in REST pages and WebSocket frames alike.
  const day = 86400000;
  const age = { d1: 3 * day, d2: day, d3: day };
  const redate = (m) => { if (m && age[m.body]) m.created_at = new Date(Date.parse(m.created_at) - age[m.body]).toISOString(); };
  const setup = async (context) => {
    await context.route(/\/api\/v1\/rooms\/\d+\/messages/, async (route) => {
      if (route.request().method() !== 'GET') return route.continue();
      const resp = await route.fetch();
      const data = await resp.json();
      (data.messages || []).forEach(redate);
      await route.fulfill({ response: resp, json: data });
    });
    await context.routeWebSocket(/\/api\/v1\/ws/, (ws) => {
      const srv = ws.connectToServer();
      ws.onMessage((m) => srv.send(m));
      srv.onMessage((m) => {
        let f;
        try { f = JSON.parse(m); } catch { ws.send(m); return; }
        (f.messages || []).forEach(redate);
        redate(f.message);
        ws.send(JSON.stringify(f));
      });
    });
  };
  const page = await newPage(browser, server, { setup });
  await loginUI(page, 'diarist');
  await openRoomUI(page, 'diary');
  await waitForBody(page, 'd5');
  const rows = () => page.$$eval('#message-list > li', (els) => els.map((e) => (e.classList.contains('day') ? `# ${e.textContent}` : e.querySelector('.body')?.textContent)));
  let got = await rows();
  assert.equal(got.length, 8, `rows: ${JSON.stringify(got)}`);
  assert.match(got[0], /^# .*\d/, 'the oldest day is headed by its date');
  assert.notEqual(got[0], '# Today');
  assert.deepEqual(got.slice(1), ['d1', '# Yesterday', 'd2', 'd3', '# Today', 'd4', 'd5']);
  // Headings are not messages: the message selectors still see five, and
  // a message after a heading keeps its author line.
  assert.equal((await shownIds(page)).length, 5);
  assert.equal(await page.locator('#message-list .msg.cont', { hasText: 'd2' }).count(), 0);
  assert.equal(await page.locator('#message-list .msg.cont', { hasText: 'd5' }).count(), 1);

  // A new message of today joins today's group; a reload rebuilds the same.
  await sendUI(page, 'd6');
  await waitForBody(page, 'd6');
  got = await rows();
  assert.deepEqual(got.slice(-4), ['# Today', 'd4', 'd5', 'd6']);
  assert.equal(got.filter((r) => r === '# Today').length, 1);
  await page.reload();
  await openRoomUI(page, 'diary');
  await waitForBody(page, 'd6');
  assert.deepEqual((await rows()).slice(1), ['d1', '# Yesterday', 'd2', 'd3', '# Today', 'd4', 'd5', 'd6']);
  await shot(page, 'day-headings');
  noErrors(page);
  await page.context().close();
}));

test('message bodies are text: no HTML injection, safe links', () => withServer(async (server) => {
  const alice = await newPage(browser, server);
  const bob = await newPage(browser, server);
  await registerUI(alice, 'alice');
  await registerUI(bob, 'bob');
  await createRoomUI(alice, 'xss');
  await openRoomUI(bob, 'xss');
  const evil = '<img src=x onerror=alert(1)>';
  await sendUI(alice, evil);
  await sendUI(alice, '<script>alert(2)</script> javascript:alert(3) see https://example.com/a_(b)?q=1&r=2.');
  for (const p of [alice, bob]) {
    await waitForBody(p, 'example.com');
    const bodies = await finalBodies(p);
    assert.equal(bodies[0], evil);
    assert.equal(await p.locator('#message-list img, #message-list script').count(), 0);
    const links = await p.$$eval('#message-list a', (as) => as.map((a) => ({ href: a.getAttribute('href'), rel: a.rel, target: a.target, text: a.textContent })));
    assert.deepEqual(links, [{ href: 'https://example.com/a_(b)?q=1&r=2', rel: 'noopener noreferrer', target: '_blank', text: 'https://example.com/a_(b)?q=1&r=2' }]);
  }
  await bob.reload();
  await bob.waitForSelector('#chat-view:not([hidden])');
  await waitForBody(bob, evil);
  await sleep(500);
  assert.equal(await bob.locator('#message-list img').count(), 0);
  noErrors(alice, bob);
  await Promise.all([alice.context().close(), bob.context().close()]);
}));
