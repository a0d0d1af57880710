// A chat client as a real one behaves: reconnects by itself, keeps its change-feed position,
// and repairs what it missed through /sync (on reconnect, on a `seq` gap that stays open).
// Counts what arrived live and what only sync brought ("repaired").
import { io } from 'socket.io-client';
import { http, sleep } from '../helpers.js';

/** How long a gap in the `seq` stream may stay open before the client syncs. */
const GAP_GRACE_MS = 300;

export class Client {
  constructor(base, user, { transport = 'websocket', extra = {} } = {}) {
    this.base = base;
    this.user = user;
    this.seqs = new Set(); // every change seen, live or through sync
    this.messages = new Map(); // id -> content, as last seen
    this.watermark = 0; // all seqs up to here are seen
    this.live = 0;
    this.repaired = 0;
    this.syncs = 0;
    this.connects = 0;
    this.events = [];
    this.syncing = null;
    this.socket = io(`${base}/ws`, {
      transports: [transport],
      auth: { token: user.token },
      reconnectionDelay: 100,
      reconnectionDelayMax: 1000,
      randomizationFactor: 0.3,
      forceNew: true,
      ...extra,
    });
    this.socket.onAny((event, payload) => this.onEvent(event, payload));
    this.connected = new Promise((resolve) => this.socket.once('CONNECTION_SUCCESS', resolve));
  }

  onEvent(event, payload) {
    this.events.push([event, payload]);
    if (event === 'CONNECTION_SUCCESS') {
      this.connects++;
      if (payload.seq > this.watermark) this.sync();
      return;
    }
    if (event === 'RESYNC') {
      this.sync();
      return;
    }
    if (event === 'NEW_MESSAGE' || event === 'MESSAGE_EDITED' || event === 'MESSAGE_DELETED') {
      const id = payload.id;
      this.messages.set(id, payload.content);
    }
    if (typeof payload?.seq === 'number' && payload.seq > 0) {
      if (!this.seqs.has(payload.seq)) this.live++;
      this.note(payload.seq);
      if (this.seqs.size < this.maxSeq()) this.scheduleGapCheck();
    }
  }

  maxSeq() {
    let m = 0;
    for (const s of this.seqs) if (s > m) m = s;
    return m;
  }

  note(seq) {
    this.seqs.add(seq);
    while (this.seqs.has(this.watermark + 1)) this.watermark++;
  }

  scheduleGapCheck() {
    if (this.gapTimer) return;
    const at = this.watermark;
    this.gapTimer = setTimeout(() => {
      this.gapTimer = null;
      if (this.watermark === at && this.maxSeq() > this.watermark) this.sync();
    }, GAP_GRACE_MS);
  }

  /** Catches up from the watermark; concurrent calls share one run. */
  sync() {
    this.syncing ??= (async () => {
      try {
        for (let attempt = 0; attempt < 50; attempt++) {
          try {
            await this.syncOnce();
            return;
          } catch {
            await sleep(200); // the node may be restarting
          }
        }
      } finally {
        this.syncing = null;
      }
    })();
    return this.syncing;
  }

  async syncOnce() {
    this.syncs++;
    let since = this.watermark;
    for (;;) {
      const r = await http(this.base, 'GET', `/sync?since=${since}&limit=1000`, this.user.token);
      if (r.status !== 200) throw new Error(`sync ${r.status}`);
      for (const e of r.body.events) {
        if (!this.seqs.has(e.seq)) {
          this.repaired++;
          this.note(e.seq);
        }
        if (e.message) this.messages.set(e.message.id, e.message.content);
      }
      since = r.body.nextCursor;
      if (!r.body.hasMore) return;
    }
  }

  /** Sends a message with a tempId; resolves with the ack or the ERROR, never throws. */
  async send(receiverId, content, tempId) {
    try {
      return await this.socket.timeout(15000).emitWithAck('NEW_MESSAGE', { receiverId, content, tempId });
    } catch (e) {
      return { timeout: true, error: String(e) };
    }
  }

  close() {
    clearTimeout(this.gapTimer);
    this.socket.close();
  }
}
