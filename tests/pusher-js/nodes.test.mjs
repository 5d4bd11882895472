// Two nodes sharing Postgres and Redis: Echo clients on different nodes hear each
// other's chat messages, presence members and whispers, and events published through
// the HTTP API of either node.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';

import { Inbox, echoClient, eventually, pusherClient, send, serverLibrary, startServer } from './harness.mjs';

const postgres = process.env.CHAT_TEST_POSTGRES_URL;
const redis = process.env.CHAT_TEST_REDIS_URL;
const required = process.env.CHAT_REQUIRE_SERVICES === '1';
const missing = !postgres || !redis;
if (missing && required) {
  throw new Error('CHAT_REQUIRE_SERVICES=1 needs CHAT_TEST_POSTGRES_URL and CHAT_TEST_REDIS_URL');
}
if (missing) console.log('skipped: set CHAT_TEST_POSTGRES_URL and CHAT_TEST_REDIS_URL for the two-node tests');

const suffix = `${process.pid}_${randomBytes(4).toString('hex')}`;
const schema = `pusher_nodes_${suffix}`;
const secret = randomBytes(32).toString('hex');
let one;
let two;
const clients = [];

function keep(client) {
  clients.push(client);
  return client;
}

async function subscribedEcho(echo, name) {
  await eventually(() => echo.connector.pusher.channel(name)?.subscribed, 5000, `${name} subscribed`);
}

describe('two nodes on Redis', { skip: missing }, () => {
  before(async () => {
    const env = {
      CHAT_DATABASE_SCHEMA: schema,
      CHAT_REDIS_URL: redis,
      CHAT_REDIS_PREFIX: `chat-pusher-${suffix}`,
    };
    one = await startServer({ database: postgres, secret, env });
    two = await startServer({ database: postgres, secret, env });
  });

  after(async () => {
    for (const client of clients) client.disconnect();
    await one?.stop();
    await two?.stop();
    execFileSync('psql', [postgres, '-q', '-c', `DROP SCHEMA IF EXISTS ${schema} CASCADE`]);
  });

  test('a message sent through one node reaches Echo on the other', async () => {
    const bob = keep(echoClient(two, 102));
    const heard = new Inbox();
    bob.private('chat.102').listen('MessageSent', heard.push);
    await subscribedEcho(bob, 'private-chat.102');
    const sent = await send(one, 101, 102, 'across nodes');
    const [event] = await heard.take();
    assert.equal(event.message.id, sent.id);
  });

  test('presence members and whispers cross nodes', async () => {
    const alice = keep(echoClient(one, 111));
    const here = new Inbox();
    const joining = new Inbox();
    const leaving = new Inbox();
    const whispers = new Inbox();
    alice
      .join('chat.111.112')
      .here(here.push)
      .joining(joining.push)
      .leaving(leaving.push)
      .listenForWhisper('typing', whispers.push);
    await here.take();
    const bob = keep(echoClient(two, 112));
    const bobHere = new Inbox();
    const bobChannel = bob.join('chat.111.112').here(bobHere.push);
    // Bob's node knows alice from the other node.
    const [members] = await bobHere.take();
    assert.deepEqual(members.map((m) => m.id).sort(), [111, 112]);
    const [joined] = await joining.take();
    assert.deepEqual(joined, { id: 112 });
    bobChannel.whisper('typing', { typing: true });
    const [whisper] = await whispers.take();
    assert.deepEqual(whisper, { typing: true });
    // Either node answers for the channel's users.
    const users = await (await serverLibrary(one).get({ path: '/channels/presence-chat.111.112/users' })).json();
    assert.deepEqual(users.users.map((u) => u.id).sort(), ['111', '112']);
    bob.leave('chat.111.112');
    const [left] = await leaving.take();
    assert.deepEqual(left, { id: 112 });
  });

  test('an event published on one node reaches subscribers on both, but the excluded socket', async () => {
    const onOne = keep(pusherClient(one));
    const onTwo = keep(pusherClient(two));
    const excluded = keep(pusherClient(two));
    const inboxes = [new Inbox(), new Inbox(), new Inbox()];
    const channels = [onOne, onTwo, excluded].map((client) => client.subscribe('news'));
    channels.forEach((channel, i) => channel.bind('Story', inboxes[i].push));
    await eventually(() => channels.every((c) => c.subscribed), 5000, 'all subscribed');
    await serverLibrary(one).trigger('news', 'Story', { n: 1 }, { socket_id: excluded.connection.socket_id });
    assert.deepEqual((await inboxes[0].take())[0], { n: 1 });
    assert.deepEqual((await inboxes[1].take())[0], { n: 1 });
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(inboxes[2].items.length, 0);
  });

  test("terminating a user's connections through one node closes them on the other", async () => {
    const phone = keep(pusherClient(two, { user: 121 }));
    const channel = phone.subscribe('private-chat.121');
    await eventually(() => channel.subscribed, 5000, 'subscribed');
    await serverLibrary(one).terminateUserConnections('121');
    await eventually(() => phone.connection.state !== 'connected', 5000, 'closed');
  });
});
