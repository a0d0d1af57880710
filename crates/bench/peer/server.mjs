// Performance peer for `nexus-bench compare`: the original brief's hot path on the stack it was
// written for (Node + socket.io + PostgreSQL, optional Redis adapter), kept lean (no NestJS, no Prisma,
// one INSERT per message) so it is a tough baseline. It speaks the brief's event shapes
// (`--contract brief`) for the calls a benchmark makes: /health, /auth/register, /auth/login,
// /ws NEW_MESSAGE/MESSAGE_SENT/MESSAGE_READ. Not part of the product.
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { Server } from 'socket.io';
import pg from 'pg';
import jwt from 'jsonwebtoken';
import bcrypt from 'bcryptjs';

const PORT = Number(process.env.PORT || 3100);
const SECRET = process.env.JWT_SECRET || 'peer-secret';
const LIMIT = Number(process.env.RATE_LIMIT_MESSAGES_PER_MINUTE || 100);
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL || 'postgres:///peer', max: 10 });

await pool.query(`
  create table if not exists users (id uuid primary key, name text not null, email text unique not null, password_hash text not null);
  create table if not exists message (id uuid primary key, content text not null, sender_id uuid not null references users(id),
    receiver_id uuid not null references users(id), ts timestamptz not null default now(), client_message_id text,
    unique (sender_id, client_message_id));
  create index if not exists message_receiver on message(receiver_id); create index if not exists message_ts on message(ts);
  create table if not exists read_receipt (message_id uuid not null references message(id), user_id uuid not null, read_at timestamptz not null default now(),
    primary key (message_id, user_id));`);

const json = (res, status, body) => { res.writeHead(status, { 'content-type': 'application/json' }); res.end(JSON.stringify(body)); };
const readBody = req => new Promise(r => { let b = ''; req.on('data', d => b += d); req.on('end', () => { try { r(JSON.parse(b)); } catch { r(null); } }); });

const httpServer = http.createServer(async (req, res) => {
  if (req.url === '/health') return json(res, 200, { status: 'ok' });
  if (req.method === 'POST' && (req.url === '/auth/register' || req.url === '/auth/login')) {
    const b = await readBody(req);
    if (!b?.email || !b?.password) return json(res, 400, { statusCode: 400, message: 'invalid' });
    if (req.url === '/auth/register') {
      const id = randomUUID();
      try { await pool.query('insert into users (id, name, email, password_hash) values ($1,$2,$3,$4)', [id, b.name, b.email, bcrypt.hashSync(b.password, 4)]); }
      catch { return json(res, 409, { statusCode: 409, message: 'taken' }); }
      return json(res, 201, { accessToken: jwt.sign({ sub: id }, SECRET, { expiresIn: '7d' }), user: { id, name: b.name, email: b.email } });
    }
    const { rows } = await pool.query('select * from users where email=$1', [b.email]);
    if (!rows[0] || !bcrypt.compareSync(b.password, rows[0].password_hash)) return json(res, 401, { statusCode: 401, message: 'Unauthorized' });
    return json(res, 200, { accessToken: jwt.sign({ sub: rows[0].id }, SECRET, { expiresIn: '7d' }), user: { id: rows[0].id, name: rows[0].name, email: rows[0].email } });
  }
  json(res, 404, { statusCode: 404, message: 'Not Found' });
});

const io = new Server(httpServer, { cors: { origin: '*' } });
if (process.env.REDIS_URL) {
  const { createClient } = await import('redis');
  const { createAdapter } = await import('@socket.io/redis-adapter');
  const pub = createClient({ url: process.env.REDIS_URL }); const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);
  io.adapter(createAdapter(pub, sub));
}
const ws = io.of('/ws');
ws.use((socket, next) => {
  try { socket.data.userId = jwt.verify(socket.handshake.auth?.token, SECRET).sub; next(); }
  catch { next(new Error('Unauthorized')); }
});
const windows = new Map(); // userId -> [minuteStart, count]
const err = (socket, event, code, message, tempId) => socket.emit('ERROR', { message, code, event, tempId, timestamp: new Date().toISOString() });
ws.on('connection', socket => {
  const me = socket.data.userId;
  socket.join(`user:${me}`);
  socket.emit('CONNECTION_SUCCESS', { userId: me, socketId: socket.id, timestamp: new Date().toISOString() });
  socket.on('NEW_MESSAGE', async (p) => {
    if (!p || typeof p.content !== 'string' || !p.content || p.content.length > 10000 || typeof p.receiverId !== 'string') return err(socket, 'NEW_MESSAGE', 'VALIDATION_FAILED', 'invalid', p?.tempId);
    const now = Date.now(); const w = windows.get(me) || [now, 0];
    if (now - w[0] >= 60000) { w[0] = now; w[1] = 0; }
    if (++w[1] > LIMIT) { windows.set(me, w); return socket.emit('RATE_LIMIT_EXCEEDED', { limit: LIMIT, retryAfterMs: 60000 - (now - w[0]), tempId: p.tempId }); }
    windows.set(me, w);
    try {
      const id = randomUUID();
      const { rows } = await pool.query(
        `insert into message (id, content, sender_id, receiver_id, client_message_id) values ($1,$2,$3,$4,$5)
         on conflict (sender_id, client_message_id) do update set client_message_id = excluded.client_message_id returning id, ts, (xmax = 0) as fresh`,
        [id, p.content, me, p.receiverId, p.tempId ?? null]);
      const row = rows[0];
      socket.emit('MESSAGE_SENT', { messageId: p.tempId ?? row.id, dbMessageId: row.id, timestamp: row.ts.toISOString() });
      if (row.fresh) {
        const msg = { id: row.id, content: p.content, senderId: me, receiverId: p.receiverId, timestamp: row.ts.toISOString(), isEdited: false, tempId: p.tempId };
        ws.to(`user:${p.receiverId}`).to(`user:${me}`).except(socket.id).emit('NEW_MESSAGE', msg);
      }
    } catch (e) { err(socket, 'NEW_MESSAGE', 'NOT_FOUND', 'receiver not found', p.tempId); }
  });
  socket.on('MESSAGE_READ', async (p) => {
    try {
      const { rows } = await pool.query('select sender_id from message where id=$1 and receiver_id=$2', [p?.messageId, me]);
      if (!rows[0]) return err(socket, 'MESSAGE_READ', 'NOT_FOUND', 'no such message');
      const r = await pool.query('insert into read_receipt (message_id, user_id) values ($1,$2) on conflict do nothing returning read_at', [p.messageId, me]);
      const readAt = (r.rows[0]?.read_at ?? new Date()).toISOString();
      ws.to(`user:${rows[0].sender_id}`).emit('MESSAGE_READ_UPDATE', { messageId: p.messageId, userId: me, readAt, timestamp: new Date().toISOString() });
    } catch { err(socket, 'MESSAGE_READ', 'VALIDATION_FAILED', 'invalid'); }
  });
});
httpServer.listen(PORT, '127.0.0.1', () => console.log(`peer listening on ${PORT}`));
