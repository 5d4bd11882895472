// What the Node test suites against the real binary share: a free loopback port,
// waiting for a condition, and a server process that answers. No dependencies, so
// every suite can import it.
import { spawn } from 'node:child_process';
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

/**
 * Runs `binary` with `env` (a server listening at `base`) until it answers `/health`;
 * fails with what it printed if it exits first or does not answer within 20 s. Answers
 * the process and a `stop()` that ends it (SIGTERM) and waits.
 */
export async function startProcess(binary, env, base) {
  const child = spawn(binary, [], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk) => {
    stderr += chunk;
  });
  const exited = new Promise((r) => child.once('exit', r));
  try {
    await eventually(async () => {
      if (child.exitCode !== null) throw new Error(`chat-server exited: ${stderr}`);
      try {
        return (await fetch(`${base}/health`)).ok;
      } catch {
        return false;
      }
    }, 20000, 'the server to answer /health');
  } catch (error) {
    child.kill('SIGKILL');
    await exited;
    throw error;
  }
  return {
    child,
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
    },
  };
}
