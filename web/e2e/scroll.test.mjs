// A conversation of 10,000 messages (seeded through the API): the list opens at the newest,
// scrolling up loads older pages while the DOM keeps a bounded number of rows, the message
// in view does not jump when a page is put above it, new messages do not move a reader who
// scrolled up, and "Jump to latest" brings them back.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { api, launch, logInUi, message, openApp, openChatUi, registerApi, startServer } from './helpers.mjs';

const TOTAL = 10_000;
let server;
let browser;

before(async () => {
  server = await startServer({ RATE_LIMIT_MESSAGES_PER_MINUTE: '1000000' });
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

async function seed(from, to, count) {
  const started = Date.now();
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      await api(server.base, 'POST', '/messages', {
        token: from.accessToken,
        body: { receiverId: to.user.id, content: `History message #${i + 1}`, clientMessageId: `seed-${i}` },
      });
    }
  };
  await Promise.all(Array.from({ length: 32 }, worker));
  return Date.now() - started;
}

const rowCount = (page) => page.getByRole('list', { name: 'Messages' }).getByRole('listitem').count();

test('10,000 messages: bounded DOM rows, older pages on the way up, no jumps', async () => {
  const reader = await registerApi(server.base, 'Rita Reader');
  const writer = await registerApi(server.base, 'Walt Writer');
  const ms = await seed(writer, reader, TOTAL);
  console.log(`# seeded ${TOTAL} messages through POST /messages in ${ms} ms`);

  const { page } = await openApp(browser, server.base, { viewport: { width: 1280, height: 800 } });
  await logInUi(page, reader.email, reader.password);
  // The first history page comes after the stored last message is shown: the view must
  // still end at the newest message.
  await page.route('**/messages/conversation/**', async (route) => {
    await new Promise((r) => setTimeout(r, 400));
    await route.continue();
  });
  await openChatUi(page, 'Walt Writer');
  await message(page, `History message #${TOTAL}`).waitFor();
  const scroller = page.locator('.scroller');

  const counts = [];
  const height = () => page.evaluate(() => document.querySelector('.rows').getBoundingClientRect().height);
  for (let round = 0; round < 12; round++) {
    const h0 = await height();
    await scroller.evaluate((el) => (el.scrollTop = 0));
    // An older page is put above what is in view: the list grows.
    await page.waitForFunction((h) => document.querySelector('.rows').getBoundingClientRect().height > h + 100, h0);
    counts.push(await rowCount(page));
  }
  await page.waitForFunction(() => !document.querySelector('.loading-older'));
  await scroller.evaluate((el) => (el.scrollTop = 0));
  await page.waitForTimeout(100);
  const oldestSeen = await page.evaluate(() =>
    Math.min(...[...document.querySelectorAll('[role=listitem] .content')].map((c) => Number(c.textContent.split('#')[1]))),
  );
  const loaded = await height();
  console.log(`# DOM rows while scrolling up through ${TOTAL} messages: max ${Math.max(...counts)} (per step ${counts.join(',')}); oldest shown #${oldestSeen}; list ${Math.round(loaded)} px tall`);
  assert.ok(oldestSeen <= TOTAL - 600, `older pages loaded (oldest shown #${oldestSeen})`);
  assert.ok(Math.max(...counts) <= 40, `the DOM holds a bounded number of rows (max ${Math.max(...counts)})`);

  // No jump when a page is put above the message in view.
  await scroller.evaluate((el) => (el.scrollTop = 600));
  await page.waitForTimeout(300);
  // The first row at or below the top of the view (waits for the list to render there).
  const probe = async () =>
    (
      await page.waitForFunction(() => {
        const sc = document.querySelector('.scroller');
        const top = sc.getBoundingClientRect().top;
        const rows = [...document.querySelectorAll('[role=listitem]')]
          .map((r) => ({ r, y: r.getBoundingClientRect().top }))
          .filter((x) => x.y >= top)
          .sort((a, b) => a.y - b.y);
        const first = rows[0];
        return first ? { text: first.r.querySelector('.content').textContent, y: Math.round(first.y) } : null;
      })
    ).jsonValue();
  await scroller.evaluate((el) => (el.scrollTop = el.scrollTop - 250));
  await page.waitForTimeout(50);
  const afterScroll = await probe();
  // Let any page load settle, then the same message must sit where the scroll put it.
  await page.waitForFunction(() => !document.querySelector('.loading-older'));
  await page.waitForTimeout(300);
  const y = await page.evaluate((text) => {
    const row = [...document.querySelectorAll('[role=listitem]')].find((r) => r.querySelector('.content')?.textContent === text);
    return row ? Math.round(row.getBoundingClientRect().top) : null;
  }, afterScroll.text);
  assert.ok(y !== null, `${afterScroll.text} still rendered`);
  assert.ok(Math.abs(y - afterScroll.y) <= 2, `no jump: ${afterScroll.text} moved from ${afterScroll.y} to ${y} px`);

  // A new message while scrolled up: the view stays, "Jump to latest" appears and works.
  const still = await probe();
  await api(server.base, 'POST', '/messages', { token: writer.accessToken, body: { receiverId: reader.user.id, content: 'Brand new while you read' } });
  const jump = page.getByRole('button', { name: /Jump to latest/ });
  await jump.waitFor();
  const now = await probe();
  assert.equal(now.text, still.text);
  assert.ok(Math.abs(now.y - still.y) <= 2, 'arriving messages do not move the reader');
  await jump.click();
  await message(page, 'Brand new while you read').waitFor();
  assert.ok((await rowCount(page)) <= 40);
  assert.deepEqual(page.errors, []);
});
