// Test harness: start the real `nexus` binary on a free port with its own SQLite file,
// register users over HTTP, connect the official socket.io-client and wait for events.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { io } from 'socket.io-client';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const NEXUS_BIN = process.env.NEXUS_BIN ?? join(root, 'target', 'debug', 'nexus');

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

/**
 * Starts nexus; `env` adds or overrides variables (a `PORT` given there is the one polled).
 * Resolves once `/ready` answers 200; rejects if the process exits or is not ready within
 * `readyWithinMs`.
 */
export async function startServer(env = {}, { readyWithinMs = 20000 } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'nexus-js-'));
  const port = env.PORT ?? String(await freePort());
  const proc = spawn(NEXUS_BIN, [], {
    env: {
      PATH: process.env.PATH,
      DATABASE_URL: `sqlite://${join(dir, 'nexus.db')}`,
      HOST: '127.0.0.1',
      PORT: port,
      RUST_LOG: 'warn',
      RATE_LIMIT_MESSAGES_PER_MINUTE: '10000',
      // every test user registers from 127.0.0.1
      RATE_LIMIT_AUTH_PER_IP_PER_MINUTE: '100000',
      ...env,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  const base = `http://127.0.0.1:${port}`;
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  const deadline = Date.now() + readyWithinMs;
  for (let ready = false; !ready;) {
    try {
      ready = (await fetch(`${base}/ready`)).ok;
    } catch { /* not listening yet */ }
    if (ready) break;
    if (proc.exitCode !== null || proc.signalCode !== null) {
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`nexus exited before it was ready: ${stderr}`);
    }
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      await exited;
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`nexus on port ${port} was not ready within ${readyWithinMs} ms: ${stderr}`);
    }
    await sleep(20);
  }
  return {
    base,
    proc,
    exited,
    stderr: () => stderr,
    async stop(signal = 'SIGKILL') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      const result = await exited;
      rmSync(dir, { recursive: true, force: true });
      return result;
    },
  };
}

let counter = 0;
export async function register(base, name) {
  const email = `${name.toLowerCase()}-${process.pid}-${++counter}-${Date.now()}@example.org`;
  const r = await fetch(`${base}/auth/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name, email, password: 'correct horse battery' }),
  });
  if (r.status !== 201) throw new Error(`register ${r.status}: ${await r.text()}`);
  const body = await r.json();
  return { ...body.user, token: body.accessToken };
}

export async function http(base, method, path, token, body) {
  const r = await fetch(`${base}${path}`, {
    method,
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

/**
 * Connects like the brief's snippet: io(`${base}/ws`, {transports, auth: {token}}).
 * Every received event is recorded in `socket.received` as [event, payload].
 */
export function connect(base, token, transport = 'websocket', extra = {}) {
  const socket = io(`${base}/ws`, {
    transports: [transport],
    auth: token === undefined ? undefined : { token },
    reconnection: false,
    forceNew: true,
    ...extra,
  });
  socket.received = [];
  socket.onAny((event, payload) => socket.received.push([event, payload]));
  return socket;
}

/** Resolves with the first (already received or future) `event` whose payload matches. */
export function waitFor(socket, event, match = () => true, timeoutMs = 5000) {
  const seen = socket.received.find(([e, p]) => e === event && match(p));
  if (seen) return Promise.resolve(seen[1]);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.offAny(listener);
      reject(new Error(`no ${event} within ${timeoutMs} ms; got ${JSON.stringify(socket.received.map(([e]) => e))}`));
    }, timeoutMs);
    const listener = (e, p) => {
      if (e === event && match(p)) {
        clearTimeout(timer);
        socket.offAny(listener);
        resolve(p);
      }
    };
    socket.onAny(listener);
  });
}

/**
 * A Socket.IO handshake given up half-way: an Engine.IO polling session whose one POST
 * carries the `/ws` CONNECT packet (with `token`) and, right behind it, the Engine.IO close
 * packet. The session closes while the server is still in its connect middleware (checking
 * the token, counting the socket), before the socket has entered the namespace.
 */
export async function abandonHandshake(base, token) {
  const opened = await fetch(`${base}/socket.io/?EIO=4&transport=polling`);
  const { sid } = JSON.parse((await opened.text()).slice(1));
  const r = await fetch(`${base}/socket.io/?EIO=4&transport=polling&sid=${sid}`, {
    method: 'POST',
    headers: { 'content-type': 'text/plain;charset=UTF-8' },
    body: `40/ws,${JSON.stringify({ token })}\x1e1`,
  });
  if (!r.ok) throw new Error(`abandoned handshake: POST ${r.status}: ${await r.text()}`);
}

/** The value of an unlabelled metric on `/metrics`. */
export async function metric(base, name) {
  const text = await (await fetch(`${base}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  if (!line) throw new Error(`no metric ${name}`);
  return Number(line.slice(name.length + 1));
}

/** Connects and waits for CONNECTION_SUCCESS. */
export async function online(base, user, transport = 'websocket') {
  const socket = connect(base, user.token, transport);
  await waitFor(socket, 'CONNECTION_SUCCESS');
  return socket;
}

/** All recorded payloads of `event`. */
export const all = (socket, event) => socket.received.filter(([e]) => e === event).map(([, p]) => p);

/** Emits with an acknowledgement and resolves with its answer. */
export function call(socket, event, payload) {
  return socket.timeout(5000).emitWithAck(event, payload);
}
