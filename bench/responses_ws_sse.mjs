#!/usr/bin/env node
// Streamed /v1/responses over a WebSocket (docs/websocket.md) vs SSE: time to the first
// response.output_text.delta and output tokens/s, at 1 and 8 concurrent clients, against a
// running `realm serve` on the loopback interface.
//
//   node bench/responses_ws_sse.mjs --url http://127.0.0.1:PORT --key rk-... --model NAME \
//       [--levels 1,8] [--requests 4] [--max-tokens 64] [--rounds 1] [--timeout 600] [--json]
//
// Needs the `ws` npm package pinned in tests/node/package.json: `npm ci` in tests/node (or
// CTest's node_deps fixture, which installs it into BUILD/tests/node/node_modules); the script
// looks in tests/node/node_modules, then build*/tests/node/node_modules, or where
// REALM_NODE_MODULES says.
//
// Each client sends --requests requests back to back (WebSocket: one socket per client, opened
// before the clock starts; SSE: fetch with keep-alive), each streamed, store false,
// temperature 0, max_output_tokens --max-tokens, an input of about 100 tokens that starts with
// a tag unique to the request (so the prefix cache cannot serve it). Per level the transports
// are interleaved (ws, sse, then sse, ws in the next round ...). TTFT is from sending the
// request to its first delta; tokens/s is the sum of usage.output_tokens over the wall time of
// the level's run (all clients). /proc/loadavg is recorded around every run: the figures mean
// little on a busy machine unless that is said beside them. Every wait is bounded.
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..');

function findWs() {
  const dirs = [];
  if (process.env.REALM_NODE_MODULES) dirs.push(process.env.REALM_NODE_MODULES);
  dirs.push(path.join(ROOT, 'tests', 'node', 'node_modules'));
  for (const d of fs.readdirSync(ROOT).filter((n) => n.startsWith('build')).sort())
    dirs.push(path.join(ROOT, d, 'tests', 'node', 'node_modules'));
  for (const d of dirs) {
    if (fs.existsSync(path.join(d, 'ws', 'package.json')))
      return createRequire(path.join(d, 'noop.js'))('ws');
  }
  console.error('the ws package was not found: run `npm ci` in tests/node (or set ' +
    'REALM_NODE_MODULES to a node_modules directory holding ws)');
  process.exit(2);
}
const WebSocket = findWs();

function parseArgs(argv) {
  const o = { url: '', key: '', model: '', levels: [1, 8], requests: 4, maxTokens: 64,
    rounds: 1, timeout: 600, json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i], v = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--url') o.url = v();
    else if (a === '--key') o.key = v();
    else if (a === '--model') o.model = v();
    else if (a === '--levels') o.levels = v().split(',').map(Number);
    else if (a === '--requests') o.requests = Number(v());
    else if (a === '--max-tokens') o.maxTokens = Number(v());
    else if (a === '--rounds') o.rounds = Number(v());
    else if (a === '--timeout') o.timeout = Number(v());
    else if (a === '--json') o.json = true;
    else throw new Error(`unknown option ${a}`);
  }
  if (!o.url) throw new Error('--url is required');
  const u = new URL(o.url);
  if (!['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname) || u.protocol !== 'http:')
    throw new Error('--url must be http:// on the loopback interface');
  o.base = `${u.protocol}//${u.host}`;
  return o;
}

const opt = (() => {
  try {
    return parseArgs(process.argv.slice(2));
  } catch (e) {
    console.error(`${e.message}\nusage: node bench/responses_ws_sse.mjs --url http://127.0.0.1:PORT ` +
      '[--key KEY] [--model NAME] [--levels 1,8] [--requests 4] [--max-tokens 64] [--rounds 1] ' +
      '[--timeout 600] [--json]');
    process.exit(2);
  }
})();
const AUTH = opt.key ? { Authorization: `Bearer ${opt.key}` } : {};

// About 100 tokens of plain English (LLaMA's tokenizer: 98 tokens with the tag).
const TEXT = 'The old lighthouse keeper climbed the spiral stairs every evening, counting ' +
  'the steps as his father had taught him. At the top he wiped the salt from the great lens, ' +
  'trimmed the wick and watched the ships pass along the dark coast. One night a small boat ' +
  'drifted towards the rocks without a light, and he rang the bell until his arms ached. ' +
  'Continue the story in a few sentences.';
let seq = 0;
function body(extra = {}) {
  seq += 1;
  return { model: opt.model, input: `Request ${seq}-${process.pid}. ${TEXT}`,
    max_output_tokens: opt.maxTokens, temperature: 0, store: false, ...extra };
}

const loadavg = () => fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number);

function deadline(ms, what) {
  let timer;
  const p = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing in ${ms} ms`)), ms);
  });
  return { p, clear: () => clearTimeout(timer) };
}

// One streamed request over SSE: { ttft, tokens, total }.
async function sseRequest() {
  const t0 = performance.now();
  const res = await fetch(`${opt.base}/v1/responses`, {
    method: 'POST', headers: { 'Content-Type': 'application/json', ...AUTH },
    body: JSON.stringify(body({ stream: true })), signal: AbortSignal.timeout(opt.timeout * 1000),
  });
  if (res.status !== 200) throw new Error(`SSE: HTTP ${res.status}: ${await res.text()}`);
  const decoder = new TextDecoder();
  let buf = '', ttft = null, last = null;
  for await (const chunk of res.body) {
    buf += decoder.decode(chunk, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const m = /^data: (.*)$/m.exec(block);
      if (!m) continue;
      const ev = JSON.parse(m[1]);
      if (ev.type === 'response.output_text.delta' && ttft === null) ttft = performance.now() - t0;
      if (['response.completed', 'response.incomplete', 'response.failed'].includes(ev.type))
        last = ev;
      if (ev.type === 'error') throw new Error(`SSE: ${JSON.stringify(ev)}`);
    }
  }
  if (!last || last.type === 'response.failed')
    throw new Error(`SSE: no completed response: ${JSON.stringify(last)}`);
  return { ttft, tokens: last.response.usage.output_tokens, total: performance.now() - t0 };
}

// A WebSocket client: open() then request() back to back.
class WsClient {
  async open() {
    const url = `${opt.base.replace(/^http/, 'ws')}/v1/responses`;
    this.ws = new WebSocket(url, { headers: AUTH, handshakeTimeout: 30_000 });
    this.handler = null;
    this.ws.on('message', (data) => this.handler && this.handler(JSON.parse(String(data))));
    this.ws.on('close', () => this.handler && this.handler({ type: 'closed' }));
    const d = deadline(30_000, 'WebSocket open');
    try {
      await Promise.race([d.p, new Promise((resolve, reject) => {
        this.ws.once('open', resolve);
        this.ws.once('error', reject);
        this.ws.once('unexpected-response', (_, res) =>
          reject(new Error(`WebSocket handshake answered ${res.statusCode}`)));
      })]);
    } finally {
      d.clear();
    }
    this.ws.on('error', () => {});
  }

  async request() {
    const t0 = performance.now();
    let ttft = null;
    const d = deadline(opt.timeout * 1000, 'WebSocket response');
    const done = new Promise((resolve, reject) => {
      this.handler = (ev) => {
        if (ev.type === 'response.output_text.delta' && ttft === null)
          ttft = performance.now() - t0;
        else if (['response.completed', 'response.incomplete'].includes(ev.type)) resolve(ev);
        else if (['response.failed', 'response.cancelled', 'error', 'closed'].includes(ev.type))
          reject(new Error(`WebSocket: ${JSON.stringify(ev)}`));
      };
    });
    this.ws.send(JSON.stringify({ type: 'response.create', ...body() }));
    try {
      const last = await Promise.race([d.p, done]);
      return { ttft, tokens: last.response.usage.output_tokens, total: performance.now() - t0 };
    } finally {
      d.clear();
      this.handler = null;
    }
  }

  close() {
    this.ws.terminate();
  }
}

// One level of one transport: n clients each sending opt.requests requests back to back.
async function run(transport, n) {
  const clients = [];
  if (transport === 'ws') {
    for (let i = 0; i < n; i++) {
      const c = new WsClient();
      await c.open();
      clients.push(c);
    }
  }
  const load0 = loadavg();
  const t0 = performance.now();
  const results = [];
  await Promise.all(Array.from({ length: n }, async (_, i) => {
    for (let r = 0; r < opt.requests; r++)
      results.push(await (transport === 'ws' ? clients[i].request() : sseRequest()));
  }));
  const wall = performance.now() - t0;
  for (const c of clients) c.close();
  const tokens = results.reduce((s, r) => s + r.tokens, 0);
  return { transport, clients: n, requests: results.length, wall_ms: wall, tokens,
    tok_s: tokens / (wall / 1000), ttft_ms: results.map((r) => r.ttft),
    loadavg_before: load0, loadavg_after: loadavg() };
}

function quantile(xs, q) {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const pos = (s.length - 1) * q, lo = Math.floor(pos), hi = Math.ceil(pos);
  return s[lo] + (s[hi] - s[lo]) * (pos - lo);
}

async function main() {
  // a warm-up of each transport (model loaded, connections made), not counted
  await sseRequest();
  { const c = new WsClient(); await c.open(); await c.request(); c.close(); }
  const runs = [];
  for (const n of opt.levels) {
    for (let round = 0; round < opt.rounds; round++) {
      const order = round % 2 === 0 ? ['ws', 'sse'] : ['sse', 'ws'];
      for (const t of order) {
        const r = await run(t, n);
        runs.push(r);
        console.error(`${t} x${n} round ${round + 1}: ${r.requests} requests, ${r.tokens} tokens ` +
          `in ${(r.wall_ms / 1000).toFixed(1)} s (${r.tok_s.toFixed(2)} tok/s), TTFT p50 ` +
          `${quantile(r.ttft_ms, 0.5).toFixed(0)} ms p90 ${quantile(r.ttft_ms, 0.9).toFixed(0)} ms, ` +
          `loadavg ${r.loadavg_before.join(' ')} -> ` +
          `${r.loadavg_after.join(' ')}`);
      }
    }
  }
  const rows = [];
  for (const n of opt.levels) {
    for (const t of ['ws', 'sse']) {
      const rs = runs.filter((r) => r.clients === n && r.transport === t);
      const ttft = rs.flatMap((r) => r.ttft_ms);
      rows.push({ transport: t, clients: n, requests: ttft.length,
        ttft_p50_ms: quantile(ttft, 0.5), ttft_p90_ms: quantile(ttft, 0.9),
        tok_s: quantile(rs.map((r) => r.tok_s), 0.5),
        tokens: rs.reduce((s, r) => s + r.tokens, 0),
        loadavg_1m: quantile(rs.flatMap((r) => [r.loadavg_before[0], r.loadavg_after[0]]), 0.5) });
    }
  }
  if (opt.json) {
    console.log(JSON.stringify({ options: { ...opt, key: opt.key ? '(set)' : '' }, rows, runs },
      null, 1));
    return;
  }
  console.log('| transport | clients | requests | TTFT p50 ms | TTFT p90 ms | output tok/s (all clients) | load avg 1 min |');
  console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const r of rows)
    console.log(`| ${r.transport === 'ws' ? 'WebSocket' : 'SSE'} | ${r.clients} | ${r.requests} | ` +
      `${r.ttft_p50_ms.toFixed(0)} | ${r.ttft_p90_ms.toFixed(0)} | ${r.tok_s.toFixed(2)} | ` +
      `${r.loadavg_1m.toFixed(2)} |`);
}

main().then(() => process.exit(0), (e) => {
  console.error(e.stack || String(e));
  process.exit(1);
});
