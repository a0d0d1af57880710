// Nexus example client (socket.io-client 4, Node 18+). See docs/protocol.md §6.
//
//   cd docs && npm ci     # once: socket.io-client, pinned by docs/package-lock.json
//   NEXUS_URL=http://localhost:3000 node example-client.mjs
//
// Registers Alice and Bob over HTTP, connects both to /ws, Alice sends a message with a
// tempId, Bob receives it and marks it read. Then Bob goes offline, Alice sends two more
// messages and edits the first, and Bob catches up with GET /sync from his last seq.
import { io } from 'socket.io-client';

const BASE = (process.env.NEXUS_URL ?? 'http://localhost:3000').replace(/\/$/, '');
const TIMEOUT_MS = 5000;

async function http(method, path, token, body) {
  const res = await fetch(BASE + path, {
    method,
    headers: {
      ...(body ? { 'content-type': 'application/json' } : {}),
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: body ? JSON.stringify(body) : undefined,
  });
  const json = await res.json();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${json.message}`);
  return json;
}

/** Resolves with the next `event` on `socket` (rejects after TIMEOUT_MS). */
function next(socket, event) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} within ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
    socket.once(event, (payload) => { clearTimeout(timer); resolve(payload); });
  });
}

/** A client: token, socket, last seq seen, and the messages it knows (by id). */
async function client(name) {
  const email = `${name.toLowerCase()}-${Date.now()}-${Math.floor(Math.random() * 1e6)}@example.org`;
  const { accessToken, user } = await http('POST', '/auth/register', null,
    { name, email, password: 'correct horse battery' });
  const c = { name, user, token: accessToken, lastSeq: 0, messages: new Map() };
  c.socket = io(`${BASE}/ws`, { transports: ['websocket'], auth: { token: accessToken } });
  c.socket.on('connect_error', (err) => console.error(`${name}: connect_error ${err.message}`));
  c.socket.on('ERROR', (e) => console.error(`${name}: ERROR ${e.code} on ${e.event}: ${e.message}`));
  // Every state-changing event carries this user's seq: a jump means something was missed.
  const seen = (seq) => {
    if (seq > c.lastSeq + 1) console.log(`${name}: seq jumped ${c.lastSeq} -> ${seq}, would call /sync`);
    c.lastSeq = Math.max(c.lastSeq, seq);
  };
  c.socket.on('NEW_MESSAGE', (m) => { c.messages.set(m.id, m); seen(m.seq); });
  for (const e of ['MESSAGE_SENT', 'MESSAGE_EDITED', 'MESSAGE_DELETED',
    'MESSAGE_DELIVERED_UPDATE', 'MESSAGE_READ_UPDATE']) c.socket.on(e, (p) => seen(p.seq));
  const hello = await next(c.socket, 'CONNECTION_SUCCESS');
  console.log(`${name}: connected as ${hello.userId} (socket ${hello.socketId})`);
  return c;
}

/** Catch-up: page through GET /sync from the last seq until hasMore is false. */
async function catchUp(c, limit = 2) {
  let hasMore = true;
  while (hasMore) {
    const page = await http('GET', `/sync?since=${c.lastSeq}&limit=${limit}`, c.token);
    for (const ev of page.events) {
      c.messages.set(ev.message.id, ev.message); // idempotent: the message's current state
      console.log(`${c.name}: sync seq=${ev.seq} ${ev.type} -> "${ev.message.content}"`);
    }
    c.lastSeq = page.nextCursor;
    hasMore = page.hasMore;
  }
}

const alice = await client('Alice');
const bob = await client('Bob');

// 1. Alice sends; she gets MESSAGE_SENT (and the same answer through the ack), Bob NEW_MESSAGE.
const tempId = `tmp-${Date.now()}`;
const sent = next(alice.socket, 'MESSAGE_SENT');
const incoming = next(bob.socket, 'NEW_MESSAGE');
const ack = await alice.socket.timeout(TIMEOUT_MS)
  .emitWithAck('NEW_MESSAGE', { receiverId: bob.user.id, content: 'Hello Bob!', tempId });
const [s, m] = await Promise.all([sent, incoming]);
console.log(`Alice: MESSAGE_SENT messageId=${s.messageId} dbMessageId=${s.dbMessageId} seq=${s.seq}` +
  ` (ack seq=${ack.seq})`);
console.log(`Bob: NEW_MESSAGE "${m.content}" from ${m.sender.name} tempId=${m.tempId} seq=${m.seq}`);

// 2. Bob marks it read; both users' sockets get MESSAGE_READ_UPDATE.
const aliceRead = next(alice.socket, 'MESSAGE_READ_UPDATE');
const bobRead = next(bob.socket, 'MESSAGE_READ_UPDATE'); // Bob's own copy: his seq advances too
bob.socket.emit('MESSAGE_READ', { messageId: m.id });
const [r, own] = await Promise.all([aliceRead, bobRead]);
console.log(`Alice: MESSAGE_READ_UPDATE ${r.messageId} read at ${r.readAt} seq=${r.seq}`);
console.log(`Bob: MESSAGE_READ_UPDATE (own copy) seq=${own.seq}`);

// 3. Bob goes offline; meanwhile Alice sends two messages and edits the first.
bob.socket.disconnect();
for (const [i, content] of ['Are you there?', 'Call me'].entries()) {
  await alice.socket.timeout(TIMEOUT_MS)
    .emitWithAck('NEW_MESSAGE', { receiverId: bob.user.id, content, tempId: `${tempId}-${i}` });
}
const edited = await alice.socket.timeout(TIMEOUT_MS)
  .emitWithAck('EDIT_MESSAGE', { messageId: m.id, content: 'Hello Bob! (edited)' });
if (edited.code) throw new Error(`edit refused: ${edited.code}`);

// 4. Bob comes back (reconnect) and catches up from his last seq, two events per page.
console.log(`Bob: reconnecting, last seq ${bob.lastSeq}`);
bob.socket.connect();
await next(bob.socket, 'CONNECTION_SUCCESS');
await catchUp(bob);
console.log(`Bob: caught up to seq ${bob.lastSeq}; knows ${bob.messages.size} messages:`);
for (const msg of bob.messages.values()) {
  console.log(`  ${msg.sender.name}: "${msg.content}"${msg.isEdited ? ' (edited)' : ''}` +
    ` read=${msg.readReceipts.length > 0}`);
}

alice.socket.close();
bob.socket.close();
