// What the Node test suites against the real binary share: a free loopback port and
// waiting for a condition. No dependencies, so every suite can import it.
import { createServer } from 'node:net';

/** A free loopback port. */
export function freePort() {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => done(port));
    });
  });
}

/** Waits until `check` returns something truthy, or fails after `ms`. */
export async function eventually(check, ms = 5000, what = 'condition') {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
