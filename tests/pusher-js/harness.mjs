// Starts the real chat-server binary on a free loopback port with Pusher credentials,
// and gives the tests what a Laravel app has: tokens, Echo and pusher-js clients, the
// official `pusher` server library, and the REST API.
import { createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import { eventually, freePort, startProcess } from '../support/loopback.mjs';

import Pusher from 'pusher-js';
import Echo from 'laravel-echo';
import PusherServer from 'pusher';

export { eventually, freePort };

const ROOT = resolve(import.meta.dirname, '../..');
export const BINARY = process.env.CHAT_SERVER ?? join(ROOT, 'target/debug/chat-server');

export const APP = { id: 'test-app', key: 'test-key', secret: 'test-secret-0123456789' };

/**
 * One chat-server process. `env` adds settings; `database` shares a store between
 * nodes (a SQLite file by default, fresh per server).
 */
export async function startServer({ env = {}, database, secret, port: fixedPort, dir: fixedDir } = {}) {
  const port = fixedPort ?? (await freePort());
  const dir = fixedDir ?? mkdtempSync(join(tmpdir(), 'chat-pusher-'));
  const jwtSecret = secret ?? randomBytes(32).toString('hex');
  const settings = {
    ...process.env,
    CHAT_ADDR: `127.0.0.1:${port}`,
    CHAT_DATABASE_URL: database ?? `sqlite://${join(dir, 'chat.db')}`,
    CHAT_JWT_SECRET: jwtSecret,
    CHAT_PUSHER_APP_ID: APP.id,
    CHAT_PUSHER_APP_KEY: APP.key,
    CHAT_PUSHER_APP_SECRET: APP.secret,
    CHAT_LOG: 'warn',
    ...env,
  };
  const base = `http://127.0.0.1:${port}`;
  const running = await startProcess(BINARY, settings, base);
  return {
    port,
    base,
    dir,
    secret: jwtSecret,
    token: (user, ttlSeconds = 3600) => token(jwtSecret, user, ttlSeconds),
    /** Stops the process; `keep` leaves its database for a restart. */
    async stop({ keep = false } = {}) {
      await running.stop();
      if (!keep) rmSync(dir, { recursive: true, force: true });
    },
  };
}

function base64url(data) {
  return Buffer.from(data).toString('base64url');
}

/** An HS256 token for `user`, as the server's JWT authenticator reads it. */
export function token(secret, user, ttlSeconds = 3600) {
  const header = base64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const claims = base64url(
    JSON.stringify({ sub: String(user), exp: Math.floor(Date.now() / 1000) + ttlSeconds }),
  );
  const signature = createHmac('sha256', Buffer.from(secret, 'utf8'))
    .update(`${header}.${claims}`)
    .digest('base64url');
  return `${header}.${claims}.${signature}`;
}

/** A raw pusher-js client for `server`, authorizing with `user`'s token. */
export function pusherClient(server, { user, key = APP.key, options = {} } = {}) {
  return new Pusher(key, {
    wsHost: '127.0.0.1',
    wsPort: server.port,
    forceTLS: false,
    enabledTransports: ['ws'],
    cluster: 'mt1',
    channelAuthorization: {
      endpoint: `${server.base}/broadcasting/auth`,
      transport: 'ajax',
      headers: user ? { Authorization: `Bearer ${server.token(user)}` } : {},
    },
    ...options,
  });
}

/** Laravel Echo as a Laravel front end configures it for Reverb, pointed at `server`. */
export function echoClient(server, user, headers) {
  return new Echo({
    broadcaster: 'reverb',
    key: APP.key,
    wsHost: '127.0.0.1',
    wsPort: server.port,
    wssPort: server.port,
    forceTLS: false,
    enabledTransports: ['ws'],
    authEndpoint: `${server.base}/broadcasting/auth`,
    auth: { headers: headers ?? { Authorization: `Bearer ${server.token(user)}` } },
    Pusher,
  });
}

/** The official server library, as a Laravel back end with BROADCAST_CONNECTION=reverb. */
export function serverLibrary(server) {
  return new PusherServer({
    appId: APP.id,
    key: APP.key,
    secret: APP.secret,
    host: '127.0.0.1',
    port: String(server.port),
    useTLS: false,
  });
}

/** Sends a chat message through the REST API. */
export async function send(server, from, to, text) {
  const response = await fetch(`${server.base}/api/chat/send`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      authorization: `Bearer ${server.token(from)}`,
    },
    body: JSON.stringify({ receiver_id: to, message: text }),
  });
  if (response.status !== 201) {
    throw new Error(`send answered ${response.status}: ${await response.text()}`);
  }
  return (await response.json()).data;
}

/** Resolves once `pusher` is connected. */
export function connected(pusher) {
  return new Promise((done, fail) => {
    if (pusher.connection.state === 'connected') return done();
    pusher.connection.bind('connected', done);
    pusher.connection.bind('failed', () => fail(new Error('connection failed')));
    pusher.connection.bind('unavailable', () => fail(new Error('connection unavailable')));
  });
}

/** Collects what `bind` hands out, for waiting on it. */
export class Inbox {
  constructor() {
    this.items = [];
  }

  push = (item) => {
    this.items.push(item);
  };

  /** Waits for `count` items and returns them. */
  async take(count = 1, ms = 5000) {
    await eventually(() => this.items.length >= count, ms, `${count} event(s)`);
    return this.items.slice(0, count);
  }
}
