// The plumbing the SDK suites (anthropic-sdk, openai-sdk and langchain .test.mjs) share: starting
// the fake upstream (tests/fakes/upstream) and routerd on free ports and stopping them, talking to
// the fake's control endpoints (/_fake/queue, /_fake/requests, /_fake/stats), waiting for a log
// line or a condition, capturing what a client received, and a few assertions.
//
//   DUALROUTE_ROUTERD        path of dualroute-routerd (default: /work/main/build/routerd/...)
//   DUALROUTE_FAKE_UPSTREAM  path of fake-upstream      (default: /work/main/build/tests/fakes/...)
//
// Every child is killed (SIGKILL) when the test process exits, whatever became of the test.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';

export const ROUTERD =
  process.env.DUALROUTE_ROUTERD || '/work/main/build/routerd/dualroute-routerd';
export const FAKE_UPSTREAM =
  process.env.DUALROUTE_FAKE_UPSTREAM || '/work/main/build/tests/fakes/fake-upstream';

export const START_TIMEOUT_MS = 10_000;

/** Deletes every variable of this process's environment whose name matches `re`. */
export function dropEnv(re) {
  for (const name of Object.keys(process.env)) if (re.test(name)) delete process.env[name];
}

/** A fresh temporary directory, removed when the process exits. */
export function tempWorkDir(prefix) {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

// ---------------------------------------------------------------------------------------------
// Daemons

const children = new Set();
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

function childEnv(extra = {}) {
  const env = { ...process.env };
  for (const name of ['NOTIFY_SOCKET', 'CREDENTIALS_DIRECTORY', 'ROUTER_PORT', 'DUALROUTE_DEBUG'])
    delete env[name];
  return { ...env, ...extra };
}

/**
 * Starts `file args`, keeps all its output in daemon.log, and returns {daemon, ready}: `ready`
 * resolves to the match once a line of `stream` matches `re`.
 */
export function startDaemon(name, file, args, { env, stream, re, cwd }) {
  const child = spawn(file, args, { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  const daemon = { name, child, log: '', exit: null };
  daemon.exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      children.delete(child);
      daemon.exit = { code, signal };
      resolve(daemon.exit);
    });
  });
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new Error(`${name} did not get ready in ${START_TIMEOUT_MS} ms; output:\n${daemon.log}`),
      );
    }, START_TIMEOUT_MS);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot start ${name} (${file}): ${err.message}`));
    });
    daemon.exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(
        new Error(`${name} exited (${code ?? signal}) before it was ready; output:\n${daemon.log}`),
      );
    });
    for (const which of ['stdout', 'stderr']) {
      const lines = readline.createInterface({ input: child[which], crlfDelay: Infinity });
      lines.on('line', (line) => {
        daemon.log += `${line}\n`;
        const m = which === stream && line.match(re);
        if (m) {
          clearTimeout(timer);
          resolve(m);
        }
      });
    }
  });
  return { daemon, ready };
}

/** Waits for `ready` and sets daemon.port and daemon.url from the port it matched. */
async function listening({ daemon, ready }) {
  daemon.port = Number((await ready)[1]);
  daemon.url = `http://127.0.0.1:${daemon.port}`;
  return daemon;
}

/** SIGTERM, then SIGKILL if it has not gone in `ms`. Resolves to {code, signal}. */
export async function stopDaemon(daemon, ms = 10_000) {
  if (!daemon || daemon.exit) return daemon?.exit ?? null;
  daemon.child.kill('SIGTERM');
  let timer;
  const killed = new Promise((resolve) => {
    timer = setTimeout(() => {
      daemon.child.kill('SIGKILL');
      resolve();
    }, ms);
  });
  await Promise.race([daemon.exited, killed]);
  clearTimeout(timer);
  return daemon.exited;
}

/**
 * Starts the fake upstream on a free port (it prints PORT=<n> on stdout). The daemon it returns
 * also speaks the fake's control API:
 *   fake.control(method, path, body)  any control request; asserts a 2xx, returns the JSON
 *   fake.queue(scripts)               POST /_fake/queue (FIFO, shared by every request)
 *   fake.requests()                   GET /_fake/requests, the records of what it received
 *   fake.stats()                      GET /_fake/stats
 *   fake.record(requestId)            the record of the request answered with request-id
 *                                     req_fake_<n> (n is the record's id)
 */
export async function startFake() {
  const fake = await listening(
    startDaemon('fake-upstream', FAKE_UPSTREAM, ['--port', '0'], {
      env: childEnv(),
      stream: 'stdout',
      re: /^PORT=(\d+)$/,
    }),
  );
  fake.control = async (method, p, body) => {
    const res = await fetch(`${fake.url}${p}`, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    assert.ok(res.ok, `${method} ${p} -> ${res.status} ${text}`);
    return text ? JSON.parse(text) : null;
  };
  fake.queue = (scripts) => fake.control('POST', '/_fake/queue', scripts);
  fake.requests = () => fake.control('GET', '/_fake/requests');
  fake.stats = () => fake.control('GET', '/_fake/stats');
  fake.record = async (requestId) => {
    const m = /^req_fake_(\d+)$/.exec(requestId ?? '');
    assert.ok(m, `not a request id of the fake: ${requestId}`);
    const record = (await fake.requests()).find((r) => r.id === Number(m[1]));
    assert.ok(record, `the fake has no record of ${requestId}`);
    return record;
  };
  return fake;
}

/**
 * Starts routerd on a free port (it logs "listening on http://127.0.0.1:<n>" on stderr) in front
 * of `upstreamURL`, with `apiKey` as its own key (ANTHROPIC_API_KEY) and `cwd` as its working
 * directory (the test's own when not given).
 */
export function startRouterd(upstreamURL, extraArgs = [], { apiKey, cwd } = {}) {
  const args = ['--port', '0', '--upstream', upstreamURL, ...extraArgs];
  return listening(
    startDaemon('dualroute-routerd', ROUTERD, args, {
      env: childEnv({ ANTHROPIC_API_KEY: apiKey }),
      cwd,
      stream: 'stderr',
      re: /listening on http:\/\/127\.0\.0\.1:(\d+)/,
    }),
  );
}

/** A loopback port that nothing listens on (bound, then released). */
export async function closedPort() {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  server.close();
  await once(server, 'close');
  return port;
}

/** Checks `cond` (may be async) up to `tries` + 1 times, `ms` apart; resolves to its last say. */
export async function waitUntil(cond, { tries, ms = 50 }) {
  for (let i = 0; i < tries; i++) {
    if (await cond()) return true;
    await sleep(ms);
  }
  return Boolean(await cond());
}

/** Waits (40 x 50 ms by default) until `daemon` has logged `text`; resolves to whether it did. */
export const waitForLog = (daemon, text, { tries = 40, ms = 50 } = {}) =>
  waitUntil(() => daemon.log.includes(text), { tries, ms });

// ---------------------------------------------------------------------------------------------
// The fake's Anthropic side

/** The upstream model routerd maps gpt-4o to. */
export const UP_MODEL = 'claude-sonnet-4-6';

/** A complete Anthropic Message, for the fake to answer with. */
export function message(id, content, { stop_reason = 'end_turn', usage } = {}) {
  return {
    id,
    type: 'message',
    role: 'assistant',
    model: UP_MODEL,
    content,
    stop_reason,
    stop_sequence: null,
    usage: usage ?? { input_tokens: 30, output_tokens: 10 },
  };
}

/** The text of the fake's default answer, read from the fake itself (not through routerd). */
export async function fakeDefaultText(fake, { apiKey, messages }) {
  const res = await fetch(`${fake.url}/v1/messages`, {
    method: 'POST',
    headers: { 'x-api-key': apiKey, 'content-type': 'application/json' },
    body: JSON.stringify({ model: UP_MODEL, max_tokens: 10, messages }),
  });
  return (await res.json()).content[0].text;
}

/**
 * routerd reads the upstream's model list on its first chat request. Makes that request (an
 * OpenAI one, with `messages`) and waits for the list, so that no GET /v1/models of routerd's own
 * can take a script a test queued.
 */
export async function warmUp(fake, router, messages) {
  const lists = async () =>
    (await fake.requests()).filter(
      (r) => r.method === 'GET' && r.path.startsWith('/v1/models') && r.ended,
    ).length;
  const n0 = await lists();
  const res = await fetch(`${router.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o', messages }),
  });
  assert.equal(res.status, 200, await res.text());
  await waitUntil(async () => (await lists()) !== n0, { tries: 100 });
  assert.ok((await lists()) > n0, 'routerd read the model list');
}

// ---------------------------------------------------------------------------------------------
// Clients

/**
 * A fetch that keeps a copy of each response body (tee'd, so streams still stream), and the list
 * it keeps them in: {url, method, status, headers, request (the body sent), text: Promise<string>}.
 */
export function responseCapture() {
  const exchanges = [];
  async function capturingFetch(url, init = {}) {
    const res = await fetch(url, init);
    const ex = {
      url: String(url),
      method: init.method ?? 'GET',
      status: res.status,
      headers: res.headers,
      request: init.body,
    };
    exchanges.push(ex);
    if (!res.body) {
      ex.text = Promise.resolve('');
      return res;
    }
    const [mine, theirs] = res.body.tee();
    ex.text = new Response(mine).text().catch((err) => `<<read failed: ${err.message}>>`);
    return new Response(theirs, {
      status: res.status,
      statusText: res.statusText,
      headers: res.headers,
    });
  }
  return { exchanges, capturingFetch };
}

/** Awaits `promise`, which must reject, and returns what it rejected with. */
export async function rejection(promise, what = 'the call') {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  assert.fail(`${what} succeeded; an error was expected`);
}

export function assertErrorClass(err, Class, status) {
  assert.ok(
    err instanceof Class,
    `expected ${Class.name}, got ${err?.constructor?.name}: ${err?.message}\n${err?.stack}`,
  );
  assert.equal(err.status, status);
}
