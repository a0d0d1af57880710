// Two people chat in two browser contexts against a real nexus: real time, ticks, edit and
// delete on both sides, typing and presence, reload from IndexedDB before the network
// answers, phone width, screenshots for docs/.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  launch,
  logInUi,
  message,
  openApp,
  openChatUi,
  screenshot,
  sendUi,
  signUpUi,
  startChatUi,
  startServer,
} from './helpers.mjs';

let server;
let browser;
let alice;
let bob;
let aliceAccount;

before(async () => {
  server = await startServer();
  browser = await launch();
  alice = await openApp(browser, server.base);
  aliceAccount = await signUpUi(alice.page, 'Alice Smith');
  bob = await openApp(browser, server.base);
  await signUpUi(bob.page, 'Bob Jones');
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

const tick = (page, text) => message(page, text).locator('[aria-label=Sending],[aria-label=Sent],[aria-label=Delivered],[aria-label=Read],[aria-label=Failed]');

describe('two people chatting', () => {
  test('a message reaches the other side in real time, once', async () => {
    await startChatUi(alice.page, 'Bob Jones');
    await sendUi(alice.page, 'Hello Bob!');
    await message(alice.page, 'Hello Bob!').waitFor();
    // Bob has no conversation open: it appears in his list, most recent first, unread.
    const entry = bob.page.getByRole('navigation', { name: 'Conversations' }).getByRole('link', { name: /^Alice Smith/ });
    await entry.waitFor();
    await assert.doesNotReject(entry.getByText('1 unread').waitFor());
    await openChatUi(bob.page, 'Alice Smith');
    await message(bob.page, 'Hello Bob!').waitFor();
    assert.equal(await message(bob.page, 'Hello Bob!').count(), 1);
    assert.equal(await message(alice.page, 'Hello Bob!').count(), 1);
  });

  test('ticks go sent → delivered → read', async () => {
    // Bob looks elsewhere: the next message is delivered but not read.
    await bob.page.getByRole('link', { name: 'Nexus', exact: true }).click();
    const statuses = [];
    await alice.page.exposeFunction('recordTick', (label) => statuses.push(label));
    await alice.page.evaluate(() => {
      new MutationObserver(() => {
        const row = [...document.querySelectorAll('[role=listitem]')].find((r) => r.textContent?.includes('Are you there?'));
        const label = row?.querySelector('.tick')?.getAttribute('aria-label');
        if (label && window.__lastTick !== label) {
          window.__lastTick = label;
          window.recordTick(label);
        }
      }).observe(document.body, { subtree: true, childList: true, attributes: true });
    });
    await sendUi(alice.page, 'Are you there?');
    await tick(alice.page, 'Are you there?').and(alice.page.locator('[aria-label=Delivered]')).waitFor();
    await openChatUi(bob.page, 'Alice Smith');
    await message(bob.page, 'Are you there?').waitFor();
    await tick(alice.page, 'Are you there?').and(alice.page.locator('[aria-label=Read]')).waitFor();
    // Each state in order (Sending may be too quick to observe; none may come out of order).
    const order = ['Sending', 'Sent', 'Delivered', 'Read'];
    const seen = statuses.filter((s, i) => s !== statuses[i - 1]);
    assert.deepEqual(seen, [...seen].sort((a, b) => order.indexOf(a) - order.indexOf(b)), `ticks went ${seen.join(' → ')}`);
    assert.ok(seen.includes('Delivered') && seen.at(-1) === 'Read', `ticks went ${seen.join(' → ')}`);
    // Bob's own view has no ticks on Alice's messages.
    assert.equal(await tick(bob.page, 'Are you there?').count(), 0);
  });

  test('typing shows on the other side, and presence says online', async () => {
    await alice.page.getByRole('textbox', { name: 'Message' }).pressSequentially('Typing somethi', { delay: 20 });
    await bob.page.getByText('typing…').first().waitFor();
    await alice.page.getByRole('textbox', { name: 'Message' }).fill('');
    await alice.page.getByText('online', { exact: true }).waitFor();
  });

  test('an edit and a delete show on both sides', async () => {
    await sendUi(alice.page, 'A tpyo here');
    await message(bob.page, 'A tpyo here').waitFor();
    const mine = message(alice.page, 'A tpyo here');
    await mine.hover();
    await mine.getByRole('button', { name: 'Edit' }).click();
    const editBox = alice.page.getByRole('textbox', { name: 'Edit text' });
    await editBox.fill('A typo fixed');
    await editBox.press('Enter');
    for (const page of [alice.page, bob.page]) {
      await message(page, 'A typo fixed').getByText('edited', { exact: true }).waitFor();
    }
    assert.equal(await message(bob.page, 'A tpyo here').count(), 0);

    // Escape cancels an edit.
    const fixed = message(alice.page, 'A typo fixed');
    await fixed.hover();
    await fixed.getByRole('button', { name: 'Edit' }).click();
    await alice.page.getByRole('textbox', { name: 'Edit text' }).fill('never saved');
    await alice.page.getByRole('textbox', { name: 'Edit text' }).press('Escape');
    assert.equal(await alice.page.getByRole('textbox', { name: 'Edit text' }).count(), 0);
    await message(alice.page, 'A typo fixed').waitFor();

    await sendUi(alice.page, 'Delete me please');
    await message(bob.page, 'Delete me please').waitFor();
    const doomed = message(alice.page, 'Delete me please');
    await doomed.hover();
    await doomed.getByRole('button', { name: 'Delete' }).click();
    for (const page of [alice.page, bob.page]) {
      await page.getByRole('list', { name: 'Messages' }).getByText('This message has been deleted').waitFor();
      assert.equal(await message(page, 'Delete me please').count(), 0);
    }
  });

  test('keyboard only: Tab reaches the composer, Enter sends, Shift+Enter is a new line', async () => {
    const box = bob.page.getByRole('textbox', { name: 'Message' });
    await box.focus();
    await bob.page.keyboard.type('Line one');
    await bob.page.keyboard.press('Shift+Enter');
    await bob.page.keyboard.type('Line two');
    await bob.page.keyboard.press('Enter');
    await message(alice.page, 'Line one').waitFor();
    assert.match(await message(alice.page, 'Line one').innerText(), /Line one\nLine two/);
    // The send button is next in the tab order after the composer (enabled once there is text).
    await box.focus();
    await bob.page.keyboard.type('y');
    await bob.page.keyboard.press('Tab');
    assert.equal(await bob.page.evaluate(() => document.activeElement?.textContent), 'Send');
    await box.fill('');
  });

  test('desktop screenshot', async () => {
    await sendUi(bob.page, 'Sure, see you at 6 at the usual place');
    await message(alice.page, 'see you at 6').waitFor();
    await tick(bob.page, 'see you at 6').and(bob.page.locator('[aria-label=Read]')).waitFor();
    await alice.page.mouse.move(0, 0);
    await screenshot(alice.page, 'web-chat-desktop.png');
  });

  test('a reload shows the stored conversations and history before the network answers', async () => {
    const held = [];
    let hold = true;
    await alice.page.route(/\/(messages|sync|users|conversations)(\/|\?|$)/, async (route) => {
      if (hold) held.push(route);
      else await route.continue();
    });
    await alice.page.reload();
    const list = alice.page.getByRole('navigation', { name: 'Conversations' });
    await list.getByRole('link', { name: /^Bob Jones/ }).waitFor();
    await message(alice.page, 'A typo fixed').waitFor();
    await alice.page.getByRole('list', { name: 'Messages' }).getByText('This message has been deleted').waitFor();
    assert.ok(held.length > 0, 'the API requests were held while the stored state showed');
    const shownAt = await alice.page.evaluate(() => performance.getEntriesByName('nexus:conversations-shown')[0]?.startTime);
    console.log(`# reload with IndexedDB filled: conversation list shown ${shownAt?.toFixed(0)} ms after navigation start (API held)`);
    hold = false;
    for (const r of held) await r.continue().catch(() => undefined);
    await alice.page.unroute(/\/(messages|sync|users|conversations)(\/|\?|$)/);
    // Nothing doubled once the network answered.
    await sendUi(bob.page, 'After the reload');
    await message(alice.page, 'After the reload').waitFor();
    assert.equal(await message(alice.page, 'A typo fixed').count(), 1);
    assert.equal(await message(alice.page, 'Hello Bob!').count(), 1);
  });

  test('phone width (375 px): one pane at a time, back to the list', async () => {
    const phone = await browser.newContext({ viewport: { width: 375, height: 740 }, baseURL: server.base, isMobile: true, hasTouch: true });
    const page = await phone.newPage();
    await page.goto('/');
    await logInUi(page, aliceAccount.email, aliceAccount.password);
    await openChatUi(page, 'Bob Jones');
    await message(page, 'see you at 6').waitFor();
    assert.equal(await page.getByRole('navigation', { name: 'Conversations' }).isVisible(), false);
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 375, `no horizontal scrolling (content is ${width} px wide)`);
    await screenshot(page, 'web-chat-phone.png');
    await page.getByRole('button', { name: 'Back to conversations' }).click();
    await page.getByRole('navigation', { name: 'Conversations' }).waitFor();
    await phone.close();
  });

  test('log out clears the session; logging in again brings the history back', async () => {
    await alice.page.getByRole('button', { name: 'Log out' }).click();
    await alice.page.getByRole('button', { name: 'Log in' }).waitFor();
    await alice.page.reload();
    await alice.page.getByRole('button', { name: 'Log in' }).waitFor();
    await alice.page.getByLabel('Password').fill('wrong password');
    await alice.page.getByLabel('Email').fill(aliceAccount.email);
    await alice.page.getByRole('button', { name: 'Log in' }).click();
    await alice.page.getByRole('alert').getByText('Wrong email or password').waitFor();
    await logInUi(alice.page, aliceAccount.email, aliceAccount.password);
    await openChatUi(alice.page, 'Bob Jones');
    await message(alice.page, 'After the reload').waitFor();
    assert.deepEqual(alice.page.errors, []);
    assert.deepEqual(bob.page.errors, []);
  });
});
