// The chaos soak's 60-second version (the 10-minute one: scripts/chaos-soak.sh).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chaos } from './chaos.js';

test('60 s of chaos (node SIGKILLs every 20 s, one Redis restart): every acknowledged message reaches its recipient', async (t) => {
  const figures = await chaos({ seconds: 60, users: 60, killEverySeconds: 20, intervalMs: 1000, log: (m) => t.diagnostic(m) });
  t.diagnostic(`chaos counts: ${JSON.stringify(figures)}`);
  assert.ok(figures.acked > 1000, 'the load ran');
  assert.equal(figures.kills, 2);
  assert.equal(figures.redisRestarts, 1);
  assert.equal(figures.lost, 0, 'acknowledged messages lost');
  assert.equal(figures.clientsWithGaps, 0, 'clients left with a seq gap');
  assert.equal(figures.storedTwice, 0);
  assert.equal(figures.stored, figures.acked, 'every stored message was acknowledged');
});
