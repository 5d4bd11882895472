// Starts the real chat-server binary in development mode (no key configured, so the
// demo page and `POST /dev/token` are on) on a free loopback port, and Debian's
// Chromium through playwright-core, kept off the network.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import { chromium } from 'playwright-core';

import { eventually, freePort, startProcess } from '../support/loopback.mjs';

export { eventually };

export const ROOT = resolve(import.meta.dirname, '../..');
export const BINARY = process.env.CHAT_SERVER ?? join(ROOT, 'target/debug/chat-server');
export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

/** Flags that keep Chromium to the loopback pages it is given. */
const CHROMIUM_FLAGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-dev-shm-usage',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-default-apps',
  '--disable-extensions',
  '--metrics-recording-only',
  '--no-default-browser-check',
];

/** One chat-server process in development mode on a fresh SQLite file; a port another
 * process took between choosing and binding it is chosen again. */
export async function startServer(env = {}) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(env);
    } catch (error) {
      if (attempt === 3 || !/cannot listen/.test(error.message)) throw error;
    }
  }
}

async function startOnce(env) {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'chat-browser-'));
  // None of the caller's own CHAT_* settings: only the ones asked for here.
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('CHAT_')));
  const settings = {
    ...inherited,
    CHAT_ADDR: `127.0.0.1:${port}`,
    CHAT_DATABASE_URL: `sqlite://${join(dir, 'chat.db')}`,
    CHAT_LOG: 'warn',
    ...env,
  };
  const base = `http://127.0.0.1:${port}`;
  let server;
  try {
    server = await startProcess(BINARY, settings, base);
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    base,
    /** A token from `chat-server token`, as an operator would mint one. */
    cliToken(user) {
      return execFileSync(BINARY, ['token', '--user', String(user)], { env: settings, encoding: 'utf8' }).trim();
    },
    /** A token from the development route, as the page gets one. */
    async devToken(user) {
      const response = await fetch(`${base}/dev/token`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ user_id: user }),
      });
      if (!response.ok) throw new Error(`POST /dev/token: ${response.status}`);
      return (await response.json()).token;
    },
    /** A REST call with `token`; answers `{status, body}`. */
    async api(token, method, path, body) {
      const response = await fetch(`${base}${path}`, {
        method,
        headers: {
          Authorization: `Bearer ${token}`,
          ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await response.text();
      return { status: response.status, body: text ? JSON.parse(text) : null };
    },
    async stop() {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Debian's Chromium, headless, in a fresh profile. */
export function launchBrowser() {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_FLAGS });
}

/** A new page in a context of its own (its own storage), with the script errors it
 * throws kept in `errors`. */
export async function newPage(browser, options = {}) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 680 }, ...options });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (error) => errors.push(error.message));
  return { context, page, errors };
}
