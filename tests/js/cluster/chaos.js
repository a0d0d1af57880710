// The chaos soak: three nodes behind HAProxy (deploy/haproxy.cfg) on one PostgreSQL
// database and a private Redis, users chatting through the balancer, a random node
// SIGKILLed and restarted at a fixed period, Redis restarted once. At the end every
// client's state (live events + sync) is compared with the database.
//
//   node tests/js/cluster/chaos.js [--seconds 600] [--users 200] [--kill-every 60]
//   (scripts/chaos-soak.sh runs the 10-minute soak with a release build)
//
// Prints one JSON line of counts: sent, acked, stored, deliveredLive, repairedBySync, lost
// (must be 0), clientsWithGaps (0), storedTwice (0), kills, redisRestarts.
import { register, sleep } from '../helpers.js';
import { createDatabase, privateRedis, startNode, startBalancer, uniquePrefix } from './harness.js';
import { Load, clientsOn } from './load.js';

export async function chaos({ seconds = 600, users = 200, killEverySeconds = 60, intervalMs = 2000, log = () => {} } = {}) {
  const db = createDatabase();
  const redis = await privateRedis();
  const prefix = uniquePrefix();
  const env = { RATE_LIMIT_MESSAGES_PER_MINUTE: '100000', RUST_LOG: 'error' };
  const nodes = [await startNode({ databaseUrl: db.url, redisUrl: redis.url, prefix, env })];
  for (let i = 1; i < 3; i++) nodes.push(await startNode({ databaseUrl: db.url, redisUrl: redis.url, prefix, env }));
  const lb = await startBalancer(nodes.map((n) => n.port));
  let clients = [];
  try {
    await sleep(1500); // the balancer's first health checks
    log(`registering and connecting ${users} users through the balancer`);
    clients = await clientsOn([lb.base], users, register);
    const load = new Load(clients, { intervalMs });
    load.start();
    const started = Date.now();
    const redisAt = seconds * 1000 / 2 + killEverySeconds * 500; // between two kills
    let kills = 0;
    let redisRestarts = 0;
    let nextKill = killEverySeconds * 1000;
    while (Date.now() - started < seconds * 1000) {
      const t = Date.now() - started;
      if (t >= nextKill) {
        const victim = nodes[Math.floor(Math.random() * nodes.length)];
        log(`t=${Math.round(t / 1000)}s: SIGKILL node on port ${victim.port}`);
        await victim.stop('SIGKILL');
        kills++;
        await sleep(2000);
        await victim.restart();
        nextKill += killEverySeconds * 1000;
      } else if (redisRestarts === 0 && t >= redisAt) {
        log(`t=${Math.round(t / 1000)}s: Redis restarted (5 s down)`);
        await redis.stop();
        await sleep(5000);
        await redis.start();
        redisRestarts++;
      } else {
        await sleep(200);
      }
    }
    await load.stop();
    log('load stopped; checking every client against the database');
    const figures = await load.verify(db);
    return { seconds, users, ...figures, kills, redisRestarts };
  } finally {
    clients.forEach((c) => c.close());
    await lb.stop();
    await Promise.all(nodes.map((n) => n.stop('SIGKILL')));
    await redis.stop();
    db.drop();
  }
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop())) {
  const arg = (name, dflt) => {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 ? Number(process.argv[i + 1]) : dflt;
  };
  const figures = await chaos({
    seconds: arg('seconds', 600),
    users: arg('users', 200),
    killEverySeconds: arg('kill-every', 60),
    intervalMs: arg('interval-ms', 2000),
    log: (m) => console.error(`[chaos] ${m}`),
  });
  console.log(JSON.stringify(figures));
  const ok = figures.lost === 0 && figures.clientsWithGaps === 0 && figures.storedTwice === 0 && figures.stored === figures.acked;
  process.exit(ok ? 0 : 1);
}
