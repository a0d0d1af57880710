// The production build as nexus serves it: content types, cache headers, gzip, index.html
// for client routes on HTML GETs only; the API and /socket.io/ keep their own answers.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { repo, startServer } from './helpers.mjs';

let server;
before(async () => {
  server = await startServer();
});
after(async () => server?.stop());

const html = { Accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8' };

test('the app shell and its hashed assets', async () => {
  const index = await fetch(`${server.base}/`, { headers: html });
  assert.equal(index.status, 200);
  assert.equal(index.headers.get('content-type'), 'text/html; charset=utf-8');
  assert.equal(index.headers.get('cache-control'), 'no-cache');
  const page = await index.text();
  assert.equal(page, readFileSync(join(repo, 'web/dist/index.html'), 'utf8'));
  const script = /src="(\/assets\/index-[\w-]+\.js)"/.exec(page)?.[1];
  const style = /href="(\/assets\/index-[\w-]+\.css)"/.exec(page)?.[1];
  assert.ok(script && style, 'index.html names its hashed script and stylesheet');

  const js = await fetch(server.base + script, { headers: { 'Accept-Encoding': 'gzip' } });
  assert.equal(js.status, 200);
  assert.equal(js.headers.get('content-type'), 'text/javascript; charset=utf-8');
  assert.equal(js.headers.get('cache-control'), 'public, max-age=31536000, immutable');
  assert.equal(js.headers.get('content-encoding'), 'gzip');
  assert.match(js.headers.get('vary'), /^Accept-Encoding/);
  const css = await fetch(server.base + style);
  assert.equal(css.headers.get('content-type'), 'text/css; charset=utf-8');

  const etag = js.headers.get('etag');
  const again = await fetch(server.base + script, { headers: { 'If-None-Match': etag } });
  assert.equal(again.status, 304);

  const sw = await fetch(`${server.base}/sw.js`);
  assert.equal(sw.headers.get('content-type'), 'text/javascript; charset=utf-8');
  assert.equal(sw.headers.get('cache-control'), 'no-cache');
  const manifest = await fetch(`${server.base}/manifest.webmanifest`);
  assert.equal(manifest.headers.get('content-type'), 'application/manifest+json; charset=utf-8');
});

test('client routes get index.html on HTML GETs only', async () => {
  const route = await fetch(`${server.base}/c/01a2-some-conversation`, { headers: html });
  assert.equal(route.status, 200);
  assert.match(await route.text(), /<div id="root">/);
  const asJson = await fetch(`${server.base}/c/01a2-some-conversation`);
  assert.equal(asJson.status, 404);
  assert.equal((await asJson.json()).statusCode, 404);
  const post = await fetch(`${server.base}/c/01a2-some-conversation`, { method: 'POST', headers: html });
  assert.equal(post.status, 404);
});

test('API paths and the socket keep their JSON answers, even for a browser', async () => {
  const me = await fetch(`${server.base}/users/me`, { headers: html });
  assert.equal(me.status, 401);
  assert.match(me.headers.get('content-type'), /application\/json/);
  const unknown = await fetch(`${server.base}/messages/no/such/route`, { headers: html });
  assert.equal(unknown.status, 404);
  assert.equal((await unknown.json()).message, 'no such route');
  const missing = await fetch(`${server.base}/assets/missing-123.js`, { headers: html });
  assert.equal(missing.status, 404);
  const sio = await fetch(`${server.base}/socket.io/?EIO=4&transport=polling`, { headers: html });
  assert.equal(sio.status, 200);
  assert.match(await sio.text(), /"sid"/);
});
