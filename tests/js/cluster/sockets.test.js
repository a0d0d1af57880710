// MAX_SOCKETS_PER_USER across the cluster: a user's sockets on every node count together,
// checked at connect (a refusal is a `connect_error` with the reason, whichever node it goes
// to); a disconnect gives its place back; a SIGKILLed node's sockets stop counting once the
// node expires; with Redis down each node caps the user's sockets on itself. Three nodes on
// one PostgreSQL database and a private Redis (stopped by the last test).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { abandonHandshake, connect, register, sleep } from '../helpers.js';
import { createDatabase, privateRedis, startNode, uniquePrefix, until } from './harness.js';

const CAP = 3;
const REASON = 'too many connections for this user';

let db;
let redis;
let nodes;
const sockets = [];

before(async () => {
  db = createDatabase();
  redis = await privateRedis();
  const prefix = uniquePrefix();
  const env = { MAX_SOCKETS_PER_USER: String(CAP) };
  const start = () => startNode({ databaseUrl: db.url, redisUrl: redis.url, prefix, env });
  nodes = [await start()]; // migrations first
  nodes.push(await start(), await start());
});
after(async () => {
  sockets.forEach((s) => s.close());
  await Promise.all(nodes.map((n) => n.stop('SIGKILL')));
  await redis.stop();
  db.drop();
});

/** Connects `user` to `node`: {admitted: true, socket} or {admitted: false, reason}. */
function attempt(node, user) {
  const socket = connect(node.base, user.token);
  return new Promise((resolve) => {
    socket.on('CONNECTION_SUCCESS', () => { sockets.push(socket); resolve({ admitted: true, socket }); });
    socket.on('connect_error', (e) => { socket.close(); resolve({ admitted: false, reason: e.message }); });
  });
}

async function admitted(node, user) {
  const a = await attempt(node, user);
  assert.ok(a.admitted, `refused: ${a.reason}`);
  return a.socket;
}

async function refused(node, user, what) {
  const a = await attempt(node, user);
  if (a.admitted) a.socket.close();
  assert.equal(a.admitted, false, `${what}: admitted`);
  assert.equal(a.reason, REASON, what);
}

test('a user\'s sockets on every node count together; a disconnect frees a place', async () => {
  const [a, b] = nodes;
  const [ada, bob] = [await register(a.base, 'Ada'), await register(a.base, 'Bob')];
  const first = await admitted(a, ada);
  await admitted(a, ada);
  await admitted(b, ada); // the third, on another node: admitted
  await refused(a, ada, 'a fourth on the node holding two');
  await refused(b, ada, 'a fourth on the node holding one');
  await refused(nodes[2], ada, 'a fourth on a node holding none');
  await admitted(b, bob); // the cap is per user

  first.close();
  // The place comes back once node A has seen the disconnect.
  await until(async () => {
    const a2 = await attempt(b, ada);
    return a2.admitted;
  }, 5000, 100);
  await refused(a, ada, 'full again');

  const metrics = await (await fetch(`${b.base}/metrics`)).text();
  assert.match(metrics, /nexus_connections_refused_total\{reason="too_many_sockets"\} [1-9]/);
});

test('handshakes abandoned in the connect middleware give back the places they were counted in, on every node', async () => {
  const [a, b, c] = nodes;
  const ada = await register(a.base, 'Ada');
  // Counted by node A in Redis (the extra ones refused), then given up before connecting.
  for (let i = 0; i < CAP + 2; i++) await abandonHandshake(a.base, ada.token);
  // Node B holds none of them itself: only the Redis count could refuse it.
  await until(async () => (await attempt(b, ada)).admitted, 5000, 100);
  await admitted(c, ada);
  await admitted(a, ada);
  await refused(b, ada, 'the cap, over the real sockets');
});

test('the sockets of a node killed with SIGKILL stop counting once the node expires', async () => {
  const [a, , c] = nodes;
  const cara = await register(a.base, 'Cara');
  await admitted(a, cara);
  await admitted(c, cara);
  await admitted(c, cara);
  const killedAt = Date.now();
  await c.stop('SIGKILL');
  // Node C's entries live up to 10 s after its last heartbeat (every 2 s): still counted.
  await refused(a, cara, 'right after the kill');
  const { ms } = await until(async () => (await attempt(a, cara)).admitted, 20000, 250);
  const freedAfter = Date.now() - killedAt;
  await admitted(a, cara);
  await refused(a, cara, 'one from before the kill and two after it, all on A');
  console.log(`# a killed node's sockets stopped counting after ${freedAfter} ms (polled for ${ms} ms)`);
});

test('with Redis down each node caps the user on itself: nobody refused for the outage, nobody unbounded', async () => {
  const [a, b] = nodes;
  const dan = await register(a.base, 'Dan');
  await redis.stop();
  // Both nodes notice (readiness reports Redis down).
  for (const n of [a, b]) await until(async () => (await fetch(`${n.base}/ready`)).status === 503, 10000, 100);
  for (const n of [a, b]) {
    for (let i = 0; i < CAP; i++) await admitted(n, dan);
    await refused(n, dan, 'one more than the cap on one node');
  }
  await sleep(100);
});
