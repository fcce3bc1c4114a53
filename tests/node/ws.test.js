// The WebSocket mode of /v1/responses (docs/websocket.md) driven by the `ws` npm package and
// the official `openai` package's ResponsesWS client (both pinned in package.json and
// package-lock.json beside this file), run with Node's built-in test runner:
//
//   REALM_BIN=build/realm REALM_TESTDATA=../shared/testdata \
//     REALM_MAKE_TEST_MODEL=build/tests/make_test_model \
//     NODE_PATH=<dir with node_modules/ws> node --test tests/node/ws.test.js
//
// CTest runs it as node_ws after the node_deps fixture (tests/CMakeLists.txt). The main server
// listens on 127.0.0.1 --port 0 with a key for tenant 'default', --max-body 64K, --cors-origin
// https://app.example and --ws-max-connections 8, serving stories260K as 'tiny' and, for
// generations long enough to act during them, a model of 25 M random parameters made by
// make_test_model as 'slow'. Three more servers, keyless, test the drain and TLS. Every wait
// is bounded; the main server is stopped with SIGTERM last (it must exit 0, without a sanitizer
// report under REALM_SANITIZE), and every server is killed at the end if a test failed.
'use strict';

const { test, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const WebSocket = require('ws');
const OpenAI = require('openai');
const { ResponsesWS } = require('openai/resources/responses/ws');

const REALM = process.env.REALM_BIN;
const TESTDATA = process.env.REALM_TESTDATA;
const MAKE_TEST_MODEL = process.env.REALM_MAKE_TEST_MODEL;
assert.ok(REALM, 'REALM_BIN must name the realm program');
assert.ok(TESTDATA, 'REALM_TESTDATA must name ../shared/testdata');
assert.ok(MAKE_TEST_MODEL, 'REALM_MAKE_TEST_MODEL must name tests/tools/make_test_model');
const MODEL = path.join(TESTDATA, 'models', 'stories260K.gguf');
assert.ok(fs.existsSync(MODEL), `missing ${MODEL}`);

const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'realm-ws-test-'));
const SLOW = path.join(TMP, 'slow.gguf');
const MAX_BODY = 65536;
const WS_MAX = 8;
const TERMINAL = new Set(['response.completed', 'response.incomplete', 'response.failed',
  'response.cancelled']);

const servers = []; // every realm serve started, killed at the end
const sessions = new Set(); // WebSockets open, dropped after each test (also a failed one)
let main = null; // { proc, port, log }
let key = '';

function realm(data, ...args) {
  return execFileSync(REALM, [...args, '--data-dir', data], {
    encoding: 'utf8', timeout: 60_000, stdio: ['ignore', 'pipe', 'pipe'],
  }).trim();
}

function killAll() {
  for (const s of servers)
    if (s.proc.exitCode === null && s.proc.signalCode === null) s.proc.kill('SIGKILL');
}
process.on('exit', killAll);

// Starts realm serve with extra args and resolves with { proc, port, log() }, the port read from
// its "listening on" line; rejects when it exits first or after 60 s.
function startServer(name, extra) {
  const data = path.join(TMP, `data-${name}`);
  const args = ['serve', '-m', `tiny=${MODEL}`, '-m', `slow=${SLOW}`, '--host', '127.0.0.1',
    '--port', '0', '--data-dir', data, '--models-dir', path.join(TMP, 'models'),
    '--module-cache', path.join(TMP, 'cache'), '-t', '1', '--parallel', '4', ...extra];
  const proc = spawn(REALM, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const s = { proc, port: 0, data, text: '' };
  s.log = () => s.text;
  servers.push(s);
  proc.stderr.on('data', (d) => { s.text += d; });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "listening on" line in 60 s:\n${s.text}`)), 60_000);
    proc.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`realm serve exited (${code ?? signal}) before listening:\n${s.text}`));
    });
    readline.createInterface({ input: proc.stdout }).on('line', (line) => {
      s.text += line + '\n';
      const m = /listening on (https?):\/\/127\.0\.0\.1:(\d+)/.exec(line);
      if (m) {
        clearTimeout(timer);
        s.tls = m[1] === 'https';
        s.port = Number(m[2]);
        resolve(s);
      }
    });
  });
}

// Resolves with the exit code of s's process (or its signal), within ms.
function exited(s, ms) {
  if (s.proc.exitCode !== null || s.proc.signalCode !== null)
    return Promise.resolve(s.proc.exitCode ?? s.proc.signalCode);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`realm serve still running after ${ms} ms`)), ms);
    s.proc.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve(code ?? signal);
    });
  });
}

// s (sent SIGTERM) exits 0 within ms, without a sanitizer report in its log.
async function assertCleanExit(s, ms = 90_000) {
  const code = await exited(s, ms);
  const report = /(ERROR: (Address|Leak)Sanitizer|runtime error:)[^\n]*/.exec(s.log());
  assert.ok(!report, `a sanitizer report:\n${s.log().slice(-6000)}`);
  assert.equal(code, 0, `realm serve exited ${code}:\n${s.log().slice(-3000)}`);
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

async function http(s, method, p, body, headers = {}) {
  const res = await fetch(`http://127.0.0.1:${s.port}${p}`, {
    method, headers: { ...(body ? { 'Content-Type': 'application/json' } : {}), ...headers },
    body: body ? JSON.stringify(body) : undefined, signal: AbortSignal.timeout(60_000),
  });
  return { status: res.status, text: await res.text() };
}

// The sum of a /metrics series over the lines that carry every label given.
async function metric(s, name, labels = {}) {
  const { text } = await http(s, 'GET', '/metrics');
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{') && !line.startsWith(name + ' ')) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`)))
      total += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}

// A WebSocket to /v1/responses whose messages (parsed), pongs and close are read in order with
// bounded waits. open() resolves with it, or rejects with err.status when the handshake is
// answered with an HTTP error.
class Session {
  constructor(ws) {
    this.ws = ws;
    this.queue = [];
    this.wake = null;
    this.closed = null;
    sessions.add(this);
    ws.on('message', (data, binary) => {
      let event = null;
      try {
        event = JSON.parse(String(data));
      } catch {
        event = { unparsable: String(data) };
      }
      this._push({ kind: binary ? 'binary' : 'message', event });
    });
    ws.on('pong', () => this._push({ kind: 'pong' }));
    ws.on('close', (code, reason) => {
      sessions.delete(this);
      this.closed = { code, reason: String(reason) };
      this._push({ kind: 'close', code, reason: String(reason) });
    });
    ws.on('error', () => {}); // the close that follows says it
  }

  static open(s, { headers = {}, protocols, origin, useKey = true } = {}) {
    const h = { ...(useKey && key ? { Authorization: `Bearer ${key}` } : {}), ...headers };
    const ws = new WebSocket(`${s.tls ? 'wss' : 'ws'}://127.0.0.1:${s.port}/v1/responses`,
      protocols, { headers: h, origin, handshakeTimeout: 10_000, rejectUnauthorized: false });
    return new Promise((resolve, reject) => {
      const session = new Session(ws);
      ws.once('open', () => resolve(session));
      ws.once('unexpected-response', (req, res) => {
        let body = '';
        res.on('data', (d) => { body += d; });
        res.on('end', () => {
          const err = new Error(`handshake answered ${res.statusCode}: ${body}`);
          err.status = res.statusCode;
          err.body = body;
          reject(err);
        });
      });
      ws.once('error', reject);
    });
  }

  _push(m) {
    this.queue.push(m);
    if (this.wake) this.wake();
  }

  // The next message, pong or close; fails after ms.
  async next(ms = 30_000) {
    const end = Date.now() + ms;
    while (this.queue.length === 0) {
      const left = end - Date.now();
      assert.ok(left > 0, `nothing arrived in ${ms} ms`);
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => { clearTimeout(timer); resolve(); };
      });
      this.wake = null;
    }
    return this.queue.shift();
  }

  // The next event (message) of the given type, skipping others (kept in skipped).
  async until(pred, ms = 30_000, skipped = []) {
    const end = Date.now() + ms;
    for (;;) {
      const m = await this.next(Math.max(1, end - Date.now()));
      assert.notEqual(m.kind, 'close', `closed (${m.code} ${m.reason}) while waiting`);
      if (m.kind === 'message' && pred(m.event)) return m.event;
      skipped.push(m);
    }
  }

  // The events of one response up to its terminal event (or an error event).
  async response(ms = 60_000) {
    const events = [];
    const end = Date.now() + ms;
    for (;;) {
      const m = await this.next(Math.max(1, end - Date.now()));
      assert.notEqual(m.kind, 'close', `closed (${m.code} ${m.reason}) during a response`);
      if (m.kind !== 'message') continue;
      events.push(m.event);
      if (TERMINAL.has(m.event.type) || m.event.type === 'error') return events;
    }
  }

  async closedWith(ms = 10_000) {
    const end = Date.now() + ms;
    for (;;) {
      const m = await this.next(Math.max(1, end - Date.now()));
      if (m.kind === 'close') return m;
    }
  }

  send(obj) {
    this.ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj));
  }

  close() {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING)
      this.ws.terminate();
  }
}

function create(extra = {}) {
  return { type: 'response.create', model: 'tiny', input: 'Once upon a time',
    max_output_tokens: 16, temperature: 0, ...extra };
}

// A generation of 'slow' that runs for seconds (cancelled by the tests long before its end).
function long(extra = {}) {
  return create({ model: 'slow', input: 'Tell me a long story', max_output_tokens: 1500, ...extra });
}

// The SSE events of a streamed POST /v1/responses: [{ name, data }].
async function sse(s, body) {
  const { status, text } = await http(s, 'POST', '/v1/responses', { ...body, stream: true },
    { Authorization: `Bearer ${key}` });
  assert.equal(status, 200, text);
  const events = [];
  for (const block of text.split('\n\n')) {
    if (!block.trim()) continue;
    const name = /^event: (.*)$/m.exec(block);
    const data = /^data: (.*)$/m.exec(block);
    assert.ok(name && data, `an SSE event with a name: ${block}`);
    events.push({ name: name[1], data: JSON.parse(data[1]) });
  }
  return events;
}

// An event with what differs between two identical requests blanked: ids, times, cache hits.
function normalized(ev) {
  return JSON.parse(JSON.stringify(ev, (k, v) =>
    ['id', 'item_id', 'created_at', 'cached_tokens'].includes(k) ? '*' : v));
}

// The request's generation is cancelled and its sequence freed (the engine's gauges).
async function assertCancelledAndFreed(s, cancelledBefore, what) {
  assert.ok(await waitFor(async () => (await metric(s, 'realm:request_success_total',
    { model: 'slow', finished_reason: 'cancelled' })) === cancelledBefore + 1, 20_000),
  `${what}: the generation ends cancelled`);
  assert.ok(await waitFor(async () => (await metric(s, 'realm:num_requests_running',
    { model: 'slow' })) === 0, 10_000), `${what}: its sequence (and KV blocks) freed`);
}

before(async () => {
  execFileSync(MAKE_TEST_MODEL, [MODEL, SLOW], { timeout: 120_000, stdio: 'ignore' });
  main = await startServer('main', ['--max-body', String(MAX_BODY), '--cors-origin',
    'https://app.example', '--ws-max-connections', String(WS_MAX)]);
  key = realm(main.data, 'key', 'create', 'default');
  assert.match(key, /^rk-/);
  // a running server sees a new key within a second; the 'slow' model is loaded once here
  assert.ok(await waitFor(async () => (await http(main, 'POST', '/v1/responses',
    { model: 'slow', input: 'Once', max_output_tokens: 1, store: false },
    { Authorization: `Bearer ${key}` })).status === 200, 30_000), 'the key works');
});

afterEach(() => {
  for (const s of sessions) s.close();
  sessions.clear();
});

after(async () => {
  for (const s of servers) {
    if (s.proc.signalCode !== null || (s.proc.exitCode !== null && s.proc.exitCode !== 0))
      console.error(`realm serve ended (${s.proc.exitCode ?? s.proc.signalCode}):\n${s.log()}`);
    if (s.proc.exitCode === null && s.proc.signalCode === null) {
      s.proc.kill('SIGKILL');
      await exited(s, 10_000).catch(() => {});
    }
  }
  fs.rmSync(TMP, { recursive: true, force: true });
});

test('the events equal the SSE stream of the same request, one JSON message each',
  { timeout: 60_000 }, async () => {
    const body = create({ store: false });
    const http_ = await sse(main, (({ type, ...rest }) => rest)(body));
    const ws = await Session.open(main);
    ws.send(body);
    const events = await ws.response();
    ws.close();
    assert.deepEqual(events.map((e) => e.type), http_.map((e) => e.name));
    assert.deepEqual(events.map(normalized), http_.map((e) => normalized(e.data)));
    assert.deepEqual(events.map((e) => e.sequence_number), events.map((_, i) => i));
    const last = events.at(-1);
    assert.ok(['response.completed', 'response.incomplete'].includes(last.type), last.type);
    const deltas = events.filter((e) => e.type === 'response.output_text.delta');
    assert.ok(deltas.length > 0, 'text deltas');
    assert.equal(deltas.map((e) => e.delta).join(''), last.response.output[0].content[0].text);
  });

test('previous_response_id continues on the same socket and on another',
  { timeout: 60_000 }, async () => {
    const a = await Session.open(main);
    a.send(create({ max_output_tokens: 8 }));
    const first = (await a.response()).at(-1).response;
    assert.ok(first.id.startsWith('resp_') && first.status !== 'failed', JSON.stringify(first));
    a.send(create({ input: 'And then?', previous_response_id: first.id, max_output_tokens: 8 }));
    const second = (await a.response()).at(-1).response;
    assert.equal(second.previous_response_id, first.id);
    assert.ok(second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens,
      `the first turn is replayed (${first.usage.input_tokens} + ${first.usage.output_tokens} ` +
      `< ${second.usage.input_tokens} input tokens)`);
    assert.ok(second.usage.input_tokens_details.cached_tokens > 0, 'and served by the prefix cache');
    a.close();
    // another socket continues the stored chain; HTTP reads the same responses
    const b = await Session.open(main);
    b.send(create({ input: 'The end.', previous_response_id: second.id, max_output_tokens: 4 }));
    const third = (await b.response()).at(-1).response;
    assert.equal(third.previous_response_id, second.id);
    assert.ok(third.usage.input_tokens > second.usage.input_tokens);
    b.close();
    const got = await http(main, 'GET', `/v1/responses/${second.id}`, null,
      { Authorization: `Bearer ${key}` });
    assert.equal(got.status, 200);
    assert.equal(JSON.parse(got.text).previous_response_id, first.id);
  });

test('a conversation of three responses on one socket, each turn continuing the last',
  { timeout: 90_000 }, async () => {
    const ws = await Session.open(main);
    const turns = [];
    const inputs = ['Once upon a time', 'And then?', 'The end.'];
    for (const input of inputs) {
      const prev = turns.at(-1);
      ws.send(create({ input, max_output_tokens: 8,
        ...(prev ? { previous_response_id: prev.id } : {}) }));
      const events = await ws.response();
      const last = events.at(-1);
      assert.ok(['response.completed', 'response.incomplete'].includes(last.type),
        JSON.stringify(last));
      assert.equal(events[0].type, 'response.created');
      turns.push(last.response);
    }
    ws.close();
    const [first, second, third] = turns;
    assert.equal(new Set(turns.map((r) => r.id)).size, 3, 'three stored responses');
    assert.equal(first.previous_response_id ?? null, null);
    assert.equal(second.previous_response_id, first.id);
    assert.equal(third.previous_response_id, second.id);
    // each turn replays the whole chain before it: its input holds the previous turn's input
    // and output, and the prefix cache serves what was already computed
    assert.ok(third.usage.input_tokens > second.usage.input_tokens + second.usage.output_tokens,
      `the chain is replayed (${second.usage.input_tokens} + ${second.usage.output_tokens} ` +
      `< ${third.usage.input_tokens} input tokens)`);
    const cached = third.usage.input_tokens_details.cached_tokens;
    assert.ok(cached > 0, 'the third turn is served by the prefix cache');
    assert.ok(cached >= second.usage.input_tokens_details.cached_tokens,
      `the cached prefix grows with the chain (${cached})`);
    assert.ok(cached < third.usage.input_tokens, 'the new input is computed');
    // the chain as HTTP reads it, from the third turn back to the first, each turn's own input
    // in its input items (only its own: docs/http-api.md)
    let id = third.id;
    for (let i = inputs.length - 1; i >= 0; i--) {
      const auth = { Authorization: `Bearer ${key}` };
      const got = await http(main, 'GET', `/v1/responses/${id}`, null, auth);
      assert.equal(got.status, 200, got.text);
      const r = JSON.parse(got.text);
      assert.equal(r.id, turns[i].id);
      assert.equal(r.output[0].content[0].text, turns[i].output[0].content[0].text);
      const items = await http(main, 'GET', `/v1/responses/${id}/input_items`, null, auth);
      assert.equal(items.status, 200, items.text);
      const text = JSON.stringify(JSON.parse(items.text).data);
      assert.ok(text.includes(inputs[i]), `turn ${i + 1}'s input items hold "${inputs[i]}"`);
      for (const other of inputs.filter((_, j) => j !== i))
        assert.ok(!text.includes(other), `turn ${i + 1}'s input items hold only its own input`);
      id = r.previous_response_id;
    }
    assert.equal(id ?? null, null, 'the chain starts at the first turn');
  });

test('two tenants are apart over a WebSocket: another tenant\'s response id is 404',
  { timeout: 90_000 }, async () => {
    realm(main.data, 'tenant', 'add', 'ws-other');
    const otherKey = realm(main.data, 'key', 'create', 'ws-other');
    assert.match(otherKey, /^rk-/);
    const other = { Authorization: `Bearer ${otherKey}` };
    // a running server sees the new tenant and key within a second
    assert.ok(await waitFor(async () =>
      (await http(main, 'GET', '/v1/models', null, other)).status === 200, 15_000),
    'the other tenant\'s key works');
    // tenant A stores a response over its socket
    const a = await Session.open(main);
    a.send(create({ max_output_tokens: 4 }));
    const mine = (await a.response()).at(-1).response;
    assert.ok(mine.id.startsWith('resp_'), JSON.stringify(mine));
    // tenant B, on its own socket, cannot continue it: an error event, 404 as over HTTP
    const b = await Session.open(main, { headers: other });
    b.send(create({ input: 'And then?', previous_response_id: mine.id }));
    const e = (await b.response()).at(-1);
    assert.equal(e.type, 'error', JSON.stringify(e));
    assert.equal(e.status, 404, JSON.stringify(e));
    assert.equal(e.error.param, 'previous_response_id', JSON.stringify(e));
    const overHttp = await http(main, 'POST', '/v1/responses', { model: 'tiny', input: 'x',
      previous_response_id: mine.id }, other);
    assert.equal(overHttp.status, 404, overHttp.text);
    assert.equal(JSON.parse(overHttp.text).error.code, e.error.code, 'the same error as HTTP');
    // B cannot read A's response (or its input items) over HTTP either
    for (const p of [mine.id, `${mine.id}/input_items`]) {
      const got = await http(main, 'GET', `/v1/responses/${p}`, null, other);
      assert.equal(got.status, 404, `GET ${p} as the other tenant: ${got.text}`);
    }
    // B's socket stays usable, its own response is its own, and A's is still there for A
    b.send(create({ store: true, max_output_tokens: 2 }));
    const theirs = (await b.response()).at(-1);
    assert.ok(TERMINAL.has(theirs.type), JSON.stringify(theirs));
    b.close();
    let got = await http(main, 'GET', `/v1/responses/${theirs.response.id}`, null,
      { Authorization: `Bearer ${key}` });
    assert.equal(got.status, 404, 'A cannot read B\'s response');
    got = await http(main, 'GET', `/v1/responses/${mine.id}`, null,
      { Authorization: `Bearer ${key}` });
    assert.equal(got.status, 200, got.text);
    a.send(create({ input: 'And then?', previous_response_id: mine.id, max_output_tokens: 2 }));
    const cont = (await a.response()).at(-1);
    assert.ok(TERMINAL.has(cont.type), JSON.stringify(cont));
    assert.equal(cont.response.previous_response_id, mine.id);
    a.close();
  });

test('the official SDK client (ResponsesWS) gets a response', { timeout: 60_000 }, async () => {
  const client = new OpenAI({ apiKey: key, baseURL: `http://127.0.0.1:${main.port}/v1`,
    timeout: 30_000, maxRetries: 0 });
  const rws = new ResponsesWS(client);
  try {
    const done = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no terminal event in 30 s')), 30_000);
      const text = [];
      rws.on('response.output_text.delta', (e) => text.push(e.delta));
      rws.on('error', (err) => { clearTimeout(timer); reject(err); });
      for (const t of ['response.completed', 'response.incomplete'])
        rws.on(t, (e) => { clearTimeout(timer); resolve({ e, text: text.join('') }); });
    });
    rws.socket.on('open', () => rws.send(create({ store: false })));
    const { e, text } = await done;
    assert.equal(e.response.output[0].content[0].text, text);
  } finally {
    rws.close();
  }
});

test('a second response.create while one is in flight gets response_already_in_flight',
  { timeout: 60_000 }, async () => {
    // The first response is surely in flight once its first delta came: 'slow' has
    // 1,500 tokens to go (a short one of 'tiny' could end between the two frames' reads
    // on a loaded machine, and the second create would then rightly start a response).
    const ws = await Session.open(main);
    ws.send(long({ store: false }));
    await ws.until((e) => e.type === 'response.output_text.delta');
    ws.send(create({ store: false }));
    const seen = [];
    const err = await ws.until((e) => e.type === 'error', 30_000, seen);
    assert.equal(err.status, 400);
    assert.equal(err.error.type, 'invalid_request_error');
    assert.equal(err.error.code, 'response_already_in_flight');
    assert.equal(typeof err.error.message, 'string');
    assert.ok(seen.every((m) => m.kind !== 'message' || !TERMINAL.has(m.event.type)),
      'the first response was still going');
    // the first response goes on (here until cancelled), and the socket takes the next one
    ws.send({ type: 'response.cancel' });
    const rest = await ws.response();
    assert.equal(rest.at(-1).type, 'response.cancelled');
    ws.send(create({ store: false, max_output_tokens: 2 }));
    assert.equal((await ws.response()).at(0).type, 'response.created');
    ws.close();
  });

test('response.cancel ends the response as cancelled and frees its sequence',
  { timeout: 90_000 }, async () => {
    const before_ = await metric(main, 'realm:request_success_total',
      { model: 'slow', finished_reason: 'cancelled' });
    const ws = await Session.open(main);
    ws.send(long());
    await ws.until((e) => e.type === 'response.output_text.delta');
    // a ping is answered while the module is busy generating
    ws.ws.ping();
    const seen = [];
    const deadline = Date.now() + 10_000;
    while (!seen.some((m) => m.kind === 'pong')) {
      const m = await ws.next(Math.max(1, deadline - Date.now()));
      assert.ok(!(m.kind === 'message' && TERMINAL.has(m.event.type)), 'pong before the end');
      seen.push(m);
    }
    ws.send({ type: 'response.cancel' });
    const events = await ws.response(30_000);
    const last = events.at(-1);
    assert.equal(last.type, 'response.cancelled', JSON.stringify(last));
    assert.equal(last.response.status, 'cancelled');
    assert.equal(last.response.output[0].status, 'incomplete');
    assert.ok(last.response.usage.output_tokens < 1500, 'stopped early');
    const types = events.map((e) => e.type);
    for (const t of ['response.output_text.done', 'response.content_part.done',
      'response.output_item.done'])
      assert.ok(types.includes(t), `${t} before the end`);
    await assertCancelledAndFreed(main, before_, 'response.cancel');
    // kept like any response, and the socket takes the next one
    const got = await http(main, 'GET', `/v1/responses/${last.response.id}`, null,
      { Authorization: `Bearer ${key}` });
    assert.equal(JSON.parse(got.text).status, 'cancelled');
    ws.send({ type: 'response.cancel' });
    const err = await ws.until((e) => e.type === 'error');
    assert.equal(err.error.code, 'response_cancel_not_active');
    ws.send(create({ store: false, max_output_tokens: 2 }));
    assert.ok(TERMINAL.has((await ws.response()).at(-1).type));
    ws.close();
  });

test('a socket closed mid-generation cancels it (close frame and dropped connection)',
  { timeout: 90_000 }, async () => {
    for (const how of ['close', 'terminate']) {
      const before_ = await metric(main, 'realm:request_success_total',
        { model: 'slow', finished_reason: 'cancelled' });
      const ws = await Session.open(main);
      ws.send(long({ store: false }));
      await ws.until((e) => e.type === 'response.output_text.delta');
      if (how === 'close') ws.ws.close(1000, 'bye');
      else ws.ws.terminate();
      await assertCancelledAndFreed(main, before_, how);
      assert.ok(await waitFor(async () =>
        (await metric(main, 'realm:websocket_connections')) === 0), `${how}: connection gone`);
    }
  });

test('malformed JSON, unknown types and refused options get an error event; the socket stays usable',
  { timeout: 60_000 }, async () => {
    const ws = await Session.open(main);
    const cases = [
      ['{"type":"response.create",', 400, 'invalid_json'],
      ['[1,2]', 400, 'invalid_json'],
      ['{"input":"x"}', 400, 'missing_required_parameter'],
      [JSON.stringify({ type: 'session.update' }), 400, 'unknown_event_type'],
    ];
    for (const [text, status, code] of cases) {
      ws.send(text);
      const e = (await ws.response()).at(-1);
      assert.equal(e.type, 'error', text);
      assert.equal(e.status, status, text);
      assert.equal(e.error.code, code, `${text}: ${JSON.stringify(e)}`);
    }
    // the module's refusals (400 with the parameter) arrive the same way
    ws.send(create({ tools: [{ type: 'function', name: 'f' }] }));
    let e = (await ws.response()).at(-1);
    assert.equal(e.type, 'error');
    assert.equal(e.status, 400);
    assert.equal(e.error.param, 'tools');
    ws.send(create({ model: 'no-such-model' }));
    e = (await ws.response()).at(-1);
    assert.equal(e.status, 404);
    assert.equal(e.error.code, 'model_not_found');
    ws.send(create({ previous_response_id: 'resp_nope' }));
    e = (await ws.response()).at(-1);
    assert.equal(e.status, 404);
    assert.equal(e.error.param, 'previous_response_id');
    ws.send(create({ store: false, max_output_tokens: 2 }));
    assert.ok(TERMINAL.has((await ws.response()).at(-1).type), 'still usable');
    ws.close();
  });

test('a binary message closes with 1003, invalid UTF-8 with 1007, one over --max-body with 1009',
  { timeout: 60_000 }, async () => {
    let ws = await Session.open(main);
    ws.ws.send(Buffer.from('{"type":"response.create"}'), { binary: true });
    assert.equal((await ws.closedWith()).code, 1003);
    ws = await Session.open(main);
    ws.ws.send(Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]), { binary: false });
    assert.equal((await ws.closedWith()).code, 1007);
    ws = await Session.open(main);
    ws.send(create({ input: 'a'.repeat(MAX_BODY + 100) }));
    assert.equal((await ws.closedWith()).code, 1009);
    // fragments add up: a message over the limit in small frames is refused too
    ws = await Session.open(main);
    const part = 'b'.repeat(16384);
    for (let i = 0; i < 5; i++) ws.ws.send(part, { fin: i === 4 });
    assert.equal((await ws.closedWith()).code, 1009);
    // one just under it is read (and answered)
    ws = await Session.open(main);
    ws.send({ type: 'response.cancel', pad: 'c'.repeat(MAX_BODY - 200) });
    assert.equal((await ws.until((e) => e.type === 'error')).error.code,
      'response_cancel_not_active');
    ws.close();
    assert.ok(await waitFor(async () =>
      (await metric(main, 'realm:websocket_connections')) === 0), 'every connection gone');
  });

test('the handshake: key as for HTTP (header, or a browser subprotocol), Origin, version',
  { timeout: 60_000 }, async () => {
    let err = await Session.open(main, { headers: { Authorization: 'Bearer rk-wrong' } })
      .then(() => null, (e) => e);
    assert.equal(err && err.status, 401);
    assert.equal(JSON.parse(err.body).error.code, 'invalid_api_key');
    err = await Session.open(main, { useKey: false }).then(() => null, (e) => e);
    assert.equal(err && err.status, 401, 'no key once keys exist');
    // a browser cannot set headers: the key as a subprotocol beside 'realm', which is echoed
    let ws = await Session.open(main, { useKey: false,
      protocols: ['realm', `openai-insecure-api-key.${key}`] });
    assert.equal(ws.ws.protocol, 'realm');
    ws.send(create({ store: false, max_output_tokens: 2 }));
    assert.ok(TERMINAL.has((await ws.response()).at(-1).type));
    ws.close();
    ws = await Session.open(main, { useKey: false, protocols: [`openai-insecure-api-key.${key}`] });
    assert.equal(ws.ws.protocol, `openai-insecure-api-key.${key}`, 'the only offer is echoed');
    ws.close();
    err = await Session.open(main, { useKey: false, protocols: ['realm', 'openai-insecure-api-key.rk-x'] })
      .then(() => null, (e) => e);
    assert.equal(err && err.status, 401);
    // cross-site WebSocket hijacking: another site's page is refused, the allowed one and the
    // server's own origin are not
    err = await Session.open(main, { origin: 'https://evil.example' }).then(() => null, (e) => e);
    assert.equal(err && err.status, 403);
    assert.equal(JSON.parse(err.body).error.code, 'origin_not_allowed');
    for (const origin of ['https://app.example', `http://127.0.0.1:${main.port}`]) {
      ws = await Session.open(main, { origin });
      ws.close();
    }
    // not a WebSocket version 13 handshake: 426 naming the version
    const res = await new Promise((resolve, reject) => {
      const rq = require('node:http').get({ host: '127.0.0.1', port: main.port,
        path: '/v1/responses', timeout: 10_000, headers: { Authorization: `Bearer ${key}`,
          Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '8',
          'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==' } }, resolve);
      rq.on('upgrade', () => reject(new Error('upgraded')));
      rq.on('timeout', () => rq.destroy(new Error('timeout')));
      rq.on('error', reject);
    });
    res.resume();
    assert.equal(res.statusCode, 426);
    assert.equal(res.headers['sec-websocket-version'], '13');
  });

test('--ws-max-connections bounds the open connections; idle ones pin no worker',
  { timeout: 60_000 }, async () => {
    assert.ok(await waitFor(async () =>
      (await metric(main, 'realm:websocket_connections')) === 0), 'no connection left over');
    const open = [];
    for (let i = 0; i < WS_MAX; i++) open.push(await Session.open(main));
    assert.equal(await metric(main, 'realm:websocket_connections'), WS_MAX);
    const err = await Session.open(main).then(() => null, (e) => e);
    assert.equal(err && err.status, 503);
    assert.equal(JSON.parse(err.body).error.code, 'websocket_connection_limit');
    // the idle connections hold no module: HTTP and a WebSocket response are served meanwhile
    const r = await http(main, 'POST', '/v1/responses', { model: 'tiny', input: 'Hi',
      max_output_tokens: 2, store: false }, { Authorization: `Bearer ${key}` });
    assert.equal(r.status, 200);
    open[0].send(create({ store: false, max_output_tokens: 2 }));
    assert.ok(TERMINAL.has((await open[0].response()).at(-1).type));
    for (const s of open) s.close();
    assert.ok(await waitFor(async () =>
      (await metric(main, 'realm:websocket_connections')) === 0), 'all closed');
    (await Session.open(main)).close();
  });

test('a keyless server refuses any other origin; a drain finishes in-flight responses, then 1001',
  { timeout: 120_000 }, async () => {
    const s = await startServer('drain', ['--cors-origin', 'https://app.example',
      '--drain-timeout', '60s']);
    const savedKey = key;
    key = ''; // keyless: no Authorization header
    try {
      for (const origin of ['https://app.example', 'https://evil.example']) {
        const err = await Session.open(s, { origin }).then(() => null, (e) => e);
        assert.equal(err && err.status, 403, origin);
      }
      const idle = await Session.open(s, { origin: `http://127.0.0.1:${s.port}` });
      const busy = await Session.open(s);
      busy.send(create({ model: 'slow', max_output_tokens: 40 }));
      await busy.until((e) => e.type === 'response.output_text.delta');
      s.proc.kill('SIGTERM');
      const idleClose = await idle.closedWith();
      assert.equal(idleClose.code, 1001, 'an idle socket is closed at once');
      const events = await busy.response(60_000);
      assert.equal(events.at(-1).type, 'response.incomplete', 'the response in flight finishes');
      assert.equal((await busy.closedWith()).code, 1001, 'then its socket closes');
      await assertCleanExit(s);
    } finally {
      key = savedKey;
    }
  });

test('at the drain deadline a response in flight ends cancelled, then 1001',
  { timeout: 120_000 }, async () => {
    const s = await startServer('deadline', ['--drain-timeout', '1s']);
    const savedKey = key;
    key = '';
    try {
      const busy = await Session.open(s);
      busy.send(long());
      await busy.until((e) => e.type === 'response.output_text.delta');
      s.proc.kill('SIGTERM');
      const events = await busy.response(30_000);
      assert.equal(events.at(-1).type, 'response.cancelled');
      assert.equal(events.at(-1).response.status, 'cancelled');
      assert.equal((await busy.closedWith()).code, 1001);
      await assertCleanExit(s);
    } finally {
      key = savedKey;
    }
  });

test('over TLS (wss): a response and a ping', { timeout: 120_000 }, async () => {
  const cert = path.join(TMP, 'cert.pem'), pem = path.join(TMP, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', pem,
    '-out', cert, '-days', '1', '-subj', '/CN=localhost'], { timeout: 60_000, stdio: 'ignore' });
  const s = await startServer('tls', ['--tls-cert', cert, '--tls-key', pem]);
  const savedKey = key;
  key = '';
  try {
    const ws = await Session.open(s);
    ws.ws.ping();
    assert.equal((await ws.next()).kind, 'pong');
    ws.send(create({ store: false }));
    const events = await ws.response();
    assert.equal(events[0].type, 'response.created');
    assert.ok(TERMINAL.has(events.at(-1).type));
    s.proc.kill('SIGTERM');
    assert.equal((await ws.closedWith(30_000)).code, 1001);
    await assertCleanExit(s);
  } finally {
    key = savedKey;
  }
});

// Last: the main server, after all of the above, drains and exits cleanly; under the sanitizers
// (REALM_SANITIZE) that is where leaks are reported.
test('the main server stops cleanly after all of the above', { timeout: 120_000 }, async () => {
  const ws = await Session.open(main); // an idle connection is closed by the drain
  main.proc.kill('SIGTERM');
  assert.equal((await ws.closedWith(30_000)).code, 1001);
  await assertCleanExit(main);
});
