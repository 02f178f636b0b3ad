// Shared helpers for the browser end-to-end tests: start the chatd binary,
// drive Chromium through playwright-core, and talk to the REST API directly.
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import net from 'node:net';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const ARTIFACTS = join(here, '..', 'artifacts');
mkdirSync(ARTIFACTS, { recursive: true });

export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export { sleep };

// Server runs $CHATD_BIN serve on a fixed port and data dir, so a test can
// stop it and start it again in the same place.
export class Server {
  constructor({ port, dataDir, env = {} }) {
    this.port = port;
    this.dataDir = dataDir;
    this.env = env;
    this.url = `http://127.0.0.1:${port}`;
    this.proc = null;
    this.log = [];
  }

  static async create(env = {}) {
    const bin = process.env.CHATD_BIN;
    if (!bin) throw new Error('set CHATD_BIN to the path of a built chatd binary');
    const dataDir = mkdtempSync(join(tmpdir(), 'chatd-e2e-'));
    const s = new Server({ port: await freePort(), dataDir, env });
    await s.start();
    return s;
  }

  async start() {
    const bin = process.env.CHATD_BIN;
    this.proc = spawn(bin, ['serve', '--data-dir', this.dataDir, '--http-addr', `127.0.0.1:${this.port}`], {
      env: { ...process.env, CHATD_LIMITS_SEND_RATE: '0', ...this.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const keep = (b) => {
      this.log.push(b.toString());
      if (this.log.length > 2000) this.log.splice(0, 1000);
    };
    this.proc.stdout.on('data', keep);
    this.proc.stderr.on('data', keep);
    const exited = new Promise((r) => this.proc.once('exit', (code, sig) => r({ code, sig })));
    this.exited = exited;
    const deadline = Date.now() + 60000;
    for (;;) {
      const early = await Promise.race([exited, sleep(150).then(() => null)]);
      if (early) throw new Error(`chatd exited during start-up (${JSON.stringify(early)}):\n${this.tail()}`);
      for (const p of ['/healthz', '/api/v1/openapi.json']) {
        try {
          const res = await fetch(this.url + p);
          if (res.ok) return;
        } catch { /* not up yet */ }
      }
      if (Date.now() > deadline) throw new Error(`chatd did not answer within 60 s:\n${this.tail()}`);
    }
  }

  // stop ends the process (SIGTERM, then SIGKILL after 15 s) and waits for it.
  async stop(signal = 'SIGTERM') {
    if (!this.proc || this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill(signal);
    const t = setTimeout(() => this.proc.kill('SIGKILL'), 15000);
    await this.exited;
    clearTimeout(t);
  }

  async close() {
    await this.stop();
    rmSync(this.dataDir, { recursive: true, force: true });
  }

  tail(n = 40) {
    return this.log.join('').split('\n').slice(-n).join('\n');
  }

  // api calls the REST API directly (for seeding), throwing on non-2xx.
  async api(method, path, body, token) {
    const headers = { 'Content-Type': 'application/json' };
    if (token) headers.Authorization = `Bearer ${token}`;
    const res = await fetch(`${this.url}/api/v1${path}`, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    const data = text ? JSON.parse(text) : null;
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
    return data;
  }

  async newUser(username, password = 'correct horse battery') {
    await this.api('POST', '/users', { username, password });
    const s = await this.api('POST', '/sessions', { username, password });
    return { username, password, token: s.token, user: s.user };
  }
}

export async function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

// newPage opens a fresh browser context (its own cookies and storage) and
// records page errors, CSP violations and any JavaScript dialog.
export async function newPage(browser, server, { viewport = { width: 1280, height: 800 }, colorScheme = 'light', setup } = {}) {
  const context = await browser.newContext({ baseURL: server.url, viewport, colorScheme });
  if (setup) await setup(context);
  const page = await context.newPage();
  page.errors = [];
  page.dialogs = [];
  page.on('pageerror', (e) => page.errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content.Security.Policy|Refused to/i.test(m.text())) page.errors.push(`console: ${m.text()}`);
  });
  page.on('dialog', async (d) => { page.dialogs.push(d.message()); await d.dismiss().catch(() => {}); });
  // A 5xx from the API is a server bug whatever the UI then shows.
  page.on('response', (r) => {
    if (r.url().includes('/api/') && r.status() >= 500 && !r.headers()['x-e2e-injected']) page.errors.push(`HTTP ${r.status()} ${r.request().method()} ${r.url()}`);
  });
  page.apiCalls = [];
  page.on('request', (r) => { if (r.url().includes('/api/')) page.apiCalls.push(`${r.method()} ${new URL(r.url()).pathname}`); });
  page.setDefaultTimeout(15000);
  await page.goto('/');
  return page;
}

export async function registerUI(page, username, password = 'correct horse battery') {
  await page.click('#tab-register');
  await page.fill('#register-username', username);
  await page.fill('#register-password', password);
  await page.click('#register-form button[type=submit]');
  await page.waitForSelector('#chat-view:not([hidden])');
}

export async function loginUI(page, username, password = 'correct horse battery') {
  await page.click('#tab-login');
  await page.fill('#login-username', username);
  await page.fill('#login-password', password);
  await page.click('#login-form button[type=submit]');
  await page.waitForSelector('#chat-view:not([hidden])');
}

export async function createRoomUI(page, name, { isPrivate = false, description = '' } = {}) {
  await page.click('#new-room-btn');
  await page.fill('#room-name-input', name);
  if (description) await page.fill('#room-desc-input', description);
  if (isPrivate) await page.check('#room-private-input');
  await page.click('#room-submit');
  await page.waitForFunction((n) => document.getElementById('room-name').textContent.includes(n), name);
}

export function roomButton(page, name) {
  return page.locator('#room-list .room-btn', { has: page.locator('.room-name', { hasText: new RegExp(`^${name}$`) }) });
}

export async function openRoomUI(page, name) {
  const btn = roomButton(page, name);
  if (!(await btn.count())) await page.click('#refresh-rooms');
  await btn.click();
  await page.waitForFunction((n) => document.getElementById('room-name').textContent.includes(n), name);
}

export async function sendUI(page, text) {
  await page.fill('#composer-input', text);
  await page.press('#composer-input', 'Enter');
}

// finalBodies lists the bodies of the confirmed messages shown, in order.
export function finalBodies(page) {
  return page.$$eval('#message-list .msg:not(.pending) .body', (els) => els.map((e) => e.textContent));
}

export function shownIds(page) {
  return page.$$eval('#message-list .msg[data-id]', (els) => els.map((e) => e.dataset.id));
}

export async function waitForBody(page, text, timeout = 15000) {
  await page.locator('#message-list .msg:not(.pending) .body', { hasText: text }).first().waitFor({ timeout });
}

export function shot(page, name) {
  return page.screenshot({ path: join(ARTIFACTS, `${name}.png`) });
}

export function tmpDir() { return mkdtempSync(join(tmpdir(), 'chatd-e2e-')); }
