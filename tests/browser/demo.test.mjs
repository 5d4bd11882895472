// The demo page in a real browser: two people chat with unread counts, typing, ticks,
// presence and an offline backlog; history pages back on scroll; 401, 403 and 429 are
// explained; Swagger UI's "Authorize" takes a `chat-server token`.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';

import { ROOT, eventually, launchBrowser, newPage, startServer } from './harness.mjs';

const SCREENSHOT = process.env.CHAT_DEMO_SCREENSHOT ?? join(ROOT, 'target/browser/demo.png');

let server;
let browser;

before(async () => {
  server = await startServer({
    // Users go offline one second after their last connection closes.
    CHAT_PRESENCE_GRACE_SECONDS: '1',
    // 40 sends at once, then one a minute: the 41st within a minute is refused with 429.
    CHAT_SEND_BURST: '40',
    CHAT_SEND_RATE_PER_MINUTE: '1',
  });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

async function signIn(page, user) {
  await page.goto(`${server.base}/`);
  await page.locator('#signin-user').fill(String(user));
  await page.locator('#signin-dev button[type=submit]').click();
  await page.locator('#chat').waitFor({ state: 'visible' });
  await page.waitForSelector('#connection[data-state="connected"]');
  assert.equal(await page.locator('#whoami').textContent(), `user ${user}`);
}

async function openWith(page, user) {
  await page.locator('#open-user').fill(String(user));
  await page.locator('#open-form button[type=submit]').click();
  await page.waitForFunction((u) => document.getElementById('peer-name').textContent === `user ${u}`, user);
}

/** `count` messages from `from` to `to` through the API, "`text` 1" onwards. */
async function seed(from, to, count, text) {
  const token = await server.devToken(from);
  for (let n = 1; n <= count; n++) {
    const sent = await server.api(token, 'POST', '/api/chat/send', { receiver_id: to, message: `${text} ${n}` });
    assert.equal(sent.status, 201);
  }
}

/** Types `text` key by key (as a person would, so typing is announced), then Enter. */
async function write(page, text, { enter = true } = {}) {
  await page.locator('#composer').pressSequentially(text, { delay: 15 });
  if (enter) await page.locator('#composer').press('Enter');
}

/** The texts shown in the open conversation, in order. */
function texts(page) {
  return page.locator('#messages > li .text').allTextContents();
}

/** The tick status of the caller's own message with `text`. */
function tick(page, text) {
  return page.locator('#messages > li.mine', { hasText: text }).locator('.ticks').getAttribute('data-status');
}

async function waitForTick(page, text, status) {
  await eventually(async () => (await tick(page, text)) === status, 10000, `"${text}" to show ${status}`);
}

test('two people chat: unread counts, typing, ticks to read, presence, and a backlog after going offline', async () => {
  const alice = await newPage(browser);
  const bob = await newPage(browser);
  await signIn(alice.page, 1);
  await signIn(bob.page, 2);
  assert.equal(await bob.page.locator('.conversation-row').count(), 0);

  // Alice opens a conversation with user 2 and writes; Bob's list shows it unread.
  await openWith(alice.page, 2);
  await write(alice.page, 'Hi Bob!');
  const row = bob.page.locator('.conversation-row[data-user-id="1"]');
  await row.waitFor();
  await eventually(async () => (await row.locator('.unread').textContent()) === '1', 10000, 'an unread count');
  assert.match(await row.locator('.preview').textContent(), /Hi Bob!/);
  // Bob's page received it: two ticks, not yet read.
  await waitForTick(alice.page, 'Hi Bob!', 'delivered');

  // Bob opens it: read, and the badge goes.
  await row.click();
  await bob.page.waitForFunction(() => document.getElementById('peer-name').textContent === 'user 1');
  await eventually(async () => (await texts(bob.page)).length === 1, 10000, 'the history');
  assert.deepEqual(await texts(bob.page), ['Hi Bob!']);
  await waitForTick(alice.page, 'Hi Bob!', 'read');
  await eventually(async () => row.locator('.unread').isHidden(), 10000, 'the unread badge to go');
  await eventually(async () => (await alice.page.locator('#peer-presence').textContent()) === 'online', 10000, 'Bob online');

  // Bob types: Alice sees it; his message arrives and the indicator goes.
  await write(bob.page, 'Hello Alice', { enter: false });
  await alice.page.locator('#typing').waitFor({ state: 'visible' });
  assert.equal(await alice.page.locator('#typing').textContent(), 'user 2 is typing…');
  await bob.page.locator('#composer').press('Enter');
  await eventually(async () => (await texts(alice.page)).includes('Hello Alice'), 10000, 'the reply');
  await alice.page.locator('#typing').waitFor({ state: 'hidden' });
  await waitForTick(bob.page, 'Hello Alice', 'read');

  // Bob's network goes away: Alice sees him go, and what she writes waits for him.
  const sockets = [];
  bob.page.on('websocket', (socket) => sockets.push(new URL(socket.url())));
  const lastSeen = Number(await bob.page.locator('#messages > li', { hasText: 'Hello Alice' }).getAttribute('data-id'));
  await bob.context.setOffline(true);
  await bob.page.waitForSelector('#connection[data-state="offline"]');
  await eventually(
    async () => /^last seen/.test(await alice.page.locator('#peer-presence').textContent()),
    15000,
    'Bob to be shown offline',
  );
  for (const n of [1, 2, 3]) await write(alice.page, `while you were away ${n}`);
  await waitForTick(alice.page, 'while you were away 3', 'sent');
  await new Promise((r) => setTimeout(r, 1000));
  for (const n of [1, 2, 3]) assert.equal(await tick(alice.page, `while you were away ${n}`), 'sent');
  assert.ok(!(await texts(bob.page)).some((text) => text.startsWith('while you were away')));

  // Back online: Bob's page resumes where it stopped and gets all three, in order.
  await bob.context.setOffline(false);
  await bob.page.waitForSelector('#connection[data-state="connected"]');
  // It resumed after the last message it had, rather than starting over.
  assert.equal(sockets.length, 1);
  assert.equal(sockets[0].searchParams.get('after_id'), String(lastSeen));
  await eventually(async () => (await texts(bob.page)).length === 5, 10000, 'the backlog');
  assert.ok(await bob.page.locator('#notice').isHidden());
  assert.deepEqual(await texts(bob.page), [
    'Hi Bob!',
    'Hello Alice',
    'while you were away 1',
    'while you were away 2',
    'while you were away 3',
  ]);
  for (const n of [1, 2, 3]) await waitForTick(alice.page, `while you were away ${n}`, 'read');
  await eventually(async () => (await alice.page.locator('#peer-presence').textContent()) === 'online', 10000, 'Bob online again');

  // Nothing was stored twice.
  const aliceToken = await server.devToken(1);
  const history = await server.api(aliceToken, 'GET', '/api/chat/messages/2?limit=100');
  assert.equal(history.body.data.length, 5);

  // An edit (here through the API) shows in place on both pages.
  const first = history.body.data.find((message) => message.message === 'Hi Bob!');
  const edited = await server.api(aliceToken, 'PATCH', `/api/chat/messages/${first.id}`, { message: 'Hi Bob, welcome!' });
  assert.equal(edited.status, 200);
  for (const page of [alice.page, bob.page]) {
    await eventually(async () => (await texts(page))[0] === 'Hi Bob, welcome!', 10000, 'the edit');
    assert.match(await page.locator(`#messages > li[data-id="${first.id}"] .meta`).textContent(), /edited/);
  }

  // The picture in the README: Bob's page while Alice is typing.
  await write(alice.page, 'Good to have you back', { enter: false });
  await bob.page.locator('#typing').waitFor({ state: 'visible' });
  mkdirSync(dirname(SCREENSHOT), { recursive: true });
  await bob.page.screenshot({ path: SCREENSHOT });

  assert.deepEqual(alice.errors, []);
  assert.deepEqual(bob.errors, []);
  await alice.context.close();
  await bob.context.close();
});

test('history loads older messages on scroll, and a send over the limit says to wait (429)', async () => {
  await seed(5, 3, 40, 'seed');
  const reader = await newPage(browser);
  await signIn(reader.page, 3);
  const row = reader.page.locator('.conversation-row[data-user-id="5"]');
  await eventually(async () => (await row.locator('.unread').textContent()) === '40', 10000, '40 unread');
  await row.click();
  await eventually(async () => (await texts(reader.page)).length === 30, 10000, 'the newest page');
  assert.equal((await texts(reader.page))[29], 'seed 40');
  assert.equal(await reader.page.locator('#history-state').textContent(), 'scroll up for older messages');

  await reader.page.locator('#scroller').evaluate((scroller) => {
    scroller.scrollTop = 0;
  });
  await eventually(async () => (await texts(reader.page)).length === 40, 10000, 'the older page');
  assert.deepEqual(await texts(reader.page), Array.from({ length: 40 }, (_, i) => `seed ${i + 1}`));
  assert.equal(await reader.page.locator('#history-state').textContent(), 'the beginning of the conversation');
  await eventually(async () => row.locator('.unread').isHidden(), 10000, 'all read');

  // User 6 spends the burst just before: the page says what happened and when to try
  // again.
  await seed(6, 3, 40, 'burst');
  const writer = await newPage(browser);
  await signIn(writer.page, 6);
  await openWith(writer.page, 3);
  await write(writer.page, 'one too many');
  await writer.page.locator('#notice').waitFor({ state: 'visible' });
  const notice = await writer.page.locator('#notice').textContent();
  assert.match(notice, /Too many requests \(429\)/);
  assert.match(notice, /Wait \d+ s/);
  assert.equal(await tick(writer.page, 'one too many'), 'failed');

  assert.deepEqual(reader.errors, []);
  assert.deepEqual(writer.errors, []);
  await reader.context.close();
  await writer.context.close();
});

test('a refused send (403) and a token the server does not accept (401) are explained', async () => {
  const blocker = await server.devToken(7);
  assert.equal((await server.api(blocker, 'POST', '/api/chat/blocks/8')).status, 201);
  const blocked = await newPage(browser);
  await signIn(blocked.page, 8);
  await openWith(blocked.page, 7);
  await write(blocked.page, 'let me in');
  await blocked.page.locator('#notice').waitFor({ state: 'visible' });
  assert.match(await blocked.page.locator('#notice').textContent(), /^Not allowed \(403\)/);
  assert.equal(await tick(blocked.page, 'let me in'), 'failed');

  // A well-formed token signed with another key.
  const encode = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const unsigned = `${encode({ alg: 'HS256', typ: 'JWT' })}.${encode({ sub: '9', exp: Math.floor(Date.now() / 1000) + 600 })}`;
  const forged = `${unsigned}.${createHmac('sha256', 'not the server key, not at all').update(unsigned).digest('base64url')}`;
  const stranger = await newPage(browser);
  await stranger.page.goto(`${server.base}/`);
  await stranger.page.locator('#signin-token-text').fill(forged);
  await stranger.page.locator('#signin-token button[type=submit]').click();
  await stranger.page.locator('#notice').waitFor({ state: 'visible' });
  assert.match(await stranger.page.locator('#notice').textContent(), /^Signed out \(401\)/);
  assert.ok(await stranger.page.locator('#signin').isVisible());
  assert.ok(await stranger.page.locator('#chat').isHidden());

  assert.deepEqual(blocked.errors, []);
  assert.deepEqual(stranger.errors, []);
  await blocked.context.close();
  await stranger.context.close();
});

test("Swagger UI's Authorize takes a token from `chat-server token`", async () => {
  const token = server.cliToken(11);
  assert.equal((await server.api(token, 'POST', '/api/chat/send', { receiver_id: 12, message: 'hi' })).status, 201);
  const { context, page, errors } = await newPage(browser);
  await page.goto(`${server.base}/docs/`);
  const operation = page.locator('#operations-conversations-list_conversations');
  await operation.locator('.opblock-summary').click();
  await operation.locator('.try-out__btn').click();

  // Without a token: 401.
  await operation.locator('.execute').click();
  const status = operation.locator('.live-responses-table .response .response-col_status');
  await eventually(async () => (await status.count()) > 0 && (await status.first().textContent()).trim() === '401', 10000, '401');

  await page.locator('.auth-wrapper .authorize').click();
  const bearer = page.locator('.modal-ux .auth-container', { has: page.locator('#auth-bearer-value') });
  await bearer.locator('#auth-bearer-value').fill(token);
  await bearer.locator('button.authorize').click();
  await page.locator('.modal-ux .btn-done').first().click();

  await operation.locator('.execute').click();
  await eventually(async () => (await status.first().textContent()).trim() === '200', 10000, '200');
  const body = JSON.parse(await operation.locator('.live-responses-table .response-col_description .microlight').first().textContent());
  assert.deepEqual(body.data.map((row) => row.user_id), [12]);
  assert.deepEqual(errors, []);
  await context.close();
});
