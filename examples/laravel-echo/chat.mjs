// Two users chat through the chat server with Laravel Echo and pusher-js, configured as
// a Laravel front end configures them for Reverb. The server is started here, on a
// fresh SQLite file, with its own secrets; the script ends by itself.
//
//   npm --prefix examples/laravel-echo start
//
// CHAT_SERVER names the binary (default: target/debug/chat-server, else `cargo run`).
import { spawn } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import Echo from 'laravel-echo';
import Pusher from 'pusher-js';

const root = resolve(import.meta.dirname, '../..');
const app = { id: 'example', key: 'example-key', secret: randomBytes(16).toString('hex') };
const jwtSecret = randomBytes(32).toString('hex');

const port = await new Promise((done) => {
  const probe = createServer().listen(0, '127.0.0.1', () => {
    const { port } = probe.address();
    probe.close(() => done(port));
  });
});
const base = `http://127.0.0.1:${port}`;
const dir = mkdtempSync(join(tmpdir(), 'chat-echo-example-'));
const binary = process.env.CHAT_SERVER ?? join(root, 'target/debug/chat-server');
const [command, args] = existsSync(binary) ? [binary, []] : ['cargo', ['run', '-q', '-p', 'chat-server']];
const server = spawn(command, args, {
  cwd: root,
  stdio: ['ignore', 'ignore', 'inherit'],
  env: {
    ...process.env,
    CHAT_ADDR: `127.0.0.1:${port}`,
    CHAT_DATABASE_URL: `sqlite://${join(dir, 'chat.db')}`,
    CHAT_JWT_SECRET: jwtSecret,
    CHAT_PUSHER_APP_ID: app.id,
    CHAT_PUSHER_APP_KEY: app.key,
    CHAT_PUSHER_APP_SECRET: app.secret,
    CHAT_LOG: 'warn',
  },
});

/** The chat's bearer token for `user` (what a Laravel app would hand its front end). */
function token(user) {
  const part = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const unsigned = `${part({ alg: 'HS256', typ: 'JWT' })}.${part({ sub: String(user), exp: Math.floor(Date.now() / 1000) + 600 })}`;
  return `${unsigned}.${createHmac('sha256', jwtSecret).update(unsigned).digest('base64url')}`;
}

/** Echo for `user`, as `resources/js/echo.js` sets it up for Reverb. */
function echoFor(user) {
  return new Echo({
    broadcaster: 'reverb',
    key: app.key,
    wsHost: '127.0.0.1',
    wsPort: port,
    wssPort: port,
    forceTLS: false,
    enabledTransports: ['ws'],
    authEndpoint: `${base}/broadcasting/auth`,
    auth: { headers: { Authorization: `Bearer ${token(user)}` } },
    Pusher,
  });
}

async function api(user, method, path, body) {
  const response = await fetch(`${base}/api/chat${path}`, {
    method,
    headers: { authorization: `Bearer ${token(user)}`, 'content-type': 'application/json' },
    body: body && JSON.stringify(body),
  });
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${await response.text()}`);
  return response.json();
}

function waitFor(what, ms = 10000) {
  let settle;
  const promise = new Promise((resolve, reject) => {
    settle = resolve;
    setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms).unref();
  });
  return [promise, settle];
}

const echoes = [];
try {
  for (let attempt = 0; ; attempt++) {
    try {
      if ((await fetch(`${base}/health`)).ok) break;
    } catch {
      if (attempt > 600) throw new Error('the server did not start');
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const [alice, bob] = [1, 2];

  // Alice writes while Bob is offline.
  await api(alice, 'POST', '/send', { receiver_id: bob, message: 'Are you there?' });
  console.log('alice → bob (bob offline): Are you there?');

  const aliceEcho = echoFor(alice);
  const bobEcho = echoFor(bob);
  echoes.push(aliceEcho, bobEcho);

  const [read, onRead] = waitFor('MessageRead');
  aliceEcho.private(`chat.${alice}`).listen('MessageRead', ({ message }) => onRead(message));

  // Bob connects: the backlog first, then live messages.
  const [backlog, onBacklog] = waitFor('the backlog');
  const [live, onLive] = waitFor('a live message');
  const received = [];
  bobEcho.private(`chat.${bob}`).listen('MessageSent', ({ message }) => {
    if (message.sender_id !== alice) return;
    received.push(message);
    console.log(`bob received #${message.id}: ${message.message}`);
    if (received.length === 1) onBacklog();
    if (received.length === 2) onLive(message);
  });
  await backlog;

  // Both join the conversation's presence channel; Bob whispers that he is typing.
  const [here, onHere] = waitFor('presence');
  const [typing, onTyping] = waitFor('a whisper');
  aliceEcho
    .join(`chat.${alice}.${bob}`)
    .here((members) => members.length === 2 && onHere())
    .joining((member) => {
      console.log(`alice sees user ${member.id} join`);
      onHere();
    })
    .listenForWhisper('typing', () => onTyping());
  const bobRoom = bobEcho.join(`chat.${alice}.${bob}`);
  await here;
  bobRoom.whisper('typing', { typing: true });
  await typing;
  console.log('alice sees bob typing');

  await api(alice, 'POST', '/send', { receiver_id: bob, message: 'Lunch at noon?' });
  const message = await live;
  await api(bob, 'PATCH', `/read/${message.id}`);
  const seen = await read;
  console.log(`alice sees #${seen.id} ${seen.status}`);
  console.log('done');
} finally {
  for (const echo of echoes) echo.disconnect();
  server.kill('SIGTERM');
  await new Promise((r) => server.once('exit', r));
  rmSync(dir, { recursive: true, force: true });
}
