// The real Anthropic TypeScript SDK as the client of routerd, with routerd pointed at the fake
// upstream (tests/fakes/upstream). Run with `node --test anthropic-sdk.test.mjs` (run.sh does that
// for ctest after installing the pinned SDK).
//
// The file starts its own fake upstream and routerd on free ports and stops them at the end:
//   DUALROUTE_ROUTERD        path of dualroute-routerd (default: /work/main/build/routerd/...)
//   DUALROUTE_FAKE_UPSTREAM  path of fake-upstream      (default: /work/main/build/tests/fakes/...)
//
// How the fake is steered: the SDK sends the params of messages.create() as the JSON body without
// stripping unknown keys (only user_profile_id and workspace_id are taken out, as headers), so a
// POST carries its script as a top-level "fake" object; the first test proves the body reaches the
// fake byte for byte. GETs (models) carry no body, so their scripts are queued through
// POST /_fake/queue. Every reply of the fake has request-id: req_fake_<n>, where n is the id of
// its record in GET /_fake/requests, which is how a test finds what routerd sent upstream.
//
// Note on this SDK major (1.x): `apiKey` goes out as `Authorization: Bearer <key>` (0.x sent
// x-api-key); routerd accepts both, and a test covers each. The request's anthropic-version is the
// SDK's own, which routerd must forward unchanged.

import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import Anthropic, {
  APIConnectionError,
  APIError,
  AuthenticationError,
  BadRequestError,
  InternalServerError,
  NotFoundError,
  OverloadedError,
  RateLimitError,
} from '@anthropic-ai/sdk';

import {
  assertErrorClass,
  closedPort,
  dropEnv,
  rejection,
  startFake,
  startRouterd as startRouterdAt,
  stopDaemon,
  waitForLog,
} from './harness.mjs';

// The router's own key (what routerd sends upstream when the client's key is not an sk-ant key)
// and a client key that routerd must pass through instead.
const ROUTER_KEY = 'sk-ant-api03-router-key-for-the-sdk-suite-0000000000AA';
const CLIENT_KEY = 'sk-ant-api03-client-key-for-the-sdk-suite-1111111111BB';

const MODEL = 'claude-opus-4-7'; // one of the fake's models, and not deprecated in the SDK
const PARAMS = {
  model: MODEL,
  max_tokens: 256,
  messages: [{ role: 'user', content: 'How does an API router work?' }],
};

// The SDK reads ANTHROPIC_BASE_URL, ANTHROPIC_CUSTOM_HEADERS, ANTHROPIC_LOG and friends from the
// environment; none of the caller's may leak into this suite.
dropEnv(/^ANTHROPIC_/);

// Daemons and the fake's control API: harness.mjs.
let fake;
let routerd;
const startRouterd = (upstreamURL, extraArgs) =>
  startRouterdAt(upstreamURL, extraArgs, { apiKey: ROUTER_KEY });

// ---------------------------------------------------------------------------------------------
// Clients

/** What the SDK put on the wire, captured by a fetch wrapper: [{url, method, headers, body}]. */
const sent = [];
function recordingFetch(url, init = {}) {
  sent.push({
    url: String(url),
    method: init.method ?? 'GET',
    headers: new Headers(init.headers),
    body: typeof init.body === 'string' ? init.body : undefined,
  });
  return fetch(url, init);
}

function client(options = {}) {
  return new Anthropic({
    baseURL: routerd.url,
    apiKey: 'not-used',
    maxRetries: 0,
    timeout: 30_000,
    fetch: recordingFetch,
    ...options,
  });
}

// SSE helpers for scripted streams
const sse = (event, data) => `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
const EV = {
  messageStart: sse('message_start', {
    type: 'message_start',
    message: {
      id: 'msg_scripted',
      type: 'message',
      role: 'assistant',
      model: MODEL,
      content: [],
      stop_reason: null,
      stop_sequence: null,
      usage: { input_tokens: 5, output_tokens: 1 },
    },
  }),
  blockStart: sse('content_block_start', {
    type: 'content_block_start',
    index: 0,
    content_block: { type: 'text', text: '' },
  }),
  delta: (text) =>
    sse('content_block_delta', {
      type: 'content_block_delta',
      index: 0,
      delta: { type: 'text_delta', text },
    }),
  blockStop: sse('content_block_stop', { type: 'content_block_stop', index: 0 }),
  messageDelta: sse('message_delta', {
    type: 'message_delta',
    delta: { stop_reason: 'end_turn', stop_sequence: null },
    usage: { output_tokens: 2 },
  }),
  messageStop: sse('message_stop', { type: 'message_stop' }),
};

/** Iterates an SDK Stream; returns {events, error} (error undefined when it ended normally). */
async function drain(stream) {
  const events = [];
  try {
    for await (const event of stream) events.push(event);
  } catch (error) {
    return { events, error };
  }
  return { events, error: undefined };
}

// The default text of the fake, learnt from a non-streaming reply.
let defaultText;
async function getDefaultText() {
  if (defaultText === undefined) {
    const message = await client().messages.create(PARAMS);
    defaultText = message.content[0].text;
  }
  return defaultText;
}

// ---------------------------------------------------------------------------------------------

describe('Anthropic TypeScript SDK through routerd', () => {
  before(async () => {
    fake = await startFake();
    routerd = await startRouterd(fake.url);
  });

  after(async () => {
    await stopDaemon(routerd);
    await stopDaemon(fake);
  });

  beforeEach(async () => {
    await fake.control('DELETE', '/_fake/queue');
    sent.length = 0;
  });

  // -- success paths -------------------------------------------------------------------------

  test('messages.create: content, usage, request id; body and headers reach upstream', async () => {
    const params = { ...PARAMS, metadata: { user_id: 'sdk-suite' } };
    const { data, response, request_id } = await client()
      .messages.create(params, { headers: { 'anthropic-beta': 'sdk-suite-2026-11-25' } })
      .withResponse();

    assert.equal(response.status, 200);
    assert.equal(data.type, 'message');
    assert.equal(data.role, 'assistant');
    assert.equal(data.model, MODEL);
    assert.equal(data.stop_reason, 'end_turn');
    assert.equal(data.content.length, 1);
    assert.equal(data.content[0].type, 'text');
    assert.match(data.content[0].text, /^Sure! Here is a short overview/);
    assert.match(data.content[0].text, /traced later\.$/);
    assert.deepEqual(data.usage, {
      input_tokens: 28,
      output_tokens: 19,
      cache_creation_input_tokens: 0,
      cache_read_input_tokens: 0,
    });
    assert.match(request_id, /^req_fake_\d+$/);
    assert.equal(data._request_id, request_id);
    assert.match(response.headers.get('x-dualroute-request-id') ?? '', /^rq_[0-9a-f]+$/);

    // What the SDK sent vs what the fake received through routerd.
    assert.equal(sent.length, 1);
    const out = sent[0];
    assert.equal(out.url, `${routerd.url}/v1/messages`);
    assert.equal(out.headers.get('authorization'), 'Bearer not-used');
    const rec = await fake.record(request_id);
    assert.equal(rec.method, 'POST');
    assert.equal(rec.path, '/v1/messages');
    assert.equal(rec.body, out.body, 'the body must reach upstream byte for byte');
    assert.equal(rec.body, JSON.stringify(params));
    assert.equal(rec.headers['x-api-key'], ROUTER_KEY, '"not-used" is no key: the router key is used');
    assert.equal(rec.headers.authorization, undefined, 'the client credential must not go upstream');
    assert.equal(rec.headers['anthropic-version'], out.headers.get('anthropic-version'));
    assert.equal(rec.headers['anthropic-beta'], 'sdk-suite-2026-11-25');
    assert.equal(rec.headers['content-type'], 'application/json');
    assert.equal(rec.headers['x-stainless-retry-count'], undefined, 'only allow-listed headers go upstream');
    // The fake marks a request ended in its completion callback, which may run just after the
    // answer reached the client through routerd: wait for the mark instead of racing it.
    let ended = rec.ended;
    for (let i = 0; i < 40 && ended == null; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      ended = (await fake.record(request_id)).ended;
    }
    assert.equal(ended, 'complete');
  });

  test('unknown top-level params (the fake script) are forwarded by SDK and routerd', async () => {
    const { data, request_id } = await client()
      .messages.create({ ...PARAMS, fake: { body: { type: 'message', id: 'msg_x', content: [] } } })
      .withResponse();
    assert.equal(data.id, 'msg_x');
    const rec = await fake.record(request_id);
    assert.deepEqual(JSON.parse(rec.body).fake, { body: { type: 'message', id: 'msg_x', content: [] } });
  });

  test('a client sk-ant-api03 key is passed through (Authorization: Bearer, the 1.x default)', async () => {
    const { request_id } = await client({ apiKey: CLIENT_KEY }).messages.create(PARAMS).withResponse();
    assert.equal(sent[0].headers.get('authorization'), `Bearer ${CLIENT_KEY}`);
    const rec = await fake.record(request_id);
    assert.equal(rec.headers['x-api-key'], CLIENT_KEY);
    assert.equal(rec.headers.authorization, undefined);
  });

  test('a client sk-ant-api03 key in x-api-key (how 0.x SDKs send it) is passed through', async () => {
    const { request_id } = await client()
      .messages.create(PARAMS, { headers: { 'x-api-key': CLIENT_KEY, authorization: null } })
      .withResponse();
    assert.equal(sent[0].headers.get('x-api-key'), CLIENT_KEY);
    assert.equal(sent[0].headers.get('authorization'), null);
    const rec = await fake.record(request_id);
    assert.equal(rec.headers['x-api-key'], CLIENT_KEY);
  });

  test('messages.stream(): text events add up to the full text, finalMessage usage 28/19', async () => {
    const expected = await getDefaultText();
    const stream = client().messages.stream(PARAMS);
    let text = '';
    let textEvents = 0;
    const eventTypes = [];
    stream.on('text', (delta) => {
      text += delta;
      textEvents++;
    });
    stream.on('streamEvent', (event) => eventTypes.push(event.type));
    const final = await stream.finalMessage();

    assert.equal(text, expected);
    assert.equal(textEvents, 30);
    assert.equal(await stream.finalText(), expected);
    assert.equal(final.content[0].text, expected);
    assert.equal(final.usage.input_tokens, 28);
    assert.equal(final.usage.output_tokens, 19);
    assert.equal(final.stop_reason, 'end_turn');
    assert.equal(eventTypes.at(0), 'message_start');
    assert.equal(eventTypes.at(-1), 'message_stop');
    assert.match(stream.request_id ?? '', /^req_fake_\d+$/);
    const rec = await fake.record(stream.request_id);
    assert.equal(JSON.parse(rec.body).stream, true);
    assert.equal(rec.headers.accept, sent.at(-1).headers.get('accept'));

    // routerd counted the stream's tokens from the SSE events it relayed.
    const { response } = await stream.withResponse();
    const rq = response.headers.get('x-dualroute-request-id');
    assert.match(rq ?? '', /^rq_/);
    const tokensLine = `[${rq}] Tokens: input=28, output=19`;
    await waitForLog(routerd, tokensLine);
    assert.ok(routerd.log.includes(tokensLine), `routerd did not log "${tokensLine}"`);
  });

  test('messages.create({stream: true}): raw events arrive complete and in order', async () => {
    const expected = await getDefaultText();
    const { data: stream, response, request_id } = await client()
      .messages.create({ ...PARAMS, stream: true })
      .withResponse();
    assert.equal(response.headers.get('content-type')?.split(';')[0], 'text/event-stream');
    assert.match(request_id, /^req_fake_\d+$/);
    const { events, error } = await drain(stream);
    assert.equal(error, undefined, `the stream failed: ${error?.message}`);

    // The SDK drops ping; the other 35 of the fake's 36 events come through in order.
    const types = events.map((e) => e.type);
    assert.deepEqual(types, [
      'message_start',
      'content_block_start',
      ...Array(30).fill('content_block_delta'),
      'content_block_stop',
      'message_delta',
      'message_stop',
    ]);
    assert.equal(events[0].message.model, MODEL);
    assert.equal(events[0].message.usage.input_tokens, 28);
    assert.equal(events.find((e) => e.type === 'message_delta').usage.output_tokens, 19);
    const text = events
      .filter((e) => e.type === 'content_block_delta')
      .map((e) => e.delta.text)
      .join('');
    assert.equal(text, expected);
  });

  test('streaming is relayed as it arrives, not buffered', async () => {
    const DELAY = 600;
    const stream = client().messages.stream({
      ...PARAMS,
      fake: {
        chunks: [
          EV.messageStart,
          EV.blockStart,
          EV.delta('Hello'),
          { data: EV.delta(' world'), delay_ms: DELAY },
          EV.blockStop,
          EV.messageDelta,
          EV.messageStop,
        ],
      },
    });
    const times = [];
    stream.on('text', () => times.push(performance.now()));
    const final = await stream.finalMessage();
    assert.equal(final.content[0].text, 'Hello world');
    assert.equal(times.length, 2);
    assert.ok(
      times[1] - times[0] >= DELAY / 2,
      `the first delta arrived only ${Math.round(times[1] - times[0])} ms before the second`,
    );
  });

  test('messages.countTokens', async () => {
    const { data, request_id } = await client()
      .messages.countTokens({ model: MODEL, messages: PARAMS.messages })
      .withResponse();
    assert.deepEqual({ ...data }, { input_tokens: 42 });
    const rec = await fake.record(request_id);
    assert.equal(rec.method, 'POST');
    assert.equal(rec.path, '/v1/messages/count_tokens');
    assert.equal(rec.body, JSON.stringify({ model: MODEL, messages: PARAMS.messages }));
  });

  test('models.list(): auto-pagination over the fake list', async () => {
    const ids = [];
    for await (const model of client().models.list()) ids.push(model.id);
    assert.deepEqual(ids, ['claude-opus-4-7', 'claude-sonnet-4-5', 'claude-haiku-4-5']);
  });

  test('models.list(): iterPages follows has_more/last_id, query string kept upstream', async () => {
    const model = (id) => ({ type: 'model', id, display_name: id, created_at: '2026-01-01T00:00:00Z' });
    await fake.queue([
      { body: { data: [model('m-a'), model('m-b')], has_more: true, first_id: 'm-a', last_id: 'm-b' } },
      { body: { data: [model('m-c')], has_more: false, first_id: 'm-c', last_id: 'm-c' } },
    ]);
    const first = await client().models.list({ limit: 2 });
    const pages = [];
    for await (const page of first.iterPages()) pages.push(page.data.map((m) => m.id));
    assert.deepEqual(pages, [['m-a', 'm-b'], ['m-c']]);

    const paths = sent.map((s) => new URL(s.url)).map((u) => u.pathname + u.search);
    assert.equal(paths.length, 2);
    const records = (await fake.requests()).slice(-2);
    assert.deepEqual(
      records.map((r) => r.path),
      paths,
      'routerd must forward the path with its query string unchanged',
    );
    const q = new URL(records[1].path, 'http://x').searchParams;
    assert.equal(q.get('after_id'), 'm-b');
    assert.equal(q.get('limit'), '2');
    assert.ok(records.every((r) => r.method === 'GET'));
  });

  test('models.retrieve()', async () => {
    const { data, request_id } = await client().models.retrieve('claude-haiku-4-5').withResponse();
    assert.equal(data.id, 'claude-haiku-4-5');
    assert.equal(data.type, 'model');
    assert.equal(data.display_name, 'Claude Haiku 4.5');
    const rec = await fake.record(request_id);
    assert.equal(rec.path, '/v1/models/claude-haiku-4-5');
    assert.equal(rec.headers['x-api-key'], ROUTER_KEY);
  });

  // -- errors -------------------------------------------------------------------------------

  test('upstream 400 -> BadRequestError with the upstream body and request id', async () => {
    const err = await rejection(client().messages.create({ ...PARAMS, fake: { status: 400 } }));
    assertErrorClass(err, BadRequestError, 400);
    assert.equal(err.type, 'invalid_request_error');
    assert.match(err.requestID ?? '', /^req_fake_\d+$/);
    assert.equal(err.error.request_id, err.requestID);
    assert.match(err.headers.get('x-dualroute-request-id') ?? '', /^rq_/);
  });

  test("routerd's own 400 (malformed JSON) -> BadRequestError, nothing sent upstream", async () => {
    const before = (await fake.stats()).requests;
    const err = await rejection(
      client().post('/v1/messages', {
        body: '{"model": "claude-opus-4-7", ',
        headers: { 'content-type': 'application/json' },
      }),
    );
    assertErrorClass(err, BadRequestError, 400);
    assert.equal(err.error.type, 'error');
    assert.equal(err.type, 'invalid_request_error');
    assert.equal(err.error.request_id, err.headers.get('x-dualroute-request-id'));
    assert.equal((await fake.stats()).requests, before);
  });

  test('subscription token sk-ant-oat01-… -> AuthenticationError from routerd itself', async () => {
    const before = (await fake.stats()).requests;
    const err = await rejection(client({ apiKey: 'sk-ant-oat01-x' }).messages.create(PARAMS));
    assertErrorClass(err, AuthenticationError, 401);
    assert.equal(err.type, 'authentication_error');
    assert.equal(err.requestID ?? null, null, 'no upstream request-id: routerd answered');
    assert.equal(err.error.request_id, err.headers.get('x-dualroute-request-id'));
    assert.equal((await fake.stats()).requests, before, 'the token must not reach upstream');
  });

  test("upstream 401 (the client's own key is invalid) -> AuthenticationError", async () => {
    const err = await rejection(client({ apiKey: 'sk-ant-api03-invalid' }).messages.create(PARAMS));
    assertErrorClass(err, AuthenticationError, 401);
    assert.equal(err.type, 'authentication_error');
    assert.match(err.requestID ?? '', /^req_fake_\d+$/);
  });

  test('404 -> NotFoundError (scripted, unknown model, unknown path)', async () => {
    let err = await rejection(client().messages.create({ ...PARAMS, fake: { status: 404 } }));
    assertErrorClass(err, NotFoundError, 404);
    assert.equal(err.type, 'not_found_error');

    err = await rejection(client().models.retrieve('claude-no-such-model'));
    assertErrorClass(err, NotFoundError, 404);
    assert.match(err.requestID ?? '', /^req_fake_\d+$/);
    assert.match(err.message, /claude-no-such-model/);

    // routerd's own 404 for a path it does not serve (Anthropic shape: the SDK sends
    // anthropic-version).
    err = await rejection(client().get('/v1/no-such-endpoint'));
    assertErrorClass(err, NotFoundError, 404);
    assert.equal(err.error.type, 'error');
    assert.equal(err.type, 'not_found_error');
  });

  test('429 with retry-after -> RateLimitError, retry-after visible on the error', async () => {
    const err = await rejection(
      client().messages.create({ ...PARAMS, fake: { status: 429, headers: { 'retry-after': '7' } } }),
    );
    assertErrorClass(err, RateLimitError, 429);
    assert.equal(err.type, 'rate_limit_error');
    assert.equal(err.headers.get('retry-after'), '7');
  });

  test('retry-after-ms comes through: with retries on, the SDK waits and retries a 429', async () => {
    await fake.queue({ status: 429, headers: { 'retry-after-ms': '100', 'retry-after': '60' } });
    const started = performance.now();
    const { request_id } = await client({ maxRetries: 1 }).messages.create(PARAMS).withResponse();
    const elapsed = performance.now() - started;
    assert.equal(sent.length, 2, 'one retry');
    assert.ok(elapsed >= 90, `retried after ${Math.round(elapsed)} ms, before retry-after-ms`);
    assert.ok(elapsed < 30_000, 'retry-after-ms (100) must win over retry-after (60 s)');
    assert.match(request_id, /^req_fake_\d+$/);
  });

  test('x-should-retry: false comes through: the SDK does not retry that 500', async () => {
    const err = await rejection(
      client({ maxRetries: 2 }).messages.create({
        ...PARAMS,
        fake: { status: 500, headers: { 'x-should-retry': 'false' } },
      }),
    );
    assertErrorClass(err, InternalServerError, 500);
    assert.equal(sent.length, 1);
  });

  test('upstream 500 -> InternalServerError', async () => {
    const err = await rejection(client().messages.create({ ...PARAMS, fake: { status: 500 } }));
    assertErrorClass(err, InternalServerError, 500);
    assert.equal(err.constructor, InternalServerError);
    assert.equal(err.type, 'api_error');
  });

  test('upstream 529 -> APIError with status 529 (OverloadedError), not retried', async () => {
    const before = (await fake.stats()).requests;
    const err = await rejection(client().messages.create({ ...PARAMS, fake: { status: 529 } }));
    assertErrorClass(err, APIError, 529);
    assert.ok(err instanceof OverloadedError, `got ${err.constructor.name}`);
    assert.equal(err.type, 'overloaded_error');
    assert.equal(sent.length, 1);
    assert.equal((await fake.stats()).requests, before + 1);
  });

  // -- failures inside a stream ---------------------------------------------------------------

  test('mid-stream cut (create stream:true): the iterator throws an APIError', async () => {
    const expected = await getDefaultText();
    const stream = await client().messages.create({ ...PARAMS, stream: true, fake: { cut_after: 5 } });
    const { events, error } = await drain(stream);
    assert.ok(error, `the stream ended normally after ${events.length} events; it must fail`);
    assert.ok(error instanceof APIError, `got ${error.constructor.name}: ${error.message}`);
    assert.equal(error.status, undefined, 'an error event in a 200 stream has no status');
    assert.equal(error.type, 'api_error');
    assert.equal(error.error?.type, 'error');
    // Before the cut: at most message_start, content_block_start and two deltas (ping dropped).
    const types = events.map((e) => e.type);
    assert.deepEqual(
      types,
      ['message_start', 'content_block_start', 'content_block_delta', 'content_block_delta'].slice(
        0,
        types.length,
      ),
    );
    const text = events.filter((e) => e.type === 'content_block_delta').map((e) => e.delta.text).join('');
    assert.ok(expected.startsWith(text));
    assert.ok(!types.includes('message_stop'));
  });

  test('mid-stream cut (messages.stream): finalMessage rejects with an APIError', async () => {
    const stream = client().messages.stream({ ...PARAMS, fake: { cut_after: 8 } });
    let emitted;
    stream.on('error', (err) => {
      emitted = err;
    });
    const err = await rejection(stream.finalMessage(), 'finalMessage()');
    assert.ok(err instanceof APIError, `got ${err.constructor.name}: ${err.message}`);
    assert.equal(err.type, 'api_error');
    assert.equal(emitted, err);
  });

  test('a stream that ends cleanly without message_stop -> the iterator throws an APIError', async () => {
    const stream = await client().messages.create({
      ...PARAMS,
      stream: true,
      fake: { chunks: [EV.messageStart, EV.blockStart, EV.delta('Hel')] },
    });
    const { events, error } = await drain(stream);
    assert.deepEqual(
      events.map((e) => e.type),
      ['message_start', 'content_block_start', 'content_block_delta'],
    );
    assert.ok(error instanceof APIError, `got ${error?.constructor?.name}: ${error?.message}`);
    assert.equal(error.type, 'api_error');
  });

  test("an upstream error event mid-stream reaches the SDK as the upstream's error", async () => {
    const stream = await client().messages.create({
      ...PARAMS,
      stream: true,
      fake: {
        chunks: [
          EV.messageStart,
          sse('error', { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } }),
        ],
      },
    });
    const { events, error } = await drain(stream);
    assert.deepEqual(events.map((e) => e.type), ['message_start']);
    assert.ok(error instanceof APIError, `got ${error?.constructor?.name}: ${error?.message}`);
    assert.equal(error.type, 'overloaded_error');
    assert.equal(error.apiMessage, 'Overloaded');
  });

  // -- transport failures ---------------------------------------------------------------------

  test('upstream unreachable -> InternalServerError with status 502 (not APIConnectionError)', async () => {
    // The SDK reached routerd and got an HTTP answer, so it must see an HTTP error (502 Bad
    // Gateway, which the SDK maps to InternalServerError as it does any 5xx without a class of its
    // own); APIConnectionError is for when the SDK cannot reach its base URL at all (next test).
    const port = await closedPort();
    const lonely = await startRouterd(`http://127.0.0.1:${port}`, [
      '--set',
      'upstream_connect_timeout=3s',
    ]);
    try {
      const err = await rejection(client({ baseURL: lonely.url }).messages.create(PARAMS));
      assertErrorClass(err, InternalServerError, 502);
      assert.ok(!(err instanceof APIConnectionError));
      assert.equal(err.error?.type, 'error');
      assert.equal(err.type, 'api_error');
      assert.equal(err.requestID ?? null, null);
      assert.equal(err.error.request_id, err.headers.get('x-dualroute-request-id'));
      assert.equal(sent.length, 1, 'maxRetries 0: no retry');
    } finally {
      const exit = await stopDaemon(lonely);
      assert.deepEqual(exit, { code: 0, signal: null });
    }
  });

  test('routerd itself unreachable -> APIConnectionError (for contrast)', async () => {
    const port = await closedPort();
    const err = await rejection(client({ baseURL: `http://127.0.0.1:${port}` }).messages.create(PARAMS));
    assert.ok(err instanceof APIConnectionError, `got ${err.constructor.name}: ${err.message}`);
    assert.equal(err.status, undefined);
  });

  test('routerd exits 0 on SIGTERM', async () => {
    const exit = await stopDaemon(routerd);
    assert.deepEqual(exit, { code: 0, signal: null }, `routerd log:\n${routerd.log}`);
  });
});
