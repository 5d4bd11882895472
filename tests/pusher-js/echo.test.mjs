// Laravel Echo 2 and pusher-js 8, unchanged, against the real server: connecting,
// authorizing the chat's channels, the chat's events live and from the backlog,
// presence and whispers.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import {
  APP,
  Inbox,
  connected,
  echoClient,
  eventually,
  pusherClient,
  send,
  startServer,
} from './harness.mjs';

let server;
const clients = [];

function keep(client) {
  clients.push(client);
  return client;
}

before(async () => {
  server = await startServer();
});

after(async () => {
  for (const client of clients) client.disconnect();
  await server.stop();
});

async function authorize(user, body, contentType = 'application/x-www-form-urlencoded') {
  const headers = { 'content-type': contentType };
  if (user) headers.authorization = `Bearer ${server.token(user)}`;
  return fetch(`${server.base}/broadcasting/auth`, { method: 'POST', headers, body });
}

describe('connecting', () => {
  test('a connection is established with a socket id and an activity timeout', async () => {
    const pusher = keep(pusherClient(server));
    await connected(pusher);
    assert.match(pusher.connection.socket_id, /^\d+\.\d+$/);
    assert.ok(pusher.connection.activityTimeout > 0);
  });

  test('a wrong key is refused with 4001 and pusher-js does not retry', async () => {
    const pusher = keep(pusherClient(server, { key: 'wrong-key' }));
    const errors = new Inbox();
    const states = new Inbox();
    pusher.connection.bind('error', errors.push);
    pusher.connection.bind('state_change', (change) => states.push(change.current));
    const [error] = await errors.take();
    assert.equal(error.error.data.code, 4001);
    await eventually(() => pusher.connection.state === 'disconnected', 5000, 'disconnected');
    await new Promise((r) => setTimeout(r, 1500));
    assert.deepEqual(states.items, ['disconnected']);
  });

  test('the server answers pings', async () => {
    const pusher = keep(pusherClient(server));
    await connected(pusher);
    const pongs = new Inbox();
    pusher.connection.bind('message', (message) => {
      if (message.event === 'pusher:pong') pongs.push(message);
    });
    pusher.connection.send_event('pusher:ping', {});
    await pongs.take();
  });

  test('after a restart pusher-js reconnects, subscribes again and gets what it missed', async () => {
    const own = await startServer();
    try {
      const pusher = pusherClient(own, { user: 31 });
      const channel = pusher.subscribe('private-chat.31');
      const messages = new Inbox();
      channel.bind('App\\Events\\MessageSent', messages.push);
      await eventually(() => channel.subscribed, 5000, 'subscribed');
      const firstSocket = pusher.connection.socket_id;
      // Shutting down closes with 4200: pusher-js reconnects at once, and keeps trying.
      await own.stop({ keep: true });
      const restarted = await startServer({ port: own.port, dir: own.dir, secret: own.secret });
      try {
        await eventually(
          () => pusher.connection.state === 'connected' && pusher.connection.socket_id !== firstSocket,
          20000,
          'a new connection',
        );
        await send(restarted, 32, 31, 'while you were away');
        const [event] = await messages.take(1, 10000);
        assert.equal(event.message.message, 'while you were away');
      } finally {
        pusher.disconnect();
        await restarted.stop();
      }
    } finally {
      await own.stop();
    }
  });

  test('terminated connections stay closed (4009: pusher-js does not retry)', async () => {
    const pusher = keep(pusherClient(server, { user: 33 }));
    const channel = pusher.subscribe('private-chat.33');
    await eventually(() => channel.subscribed, 5000, 'subscribed');
    const closed = new Inbox();
    pusher.connection.bind('state_change', (states) => closed.push(states.current));
    const { serverLibrary } = await import('./harness.mjs');
    await serverLibrary(server).terminateUserConnections('33');
    await eventually(() => ['disconnected', 'failed'].includes(pusher.connection.state), 5000, 'closed');
    await new Promise((r) => setTimeout(r, 1500));
    assert.ok(['disconnected', 'failed'].includes(pusher.connection.state), pusher.connection.state);
  });
});

describe('authorizing the chat channels', () => {
  test('a user may join their own private-chat channel', async () => {
    const response = await authorize(5, 'socket_id=123.456&channel_name=private-chat.5');
    assert.equal(response.status, 200);
    const body = await response.json();
    assert.match(body.auth, new RegExp(`^${APP.key}:[0-9a-f]{64}$`));
    assert.equal(body.channel_data, undefined);
  });

  test("another user's private-chat channel is refused with 403", async () => {
    const response = await authorize(5, 'socket_id=123.456&channel_name=private-chat.6');
    assert.equal(response.status, 403);
  });

  test('no token is 401', async () => {
    const response = await authorize(null, 'socket_id=123.456&channel_name=private-chat.5');
    assert.equal(response.status, 401);
  });

  test('JSON bodies are read too, and a participant joins the conversation presence channel', async () => {
    const response = await authorize(
      5,
      JSON.stringify({ socket_id: '1.2', channel_name: 'presence-chat.5.9' }),
      'application/json',
    );
    assert.equal(response.status, 200);
    const body = await response.json();
    assert.deepEqual(JSON.parse(body.channel_data), { user_id: '5', user_info: { id: 5 } });
    const outsider = await authorize(7, 'socket_id=1.2&channel_name=presence-chat.5.9');
    assert.equal(outsider.status, 403);
  });

  test('a bad socket id or channel name is 403, as Laravel answers it', async () => {
    assert.equal((await authorize(5, 'socket_id=abc&channel_name=private-chat.5')).status, 403);
    assert.equal((await authorize(5, 'socket_id=1.2&channel_name=')).status, 403);
    assert.equal((await authorize(5, 'socket_id=1.2')).status, 403);
  });

  test("Echo's .error() fires for a channel that is not the user's, and the socket stays", async () => {
    const echo = keep(echoClient(server, 8));
    const errors = new Inbox();
    echo.private('chat.9').error(errors.push);
    const [error] = await errors.take();
    assert.equal(error.status, 403);
    const mine = new Inbox();
    echo.private('chat.8').listen('MessageSent', mine.push);
    await eventually(() => echo.connector.pusher.channel('private-chat.8')?.subscribed, 5000, 'subscribed');
    await send(server, 9, 8, 'still connected');
    const [event] = await mine.take();
    assert.equal(event.message.message, 'still connected');
  });

  test('a subscription with a forged signature is refused', async () => {
    const pusher = keep(pusherClient(server));
    await connected(pusher);
    const errors = new Inbox();
    pusher.connection.bind('message', (message) => {
      if (message.event === 'pusher:subscription_error') errors.push(message);
    });
    pusher.connection.send_event('pusher:subscribe', {
      channel: 'private-chat.5',
      auth: `${APP.key}:${'0'.repeat(64)}`,
    });
    const [error] = await errors.take();
    assert.equal(error.channel, 'private-chat.5');
    assert.equal(error.data.status, 401);
    assert.equal(pusher.connection.state, 'connected');
  });
});

describe('the chat events', () => {
  test('MessageSent arrives live for the receiver and the sender', async () => {
    const alice = keep(echoClient(server, 11));
    const bob = keep(echoClient(server, 12));
    const toBob = new Inbox();
    const toAlice = new Inbox();
    bob.private('chat.12').listen('MessageSent', toBob.push);
    alice.private('chat.11').listen('MessageSent', toAlice.push);
    await eventually(
      () =>
        bob.connector.pusher.channel('private-chat.12')?.subscribed &&
        alice.connector.pusher.channel('private-chat.11')?.subscribed,
      5000,
      'both subscribed',
    );
    const sent = await send(server, 11, 12, 'hello bob');
    const [event] = await toBob.take();
    assert.equal(event.message.id, sent.id);
    assert.equal(event.message.sender_id, 11);
    assert.equal(event.message.message, 'hello bob');
    const [echoed] = await toAlice.take();
    assert.equal(echoed.message.id, sent.id);
  });

  test('the offline backlog arrives on subscribe, oldest first, once; then the sender hears MessageDelivered', async () => {
    const sent = [];
    for (const text of ['one', 'two', 'three']) sent.push(await send(server, 21, 22, text));
    const alice = keep(echoClient(server, 21));
    const delivered = new Inbox();
    alice.private('chat.21').listen('MessageDelivered', delivered.push);
    await eventually(() => alice.connector.pusher.channel('private-chat.21')?.subscribed, 5000, 'sender subscribed');
    const bob = keep(echoClient(server, 22));
    const received = new Inbox();
    bob.private('chat.22').listen('MessageSent', received.push);
    const events = await received.take(3);
    assert.deepEqual(
      events.map((e) => e.message.message),
      ['one', 'two', 'three'],
    );
    const receipts = await delivered.take(3);
    assert.deepEqual(
      receipts.map((e) => e.message.id).sort((a, b) => a - b),
      sent.map((m) => m.id),
    );
    assert.ok(receipts.every((e) => e.message.status === 'delivered'));
    // Delivered once: a second device sees no backlog.
    const bobAgain = keep(echoClient(server, 22));
    const again = new Inbox();
    bobAgain.private('chat.22').listen('MessageSent', again.push);
    await eventually(() => bobAgain.connector.pusher.channel('private-chat.22')?.subscribed, 5000, 'subscribed');
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(again.items.length, 0);
    assert.equal(received.items.length, 3);
  });

  test('MessageRead reaches the sender when the receiver reads', async () => {
    const alice = keep(echoClient(server, 41));
    const read = new Inbox();
    alice.private('chat.41').listen('MessageRead', read.push);
    await eventually(() => alice.connector.pusher.channel('private-chat.41')?.subscribed, 5000, 'subscribed');
    const sent = await send(server, 41, 42, 'read me');
    const response = await fetch(`${server.base}/api/chat/read/${sent.id}`, {
      method: 'PATCH',
      headers: { authorization: `Bearer ${server.token(42)}` },
    });
    assert.equal(response.status, 200);
    const [event] = await read.take();
    assert.equal(event.message.id, sent.id);
    assert.equal(event.message.status, 'read');
  });
});

describe('edits and deletions', () => {
  test('MessageUpdated and MessageDeleted reach both participants', async () => {
    const alice = keep(echoClient(server, 51));
    const bob = keep(echoClient(server, 52));
    const updated = new Inbox();
    const deleted = new Inbox();
    const senderSaw = new Inbox();
    bob.private('chat.52').listen('MessageUpdated', updated.push).listen('MessageDeleted', deleted.push);
    alice.private('chat.51').listen('MessageUpdated', senderSaw.push);
    await eventually(
      () =>
        bob.connector.pusher.channel('private-chat.52')?.subscribed &&
        alice.connector.pusher.channel('private-chat.51')?.subscribed,
      5000,
      'both subscribed',
    );
    const sent = await send(server, 51, 52, 'helo');
    const amend = (method, body) =>
      fetch(`${server.base}/api/chat/messages/${sent.id}`, {
        method,
        headers: {
          authorization: `Bearer ${server.token(51)}`,
          ...(body ? { 'content-type': 'application/json' } : {}),
        },
        body: body ? JSON.stringify(body) : undefined,
      });
    assert.equal((await amend('PATCH', { message: 'hello' })).status, 200);
    const [edit] = await updated.take();
    assert.equal(edit.message.id, sent.id);
    assert.equal(edit.message.message, 'hello');
    assert.ok(edit.message.edited_at);
    const [echoed] = await senderSaw.take();
    assert.equal(echoed.message.message, 'hello');
    assert.equal((await amend('DELETE')).status, 200);
    const [gone] = await deleted.take();
    assert.equal(gone.message.id, sent.id);
    assert.equal(gone.message.message, '');
    assert.ok(gone.message.deleted_at);
  });
});

describe('presence and whispers', () => {
  test('here, joining and leaving on the conversation channel, and a whisper between the two', async () => {
    const alice = keep(echoClient(server, 51));
    const here = new Inbox();
    const joining = new Inbox();
    const leaving = new Inbox();
    const whispers = new Inbox();
    alice
      .join('chat.51.52')
      .here(here.push)
      .joining(joining.push)
      .leaving(leaving.push)
      .listenForWhisper('typing', whispers.push);
    const [members] = await here.take();
    assert.deepEqual(members, [{ id: 51 }]);
    const bob = keep(echoClient(server, 52));
    const bobHere = new Inbox();
    const bobChannel = bob.join('chat.51.52').here(bobHere.push);
    const [both] = await bobHere.take();
    assert.deepEqual(
      both.map((m) => m.id).sort(),
      [51, 52],
    );
    const [joined] = await joining.take();
    assert.deepEqual(joined, { id: 52 });
    bobChannel.whisper('typing', { typing: true });
    const [whisper] = await whispers.take();
    assert.deepEqual(whisper, { typing: true });
    bob.leave('chat.51.52');
    const [left] = await leaving.take();
    assert.deepEqual(left, { id: 52 });
  });
});
