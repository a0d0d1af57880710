// Steady chat load for the failure tests and the chaos soak: clients send to random peers,
// retry with the same tempId when a send is not answered (a node went away, the database
// was unavailable), and at the end every client is checked against the database.
import { sleep } from '../helpers.js';
import { Client } from './client.js';

export class Load {
  constructor(clients, { intervalMs = 200 } = {}) {
    this.clients = clients;
    this.intervalMs = intervalMs;
    this.sent = 0; // distinct messages attempted
    this.acked = new Map(); // tempId -> {id, to}
    this.unanswered = 0; // attempts that got no answer or an error (then retried)
    this.running = false;
    this.loops = [];
  }

  start() {
    this.running = true;
    this.loops = this.clients.map((c, i) => this.loop(c, i));
  }

  async loop(client, i) {
    let k = 0;
    await sleep(Math.random() * this.intervalMs);
    while (this.running) {
      const peer = this.clients[(i + 1 + Math.floor(Math.random() * (this.clients.length - 1))) % this.clients.length];
      const tempId = `c${i}-${k++}`;
      this.sent++;
      for (let attempt = 0; attempt < 20; attempt++) {
        const answer = await client.send(peer.user.id, `msg ${tempId}`, tempId);
        if (answer?.dbMessageId) {
          this.acked.set(tempId, { id: answer.dbMessageId, to: peer });
          break;
        }
        this.unanswered++;
        await sleep(250);
      }
      await sleep(this.intervalMs);
    }
  }

  async stop() {
    this.running = false;
    await Promise.all(this.loops);
  }

  /**
   * Brings every client up to date (sync) and compares it with the database: every
   * acknowledged message reached its recipient, no seq gap is left, nothing stored twice.
   */
  async verify(db) {
    await sleep(1500); // live events in flight
    await Promise.all(this.clients.map((c) => c.sync()));
    let lost = 0;
    for (const { id, to } of this.acked.values()) if (!to.messages.has(id)) lost++;
    let gaps = 0;
    for (const c of this.clients) {
      const latest = Number(db.query(`SELECT COALESCE(MAX(seq), 0) FROM changes WHERE user_id = '${c.user.id}'`));
      if (c.watermark !== latest || c.seqs.size !== latest) gaps++;
    }
    const duplicates = Number(db.query(
      'SELECT COUNT(*) FROM (SELECT 1 FROM messages WHERE client_message_id IS NOT NULL GROUP BY sender_id, client_message_id HAVING COUNT(*) > 1) d'));
    const stored = Number(db.query("SELECT COUNT(*) FROM messages WHERE content LIKE 'msg c%'"));
    return {
      sent: this.sent,
      acked: this.acked.size,
      stored,
      unansweredAttempts: this.unanswered,
      deliveredLive: this.clients.reduce((n, c) => n + c.live, 0),
      repairedBySync: this.clients.reduce((n, c) => n + c.repaired, 0),
      lost,
      clientsWithGaps: gaps,
      storedTwice: duplicates,
    };
  }
}

/** `n` registered users with connected clients on `bases` (round robin). */
export async function clientsOn(bases, n, register, extra) {
  const clients = [];
  for (let i = 0; i < n; i++) {
    const base = bases[i % bases.length];
    const user = await register(base, `User${i}`);
    clients.push(new Client(base, user, extra));
  }
  await Promise.all(clients.map((c) => c.connected));
  return clients;
}
