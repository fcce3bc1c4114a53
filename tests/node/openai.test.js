// realm serve driven by the official `openai` npm package (pinned in package.json and
// package-lock.json beside this file), run with Node's built-in test runner:
//
//   REALM_BIN=build/realm REALM_TESTDATA=../shared/testdata \
//     NODE_PATH=<dir with node_modules/openai> node --test tests/node/openai.test.js
//
// CTest runs it as node_openai after the node_deps fixture has run `npm ci` in the build
// directory (tests/CMakeLists.txt); node_modules never goes into the source tree. This file
// is CommonJS so that NODE_PATH finds the package (ES module imports ignore NODE_PATH).
//
// The test starts its own server on 127.0.0.1 with --port 0, in a temporary data directory
// holding two tenants: 'default' with a key, and 'limited' with a key and --rpm 3. Every wait
// is bounded and the server is killed at the end, also when a test fails.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const OpenAI = require('openai');

const REALM = process.env.REALM_BIN;
const TESTDATA = process.env.REALM_TESTDATA;
assert.ok(REALM, 'REALM_BIN must name the realm program');
assert.ok(TESTDATA, 'REALM_TESTDATA must name ../shared/testdata');
const MODEL = path.join(TESTDATA, 'models', 'stories260K.gguf');
assert.ok(fs.existsSync(MODEL), `missing ${MODEL}`);
// a LoRA adapter of stories260K (tests/data/lora), served as the model 'tiny-qv'
const LORA = path.join(process.env.REALM_SOURCE_DIR || path.join(__dirname, '..', '..'),
  'tests', 'data', 'lora', 'stories260K-lora-qv-r4.gguf');
assert.ok(fs.existsSync(LORA), `missing ${LORA}`);

const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'realm-node-test-'));
const DATA = path.join(TMP, 'data');
const PROMPT = 'Once upon a time';

let server = null; // the realm serve child process
let serverLog = '';
let baseURL = '';
let key = ''; // tenant 'default'
let limitedKey = ''; // tenant 'limited', --rpm 3

function realm(...args) {
  return execFileSync(REALM, [...args, '--data-dir', DATA], {
    encoding: 'utf8',
    timeout: 60_000,
    stdio: ['ignore', 'pipe', 'pipe'],
  }).trim();
}

function killServer() {
  if (server && server.exitCode === null && server.signalCode === null) server.kill('SIGKILL');
}
process.on('exit', killServer);

// Starts realm serve and resolves with its port, read from the "listening on
// http://127.0.0.1:PORT" line; rejects when it exits first or after 60 s.
function startServer() {
  const args = ['serve', '-m', `tiny=${MODEL}`, '--lora', `tiny-qv=${LORA}`, '--host', '127.0.0.1', '--port', '0',
    '--data-dir', DATA, '--models-dir', path.join(TMP, 'models'),
    '--module-cache', path.join(TMP, 'cache'), '-t', '1', '--parallel', '4'];
  server = spawn(REALM, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  server.stderr.on('data', (d) => { serverLog += d; });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "listening on" line in 60 s:\n${serverLog}`)), 60_000);
    server.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`realm serve exited (${code ?? signal}) before listening:\n${serverLog}`));
    });
    // keeps reading stdout to its end, so the server never blocks on a full pipe
    readline.createInterface({ input: server.stdout }).on('line', (line) => {
      serverLog += line + '\n';
      const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(line);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
  });
}

function client(opts = {}) {
  return new OpenAI({ apiKey: key, baseURL, timeout: 30_000, maxRetries: 0, ...opts });
}

function chatBody(extra = {}) {
  return { model: 'tiny', messages: [{ role: 'user', content: PROMPT }], max_tokens: 8,
    temperature: 0, ...extra };
}

// Awaits promise, which must reject with an instance of cls; returns the error.
async function rejectsWith(promise, cls) {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof cls, `expected ${cls.name}, got ${err && err.constructor.name}: ${err}`);
    return err;
  }
  assert.fail(`expected ${cls.name}, the call succeeded`);
}

// Polls fn (async, returning a boolean) every 50 ms for at most ms.
async function waitFor(fn, ms = 10_000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await fn()) return true;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return fn();
}

// The status of POST /tokenize with apiKey: it needs a valid key once keys exist, but runs no
// module, so it does not count towards a tenant's --rpm.
async function tokenizeStatus(apiKey) {
  const headers = { 'Content-Type': 'application/json' };
  if (apiKey) headers.Authorization = `Bearer ${apiKey}`;
  const res = await fetch(new URL('/tokenize', baseURL), { method: 'POST', headers,
    body: JSON.stringify({ model: 'tiny', content: PROMPT }), signal: AbortSignal.timeout(10_000) });
  await res.arrayBuffer();
  return res.status;
}

before(async () => {
  const port = await startServer();
  baseURL = `http://127.0.0.1:${port}/v1`;
  // once a key exists every request needs one; a running server sees it within a second
  key = realm('key', 'create', 'default');
  assert.match(key, /^rk-/);
  realm('tenant', 'add', 'limited');
  realm('tenant', 'set', 'limited', '--rpm', '3');
  limitedKey = realm('key', 'create', 'limited');
  assert.match(limitedKey, /^rk-/);
  assert.ok(await waitFor(async () => (await tokenizeStatus(null)) === 401), 'no key: 401');
  assert.ok(await waitFor(async () => (await tokenizeStatus(key)) === 200), 'the key works');
  assert.ok(await waitFor(async () => (await tokenizeStatus(limitedKey)) === 200),
    "tenant 'limited' has its key");
});

after(async () => {
  if (server && (server.exitCode !== null || server.signalCode !== null))
    console.error(`realm serve ended during the test (${server.exitCode ?? server.signalCode}):\n${serverLog}`);
  if (server && server.exitCode === null && server.signalCode === null) {
    const exited = new Promise((resolve) => server.once('exit', resolve));
    server.kill('SIGKILL');
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 10_000))]);
  }
  fs.rmSync(TMP, { recursive: true, force: true });
});

test('models: list and retrieve', { timeout: 60_000 }, async () => {
  const c = client();
  const ids = [];
  for await (const m of c.models.list()) ids.push(m.id);
  assert.ok(ids.includes('tiny'), `models.list(): ${JSON.stringify(ids)}`);
  const m = await c.models.retrieve('tiny');
  assert.equal(m.id, 'tiny');
  assert.equal(m.object, 'model');
  assert.equal(typeof m.created, 'number');
  assert.equal(typeof m.owned_by, 'string');
  // LoRA adapters are models whose parent is their base, as vLLM lists them
  const all = [];
  for await (const x of c.models.list()) all.push(x);
  const qv = all.find((x) => x.id === 'tiny-qv');
  assert.ok(qv, `models.list() lists the adapter: ${JSON.stringify(all)}`);
  assert.equal(qv.parent, 'tiny');
  assert.equal(all.find((x) => x.id === 'tiny').parent, null);
  assert.equal((await c.models.retrieve('tiny-qv')).parent, 'tiny');
  const r = await c.completions.create({ model: 'tiny-qv', prompt: PROMPT, max_tokens: 8, temperature: 0 });
  assert.equal(r.model, 'tiny-qv');
  const base = await c.completions.create({ model: 'tiny', prompt: PROMPT, max_tokens: 8, temperature: 0 });
  assert.notEqual(r.choices[0].text, base.choices[0].text, 'the adapter changes the text');
});

let greedyText = null; // the non-streamed reply, which the streams must repeat

test('chat: non-streaming', { timeout: 60_000 }, async () => {
  const c = client();
  const { data: r, response } = await c.chat.completions.create(chatBody()).withResponse();
  assert.equal(response.status, 200);
  assert.equal(r.object, 'chat.completion');
  assert.match(r.id, /./);
  assert.equal(r.model, 'tiny');
  assert.equal(typeof r.created, 'number');
  assert.equal(r.choices.length, 1);
  const ch = r.choices[0];
  assert.equal(ch.index, 0);
  assert.equal(ch.message.role, 'assistant');
  assert.equal(typeof ch.message.content, 'string');
  assert.ok(ch.message.content.length > 0, 'some content');
  assert.equal(ch.finish_reason, 'length');
  assert.equal(r.usage.completion_tokens, 8);
  assert.ok(r.usage.prompt_tokens > 0);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
  assert.match(r._request_id, /^req-/, 'x-request-id as the SDK exposes it');
  greedyText = ch.message.content;
  // temperature 0 is greedy: the same request gives the same reply
  const again = await c.chat.completions.create(chatBody());
  assert.equal(again.choices[0].message.content, greedyText);
});

test('chat: the stream() helper and finalChatCompletion()', { timeout: 60_000 }, async () => {
  const c = client();
  const stream = c.chat.completions.stream(chatBody());
  let deltas = '';
  let chunks = 0;
  stream.on('content', (delta) => { deltas += delta; });
  for await (const chunk of stream) {
    chunks++;
    assert.equal(chunk.object, 'chat.completion.chunk');
  }
  // throws when the stream had no role or no finish_reason
  const final = await stream.finalChatCompletion();
  assert.ok(chunks >= 2, `${chunks} chunks`);
  assert.equal(final.choices.length, 1);
  assert.equal(final.choices[0].message.role, 'assistant');
  assert.equal(final.choices[0].message.content, deltas);
  assert.equal(final.choices[0].finish_reason, 'length');
  assert.equal(await stream.finalContent(), deltas);
  if (greedyText !== null) assert.equal(deltas, greedyText, 'streamed = non-streamed at temperature 0');
});

test('chat: stream: true, iterated with for await', { timeout: 60_000 }, async () => {
  const c = client();
  const stream = await c.chat.completions.create(chatBody({ stream: true }));
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  assert.ok(chunks.length >= 2, `${chunks.length} chunks`);
  const ids = new Set(chunks.map((ch) => ch.id));
  assert.equal(ids.size, 1, 'one id for every chunk');
  for (const ch of chunks) {
    assert.equal(ch.object, 'chat.completion.chunk');
    assert.equal(ch.model, 'tiny');
    assert.equal(ch.choices.length, 1);
  }
  assert.equal(chunks[0].choices[0].delta.role, 'assistant', 'the first chunk has the role');
  const last = chunks[chunks.length - 1];
  assert.equal(last.choices[0].finish_reason, 'length');
  for (const ch of chunks.slice(0, -1)) assert.equal(ch.choices[0].finish_reason, null);
  assert.equal(last.usage ?? null, null, 'no usage without stream_options');
  const text = chunks.map((ch) => ch.choices[0].delta.content ?? '').join('');
  if (greedyText !== null) assert.equal(text, greedyText);
});

test('chat: stream_options.include_usage', { timeout: 60_000 }, async () => {
  const c = client();
  const stream = await c.chat.completions.create(
    chatBody({ stream: true, stream_options: { include_usage: true } }));
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  const last = chunks[chunks.length - 1];
  assert.deepEqual(last.choices, [], 'the usage chunk has no choices');
  assert.equal(last.usage.completion_tokens, 8);
  assert.ok(last.usage.prompt_tokens > 0);
  assert.equal(last.usage.total_tokens, last.usage.prompt_tokens + last.usage.completion_tokens);
  for (const ch of chunks.slice(0, -1)) assert.equal(ch.usage ?? null, null, 'usage only at the end');
  assert.equal(chunks[chunks.length - 2].choices[0].finish_reason, 'length');
});

test('completions: non-streaming and streaming', { timeout: 60_000 }, async () => {
  const c = client();
  const r = await c.completions.create({ model: 'tiny', prompt: PROMPT, max_tokens: 8, temperature: 0 });
  assert.equal(r.object, 'text_completion');
  assert.equal(r.model, 'tiny');
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].index, 0);
  assert.equal(typeof r.choices[0].text, 'string');
  assert.ok(r.choices[0].text.length > 0);
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.equal(r.usage.completion_tokens, 8);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);

  const stream = await c.completions.create({ model: 'tiny', prompt: PROMPT, max_tokens: 8,
    temperature: 0, stream: true });
  let text = '';
  let finish = null;
  for await (const chunk of stream) {
    assert.equal(chunk.object, 'text_completion');
    text += chunk.choices[0].text;
    finish = chunk.choices[0].finish_reason ?? finish;
  }
  assert.equal(text, r.choices[0].text, 'streamed = non-streamed at temperature 0');
  assert.equal(finish, 'length');
});

test('chat: n = 3', { timeout: 60_000 }, async (t) => {
  const c = client();
  let r;
  try {
    r = await c.chat.completions.create(chatBody({ n: 3, temperature: 1, seed: 7 }));
  } catch (err) {
    // not implemented yet: then it must be a typed 400 naming n
    assert.ok(err instanceof OpenAI.BadRequestError, `n=3: ${err}`);
    assert.equal(err.status, 400);
    assert.equal(err.param, 'n');
    assert.equal(err.type, 'invalid_request_error');
    t.diagnostic(`n=3 refused: ${err.message}`);
    return;
  }
  t.diagnostic(`n=3 answered: ${JSON.stringify(r.choices.map((ch) => ch.message.content))}`);
  assert.equal(r.choices.length, 3, `n=3: ${JSON.stringify(r)}`);
  assert.deepEqual(r.choices.map((ch) => ch.index), [0, 1, 2]);
  for (const ch of r.choices) {
    assert.equal(ch.message.role, 'assistant');
    assert.equal(typeof ch.message.content, 'string');
    assert.ok(ch.finish_reason === 'length' || ch.finish_reason === 'stop');
  }
  assert.ok(r.usage.completion_tokens > 8 && r.usage.completion_tokens <= 3 * 8,
    `usage of three choices: ${JSON.stringify(r.usage)}`);

  // streamed: the helper puts the chunks of each index together
  const stream = c.chat.completions.stream(chatBody({ n: 3, temperature: 1, seed: 7 }));
  const deltas = ['', '', ''];
  for await (const chunk of stream) {
    for (const ch of chunk.choices) deltas[ch.index] += ch.delta.content ?? '';
  }
  const final = await stream.finalChatCompletion();
  assert.equal(final.choices.length, 3);
  for (const ch of final.choices) {
    assert.equal(ch.message.role, 'assistant');
    assert.equal(ch.message.content, deltas[ch.index]);
    assert.ok(ch.finish_reason === 'length' || ch.finish_reason === 'stop');
  }
});

// ---- the Responses API: /v1/responses through the default module ----------------------------

function respBody(extra = {}) {
  return { model: 'tiny', input: PROMPT, max_output_tokens: 8, temperature: 0, ...extra };
}

const RESPONSE_EVENTS_HEAD = ['response.created', 'response.in_progress',
  'response.output_item.added', 'response.content_part.added'];
const RESPONSE_EVENTS_TAIL = ['response.output_text.done', 'response.content_part.done',
  'response.output_item.done'];

// The shape every finished response must have; cut is whether it stopped at max_output_tokens.
function checkResponse(r, { cut = true } = {}) {
  assert.equal(r.object, 'response');
  assert.match(r.id, /^resp_/);
  assert.equal(r.model, 'tiny');
  assert.equal(typeof r.created_at, 'number');
  assert.equal(r.error, null);
  assert.equal(r.status, cut ? 'incomplete' : 'completed');
  assert.deepEqual(r.incomplete_details, cut ? { reason: 'max_output_tokens' } : null);
  assert.equal(r.output.length, 1, JSON.stringify(r.output));
  const item = r.output[0];
  assert.equal(item.type, 'message');
  assert.equal(item.role, 'assistant');
  assert.equal(item.status, r.status);
  assert.match(item.id, /^msg_/);
  assert.equal(item.content.length, 1);
  assert.equal(item.content[0].type, 'output_text');
  assert.deepEqual(item.content[0].annotations, []);
  // output_text is the SDK's own helper: the output_text parts joined
  assert.equal(typeof r.output_text, 'string');
  assert.ok(r.output_text.length > 0, 'some text');
  assert.equal(r.output_text, item.content[0].text);
  const u = r.usage;
  assert.ok(u.input_tokens > 0, JSON.stringify(u));
  assert.equal(typeof u.input_tokens_details.cached_tokens, 'number');
  assert.equal(u.output_tokens_details.reasoning_tokens, 0);
  assert.equal(u.total_tokens, u.input_tokens + u.output_tokens);
  if (cut) assert.equal(u.output_tokens, 8);
}

let firstResponse = null; // the non-streamed response, stored (store defaults to true)

test('responses: create, whole', { timeout: 60_000 }, async () => {
  const c = client();
  const { data: r, response } = await c.responses.create(
    respBody({ metadata: { k: 'v' }, user: 'u1' })).withResponse();
  assert.equal(response.status, 200);
  assert.match(response.headers.get('content-type'), /^application\/json/);
  checkResponse(r);
  assert.equal(r._request_id, `req-${r.id.slice('resp_'.length)}`, 'the id carries the request id');
  assert.deepEqual(r.metadata, { k: 'v' });
  assert.equal(r.user, 'u1');
  assert.equal(r.max_output_tokens, 8);
  assert.equal(r.temperature, 0);
  assert.equal(r.store, true);
  assert.equal(r.previous_response_id, null);
  assert.deepEqual(r.tools, []);
  assert.deepEqual(r.text, { format: { type: 'text' } });
  // the same prompt as the chat request with the same message: the same greedy text
  if (greedyText !== null) assert.equal(r.output_text, greedyText);
  firstResponse = r;
});

test('responses: stream: true, iterated with for await', { timeout: 60_000 }, async () => {
  const c = client();
  const stream = await c.responses.create(respBody({ stream: true }));
  const events = [];
  for await (const ev of stream) events.push(ev);
  const types = events.map((ev) => ev.type);
  const nDelta = events.length - RESPONSE_EVENTS_HEAD.length - RESPONSE_EVENTS_TAIL.length - 1;
  assert.ok(nDelta > 0, types.join(' '));
  assert.deepEqual(types, [...RESPONSE_EVENTS_HEAD,
    ...Array(nDelta).fill('response.output_text.delta'), ...RESPONSE_EVENTS_TAIL,
    'response.incomplete']);
  assert.deepEqual(events.map((ev) => ev.sequence_number), events.map((_, i) => i));
  const created = events[0].response;
  assert.equal(created.status, 'in_progress');
  assert.deepEqual(created.output, []);
  const final = events[events.length - 1].response;
  assert.equal(final.id, created.id);
  checkResponse({ ...final, output_text: final.output[0].content[0].text });
  const itemId = final.output[0].id;
  assert.equal(events[2].item.id, itemId);
  assert.equal(events[2].item.status, 'in_progress');
  assert.deepEqual(events[2].item.content, []);
  for (const ev of events.slice(3, -2)) {
    assert.equal(ev.item_id, itemId, ev.type);
    assert.equal(ev.output_index, 0, ev.type);
    assert.equal(ev.content_index, 0, ev.type);
  }
  const deltas = events.filter((ev) => ev.type === 'response.output_text.delta')
    .map((ev) => ev.delta).join('');
  assert.equal(events[events.length - 4].text, deltas, 'output_text.done has the deltas joined');
  assert.equal(events[events.length - 3].part.text, deltas);
  assert.deepEqual(events[events.length - 2].item, final.output[0]);
  assert.equal(final.output[0].content[0].text, deltas);
  if (firstResponse) assert.equal(deltas, firstResponse.output_text, 'streamed = whole at temperature 0');
});

test('responses: the stream() helper and finalResponse()', { timeout: 60_000 }, async () => {
  const c = client();
  // the SDK's accumulator (lib/responses/ResponseAccumulator) applies every event to its
  // snapshot and throws on any it cannot place: this is the check of our event shapes
  const stream = c.responses.stream(respBody());
  let deltas = '';
  let lastSnapshot = null;
  stream.on('response.output_text.delta', (ev) => {
    deltas += ev.delta;
    lastSnapshot = ev.snapshot; // the part's text as accumulated so far
  });
  let doneText = null;
  stream.on('response.output_text.done', (ev) => { doneText = ev.text; });
  const types = [];
  for await (const ev of stream) types.push(ev.type);
  const final = await stream.finalResponse();
  assert.equal(types[0], 'response.created');
  assert.equal(types[types.length - 1], 'response.incomplete');
  assert.equal(lastSnapshot, deltas, 'the accumulated snapshot follows the deltas');
  assert.equal(doneText, deltas);
  checkResponse(final);
  assert.equal(final.output_text, deltas);
  assert.equal(final.output_parsed, null);
  if (firstResponse) assert.equal(final.output_text, firstResponse.output_text);
  // stored: retrieve answers the same response
  const got = await c.responses.retrieve(final.id);
  assert.equal(got.id, final.id);
  assert.equal(got.status, final.status);
  assert.equal(got.output_text, final.output_text);
  assert.deepEqual(got.usage, final.usage);
});

test('responses: retrieve, inputItems.list, delete', { timeout: 60_000 }, async () => {
  const c = client();
  if (firstResponse) {
    const got = await c.responses.retrieve(firstResponse.id);
    assert.deepEqual(got, firstResponse, 'a stored response is retrieved as answered');
  }
  const input = [
    { role: 'developer', content: 'Be kind' },
    { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Once' },
      { type: 'input_text', text: 'upon a time' }] },
    { role: 'assistant', content: 'there was' },
    { role: 'user', content: 'a dog' },
  ];
  const r = await c.responses.create(respBody({ input }));
  checkResponse(r);
  // one page, newest first (the default order)
  const page = await c.responses.inputItems.list(r.id);
  assert.equal(page.data.length, 4);
  assert.deepEqual(page.data.map((it) => it.role), ['user', 'assistant', 'user', 'developer']);
  for (const it of page.data) {
    assert.equal(it.type, 'message');
    assert.match(it.id, /^msg_/);
  }
  assert.deepEqual(page.data[2].content, [{ type: 'input_text', text: 'Once' },
    { type: 'input_text', text: 'upon a time' }]);
  assert.equal(page.data[1].content[0].type, 'output_text');
  assert.equal(page.data[1].content[0].text, 'there was');
  assert.equal(page.has_more, false);
  assert.equal(page.hasNextPage(), false);
  // the SDK's auto-pagination: one item a page, oldest first, following has_more with after
  const asc = [];
  for await (const it of c.responses.inputItems.list(r.id, { limit: 1, order: 'asc' })) asc.push(it);
  assert.deepEqual(asc, [...page.data].reverse(), 'pages of one item, in ascending order');
  const second = await c.responses.inputItems.list(r.id, { limit: 2, order: 'asc' });
  assert.equal(second.has_more, true);
  assert.equal(second.hasNextPage(), true);
  const next = await second.getNextPage();
  assert.deepEqual(next.data.map((it) => it.id), [page.data[1].id, page.data[0].id]);
  assert.equal(next.has_more, false);
  const badLimit = await rejectsWith(c.responses.inputItems.list(r.id, { limit: 1000 }),
    OpenAI.BadRequestError);
  assert.equal(badLimit.param, 'limit');

  const deleted = await c.responses.delete(r.id);
  assert.deepEqual({ ...deleted }, { id: r.id, object: 'response', deleted: true });
  let err = await rejectsWith(c.responses.retrieve(r.id), OpenAI.NotFoundError);
  assert.equal(err.status, 404);
  err = await rejectsWith(c.responses.inputItems.list(r.id), OpenAI.NotFoundError);
  await rejectsWith(c.responses.delete(r.id), OpenAI.NotFoundError);
  await rejectsWith(c.responses.retrieve('resp_nope'), OpenAI.NotFoundError);
  // store: false is not kept
  const unkept = await c.responses.create(respBody({ store: false, max_output_tokens: 1 }));
  assert.equal(unkept.store, false);
  await rejectsWith(c.responses.retrieve(unkept.id), OpenAI.NotFoundError);
});

test('responses: previous_response_id over three turns', { timeout: 60_000 }, async () => {
  const c = client();
  const texts = ['Once upon a time', 'The dog ran', 'Then the cat'];
  const turns = [];
  for (const [i, text] of texts.entries()) {
    const body = { model: 'tiny', input: text, max_output_tokens: 4, temperature: 0 };
    if (i === 0) body.instructions = 'Only the first turn has these';
    if (i > 0) body.previous_response_id = turns[i - 1].id;
    let r;
    if (i < 2) {
      r = await c.responses.create(body);
    } else { // the last turn through the stream helper
      const stream = c.responses.stream(body);
      r = await stream.finalResponse();
    }
    assert.equal(r.previous_response_id, i ? turns[i - 1].id : null);
    assert.equal(r.instructions, i ? null : body.instructions);
    assert.ok(r.output_text.length > 0);
    turns.push(r);
  }
  for (let i = 1; i < turns.length; i++) {
    const prev = turns[i - 1].usage, u = turns[i].usage;
    assert.ok(u.input_tokens > prev.input_tokens, `turn ${i + 1} holds the one before: ${JSON.stringify(u)}`);
    assert.ok(u.input_tokens_details.cached_tokens > 0, `turn ${i + 1} is served from the prefix cache: ${JSON.stringify(u)}`);
  }
  // the third turn's prompt is the chat request of the whole conversation, without the
  // first turn's instructions
  const messages = [];
  for (let i = 0; i < 2; i++) {
    messages.push({ role: 'user', content: texts[i] });
    messages.push({ role: 'assistant', content: turns[i].output_text });
  }
  messages.push({ role: 'user', content: texts[2] });
  const chatReply = await c.chat.completions.create({ model: 'tiny', messages, max_tokens: 4,
    temperature: 0 });
  assert.equal(chatReply.usage.prompt_tokens, turns[2].usage.input_tokens);
  assert.equal(chatReply.choices[0].message.content, turns[2].output_text);
  // only this request's input is its input items
  const items = await c.responses.inputItems.list(turns[2].id);
  assert.deepEqual(items.data.map((it) => it.content[0].text), [texts[2]]);
  const err = await rejectsWith(
    c.responses.create({ model: 'tiny', input: 'x', previous_response_id: 'resp_nope' }),
    OpenAI.NotFoundError);
  assert.equal(err.param, 'previous_response_id');
});

test('responses: errors are BadRequestError naming param', { timeout: 60_000 }, async () => {
  const c = client();
  const cases = [
    [{ tools: [{ type: 'function', name: 'f', parameters: { type: 'object' } }] }, 'tools'],
    [{ text: { format: { type: 'json_schema', name: 'x', schema: { type: 'object' } } } }, 'text.format'],
    [{ background: true }, 'background'],
    [{ input: [{ role: 'user', content: [{ type: 'input_image', image_url: 'http://x/y.png' }] }] },
      'input[0].content[0]'],
    [{ input: [{ type: 'function_call_output', call_id: 'c', output: 'o' }] }, 'input[0].type'],
    [{ max_output_tokens: 0 }, 'max_output_tokens'],
    [{ temperature: 5 }, 'temperature'],
  ];
  for (const [extra, param] of cases) {
    const err = await rejectsWith(c.responses.create(respBody(extra)), OpenAI.BadRequestError);
    assert.equal(err.status, 400, JSON.stringify(extra));
    assert.equal(err.param, param, `${JSON.stringify(extra)}: ${err.message}`);
    assert.equal(err.type, 'invalid_request_error');
  }
  // streamed, the refusal comes before the first event: the same typed error
  let err = await rejectsWith(
    (async () => { for await (const _ of await c.responses.create(respBody({ stream: true, background: true }))); })(),
    OpenAI.BadRequestError);
  assert.equal(err.param, 'background');
  err = await rejectsWith(c.responses.stream(respBody({ tools: [{ type: 'function', name: 'f',
    parameters: { type: 'object' } }] })).finalResponse(), OpenAI.BadRequestError);
  assert.equal(err.param, 'tools');
  // an empty tools list is accepted
  const r = await c.responses.create(respBody({ tools: [], store: false, max_output_tokens: 1 }));
  assert.deepEqual(r.tools, []);
});

test('errors: 401 AuthenticationError', { timeout: 60_000 }, async () => {
  const c = client({ apiKey: 'rk-nope' });
  const err = await rejectsWith(c.chat.completions.create(chatBody()), OpenAI.AuthenticationError);
  assert.equal(err.status, 401);
  assert.equal(err.code, 'invalid_api_key');
  assert.match(err.requestID, /^req-/);
  await rejectsWith(c.models.list(), OpenAI.AuthenticationError);
});

test('errors: 404 NotFoundError for an unknown model', { timeout: 60_000 }, async () => {
  const c = client();
  let err = await rejectsWith(c.chat.completions.create(chatBody({ model: 'nope' })),
    OpenAI.NotFoundError);
  assert.equal(err.status, 404);
  assert.equal(err.code, 'model_not_found');
  err = await rejectsWith(c.completions.create({ model: 'nope', prompt: PROMPT, max_tokens: 2 }),
    OpenAI.NotFoundError);
  assert.equal(err.code, 'model_not_found');
  err = await rejectsWith(c.models.retrieve('nope'), OpenAI.NotFoundError);
  assert.equal(err.code, 'model_not_found');
  // a stream fails before its first chunk, with the same typed error
  err = await rejectsWith(
    (async () => { for await (const _ of await c.chat.completions.create(chatBody({ model: 'nope', stream: true }))); })(),
    OpenAI.NotFoundError);
  assert.equal(err.code, 'model_not_found');
});

test('errors: 400 BadRequestError naming param', { timeout: 60_000 }, async () => {
  const c = client();
  for (const temperature of ['hot', 5]) {
    const err = await rejectsWith(c.chat.completions.create(chatBody({ temperature })),
      OpenAI.BadRequestError);
    assert.equal(err.status, 400, `temperature ${JSON.stringify(temperature)}`);
    assert.equal(err.param, 'temperature', `temperature ${JSON.stringify(temperature)}: ${err.message}`);
    assert.equal(err.type, 'invalid_request_error');
  }
  const err = await rejectsWith(c.chat.completions.create(chatBody({ max_tokens: -1 })),
    OpenAI.BadRequestError);
  assert.equal(err.param, 'max_tokens');
});

test('errors: 429 RateLimitError, and the SDK retries after Retry-After', { timeout: 60_000 }, async (t) => {
  // --rpm 3: a burst of 3, then one request every 20 s
  const noRetry = client({ apiKey: limitedKey, maxRetries: 0 });
  const body = chatBody({ max_tokens: 1 });
  let err = null;
  for (let i = 0; i < 6 && !err; i++) {
    try {
      await noRetry.chat.completions.create(body);
    } catch (e) {
      err = e;
    }
  }
  assert.ok(err, 'six requests at --rpm 3: one is refused');
  assert.ok(err instanceof OpenAI.RateLimitError, `expected RateLimitError, got ${err}`);
  assert.equal(err.status, 429);
  assert.equal(err.code, 'rate_limit_exceeded');
  const retryAfter = Number(err.headers.get('retry-after'));
  assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 20,
    `Retry-After: ${err.headers.get('retry-after')}`);
  assert.equal(err.headers.get('x-ratelimit-limit-requests'), '3');

  // with retries, the SDK waits what Retry-After says, then succeeds
  const attempts = [];
  const recording = async (url, init) => {
    const res = await fetch(url, init);
    attempts.push({ at: Date.now(), status: res.status, retryAfter: res.headers.get('retry-after') });
    return res;
  };
  const retrying = client({ apiKey: limitedKey, maxRetries: 2, fetch: recording });
  const start = Date.now();
  const r = await retrying.chat.completions.create(body);
  assert.equal(r.choices.length, 1);
  const summary = JSON.stringify(attempts.map((a) => ({ ms: a.at - start, status: a.status,
    retryAfter: a.retryAfter })));
  assert.equal(attempts[0].status, 429, summary);
  assert.equal(attempts[attempts.length - 1].status, 200, summary);
  t.diagnostic(`attempts with retries: ${summary}`);
  const waited = attempts[1].at - attempts[0].at;
  assert.ok(waited >= Number(attempts[0].retryAfter) * 1000 - 50, `waited ${waited} ms: ${summary}`);
  assert.equal(attempts.length, 2, `the retry after Retry-After succeeds: ${summary}`);
  assert.ok(Date.now() - start < 25_000, summary);
});
