// Generates the Postman collection (docs/chat.postman_collection.json) from the
// server's OpenAPI document with openapi-to-postmanv2, or with `--check` fails when the
// committed collection differs from a fresh one.
//
//   node postman.mjs            write the collection
//   node postman.mjs --check    compare only (CI)
//
// The document comes from `chat-server openapi` (CHAT_SERVER names the binary;
// target/debug/chat-server by default).
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';


const ROOT = resolve(import.meta.dirname, '../..');
const BINARY = process.env.CHAT_SERVER ?? join(ROOT, 'target/debug/chat-server');
const OUTPUT = join(ROOT, 'docs/chat.postman_collection.json');

const OPTIONS = {
  folderStrategy: 'Tags',
  parametersResolution: 'Schema',
  includeAuthInfoInExample: false,
  enableOptionalParameters: false,
  alwaysInheritAuthentication: true,
};

/** A small seeded generator (mulberry32): the converter fakes example values with
 * `Math.random`, and the same seed makes the same collection every time. */
function seeded(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// The faker keeps the `Math.random` it finds when it loads: seed it first.
Math.random = seeded(2026);
const { default: Converter } = await import('openapi-to-postmanv2');

/** The collection for `spec`, with what the converter makes up at random made stable. */
async function collection(spec) {
  const result = await new Promise((done, fail) => {
    Converter.convert({ type: 'string', data: spec }, OPTIONS, (error, converted) =>
      error ? fail(error) : done(converted),
    );
  });
  if (!result.result) throw new Error(`conversion failed: ${result.reason}`);
  const generated = result.output[0].data;
  stabilize(generated, null);
  generated.info._postman_id = 'chat-api';
  // One place to set the server and the token: the collection's variables.
  generated.variable = [
    { key: 'baseUrl', value: 'http://127.0.0.1:8080', type: 'string' },
    { key: 'token', value: '', type: 'string' },
  ];
  generated.auth = { type: 'bearer', bearer: [{ key: 'token', value: '{{token}}', type: 'string' }] };
  return `${JSON.stringify(generated, null, 2)}\n`;
}

/** A time in the server's format, for the example bodies' times (faked from the clock). */
const EXAMPLE_TIME = '2026-01-02T03:04:05.123456Z';

/** Times as the faker writes them (now, moved by a random amount). */
const FAKED_TIME = /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z/g;

/** Drops the random ids the converter gives every request and response, and puts one
 * fixed time in place of every faked one (descriptions are the document's own text
 * and stay as they are). */
function stabilize(value, key) {
  if (Array.isArray(value)) {
    for (const element of value) {
      if ((key === 'item' || key === 'response') && element && typeof element === 'object') delete element.id;
      stabilize(element, key);
    }
  } else if (value && typeof value === 'object') {
    for (const [name, inner] of Object.entries(value)) {
      if (typeof inner === 'string' && name !== 'description' && name !== 'content') {
        value[name] = inner.replace(FAKED_TIME, EXAMPLE_TIME);
      } else {
        stabilize(inner, name);
      }
    }
  }
}

async function main() {
  const spec = execFileSync(BINARY, ['openapi'], { encoding: 'utf8', env: { ...process.env, CHAT_LOG: 'error' } });
  const fresh = await collection(spec);
  if (process.argv.includes('--check')) {
    let committed = '';
    try {
      committed = readFileSync(OUTPUT, 'utf8');
    } catch {
      // compared below as empty
    }
    if (committed !== fresh) {
      console.error('docs/chat.postman_collection.json is not current: run `npm --prefix tests/browser run postman` and commit it');
      process.exit(1);
    }
    console.log('docs/chat.postman_collection.json is current');
    return;
  }
  writeFileSync(OUTPUT, fresh);
  console.log(`wrote ${OUTPUT}`);
}

await main();
