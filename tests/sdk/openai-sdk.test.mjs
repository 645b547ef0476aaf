// The real OpenAI TypeScript SDK as the client of routerd's OpenAI endpoint (/v1/chat/completions,
// translated to Anthropic Messages, and /v1/models), with routerd pointed at the fake upstream
// (tests/fakes/upstream). Run with `node --test openai-sdk.test.mjs` (run.sh does that for ctest
// after installing the pinned packages).
//
// The file starts its own fake upstream and routerd on free ports and stops them at the end:
//   DUALROUTE_ROUTERD        path of dualroute-routerd (default: /work/main/build/routerd/...)
//   DUALROUTE_FAKE_UPSTREAM  path of fake-upstream      (default: /work/main/build/tests/fakes/...)
//
// How the fake is steered: routerd's translator drops every request field it does not know, so a
// script cannot ride in the chat request's body. Each test queues the reply it needs through
// POST /_fake/queue right before its one upstream call; the queue is FIFO and shared by every
// request, so the tests run one after another (node:test runs a file's tests serially) and the
// queue is cleared before each. routerd reads the upstream's model list on its first chat
// request; before() makes that request and waits for the list, so no later GET /v1/models can
// take a queued script.
//
// What routerd sent upstream is read from the fake's record: routerd copies the fake's request-id
// (req_fake_<n>, n the record's id) into x-request-id, which the SDK reports as request_id.
//
// Every body routerd answers and every chunk it streams is validated against OpenAI's OpenAPI
// description (schema.mjs): a custom fetch hands the SDK a copy of each response and keeps the
// raw text, so the validation sees exactly routerd's bytes.
//
// The rules checked are TRANSLATION.md's, sections (a) and (b), in the team's shared/ folder.

import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';

import OpenAI, {
  APIError,
  AuthenticationError,
  BadRequestError,
  InternalServerError,
  NotFoundError,
  PermissionDeniedError,
  RateLimitError,
} from 'openai';
import { zodResponseFormat } from 'openai/helpers/zod';
import { z } from 'zod';

import { assertValid } from './schema.mjs';
import {
  UP_MODEL,
  assertErrorClass,
  dropEnv,
  fakeDefaultText,
  message,
  rejection,
  responseCapture,
  startFake,
  startRouterd as startRouterdAt,
  stopDaemon,
  tempWorkDir,
  warmUp as warmUpAt,
} from './harness.mjs';

const ROUTER_KEY = 'sk-ant-api03-router-key-for-the-openai-suite-000000000AA';

// The SDK reads OPENAI_BASE_URL, OPENAI_LOG and friends; routerd reads ANTHROPIC_DEFAULT_MODEL.
// None of the caller's may leak into this suite.
dropEnv(/^(OPENAI_|ANTHROPIC_)/);

// ---------------------------------------------------------------------------------------------
// Daemons (harness.mjs), and what the fake was sent

// routerd runs in an empty directory: a .router-mappings.json in the caller's would change the
// model mapping under test.
const workDir = tempWorkDir('dualroute-openai-sdk-');
const startRouterd = (upstreamURL, extraArgs) =>
  startRouterdAt(upstreamURL, extraArgs, { apiKey: ROUTER_KEY, cwd: workDir });
const warmUp = (router) => warmUpAt(fake, router, USER_HI);

let fake;
let routerd;

/** The JSON body routerd sent upstream for the answer with request id `requestId`. */
async function upstreamBody(requestId) {
  const record = await fake.record(requestId);
  assert.equal(record.method, 'POST');
  assert.equal(record.path, '/v1/messages');
  return JSON.parse(record.body);
}

const messagesRecords = async () =>
  (await fake.requests()).filter((r) => r.method === 'POST' && r.path.startsWith('/v1/messages'));

// ---------------------------------------------------------------------------------------------
// Anthropic replies for the queue

const sse = (event, data) => `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
const A = {
  messageStart: (id, usage = { input_tokens: 12, output_tokens: 1 }) =>
    sse('message_start', {
      type: 'message_start',
      message: {
        id,
        type: 'message',
        role: 'assistant',
        model: UP_MODEL,
        content: [],
        stop_reason: null,
        stop_sequence: null,
        usage,
      },
    }),
  textStart: (index) =>
    sse('content_block_start', {
      type: 'content_block_start',
      index,
      content_block: { type: 'text', text: '' },
    }),
  text: (index, text) =>
    sse('content_block_delta', {
      type: 'content_block_delta',
      index,
      delta: { type: 'text_delta', text },
    }),
  toolStart: (index, id, name) =>
    sse('content_block_start', {
      type: 'content_block_start',
      index,
      content_block: { type: 'tool_use', id, name, input: {} },
    }),
  json: (index, partial_json) =>
    sse('content_block_delta', {
      type: 'content_block_delta',
      index,
      delta: { type: 'input_json_delta', partial_json },
    }),
  stop: (index) => sse('content_block_stop', { type: 'content_block_stop', index }),
  messageDelta: (stop_reason, output_tokens = 5) =>
    sse('message_delta', {
      type: 'message_delta',
      delta: { stop_reason, stop_sequence: null },
      usage: { output_tokens },
    }),
  messageStop: sse('message_stop', { type: 'message_stop' }),
  ping: sse('ping', { type: 'ping' }),
};

const WEATHER_TOOL = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'The current weather in a city',
    parameters: {
      type: 'object',
      properties: { city: { type: 'string' } },
      required: ['city'],
      additionalProperties: false,
    },
  },
};

// E2 of TRANSLATION.md: text, then two tool calls, streamed (one SSE event per chunk).
const TWO_TOOLS_STREAM = [
  A.messageStart('msg_01TwoTools', {
    input_tokens: 512,
    cache_creation_input_tokens: 0,
    cache_read_input_tokens: 0,
    output_tokens: 2,
  }),
  A.textStart(0),
  A.text(0, 'Checking both cities.'),
  A.stop(0),
  A.toolStart(1, 'toolu_01A', 'get_weather'),
  A.json(1, ''),
  A.json(1, '{"city": "Par'),
  A.json(1, 'is"}'),
  A.stop(1),
  A.toolStart(2, 'toolu_01B', 'get_weather'),
  A.json(2, '{"city": '),
  A.json(2, '"Rome"}'),
  A.stop(2),
  A.messageDelta('tool_use', 71),
  A.messageStop,
];

// ---------------------------------------------------------------------------------------------
// Clients, and what they received

/** Every response routerd gave the SDK: {url, method, status, headers, text: Promise<string>}. */
const { exchanges, capturingFetch } = responseCapture();

function client(options = {}) {
  return new OpenAI({
    baseURL: `${routerd.url}/v1`,
    apiKey: 'not-used',
    maxRetries: 0,
    timeout: 30_000,
    fetch: capturingFetch,
    ...options,
  });
}

/** The last response captured, its body read whole. */
async function lastExchange() {
  assert.ok(exchanges.length > 0, 'no response was captured');
  const ex = exchanges.at(-1);
  return { ...ex, body: await ex.text };
}

/**
 * Parses an SSE body as the OpenAI SDK would: returns {datas (raw data strings), comments,
 * eventLines (any `event:` field), done (a data: [DONE] was seen), afterDone (data after it)}.
 */
function parseSSE(text) {
  const out = { datas: [], comments: [], eventLines: [], done: false, afterDone: 0 };
  for (const block of text.split(/\r?\n\r?\n/)) {
    const data = [];
    for (const line of block.split(/\r?\n/)) {
      if (line === '') continue;
      if (line.startsWith(':')) out.comments.push(line);
      else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      else if (line.startsWith('event:')) out.eventLines.push(line);
    }
    if (data.length === 0) continue;
    const d = data.join('\n');
    if (out.done) out.afterDone++;
    if (d === '[DONE]') out.done = true;
    else out.datas.push(d);
  }
  return out;
}

/** Validates every chunk of a chat stream; returns {chunks, errors (the {"error"} data), sse}. */
function checkStream(text, what = 'chunk') {
  const s = parseSSE(text);
  assert.deepEqual(s.eventLines, [], 'no SSE event: field on the OpenAI endpoint (3.4)');
  const chunks = [];
  const errors = [];
  s.datas.forEach((d, i) => {
    const j = JSON.parse(d);
    if (j && j.error !== undefined) {
      assertValid('ErrorResponse', j, `${what} ${i} (error)`);
      errors.push(j);
    } else {
      assertValid('CreateChatCompletionStreamResponse', j, `${what} ${i}`);
      chunks.push(j);
    }
  });
  assert.equal(s.afterDone, 0, 'nothing after data: [DONE]');
  return { chunks, errors, sse: s };
}

/** Checks the chunk envelope rules of 3.4 that the schema does not: same id/created/model. */
function checkEnvelope(chunks, model) {
  assert.ok(chunks.length > 0);
  const { id, created } = chunks[0];
  for (const c of chunks) {
    assert.equal(c.object, 'chat.completion.chunk');
    assert.equal(c.id, id, 'every chunk has the same id');
    assert.equal(c.created, created, 'every chunk has the same created');
    assert.equal(c.model, model, 'every chunk echoes the requested model');
  }
  assert.deepEqual(
    chunks[0].choices[0].delta.role,
    'assistant',
    'the first chunk carries the role',
  );
}

/** Iterates an SDK Stream; returns {chunks, error} (error undefined when it ended normally). */
async function drain(stream) {
  const chunks = [];
  try {
    for await (const chunk of stream) chunks.push(chunk);
  } catch (error) {
    return { chunks, error };
  }
  return { chunks, error: undefined };
}

const contentOf = (chunks) => chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');

/** The tool calls a client accumulates from stream chunks, by index. */
function accumulateToolCalls(chunks) {
  const calls = [];
  for (const c of chunks)
    for (const tc of c.choices[0]?.delta?.tool_calls ?? []) {
      calls[tc.index] ??= { id: undefined, name: undefined, arguments: '' };
      if (tc.id !== undefined) calls[tc.index].id = tc.id;
      if (tc.function?.name !== undefined) calls[tc.index].name = tc.function.name;
      calls[tc.index].arguments += tc.function?.arguments ?? '';
    }
  return calls;
}

// A 1x1 transparent PNG.
const PNG_B64 =
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==';

const USER_HI = [{ role: 'user', content: 'How does an API router work?' }];

// The default answer of the fake (its text, read from the fake itself, not through routerd).
let defaultText;

// ---------------------------------------------------------------------------------------------

before(async () => {
  fake = await startFake();
  defaultText = await fakeDefaultText(fake, { apiKey: ROUTER_KEY, messages: USER_HI });
  assert.ok(defaultText.length > 100);
});

after(async () => {
  await stopDaemon(fake);
});

describe('OpenAI TypeScript SDK through routerd', () => {
  before(async () => {
    routerd = await startRouterd(fake.url);
    await warmUp(routerd);
  });

  after(async () => {
    await stopDaemon(routerd);
  });

  beforeEach(async () => {
    await fake.control('DELETE', '/_fake/queue');
    exchanges.length = 0;
  });

  // -- non-streaming ---------------------------------------------------------------------------

  test('plain completion: content, usage, id, finish_reason, requested model echoed', async () => {
    const { data, request_id, response } = await client()
      .chat.completions.create({ model: 'gpt-4o', messages: USER_HI })
      .withResponse();
    const raw = await lastExchange();
    assert.equal(raw.status, 200);
    assert.match(raw.headers.get('content-type'), /^application\/json/);
    assertValid('CreateChatCompletionResponse', JSON.parse(raw.body), 'the response body');

    assert.equal(data.object, 'chat.completion');
    assert.match(data.id, /^msg_fake_\d+$/, 'id is the Anthropic message id (3.1)');
    assert.equal(data.model, 'gpt-4o', 'the model the client asked for is echoed');
    assert.ok(Number.isInteger(data.created) && Math.abs(data.created - Date.now() / 1000) < 60);
    assert.equal(data.choices.length, 1);
    const [choice] = data.choices;
    assert.equal(choice.index, 0);
    assert.equal(choice.finish_reason, 'stop');
    assert.equal(choice.logprobs, null);
    assert.equal(choice.message.role, 'assistant');
    assert.equal(choice.message.content, defaultText);
    assert.equal(choice.message.refusal, null);
    assert.equal(choice.message.tool_calls, undefined, 'no tool_calls key without tool calls');
    assert.equal('system_fingerprint' in data, false, 'system_fingerprint is omitted (3.1)');
    // The fake's usage: input 28, output 19, no cache (3.3).
    assert.equal(data.usage.prompt_tokens, 28);
    assert.equal(data.usage.completion_tokens, 19);
    assert.equal(data.usage.total_tokens, 47);
    assert.equal(data.usage.prompt_tokens_details.cached_tokens, 0);
    // The request id: upstream's request-id, also as x-request-id (3.5).
    assert.match(request_id, /^req_fake_\d+$/);
    assert.equal(response.headers.get('request-id'), request_id);
  });

  test('usage with cache and thinking figures (3.3), service_tier mapped', async () => {
    await fake.queue({
      body: message('msg_usage', [{ type: 'text', text: 'ok' }], {
        usage: {
          input_tokens: 100,
          cache_read_input_tokens: 2000,
          cache_creation_input_tokens: 300,
          output_tokens: 50,
          output_tokens_details: { thinking_tokens: 20 },
          service_tier: 'standard',
        },
      }),
    });
    const data = await client().chat.completions.create({ model: 'gpt-4o', messages: USER_HI });
    assertValid('CreateChatCompletionResponse', JSON.parse((await lastExchange()).body));
    assert.deepEqual(data.usage, {
      prompt_tokens: 2400,
      completion_tokens: 50,
      total_tokens: 2450,
      prompt_tokens_details: { cached_tokens: 2000, cache_write_tokens: 300 },
      completion_tokens_details: { reasoning_tokens: 20 },
    });
    assert.equal(data.id, 'msg_usage');
    assert.equal(data.service_tier, 'default');
  });

  test('the upstream request is a correct Anthropic body: model mapped, system hoisted, max_tokens', async () => {
    const { request_id } = await client()
      .chat.completions.create({
        model: 'gpt-4o',
        messages: [
          { role: 'system', content: 'You are terse.' },
          { role: 'developer', content: 'Answer in English.' },
          { role: 'user', content: 'Hi' },
          { role: 'assistant', content: 'Hello.' },
          { role: 'user', content: 'How are you?' },
        ],
        temperature: 0.25,
        stop: ['END'],
        seed: 7,
        presence_penalty: 0.5,
        logprobs: false,
        user: 'u-123',
      })
      .withResponse();
    const record = await fake.record(request_id);
    const body = JSON.parse(record.body);
    assert.equal(body.model, 'claude-sonnet-4-6', 'gpt-4o maps to Sonnet by pattern');
    assert.deepEqual(body.system, [
      { type: 'text', text: 'You are terse.' },
      { type: 'text', text: 'Answer in English.' },
    ]);
    assert.deepEqual(
      body.messages.map((m) => m.role),
      ['user', 'assistant', 'user'],
      'system/developer leave messages',
    );
    const texts = body.messages.map((m) =>
      typeof m.content === 'string' ? m.content : m.content.map((b) => b.text).join(''),
    );
    assert.deepEqual(texts, ['Hi', 'Hello.', 'How are you?']);
    // No max_tokens from the client, not streaming: the model maximum capped at 16384 (2.1).
    assert.equal(body.max_tokens, 16384);
    assert.equal(body.temperature, 0.25);
    assert.deepEqual(body.stop_sequences, ['END']);
    assert.deepEqual(body.metadata, { user_id: 'u-123' });
    for (const k of ['seed', 'presence_penalty', 'logprobs', 'user', 'n', 'stop', 'stream'])
      assert.equal(k in body, false, `${k} is not sent upstream`);
    // Headers: fixed version, the router's key, JSON (2.7).
    assert.equal(record.headers['anthropic-version'], '2023-06-01');
    assert.equal(record.headers['x-api-key'], ROUTER_KEY);
    assert.equal(record.headers.authorization, undefined);
    assert.match(
      record.headers['content-type'] ?? '(none)',
      /^application\/json/,
      'the translated body goes upstream as content-type: application/json (2.7)',
    );
  });

  test('max_tokens: max_completion_tokens wins; streaming default is the model maximum', async () => {
    const c = client();
    let r = await c.chat.completions
      .create({ model: 'gpt-4o', messages: USER_HI, max_tokens: 100, max_completion_tokens: 55 })
      .withResponse();
    assert.equal((await upstreamBody(r.request_id)).max_tokens, 55);

    r = await c.chat.completions
      .create({ model: 'gpt-4o', messages: USER_HI, stream: true })
      .withResponse();
    await drain(r.data);
    const body = await upstreamBody(r.request_id);
    assert.equal(body.stream, true);
    assert.equal(body.max_tokens, 128000, "Sonnet 4.6's maximum output for a streaming request");
  });

  // -- streaming -------------------------------------------------------------------------------

  test('streaming: content accumulates, one finish chunk, [DONE] ends it, SDK stops cleanly', async () => {
    const { data: stream, request_id } = await client()
      .chat.completions.create({ model: 'gpt-4o', messages: USER_HI, stream: true })
      .withResponse();
    const { chunks, error } = await drain(stream);
    assert.equal(error, undefined, `the stream ended with ${error}`);
    assert.equal(contentOf(chunks), defaultText);

    const raw = await lastExchange();
    assert.equal(raw.status, 200);
    assert.match(raw.headers.get('content-type'), /^text\/event-stream/);
    assert.equal(raw.headers.get('cache-control'), 'no-cache', '3.4 response headers');
    assert.equal(raw.headers.get('x-accel-buffering'), 'no', '3.4 response headers');
    const { chunks: wire, errors, sse: s } = checkStream(raw.body);
    assert.deepEqual(errors, []);
    assert.ok(s.done, 'the stream ends with data: [DONE]');
    assert.equal(wire.length, chunks.length, 'the SDK yielded every chunk routerd sent');
    checkEnvelope(wire, 'gpt-4o');
    assert.equal(wire[0].id, request_id.replace('req_fake_', 'msg_fake_'));
    const finishing = wire.filter((c) => c.choices[0]?.finish_reason != null);
    assert.equal(finishing.length, 1, 'exactly one finish chunk');
    assert.equal(finishing[0].choices[0].finish_reason, 'stop');
    assert.deepEqual(finishing[0].choices[0].delta, {});
    assert.equal(wire.at(-1), finishing[0], 'the finish chunk is the last chunk');
    for (const c of wire) {
      assert.equal('usage' in c, false, 'no usage key without stream_options.include_usage (3.4)');
      assert.equal(c.choices.length, 1);
      assert.equal(c.choices[0].logprobs, null);
    }
  });

  test('streaming with include_usage: usage null on every chunk, then choices [] + usage', async () => {
    const stream = await client().chat.completions.create({
      model: 'gpt-4o',
      messages: USER_HI,
      stream: true,
      stream_options: { include_usage: true },
    });
    const { chunks, error } = await drain(stream);
    assert.equal(error, undefined);
    assert.equal(contentOf(chunks), defaultText);

    const { chunks: wire, sse: s } = checkStream((await lastExchange()).body);
    assert.ok(s.done);
    checkEnvelope(wire, 'gpt-4o');
    const last = wire.at(-1);
    assert.deepEqual(last.choices, [], 'the usage chunk has choices: []');
    assert.equal(last.usage.prompt_tokens, 28);
    assert.equal(last.usage.completion_tokens, 19);
    assert.equal(last.usage.total_tokens, 47);
    for (const c of wire.slice(0, -1)) {
      assert.ok('usage' in c, 'every other chunk has a usage key');
      assert.equal(c.usage, null, 'and it is null');
      assert.equal(c.choices.length, 1);
    }
    assert.equal(wire.filter((c) => c.choices[0]?.finish_reason != null).length, 1);
    assert.equal(wire.at(-2).choices[0].finish_reason, 'stop', 'finish chunk right before usage');
  });

  // -- tools -----------------------------------------------------------------------------------

  test('tools, non-streamed: tool_calls, ids, JSON arguments, finish_reason tool_calls', async () => {
    await fake.queue({
      body: message(
        'msg_tool',
        [
          { type: 'text', text: 'Let me check.' },
          { type: 'tool_use', id: 'toolu_01Pz', name: 'get_weather', input: { city: 'Paris' } },
        ],
        { stop_reason: 'tool_use' },
      ),
    });
    const { data, request_id } = await client()
      .chat.completions.create({
        model: 'gpt-4o',
        messages: [{ role: 'user', content: 'Weather in Paris?' }],
        tools: [WEATHER_TOOL],
        tool_choice: 'auto',
      })
      .withResponse();
    assertValid('CreateChatCompletionResponse', JSON.parse((await lastExchange()).body));
    const [choice] = data.choices;
    assert.equal(choice.finish_reason, 'tool_calls');
    assert.equal(choice.message.content, 'Let me check.');
    assert.equal(choice.message.tool_calls.length, 1);
    const [call] = choice.message.tool_calls;
    assert.equal(call.id, 'toolu_01Pz');
    assert.equal(call.type, 'function');
    assert.equal(call.function.name, 'get_weather');
    assert.equal(typeof call.function.arguments, 'string');
    assert.deepEqual(JSON.parse(call.function.arguments), { city: 'Paris' });
    assert.equal('index' in call, false, 'no index in the non-streaming form (3.1)');

    const body = await upstreamBody(request_id);
    assert.deepEqual(body.tools, [
      {
        name: 'get_weather',
        description: 'The current weather in a city',
        input_schema: WEATHER_TOOL.function.parameters,
      },
    ]);
    assert.deepEqual(body.tool_choice, { type: 'auto' });
  });

  test('tool-only answer: content null (3.1 N03)', async () => {
    await fake.queue({
      body: message(
        'msg_tool_only',
        [{ type: 'tool_use', id: 'toolu_02', name: 'get_weather', input: { city: 'Oslo' } }],
        { stop_reason: 'tool_use' },
      ),
    });
    const data = await client().chat.completions.create({
      model: 'gpt-4o',
      messages: [{ role: 'user', content: 'Weather in Oslo?' }],
      tools: [WEATHER_TOOL],
      tool_choice: 'required',
    });
    assertValid('CreateChatCompletionResponse', JSON.parse((await lastExchange()).body));
    assert.equal(data.choices[0].message.content, null);
    assert.equal(data.choices[0].message.tool_calls[0].id, 'toolu_02');
  });

  test('parallel tool calls, non-streamed; parallel_tool_calls false maps upstream', async () => {
    await fake.queue({
      body: message(
        'msg_two',
        [
          { type: 'text', text: 'a' },
          { type: 'tool_use', id: 'toolu_01A', name: 'get_weather', input: { city: 'Paris' } },
          { type: 'text', text: 'b' },
          { type: 'tool_use', id: 'toolu_01B', name: 'get_weather', input: { city: 'Rome' } },
        ],
        { stop_reason: 'tool_use' },
      ),
    });
    const data = await client().chat.completions.create({
      model: 'gpt-4o',
      messages: [{ role: 'user', content: 'Paris and Rome?' }],
      tools: [WEATHER_TOOL],
    });
    assertValid('CreateChatCompletionResponse', JSON.parse((await lastExchange()).body));
    const msg = data.choices[0].message;
    assert.equal(msg.content, 'ab', 'text blocks concatenated (N02)');
    assert.deepEqual(
      msg.tool_calls.map((t) => [t.id, t.function.name, JSON.parse(t.function.arguments)]),
      [
        ['toolu_01A', 'get_weather', { city: 'Paris' }],
        ['toolu_01B', 'get_weather', { city: 'Rome' }],
      ],
    );
    assert.equal(data.choices[0].finish_reason, 'tool_calls');

    const { request_id } = await client()
      .chat.completions.create({
        model: 'gpt-4o',
        messages: [{ role: 'user', content: 'Paris?' }],
        tools: [WEATHER_TOOL],
        parallel_tool_calls: false,
      })
      .withResponse();
    assert.deepEqual((await upstreamBody(request_id)).tool_choice, {
      type: 'auto',
      disable_parallel_tool_use: true,
    });
  });

  test('tool round trip: tool_calls history and tool results become tool_use/tool_result', async () => {
    const { request_id } = await client()
      .chat.completions.create({
        model: 'gpt-4o',
        messages: [
          { role: 'user', content: 'Paris and Rome?' },
          {
            role: 'assistant',
            content: '',
            tool_calls: [
              {
                id: 'toolu_01A',
                type: 'function',
                function: { name: 'get_weather', arguments: '{"city":"Paris"}' },
              },
              {
                id: 'call.b:1',
                type: 'function',
                function: { name: 'get_weather', arguments: '{"city":"Rome"}' },
              },
            ],
          },
          { role: 'tool', tool_call_id: 'toolu_01A', content: '18C' },
          { role: 'tool', tool_call_id: 'call.b:1', content: '25C' },
          { role: 'user', content: 'thanks' },
        ],
        tools: [WEATHER_TOOL],
      })
      .withResponse();
    const body = await upstreamBody(request_id);
    assert.deepEqual(
      body.messages.map((m) => m.role),
      ['user', 'assistant', 'user'],
    );
    const assistant = body.messages[1].content;
    assert.deepEqual(
      assistant.map((b) => b.type),
      ['tool_use', 'tool_use'],
      'no empty text block for content "" (R04)',
    );
    assert.deepEqual(assistant[0], {
      type: 'tool_use',
      id: 'toolu_01A',
      name: 'get_weather',
      input: { city: 'Paris' },
    });
    assert.equal(assistant[1].id, 'call_b_1', 'ids sanitised to [a-zA-Z0-9_-] (2.4)');
    const results = body.messages[2].content;
    assert.deepEqual(
      results.map((b) => [b.type, b.tool_use_id ?? b.text]),
      [
        ['tool_result', 'toolu_01A'],
        ['tool_result', 'call_b_1'],
        ['text', 'thanks'],
      ],
      'results first, in order, then the user text, in one user turn',
    );
    const resultText = (b) =>
      typeof b.content === 'string' ? b.content : b.content.map((x) => x.text).join('');
    assert.deepEqual(results.slice(0, 2).map(resultText), ['18C', '25C']);
  });

  test('tools, streamed: deltas with index, id/type/name first and arguments "" then only arguments', async () => {
    await fake.queue({
      chunks: [
        A.messageStart('msg_one_tool'),
        A.toolStart(0, 'toolu_01S', 'get_weather'),
        A.json(0, ''),
        A.json(0, '{"city":'),
        A.json(0, ' "Paris"}'),
        A.stop(0),
        A.messageDelta('tool_use', 20),
        A.messageStop,
      ],
    });
    const stream = await client().chat.completions.create({
      model: 'gpt-4o',
      messages: [{ role: 'user', content: 'Weather in Paris?' }],
      tools: [WEATHER_TOOL],
      stream: true,
    });
    const { chunks, error } = await drain(stream);
    assert.equal(error, undefined);
    const { chunks: wire, sse: s } = checkStream((await lastExchange()).body);
    assert.ok(s.done);
    checkEnvelope(wire, 'gpt-4o');
    const deltas = wire.flatMap((c) => c.choices[0]?.delta?.tool_calls ?? []);
    assert.deepEqual(deltas[0], {
      index: 0,
      id: 'toolu_01S',
      type: 'function',
      function: { name: 'get_weather', arguments: '' },
    });
    assert.deepEqual(
      deltas.slice(1),
      [
        { index: 0, function: { arguments: '{"city":' } },
        { index: 0, function: { arguments: ' "Paris"}' } },
      ],
      'continuations carry only index and arguments; the empty fragment is skipped',
    );
    const calls = accumulateToolCalls(chunks);
    assert.equal(calls.length, 1);
    assert.deepEqual(JSON.parse(calls[0].arguments), { city: 'Paris' });
    const finishing = wire.filter((c) => c.choices[0]?.finish_reason != null);
    assert.equal(finishing.length, 1);
    assert.equal(finishing[0].choices[0].finish_reason, 'tool_calls');
  });

  test('parallel tool calls, streamed (E2): tool ordinals 0 and 1, arguments reassemble', async () => {
    await fake.queue({ chunks: TWO_TOOLS_STREAM });
    const stream = await client().chat.completions.create({
      model: 'gpt-4o',
      messages: [{ role: 'user', content: 'Paris and Rome?' }],
      tools: [WEATHER_TOOL],
      stream: true,
    });
    const { chunks, error } = await drain(stream);
    assert.equal(error, undefined);
    const { chunks: wire, sse: s } = checkStream((await lastExchange()).body);
    assert.ok(s.done);
    assert.equal(wire[0].id, 'msg_01TwoTools');
    assert.equal(contentOf(chunks), 'Checking both cities.');
    const deltas = wire.flatMap((c) => c.choices[0]?.delta?.tool_calls ?? []);
    assert.deepEqual(deltas, [
      {
        index: 0,
        id: 'toolu_01A',
        type: 'function',
        function: { name: 'get_weather', arguments: '' },
      },
      { index: 0, function: { arguments: '{"city": "Par' } },
      { index: 0, function: { arguments: 'is"}' } },
      {
        index: 1,
        id: 'toolu_01B',
        type: 'function',
        function: { name: 'get_weather', arguments: '' },
      },
      { index: 1, function: { arguments: '{"city": ' } },
      { index: 1, function: { arguments: '"Rome"}' } },
    ]);
    const calls = accumulateToolCalls(chunks);
    assert.deepEqual(
      calls.map((c) => [c.id, c.name, JSON.parse(c.arguments)]),
      [
        ['toolu_01A', 'get_weather', { city: 'Paris' }],
        ['toolu_01B', 'get_weather', { city: 'Rome' }],
      ],
    );
    const finishing = wire.filter((c) => c.choices[0]?.finish_reason != null);
    assert.equal(finishing.length, 1);
    assert.equal(finishing[0].choices[0].finish_reason, 'tool_calls');

    // The SDK's own accumulator (ChatCompletionStream) agrees.
    await fake.queue({ chunks: TWO_TOOLS_STREAM });
    const runner = client().chat.completions.stream({
      model: 'gpt-4o',
      messages: [{ role: 'user', content: 'Paris and Rome?' }],
      tools: [WEATHER_TOOL],
    });
    const final = await runner.finalChatCompletion();
    assert.deepEqual(
      final.choices[0].message.tool_calls.map((t) => [t.id, JSON.parse(t.function.arguments)]),
      [
        ['toolu_01A', { city: 'Paris' }],
        ['toolu_01B', { city: 'Rome' }],
      ],
    );
    assert.equal(final.choices[0].finish_reason, 'tool_calls');
  });

  // -- structured output, reasoning, images ----------------------------------------------------

  test('structured output: parse() with a zod response_format', async () => {
    const Person = z.object({ name: z.string(), age: z.number().int() });
    await fake.queue({
      body: message('msg_json', [{ type: 'text', text: '{"name":"Ada","age":36}' }]),
    });
    const { data, request_id } = await client()
      .chat.completions.parse({
        model: 'gpt-4o',
        messages: [{ role: 'user', content: 'Who wrote the first program?' }],
        response_format: zodResponseFormat(Person, 'person'),
      })
      .withResponse();
    assertValid('CreateChatCompletionResponse', JSON.parse((await lastExchange()).body));
    const msg = data.choices[0].message;
    assert.deepEqual(msg.parsed, { name: 'Ada', age: 36 });
    assert.equal(msg.content, '{"name":"Ada","age":36}');
    assert.equal(msg.tool_calls, undefined);
    assert.equal(data.choices[0].finish_reason, 'stop');

    const body = await upstreamBody(request_id);
    assert.equal(body.output_config?.format?.type, 'json_schema', 'output_config.format (2.5)');
    const schema = body.output_config.format.schema;
    assert.equal(schema.type, 'object');
    assert.deepEqual(Object.keys(schema.properties).sort(), ['age', 'name']);
    assert.equal(schema.additionalProperties, false);
    assert.equal(body.tools, undefined, 'no forced json tool on a structured-outputs model');
  });

  test('structured output: parse() with a JSON schema response_format', async () => {
    await fake.queue({
      body: message('msg_json2', [{ type: 'text', text: '{"name":"Ada","age":36}' }]),
    });
    const { data, request_id } = await client()
      .chat.completions.parse({
        model: 'gpt-4o',
        messages: [{ role: 'user', content: 'Who wrote the first program?' }],
        response_format: {
          type: 'json_schema',
          json_schema: {
            name: 'p',
            strict: true,
            schema: {
              type: 'object',
              properties: { name: { type: 'string' }, age: { type: 'integer', minimum: 0 } },
              required: ['name', 'age'],
            },
          },
        },
      })
      .withResponse();
    assert.deepEqual(data.choices[0].message.parsed, { name: 'Ada', age: 36 });
    const schema = (await upstreamBody(request_id)).output_config.format.schema;
    assert.equal(schema.additionalProperties, false, 'added where missing (F01)');
    assert.equal(schema.properties.age.minimum, undefined, 'minimum is dropped (F01)');
  });

  test('reasoning_effort: adaptive thinking + effort upstream; thinking returned as reasoning_content', async () => {
    await fake.queue({
      body: message(
        'msg_think',
        [
          { type: 'thinking', thinking: '17 x 3 = 51.', signature: 'EqQBCkgIARAB' },
          { type: 'text', text: '51' },
        ],
        {
          usage: {
            input_tokens: 40,
            output_tokens: 95,
            output_tokens_details: { thinking_tokens: 60 },
          },
        },
      ),
    });
    const { data, request_id } = await client()
      .chat.completions.create({
        model: 'gpt-4o',
        messages: [{ role: 'user', content: '17 x 3?' }],
        reasoning_effort: 'low',
      })
      .withResponse();
    assertValid('CreateChatCompletionResponse', JSON.parse((await lastExchange()).body));
    const body = await upstreamBody(request_id);
    assert.deepEqual(body.thinking, { type: 'adaptive', display: 'summarized' }, 'H01');
    assert.equal(body.output_config?.effort, 'low', 'H01');
    assert.equal('reasoning_effort' in body, false);
    const msg = data.choices[0].message;
    assert.equal(msg.content, '51', 'thinking never goes into content');
    assert.equal(msg.reasoning_content, '17 x 3 = 51.');
    assert.equal(msg.thinking_blocks?.[0]?.signature, 'EqQBCkgIARAB');
    assert.equal(data.usage.completion_tokens_details.reasoning_tokens, 60);

    // A budget-only model (the 4.5 family) gets a thinking budget instead (H02).
    const r2 = await client()
      .chat.completions.create({
        model: 'claude-haiku-4-5',
        messages: [{ role: 'user', content: '17 x 3?' }],
        reasoning_effort: 'high',
        max_tokens: 1000,
      })
      .withResponse();
    const b2 = await upstreamBody(r2.request_id);
    assert.deepEqual(b2.thinking, { type: 'enabled', budget_tokens: 8192 });
    assert.ok(b2.max_tokens > 8192, `max_tokens ${b2.max_tokens} above the budget`);
  });

  test('images: a data URL becomes a base64 image block upstream', async () => {
    const { request_id } = await client()
      .chat.completions.create({
        model: 'gpt-4o',
        messages: [
          {
            role: 'user',
            content: [
              { type: 'text', text: 'What is in this image?' },
              {
                type: 'image_url',
                image_url: { url: `data:image/png;base64,${PNG_B64}`, detail: 'low' },
              },
              { type: 'image_url', image_url: { url: 'https://example.com/cat.jpg' } },
            ],
          },
        ],
      })
      .withResponse();
    const body = await upstreamBody(request_id);
    assert.deepEqual(body.messages[0].content, [
      { type: 'text', text: 'What is in this image?' },
      { type: 'image', source: { type: 'base64', media_type: 'image/png', data: PNG_B64 } },
      { type: 'image', source: { type: 'url', url: 'https://example.com/cat.jpg' } },
    ]);
  });

  // -- errors ----------------------------------------------------------------------------------

  /** Queues an upstream error, makes a call, checks the class and the raw OpenAI error body. */
  async function upstreamError(script, Class, status, params = {}) {
    await fake.queue(script);
    const count0 = (await messagesRecords()).length;
    const err = await rejection(
      client().chat.completions.create({ model: 'gpt-4o', messages: USER_HI, ...params }),
    );
    assertErrorClass(err, Class, status);
    const raw = await lastExchange();
    assert.equal(raw.status, status);
    assert.match(raw.headers.get('content-type'), /^application\/json/);
    const body = JSON.parse(raw.body);
    assertValid('ErrorResponse', body, `the ${status} body`);
    assert.equal((await messagesRecords()).length, count0 + 1, 'one upstream call, no retry');
    assert.match(err.requestID ?? '', /^req_fake_\d+$/, 'x-request-id forwarded on errors');
    return { err, body: body.error, headers: raw.headers };
  }

  test('upstream 400 -> BadRequestError, message kept', async () => {
    const { err, body } = await upstreamError(
      {
        status: 400,
        body: {
          type: 'error',
          error: { type: 'invalid_request_error', message: 'messages.0: something is off' },
          request_id: 'req_x',
        },
      },
      BadRequestError,
      400,
    );
    assert.equal(body.type, 'invalid_request_error');
    assert.equal(body.message, 'messages.0: something is off');
    assert.equal(body.code, null);
    assert.equal(err.type, 'invalid_request_error');
  });

  test('upstream 400 context overflow -> code context_length_exceeded', async () => {
    const { err, body } = await upstreamError(
      {
        status: 400,
        body: {
          type: 'error',
          error: {
            type: 'invalid_request_error',
            message: 'prompt is too long: 208310 tokens > 200000 maximum',
          },
        },
      },
      BadRequestError,
      400,
    );
    assert.equal(err.code, 'context_length_exceeded');
    assert.equal(body.code, 'context_length_exceeded');
    assert.equal(body.param, 'messages');
    assert.equal(body.message, 'prompt is too long: 208310 tokens > 200000 maximum');
  });

  test('upstream 401 -> AuthenticationError', async () => {
    const { body } = await upstreamError({ status: 401 }, AuthenticationError, 401);
    assert.equal(body.type, 'authentication_error');
    assert.equal(body.code, 'invalid_api_key');
  });

  test('upstream 403 -> PermissionDeniedError', async () => {
    const { body } = await upstreamError({ status: 403 }, PermissionDeniedError, 403);
    assert.equal(body.type, 'permission_error');
  });

  test('upstream 404 -> NotFoundError, model_not_found when the message names the model', async () => {
    const { body } = await upstreamError(
      {
        status: 404,
        body: { type: 'error', error: { type: 'not_found_error', message: 'model: claude-nope' } },
      },
      NotFoundError,
      404,
    );
    assert.equal(body.type, 'not_found_error');
    assert.equal(body.code, 'model_not_found');
  });

  test('upstream 429 with retry-after -> RateLimitError, header visible', async () => {
    const { err, body } = await upstreamError(
      {
        status: 429,
        headers: {
          'retry-after': '7',
          'x-should-retry': 'true',
          'anthropic-ratelimit-requests-limit': '50',
          'anthropic-ratelimit-requests-remaining': '0',
        },
      },
      RateLimitError,
      429,
    );
    // Rate-limit headers under OpenAI's names (3.5).
    assert.equal(err.headers.get('x-ratelimit-limit-requests'), '50');
    assert.equal(err.headers.get('x-ratelimit-remaining-requests'), '0');
    assert.equal(err.headers.get('retry-after'), '7');
    assert.equal(err.headers.get('x-should-retry'), 'true');
    assert.equal(body.type, 'rate_limit_error');
    assert.equal(body.code, 'rate_limit_exceeded');
  });

  test('upstream 500 -> InternalServerError', async () => {
    const { body } = await upstreamError({ status: 500 }, InternalServerError, 500);
    assert.equal(body.type, 'api_error');
  });

  test('upstream 529 -> APIError with status 529 (kept, not 500)', async () => {
    const { err, body } = await upstreamError({ status: 529 }, APIError, 529);
    assert.equal(body.type, 'overloaded_error');
    assert.equal(err.status, 529);
  });

  test('upstream error on a streaming request: the status and JSON body, never a 200 stream', async () => {
    await fake.queue({ status: 429, headers: { 'retry-after': '3' } });
    const err = await rejection(
      client().chat.completions.create({ model: 'gpt-4o', messages: USER_HI, stream: true }),
    );
    assertErrorClass(err, RateLimitError, 429);
    assert.equal(err.headers.get('retry-after'), '3');
    const raw = await lastExchange();
    assert.match(raw.headers.get('content-type'), /^application\/json/);
    assertValid('ErrorResponse', JSON.parse(raw.body));
  });

  test('router validation: n: 2 -> BadRequestError param n, no upstream request', async () => {
    const count0 = (await fake.requests()).length;
    const err = await rejection(
      client().chat.completions.create({ model: 'gpt-4o', messages: USER_HI, n: 2 }),
    );
    assertErrorClass(err, BadRequestError, 400);
    assert.equal(err.param, 'n');
    assert.equal(err.type, 'invalid_request_error');
    assertValid('ErrorResponse', JSON.parse((await lastExchange()).body));
    assert.equal((await fake.requests()).length, count0, 'nothing reached the upstream');

    // n: 1 is fine.
    const ok = await client().chat.completions.create({ model: 'gpt-4o', messages: USER_HI, n: 1 });
    assert.equal(ok.choices.length, 1);
  });

  test('router validation: empty messages -> 400 param messages, no upstream request', async () => {
    const count0 = (await fake.requests()).length;
    const err = await rejection(
      client().chat.completions.create({ model: 'gpt-4o', messages: [] }),
    );
    assertErrorClass(err, BadRequestError, 400);
    assert.equal(err.param, 'messages');
    assertValid('ErrorResponse', JSON.parse((await lastExchange()).body));
    assert.equal((await fake.requests()).length, count0);
  });

  test('malformed JSON body (fetch) -> 400 in OpenAI shape', async () => {
    const count0 = (await fake.requests()).length;
    const res = await fetch(`${routerd.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer not-used' },
      body: '{"model": "gpt-4o", "messages": [',
    });
    assert.equal(res.status, 400);
    assert.match(res.headers.get('content-type'), /^application\/json/);
    const body = await res.json();
    assertValid('ErrorResponse', body);
    assert.equal(body.error.type, 'invalid_request_error');
    assert.equal((await fake.requests()).length, count0);

    const res2 = await fetch(`${routerd.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '[1, 2]',
    });
    assert.equal(res2.status, 400);
    assertValid('ErrorResponse', await res2.json());
  });

  test('mid-stream error event -> data: {"error"}, no finish chunk, no [DONE]; the SDK throws', async () => {
    await fake.queue({
      chunks: [
        A.messageStart('msg_01Err'),
        A.textStart(0),
        A.text(0, 'The first'),
        sse('error', {
          type: 'error',
          error: { details: null, type: 'overloaded_error', message: 'Overloaded' },
          request_id: 'req_011CeErr',
        }),
      ],
    });
    const stream = await client().chat.completions.create({
      model: 'gpt-4o',
      messages: USER_HI,
      stream: true,
    });
    const { chunks, error } = await drain(stream);
    assert.ok(error instanceof APIError, `expected an APIError, got ${error}`);
    assert.match(error.message, /Overloaded/);
    assert.equal(contentOf(chunks), 'The first');

    const { chunks: wire, errors, sse: s } = checkStream((await lastExchange()).body);
    assert.equal(s.done, false, 'no [DONE] after an error');
    assert.equal(errors.length, 1);
    assert.deepEqual(errors[0], {
      error: { message: 'Overloaded', type: 'overloaded_error', param: null, code: null },
    });
    assert.equal(
      JSON.parse(s.datas.at(-1)).error !== undefined,
      true,
      'the error is the last data',
    );
    assert.equal(
      wire.filter((c) => c.choices[0]?.finish_reason != null).length,
      0,
      'no finish chunk',
    );
  });

  test('mid-stream cut (cut_after) -> error chunk, no [DONE]; the SDK throws', async () => {
    await fake.queue({
      chunks: [
        A.messageStart('msg_cut'),
        A.textStart(0),
        A.text(0, 'Half of '),
        A.text(0, 'the answer'),
        A.stop(0),
        A.messageDelta('end_turn'),
        A.messageStop,
      ],
      cut_after: 3,
    });
    const stream = await client().chat.completions.create({
      model: 'gpt-4o',
      messages: USER_HI,
      stream: true,
    });
    const { chunks, error } = await drain(stream);
    assert.ok(error instanceof APIError, `expected an APIError, got ${error}`);
    assert.equal(contentOf(chunks), 'Half of ');
    const { chunks: wire, errors, sse: s } = checkStream((await lastExchange()).body);
    assert.equal(s.done, false, 'a cut stream must not look complete');
    assert.equal(errors.length, 1);
    assert.equal(wire.filter((c) => c.choices[0]?.finish_reason != null).length, 0);
  });

  // -- models ----------------------------------------------------------------------------------

  test('models.list(): the superset, Claude models and the aliases', async () => {
    const page = await client().models.list();
    const ids = [];
    for await (const m of page) ids.push(m.id);
    for (const id of [
      'claude-opus-4-7',
      'claude-sonnet-4-5',
      'claude-haiku-4-5',
      'haiku',
      'sonnet',
      'opus',
    ])
      assert.ok(ids.includes(id), `${id} is listed (got ${ids.join(', ')})`);

    const raw = await lastExchange();
    assert.equal(raw.status, 200);
    const body = JSON.parse(raw.body);
    assertValid('ListModelsResponse', body, 'the model list');
    body.data.forEach((m, i) => assertValid('Model', m, `model ${i}`));
    assert.equal(body.object, 'list');
    for (const m of body.data) {
      assert.equal(m.object, 'model');
      assert.equal(m.owned_by, 'anthropic');
      assert.equal(m.type, 'model', 'the Anthropic fields stay (3.6)');
      assert.equal(typeof m.display_name, 'string');
    }
    const opus = body.data.find((m) => m.id === 'claude-opus-4-7');
    assert.equal(opus.created, Date.parse('2026-01-15T00:00:00Z') / 1000);
    assert.equal(opus.created_at, '2026-01-15T00:00:00Z');
    assert.equal(body.has_more, false);
  });

  test("models.retrieve('opus'): the alias, with its target's details", async () => {
    const m = await client().models.retrieve('opus');
    assert.equal(m.id, 'opus');
    assert.equal(m.object, 'model');
    assert.equal(m.owned_by, 'anthropic');
    assert.equal(m.display_name, 'Claude Opus 4.7');
    assert.equal(m.created, Date.parse('2026-01-15T00:00:00Z') / 1000);
    assertValid('Model', JSON.parse((await lastExchange()).body), 'the model');
    const last = (await fake.requests()).filter((r) => r.method === 'GET').at(-1);
    assert.equal(last.path, '/v1/models/claude-opus-4-7');

    const err = await rejection(client().models.retrieve('claude-nope-1'));
    assertErrorClass(err, NotFoundError, 404);
    assertValid('ErrorResponse', JSON.parse((await lastExchange()).body));
  });

  // -- disconnects -----------------------------------------------------------------------------

  test('client abort mid-stream ends the upstream request (client_abort) within ~1 s', async () => {
    await fake.queue({
      chunks: [
        A.messageStart('msg_abort') + A.textStart(0) + A.text(0, 'partial'),
        {
          data: A.text(0, ' never sent') + A.stop(0) + A.messageDelta('end_turn') + A.messageStop,
          delay_ms: 30_000,
        },
      ],
    });
    const ac = new AbortController();
    const { data: stream, request_id } = await client()
      .chat.completions.create(
        { model: 'gpt-4o', messages: USER_HI, stream: true },
        { signal: ac.signal },
      )
      .withResponse();
    let abortedAt;
    const seen = [];
    for await (const chunk of stream) {
      seen.push(chunk);
      if (contentOf(seen) === 'partial') {
        abortedAt = Date.now();
        ac.abort();
      }
    }
    assert.ok(abortedAt, 'the first content arrived');
    let record;
    for (let i = 0; i < 60; i++) {
      record = await fake.record(request_id);
      if (record.ended) break;
      await sleep(50);
    }
    assert.equal(record.ended, 'client_abort');
    const lag = record.ended_at_ms - abortedAt;
    assert.ok(lag < 1500, `the upstream transfer ended ${Math.round(lag)} ms after the abort`);
  });
});

describe('keep-alive comments on a silent stream', () => {
  let keepalive;
  before(async () => {
    keepalive = await startRouterd(fake.url, ['--set', 'openai_keepalive_interval=1s']);
    await warmUp(keepalive);
  });
  after(async () => {
    await stopDaemon(keepalive);
  });
  beforeEach(async () => {
    await fake.control('DELETE', '/_fake/queue');
    exchanges.length = 0;
  });

  const SLOW_STREAM = {
    chunks: [
      A.messageStart('msg_slow') + A.textStart(0) + A.text(0, 'Hello'),
      {
        data: A.text(0, ' world') + A.stop(0) + A.messageDelta('end_turn') + A.messageStop,
        delay_ms: 3500,
      },
    ],
  };

  test('raw stream: at least 2 `: keepalive` lines before the delayed chunk', async () => {
    await fake.queue(SLOW_STREAM);
    const res = await fetch(`${keepalive.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o', messages: USER_HI, stream: true }),
    });
    assert.equal(res.status, 200);
    const text = await res.text();
    const before = text.slice(0, text.indexOf(' world'));
    assert.ok(text.includes(' world'), text);
    const n = before.split('\n').filter((l) => l === ': keepalive').length;
    assert.ok(n >= 2, `${n} keep-alive comments before the delayed chunk:\n${text}`);
    const { chunks, sse: s } = checkStream(text);
    assert.ok(s.done);
    assert.equal(contentOf(chunks), 'Hello world');
  });

  test('the SDK ignores the comments and assembles the content', async () => {
    await fake.queue(SLOW_STREAM);
    const c = new OpenAI({
      baseURL: `${keepalive.url}/v1`,
      apiKey: 'not-used',
      maxRetries: 0,
      fetch: capturingFetch,
    });
    const stream = await c.chat.completions.create({
      model: 'gpt-4o',
      messages: USER_HI,
      stream: true,
    });
    const { chunks, error } = await drain(stream);
    assert.equal(error, undefined);
    assert.equal(contentOf(chunks), 'Hello world');
    const raw = await lastExchange();
    assert.ok(parseSSE(raw.body).comments.filter((l) => l === ': keepalive').length >= 2);
  });
});
