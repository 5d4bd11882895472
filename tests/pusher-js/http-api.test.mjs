// The Pusher HTTP API as a Laravel back end calls it, through the official `pusher`
// server library (the one Laravel's PHP library mirrors), against the real server.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';

import {
  APP,
  Inbox,
  connected,
  echoClient,
  eventually,
  pusherClient,
  serverLibrary,
  startServer,
} from './harness.mjs';

let server;
let library;
const clients = [];

function keep(client) {
  clients.push(client);
  return client;
}

before(async () => {
  server = await startServer();
  library = serverLibrary(server);
});

after(async () => {
  for (const client of clients) client.disconnect();
  await server.stop();
});

async function subscribed(pusher, name) {
  const channel = pusher.subscribe(name);
  await eventually(() => channel.subscribed, 5000, `${name} subscribed`);
  return channel;
}

/** A request signed as Pusher signs it, with `change` applied to the query first. */
function signed(method, path, body = '', change = (query) => query) {
  const query = {
    auth_key: APP.key,
    auth_timestamp: String(Math.floor(Date.now() / 1000)),
    auth_version: '1.0',
  };
  if (body) query.body_md5 = createHash('md5').update(body).digest('hex');
  const sorted = Object.keys(query)
    .sort()
    .map((k) => `${k}=${query[k]}`)
    .join('&');
  query.auth_signature = createHmac('sha256', APP.secret)
    .update(`${method}\n${path}\n${sorted}`)
    .digest('hex');
  const final = change(query);
  const search = new URLSearchParams(final).toString();
  return fetch(`${server.base}${path}?${search}`, {
    method,
    headers: body ? { 'content-type': 'application/json' } : {},
    body: body || undefined,
  });
}

describe('publishing', () => {
  test('an event reaches every subscriber but the excluded socket, with its data verbatim', async () => {
    const a = keep(pusherClient(server));
    const b = keep(pusherClient(server));
    const [channelA, channelB] = [await subscribed(a, 'orders'), await subscribed(b, 'orders')];
    const toA = new Inbox();
    const toB = new Inbox();
    channelA.bind('OrderShipped', toA.push);
    channelB.bind('OrderShipped', toB.push);
    const response = await library.trigger('orders', 'OrderShipped', { id: 7, note: 'a "quoted" word' }, {
      socket_id: a.connection.socket_id,
    });
    assert.equal(response.status, 200);
    const [event] = await toB.take();
    assert.deepEqual(event, { id: 7, note: 'a "quoted" word' });
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(toA.items.length, 0);
  });

  test('an event for several channels, and a batch', async () => {
    const pusher = keep(pusherClient(server));
    const [one, two] = [await subscribed(pusher, 'one'), await subscribed(pusher, 'two')];
    const heard = new Inbox();
    one.bind('ping', (data) => heard.push(['one', data]));
    two.bind('ping', (data) => heard.push(['two', data]));
    await library.trigger(['one', 'two'], 'ping', { n: 1 });
    await library.triggerBatch([
      { channel: 'one', name: 'ping', data: { n: 2 } },
      { channel: 'two', name: 'ping', data: JSON.stringify({ n: 3 }) },
    ]);
    const events = await heard.take(4);
    assert.deepEqual(
      events.map(([c, d]) => `${c}:${d.n}`).sort(),
      ['one:1', 'one:2', 'two:1', 'two:3'],
    );
  });

  test("Laravel's own events reach Echo on a private channel the host authorizes", async () => {
    // The chat's private-chat channel carries a host's broadcasts too.
    const echo = keep(echoClient(server, 61));
    const heard = new Inbox();
    echo.private('chat.61').listen('.InvoicePaid', heard.push);
    await eventually(() => echo.connector.pusher.channel('private-chat.61')?.subscribed, 5000, 'subscribed');
    await library.trigger('private-chat.61', 'InvoicePaid', { amount: 12 });
    const [event] = await heard.take();
    assert.deepEqual(event, { amount: 12 });
  });

  test('data over the limit is 413, too many channels 400', async () => {
    const big = 'x'.repeat(11 * 1024);
    await assert.rejects(library.trigger('orders', 'big', big), (error) => error.status === 413);
    // The library refuses this itself; the server must too.
    const channels = Array.from({ length: 101 }, (_, i) => `c${i}`);
    const body = JSON.stringify({ name: 'many', channels, data: '{}' });
    assert.equal((await signed('POST', `/apps/${APP.id}/events`, body)).status, 400);
  });
});

describe('signatures', () => {
  test('a correctly signed request passes, and each part of the signature is checked', async () => {
    const body = JSON.stringify({ name: 'e', channel: 'x', data: '{}' });
    const path = `/apps/${APP.id}/events`;
    assert.equal((await signed('POST', path, body)).status, 200);
    const cases = {
      'a bad signature': (q) => ({ ...q, auth_signature: '0'.repeat(64) }),
      'a wrong key': (q) => ({ ...q, auth_key: 'other' }),
      'an old timestamp': (q) => ({ ...q, auth_timestamp: String(Math.floor(Date.now() / 1000) - 601) }),
      'a wrong body_md5': (q) => ({ ...q, body_md5: '0'.repeat(32) }),
    };
    for (const [what, change] of Object.entries(cases)) {
      const response = await signed('POST', path, body, change);
      assert.equal(response.status, 401, what);
    }
  });

  test('an unknown app id is 404', async () => {
    const response = await signed('GET', '/apps/other/channels');
    assert.equal(response.status, 404);
  });

  test('a library with the wrong secret is refused', async () => {
    const wrong = new (await import('pusher')).default({
      appId: APP.id,
      key: APP.key,
      secret: 'not-the-secret',
      host: '127.0.0.1',
      port: String(server.port),
      useTLS: false,
    });
    await assert.rejects(wrong.trigger('orders', 'e', {}), (error) => error.status === 401);
  });
});

describe('channels and users', () => {
  test('channel lists and info count subscriptions and presence members', async () => {
    const alice = keep(echoClient(server, 71));
    const bob = keep(echoClient(server, 72));
    const aliceHere = new Inbox();
    const bobHere = new Inbox();
    alice.join('chat.71.72').here(aliceHere.push);
    await aliceHere.take();
    bob.join('chat.71.72').here(bobHere.push);
    await bobHere.take();
    const info = await (
      await library.get({ path: '/channels/presence-chat.71.72', params: { info: 'user_count,subscription_count' } })
    ).json();
    assert.deepEqual(info, { occupied: true, user_count: 2, subscription_count: 2 });
    const users = await (await library.get({ path: '/channels/presence-chat.71.72/users' })).json();
    assert.deepEqual(users.users.map((u) => u.id).sort(), ['71', '72']);
    const list = await (
      await library.get({ path: '/channels', params: { filter_by_prefix: 'presence-', info: 'user_count' } })
    ).json();
    assert.deepEqual(list.channels['presence-chat.71.72'], { user_count: 2 });
    const empty = await (await library.get({ path: '/channels/nobody-here' })).json();
    assert.deepEqual(empty, { occupied: false });
    await assert.rejects(
      library.get({ path: '/channels/public-one', params: { info: 'user_count' } }),
      (error) => error.status === 400,
    );
  });

  test("terminating a user's connections closes each of them", async () => {
    const phone = keep(pusherClient(server, { user: 81 }));
    const laptop = keep(pusherClient(server, { user: 81 }));
    const other = keep(pusherClient(server, { user: 82 }));
    await subscribed(phone, 'private-chat.81');
    await subscribed(laptop, 'private-chat.81');
    await subscribed(other, 'private-chat.82');
    await library.terminateUserConnections('81');
    await eventually(
      () => phone.connection.state !== 'connected' && laptop.connection.state !== 'connected',
      5000,
      'both closed',
    );
    assert.equal(other.connection.state, 'connected');
    await connected(other);
  });
});
