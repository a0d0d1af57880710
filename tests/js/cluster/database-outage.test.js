// PostgreSQL unreachable (a private cluster this test stops): every send is answered
// ERROR {code: "UNAVAILABLE"} within DATABASE_TIMEOUT_SECONDS, never MESSAGE_SENT, nothing
// crashes, and service resumes by itself when the database returns.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { register, online, call, http, waitFor, all } from '../helpers.js';
import { privatePostgres, startNode, until } from './harness.js';

const TIMEOUT_S = 3;

test('a database outage answers UNAVAILABLE in bounded time and service resumes', async (t) => {
  const pg = await privatePostgres();
  const node = await startNode({ databaseUrl: pg.url, env: { DATABASE_TIMEOUT_SECONDS: String(TIMEOUT_S) } });
  t.after(async () => { await node.stop(); pg.destroy(); });
  const [ada, bob] = [await register(node.base, 'Ada'), await register(node.base, 'Bob')];
  const [sa, sb] = [await online(node.base, ada), await online(node.base, bob)];
  t.after(() => { sa.close(); sb.close(); });
  const before = await call(sa, 'NEW_MESSAGE', { receiverId: bob.id, content: 'before', tempId: 'before' });
  assert.equal(before.messageId, 'before');

  pg.stop();

  // One send alone, then a burst larger than a writer batch (512).
  const started = Date.now();
  const one = await call(sa, 'NEW_MESSAGE', { receiverId: bob.id, content: 'during', tempId: 'during-0' });
  const firstMs = Date.now() - started;
  assert.equal(one.code, 'UNAVAILABLE', JSON.stringify(one));
  const burstStart = Date.now();
  const burst = await Promise.all(Array.from({ length: 600 }, (_, i) =>
    sa.timeout(TIMEOUT_S * 1000 + 10000).emitWithAck('NEW_MESSAGE', { receiverId: bob.id, content: `burst ${i}`, tempId: `during-${i + 1}` })));
  const burstMs = Date.now() - burstStart;
  assert.ok(burst.every((a) => a.code === 'UNAVAILABLE'), JSON.stringify(burst.find((a) => a.code !== 'UNAVAILABLE')));
  assert.ok(firstMs <= (TIMEOUT_S + 2) * 1000, `first UNAVAILABLE after ${firstMs} ms`);
  assert.ok(burstMs <= (TIMEOUT_S + 2) * 1000, `600 sends answered after ${burstMs} ms`);
  assert.equal(all(sa, 'MESSAGE_SENT').length, 1, 'no MESSAGE_SENT during the outage');
  assert.equal(all(sb, 'NEW_MESSAGE').length, 1);

  // Readiness and HEALTH_CHECK say so; REST answers 503; the process is alive.
  const ready = await fetch(`${node.base}/ready`);
  assert.equal(ready.status, 503);
  assert.equal((await ready.json()).database, 'down');
  const health = await call(sa, 'HEALTH_CHECK', {});
  assert.equal(health.database, 'down');
  const rest = await http(node.base, 'POST', '/messages', ada.token, { receiverId: bob.id, content: 'rest during' });
  assert.equal(rest.status, 503, JSON.stringify(rest.body));
  assert.equal(node.server.proc.exitCode, null, 'the node is still running');
  t.diagnostic(`time to UNAVAILABLE: first send ${firstMs} ms, 600 sends ${burstMs} ms (DATABASE_TIMEOUT_SECONDS=${TIMEOUT_S})`);

  pg.start();
  const { ms: resumeMs } = await until(async () => {
    const a = await call(sa, 'NEW_MESSAGE', { receiverId: bob.id, content: 'after', tempId: 'after' });
    return a.messageId === 'after';
  }, 30000, 200);
  t.diagnostic(`sends succeed again ${resumeMs} ms after PostgreSQL restarted`);
  await waitFor(sb, 'NEW_MESSAGE', (m) => m.content === 'after');
  const synced = await http(node.base, 'GET', '/sync?since=0', bob.token);
  assert.deepEqual(synced.body.events.map((e) => e.message.content), ['before', 'after'], 'nothing of the outage was stored');
});
