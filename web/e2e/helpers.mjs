// Shared pieces of the browser tests: a real `nexus` on a temp SQLite file and a random
// port, Debian's Chromium driven by playwright-core, and small API helpers for seeding.
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, rmSync, mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const repo = resolve(here, '../..');
export const docsDir = join(repo, 'docs');
export const artifacts = join(here, 'artifacts');

function freePort() {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', fail);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => ok(port));
    });
  });
}

/** Starts nexus; returns {base, stop}. */
export async function startServer(env = {}) {
  const bin = process.env.NEXUS_BIN ?? join(repo, 'target/debug/nexus');
  const dir = mkdtempSync(join(tmpdir(), 'nexus-web-e2e-'));
  const port = await freePort();
  const child = spawn(bin, [], {
    env: {
      ...process.env,
      PORT: String(port),
      HOST: '127.0.0.1',
      DATABASE_URL: `sqlite://${join(dir, 'nexus.db')}`,
      RUST_LOG: process.env.RUST_LOG ?? 'error',
      // every test user registers from 127.0.0.1
      RATE_LIMIT_AUTH_PER_IP_PER_MINUTE: '100000',
      ...env,
    },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`nexus exited with ${child.exitCode}`);
    try {
      const r = await fetch(`${base}/health`);
      if (r.ok) break;
    } catch {
      /* not yet */
    }
    if (Date.now() > deadline) throw new Error('nexus did not start');
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    base,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((r) => (child.exitCode !== null ? r() : child.once('exit', r)));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Debian's Chromium, headless, with the flags this machine needs. */
export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-dev-shm-usage',
    ],
  });
}

let counter = 0;
export function uniqueEmail(name) {
  counter += 1;
  return `${name.toLowerCase().replace(/\W+/g, '')}.${process.pid}.${Date.now()}.${counter}@example.com`;
}

export async function api(base, method, path, { token, body } = {}) {
  const res = await fetch(base + path, {
    method,
    headers: {
      ...(body ? { 'Content-Type': 'application/json' } : {}),
      ...(token ? { Authorization: `Bearer ${token}` } : {}),
    },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  const json = text ? JSON.parse(text) : null;
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return json;
}

export async function registerApi(base, name) {
  const email = uniqueEmail(name);
  const auth = await api(base, 'POST', '/auth/register', { body: { name, email, password: 'correct horse battery' } });
  return { ...auth, email, password: 'correct horse battery' };
}

/** A browser context + page at the app, with console errors collected. */
export async function openApp(browser, base, { viewport = { width: 1280, height: 800 } } = {}) {
  const context = await browser.newContext({ viewport, baseURL: base });
  const page = await context.newPage();
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(String(e)));
  await page.goto('/');
  return { context, page };
}

/** Signs up through the UI. */
export async function signUpUi(page, name) {
  const email = uniqueEmail(name);
  await page.getByRole('button', { name: 'Create an account' }).click();
  await page.getByLabel('Name').fill(name);
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill('correct horse battery');
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.getByRole('navigation', { name: 'Conversations' }).waitFor();
  return { email, password: 'correct horse battery' };
}

export async function logInUi(page, email, password) {
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('navigation', { name: 'Conversations' }).waitFor();
}

/** Opens (or starts) the conversation with `name` through people search. */
export async function startChatUi(page, name) {
  await page.getByLabel('Search people').fill(name);
  await page.getByRole('button', { name, exact: true }).click();
  await page.getByRole('textbox', { name: 'Message' }).waitFor();
}

export async function openChatUi(page, name) {
  await page.getByRole('navigation', { name: 'Conversations' }).getByRole('link', { name: new RegExp(`^${name}`) }).click();
  await page.getByRole('textbox', { name: 'Message' }).waitFor();
}

export async function sendUi(page, text) {
  const box = page.getByRole('textbox', { name: 'Message' });
  await box.fill(text);
  await box.press('Enter');
}

export function message(page, text) {
  return page.getByRole('list', { name: 'Messages' }).getByRole('listitem').filter({ hasText: text });
}

/**
 * Every run takes the screenshot into e2e/artifacts/; docs/ gets it when it has none yet or
 * with NEXUS_UPDATE_SCREENSHOTS=1 (so a test run does not leave the work tree changed).
 */
export async function screenshot(page, name) {
  mkdirSync(artifacts, { recursive: true });
  await page.screenshot({ path: join(artifacts, name) });
  if (process.env.NEXUS_UPDATE_SCREENSHOTS || !existsSync(join(docsDir, name))) {
    mkdirSync(docsDir, { recursive: true });
    copyFileSync(join(artifacts, name), join(docsDir, name));
  }
}

/** A Socket.IO client in the test process (another device of a user). */
export async function connectSocket(base, token) {
  const { io } = await import('socket.io-client');
  const socket = io(`${base}/ws`, { transports: ['websocket'], auth: { token }, reconnection: false });
  await new Promise((ok, fail) => {
    socket.once('CONNECTION_SUCCESS', ok);
    socket.once('connect_error', fail);
  });
  return socket;
}

/** Emits with an acknowledgement; rejects on an ERROR answer. */
export function emitAck(socket, event, payload) {
  return new Promise((ok, fail) => {
    socket.timeout(10_000).emit(event, payload, (err, answer) => {
      if (err) return fail(err);
      if (answer && answer.code) return fail(new Error(`${event}: ${answer.code} ${answer.message}`));
      ok(answer);
    });
  });
}
