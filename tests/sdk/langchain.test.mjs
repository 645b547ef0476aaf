// LangChain's ChatOpenAI (@langchain/openai, on the OpenAI TypeScript SDK) as the client of
// routerd's OpenAI endpoint, with routerd pointed at the fake upstream (tests/fakes/upstream).
// Run with `node --test langchain.test.mjs` (run.sh does that for ctest).
//
//   DUALROUTE_ROUTERD        path of dualroute-routerd (default: /work/main/build/routerd/...)
//   DUALROUTE_FAKE_UPSTREAM  path of fake-upstream      (default: /work/main/build/tests/fakes/...)
//
// As in openai-sdk.test.mjs: the fake's scripts are queued through POST /_fake/queue right before
// the one call that takes them (the translator drops unknown body fields), the tests run serially,
// and before() lets routerd read the upstream's model list first. A fetch passed to the OpenAI
// client underneath keeps a copy of every response, which is validated against OpenAI's OpenAPI
// schemas (schema.mjs); the fake's record shows the Anthropic body routerd sent.

import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { ChatOpenAI } from '@langchain/openai';
import { AIMessage, HumanMessage, SystemMessage, ToolMessage } from '@langchain/core/messages';
import { tool } from '@langchain/core/tools';
import { z } from 'zod';

import { assertValid } from './schema.mjs';
import {
  dropEnv,
  fakeDefaultText,
  message,
  responseCapture,
  startFake,
  startRouterd as startRouterdAt,
  stopDaemon,
  tempWorkDir,
  warmUp,
} from './harness.mjs';

const ROUTER_KEY = 'sk-ant-api03-router-key-for-the-langchain-suite-0000AA';

// The OpenAI SDK reads OPENAI_*, LangChain reads LANGCHAIN_*/LANGSMITH_* (tracing would try the
// network), routerd reads ANTHROPIC_DEFAULT_MODEL: none of the caller's may leak in.
dropEnv(/^(OPENAI_|ANTHROPIC_|LANGCHAIN_|LANGSMITH_)/);

// ---------------------------------------------------------------------------------------------
// Daemons (harness.mjs, as in openai-sdk.test.mjs)

const workDir = tempWorkDir('dualroute-langchain-');
const startRouterd = (upstreamURL, extraArgs) =>
  startRouterdAt(upstreamURL, extraArgs, { apiKey: ROUTER_KEY, cwd: workDir });

let fake;
let routerd;

/** The JSON bodies routerd sent to the fake's /v1/messages, oldest first. */
async function upstreamBodies() {
  return (await fake.requests())
    .filter((r) => r.method === 'POST' && r.path === '/v1/messages')
    .map((r) => JSON.parse(r.body));
}

// ---------------------------------------------------------------------------------------------
// What the client received

const { exchanges, capturingFetch } = responseCapture();

/** Validates every captured response: a JSON completion, or every chunk of a stream. */
async function validateExchanges() {
  assert.ok(exchanges.length > 0, 'the client made a request');
  for (const ex of exchanges) {
    assert.match(
      new URL(ex.url).pathname,
      /\/v1\/chat\/completions$/,
      'Chat Completions, not Responses',
    );
    const text = await ex.text;
    assert.equal(ex.status, 200, text);
    if (/^text\/event-stream/.test(ex.headers.get('content-type') ?? '')) {
      let done = false;
      for (const block of text.split('\n\n')) {
        const data = block
          .split('\n')
          .filter((l) => l.startsWith('data:'))
          .map((l) => l.slice(5).trimStart())
          .join('\n');
        assert.equal(/^event:/m.test(block), false, 'no SSE event: field');
        if (!data) continue;
        if (data === '[DONE]') {
          done = true;
          continue;
        }
        assertValid('CreateChatCompletionStreamResponse', JSON.parse(data), 'a chunk');
      }
      assert.ok(done, 'the stream ended with [DONE]');
    } else {
      assertValid('CreateChatCompletionResponse', JSON.parse(text), 'the response body');
    }
  }
}

function chat(fields = {}) {
  return new ChatOpenAI({
    model: 'gpt-4o',
    apiKey: 'not-used',
    maxRetries: 0,
    timeout: 30_000,
    configuration: { baseURL: `${routerd.url}/v1`, fetch: capturingFetch },
    ...fields,
  });
}

const USER_HI = 'How does an API router work?';
let defaultText;

// ---------------------------------------------------------------------------------------------

describe('LangChain ChatOpenAI through routerd', () => {
  before(async () => {
    fake = await startFake();
    defaultText = await fakeDefaultText(fake, {
      apiKey: ROUTER_KEY,
      messages: [{ role: 'user', content: USER_HI }],
    });

    routerd = await startRouterd(fake.url);
    // routerd reads the model list on its first chat request: let it, before any script is queued.
    await warmUp(fake, routerd, [{ role: 'user', content: USER_HI }]);
  });

  after(async () => {
    await stopDaemon(routerd);
    await stopDaemon(fake);
  });

  beforeEach(async () => {
    await fake.control('DELETE', '/_fake/queue');
    await fake.control('DELETE', '/_fake/requests');
    exchanges.length = 0;
  });

  test('invoke: content, usage_metadata, response metadata', async () => {
    const ai = await chat().invoke([new SystemMessage('Be brief.'), new HumanMessage(USER_HI)]);
    await validateExchanges();
    assert.ok(ai instanceof AIMessage);
    assert.equal(ai.content, defaultText);
    assert.deepEqual(
      {
        input: ai.usage_metadata?.input_tokens,
        output: ai.usage_metadata?.output_tokens,
        total: ai.usage_metadata?.total_tokens,
      },
      { input: 28, output: 19, total: 47 },
    );
    assert.equal(ai.response_metadata.finish_reason, 'stop');
    assert.equal(ai.response_metadata.model_name ?? ai.response_metadata.model, 'gpt-4o');
    assert.deepEqual(ai.tool_calls, []);

    const [body] = await upstreamBodies();
    assert.equal(body.model, 'claude-sonnet-4-6');
    assert.deepEqual(body.system, [{ type: 'text', text: 'Be brief.' }]);
    assert.equal(body.messages.length, 1);
    assert.equal(body.messages[0].role, 'user');
  });

  test('usage_metadata carries the cache figures', async () => {
    await fake.queue({
      body: message('msg_cache', [{ type: 'text', text: 'ok' }], {
        usage: {
          input_tokens: 100,
          cache_read_input_tokens: 2000,
          cache_creation_input_tokens: 300,
          output_tokens: 50,
        },
      }),
    });
    const ai = await chat().invoke(USER_HI);
    await validateExchanges();
    assert.equal(ai.usage_metadata.input_tokens, 2400, 'prompt_tokens includes the cache (3.3)');
    assert.equal(ai.usage_metadata.output_tokens, 50);
    assert.equal(ai.usage_metadata.total_tokens, 2450);
    assert.equal(ai.usage_metadata.input_token_details?.cache_read, 2000);
  });

  test('stream: the chunks concatenate to the answer; usage on the aggregate', async () => {
    const stream = await chat().stream(USER_HI);
    let aggregate;
    const parts = [];
    for await (const chunk of stream) {
      parts.push(chunk.content);
      aggregate = aggregate ? aggregate.concat(chunk) : chunk;
    }
    await validateExchanges();
    assert.ok(parts.length > 10, `${parts.length} chunks`);
    assert.equal(parts.join(''), defaultText);
    assert.equal(aggregate.content, defaultText);
    assert.equal(aggregate.usage_metadata?.input_tokens, 28);
    assert.equal(aggregate.usage_metadata?.output_tokens, 19);
    assert.equal(aggregate.usage_metadata?.total_tokens, 47);
    const [body] = await upstreamBodies();
    assert.equal(body.stream, true);
  });

  test('bindTools: tool call parsed, ToolMessage sent back as tool_result in a user turn', async () => {
    const getWeather = tool(async ({ city }) => `18C and sunny in ${city}`, {
      name: 'get_weather',
      description: 'The current weather in a city',
      schema: z.object({ city: z.string() }),
    });
    const model = chat().bindTools([getWeather]);
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
    const question = new HumanMessage('Weather in Paris?');
    const ai = await model.invoke([question]);
    assert.equal(ai.tool_calls.length, 1);
    assert.equal(ai.tool_calls[0].name, 'get_weather');
    assert.equal(ai.tool_calls[0].id, 'toolu_01Pz');
    assert.deepEqual(ai.tool_calls[0].args, { city: 'Paris' });
    assert.equal(ai.response_metadata.finish_reason, 'tool_calls');

    let [body] = await upstreamBodies();
    assert.equal(body.tools.length, 1);
    assert.equal(body.tools[0].name, 'get_weather');
    assert.equal(body.tools[0].input_schema.type, 'object');
    assert.deepEqual(Object.keys(body.tools[0].input_schema.properties), ['city']);

    const result = await getWeather.invoke(ai.tool_calls[0]);
    assert.ok(result instanceof ToolMessage);
    await fake.queue({
      body: message('msg_final', [{ type: 'text', text: 'It is 18C and sunny.' }]),
    });
    const final = await model.invoke([question, ai, result]);
    assert.equal(final.content, 'It is 18C and sunny.');
    await validateExchanges();

    body = (await upstreamBodies())[1];
    assert.deepEqual(
      body.messages.map((m) => m.role),
      ['user', 'assistant', 'user'],
    );
    const assistant = body.messages[1].content;
    assert.deepEqual(assistant.at(-1), {
      type: 'tool_use',
      id: 'toolu_01Pz',
      name: 'get_weather',
      input: { city: 'Paris' },
    });
    const turn = body.messages[2].content;
    assert.equal(turn[0].type, 'tool_result');
    assert.equal(turn[0].tool_use_id, 'toolu_01Pz');
    const text =
      typeof turn[0].content === 'string'
        ? turn[0].content
        : turn[0].content.map((b) => b.text).join('');
    assert.equal(text, '18C and sunny in Paris');
  });

  test('withStructuredOutput (JSON schema): the parsed object', async () => {
    const schema = {
      title: 'person',
      description: 'A person',
      type: 'object',
      properties: { name: { type: 'string' }, age: { type: 'integer' } },
      required: ['name', 'age'],
      additionalProperties: false,
    };
    await fake.queue({
      body: message('msg_json', [{ type: 'text', text: '{"name":"Ada","age":36}' }]),
    });
    const structured = chat().withStructuredOutput(schema, {
      method: 'jsonSchema',
      name: 'person',
    });
    const out = await structured.invoke('Who wrote the first program?');
    assert.deepEqual(out, { name: 'Ada', age: 36 });
    await validateExchanges();
    const sent = JSON.parse(exchanges[0].request);
    assert.equal(sent.response_format?.type, 'json_schema', 'LangChain asked with response_format');
    const [body] = await upstreamBodies();
    assert.equal(body.output_config?.format?.type, 'json_schema');
    assert.deepEqual(Object.keys(body.output_config.format.schema.properties).sort(), [
      'age',
      'name',
    ]);
  });

  test('withStructuredOutput (zod, includeRaw): parsed plus the raw AIMessage with usage', async () => {
    await fake.queue({
      body: message('msg_json2', [{ type: 'text', text: '{"name":"Grace","age":85}' }]),
    });
    const structured = chat().withStructuredOutput(
      z.object({ name: z.string(), age: z.number() }),
      {
        method: 'jsonSchema',
        name: 'person',
        includeRaw: true,
      },
    );
    const { parsed, raw } = await structured.invoke('Name a compiler pioneer.');
    assert.deepEqual(parsed, { name: 'Grace', age: 85 });
    assert.equal(raw.usage_metadata?.input_tokens, 30);
    assert.equal(raw.usage_metadata?.output_tokens, 10);
    await validateExchanges();
  });
});
