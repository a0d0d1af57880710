// The cluster tests' services: private redis-server and PostgreSQL instances the tests may
// stop and start (the machine's shared ones are never touched), databases on the shared
// PostgreSQL, nexus nodes on PostgreSQL + Redis, and HAProxy with deploy/haproxy.cfg.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, chownSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer, sleep, waitFor, connect } from '../helpers.js';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const PG_ADMIN_URL = process.env.NEXUS_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

/** Resolves once something accepts TCP connections on `port` (or throws after `ms`). */
export async function listening(port, ms = 15000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const c = createConnection({ port, host: '127.0.0.1' }, () => { c.destroy(); resolve(true); });
      c.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on ${port}`);
    await sleep(25);
  }
}

/** A redis-server of the test's own; `stop()` and `start()` keep the port. */
export async function privateRedis() {
  const port = await freePort();
  let proc = null;
  const redis = {
    port,
    url: `redis://127.0.0.1:${port}`,
    async start() {
      proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
      await listening(port);
    },
    async stop() {
      if (!proc) return;
      const p = proc;
      proc = null;
      const exited = new Promise((r) => p.on('exit', r));
      p.kill('SIGKILL');
      await exited;
    },
  };
  await redis.start();
  return redis;
}

function asPostgres(cmd, args) {
  // initdb and postgres refuse to run as root.
  if (process.getuid?.() === 0) return execFileSync('runuser', ['-u', 'postgres', '--', cmd, ...args], { stdio: 'pipe' });
  return execFileSync(cmd, args, { stdio: 'pipe' });
}

/** A PostgreSQL cluster of the test's own (initdb into a temporary directory). */
export async function privatePostgres() {
  const dir = mkdtempSync(join(tmpdir(), 'nexus-pg-'));
  if (process.getuid?.() === 0) {
    const pw = execFileSync('id', ['-u', 'postgres']).toString().trim();
    const gid = execFileSync('id', ['-g', 'postgres']).toString().trim();
    chownSync(dir, Number(pw), Number(gid));
  }
  const data = join(dir, 'data');
  asPostgres('initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync']);
  const port = await freePort();
  const opts = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50`;
  const pg = {
    port,
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    start() { asPostgres('pg_ctl', ['-D', data, '-o', opts, '-l', join(dir, 'log'), '-w', 'start']); },
    stop() { asPostgres('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']); },
    destroy() {
      try { pg.stop(); } catch { /* already stopped */ }
      rmSync(dir, { recursive: true, force: true });
    },
  };
  pg.start();
  return pg;
}

/** A fresh database on the machine's PostgreSQL (or on `admin`), dropped by `drop()`. */
export function createDatabase(admin = PG_ADMIN_URL) {
  const name = `nexus_cluster_${process.pid}_${Math.random().toString(36).slice(2, 10)}`;
  execFileSync('psql', [admin, '-qAtc', `CREATE DATABASE "${name}"`], { stdio: 'pipe' });
  const base = admin.slice(0, admin.lastIndexOf('/'));
  return {
    url: `${base}/${name}`,
    drop() {
      try { execFileSync('psql', [admin, '-qAtc', `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`], { stdio: 'pipe' }); } catch { /* gone */ }
    },
    query(sql) {
      return execFileSync('psql', [`${base}/${name}`, '-qAtc', sql], { stdio: 'pipe' }).toString().trim();
    },
  };
}

/**
 * A nexus node, resolved once its own `/ready` answers 200 (rejected if it is not ready
 * within `readyWithinMs`); `restart()` starts it again on the same port.
 */
export async function startNode({ databaseUrl, redisUrl, prefix, port, env = {}, readyWithinMs }) {
  port ??= await freePort();
  const nodeEnv = {
    DATABASE_URL: databaseUrl,
    ...(redisUrl ? { REDIS_URL: redisUrl, REDIS_KEY_PREFIX: prefix } : {}),
    PORT: String(port),
    JWT_SECRET: 'cluster-tests-secret-at-least-32-bytes-long',
    ...env,
  };
  const node = { port, base: `http://127.0.0.1:${port}` };
  const ready = { readyWithinMs };
  node.server = await startServer(nodeEnv, ready);
  node.stop = (signal = 'SIGKILL') => node.server.stop(signal);
  node.restart = async () => { node.server = await startServer(nodeEnv, ready); };
  return node;
}

/** HAProxy with deploy/haproxy.cfg in front of up to three node ports. */
export async function startBalancer(nodePorts) {
  const port = await freePort();
  const env = { ...process.env, NEXUS_LB_PORT: String(port) };
  for (let i = 0; i < 3; i++) env[`NEXUS_NODE${i + 1}_PORT`] = String(nodePorts[i] ?? nodePorts[0]);
  const proc = spawn('haproxy', ['-f', join(root, 'deploy', 'haproxy.cfg')], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  await listening(port);
  const exited = new Promise((r) => proc.on('exit', r));
  return {
    port,
    base: `http://127.0.0.1:${port}`,
    stderr: () => stderr,
    async stop() { proc.kill('SIGTERM'); await exited; },
  };
}

export const uniquePrefix = () => `t${process.pid}${Math.random().toString(36).slice(2, 8)}:`;

/** Polls `fn` until it returns something truthy; returns it and the time it took. */
export async function until(fn, ms = 20000, every = 50) {
  const start = Date.now();
  for (;;) {
    const v = await fn();
    if (v) return { value: v, ms: Date.now() - start };
    if (Date.now() - start > ms) throw new Error(`condition not met within ${ms} ms`);
    await sleep(every);
  }
}

/** Connects with reconnection on (as a real client would) and waits until connected. */
export async function resilient(base, user, extra = {}) {
  const socket = connect(base, user.token, 'websocket', { reconnection: true, reconnectionDelay: 200, reconnectionDelayMax: 1000, ...extra });
  await waitFor(socket, 'CONNECTION_SUCCESS', () => true, 15000);
  return socket;
}

export { writeFileSync };
