'use strict';
/*
 * The "node" baseline: what a Node.js developer would deploy for the same job.
 *
 * An `http` server answers `GET /healthz`; `ws` (no compression) takes the upgrades to
 * `/ws/en` and sends a snapshot frame, or, with `?cursor=`, one `events` frame with every
 * event after that cursor and `missed` (the events are kept in memory, as raw_floor.py
 * keeps them). One XREAD loop (ioredis, `XREAD COUNT 100 BLOCK 1000` on
 * `ticker:stream:en`, from its last entry at start) builds ONE JSON frame per read batch and
 * `client.send(frame)`s it to every open client: ws's ordinary API, which buffers for a slow
 * reader without limit.
 * Frames have the shapes of raw_floor.py's. Optional heartbeat: the ping/pong/terminate
 * pattern of ws's README.
 *
 *   node server.js --port P --redis-url redis://127.0.0.1:R/0 [--procs N] [--ping-interval S]
 *
 * `--procs N` (N > 1): Node's `cluster` module forks N workers, each with its own Redis
 * reader and clients; the primary supervises (and, with cluster's default round-robin
 * scheduling, accepts connections and hands them to the workers).
 */

const cluster = require('node:cluster');
const http = require('node:http');
const { parseArgs } = require('node:util');
const Redis = require('ioredis');
const { WebSocketServer, WebSocket } = require('ws');

const STREAM = 'ticker:stream:en';
const PATH = '/ws/en';
const CHANNEL_INFO = { name: 'en', lang: 'en', dir: 'ltr', title: 'Breaking' };
const MAX_TIMER_MS = 2 ** 31 - 1; // setInterval fires at once for anything longer

function options() {
  const { values } = parseArgs({
    options: {
      host: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string' },
      'redis-url': { type: 'string' },
      procs: { type: 'string', default: '1' },
      'ping-interval': { type: 'string', default: '30' },
    },
  });
  const port = Number(values.port);
  const procs = Number(values.procs);
  const ping = Number(values['ping-interval']);
  if (!Number.isInteger(port) || port <= 0 || !values['redis-url']) {
    throw new Error('usage: node server.js --port P --redis-url URL [--procs N] [--ping-interval S]');
  }
  if (!Number.isInteger(procs) || procs < 1) throw new Error('--procs wants an integer >= 1');
  if (!(ping >= 0)) throw new Error('--ping-interval wants seconds >= 0 (0: no pings)');
  return { host: values.host, port, redisUrl: values['redis-url'], procs, pingSeconds: ping };
}

/** The protocol's ITEM for a publish entry (defaults, no validation), as raw_floor.py. */
function itemOf(id, fields) {
  const ts = Number(id.split('-', 1)[0]);
  return {
    id,
    text: fields.text ?? '',
    source: fields.source ?? null,
    urgency: fields.urgency ?? 'breaking',
    link: null,
    tags: [],
    ts,
    expires: ts + 7_200_000,
    version: 1,
    corrected: false,
    pinned: false,
  };
}

/** "ms-seq" → [ms, seq], or null when it is not a stream ID. */
function parseId(id) {
  const m = /^(\d+)-(\d+)$/.exec(id);
  return m ? [Number(m[1]), Number(m[2])] : null;
}

function idAfter(a, b) {
  return a[0] > b[0] || (a[0] === b[0] && a[1] > b[1]);
}

/** Every event read so far (its stream ID and its JSON): what resume needs. */
class History {
  constructor() {
    this.ids = [];
    this.json = [];
    this.cursor = '0-0';
  }

  add(id, eventJson) {
    this.ids.push(parseId(id));
    this.json.push(eventJson);
    this.cursor = id;
  }

  /** The events frame for a client at `cursor`, or null when the cursor is unusable. */
  after(cursor) {
    const key = parseId(cursor);
    if (key === null) return null;
    let lo = 0;
    let hi = this.ids.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (idAfter(this.ids[mid], key)) hi = mid;
      else lo = mid + 1;
    }
    const events = this.json.slice(lo).join(',');
    return `{"type":"events","cursor":${JSON.stringify(this.cursor)},"now":${Date.now()},` +
      `"missed":${this.ids.length - lo},"events":[${events}]}`;
  }

  snapshot() {
    return JSON.stringify({
      type: 'snapshot',
      channel: 'en',
      cursor: this.cursor,
      reset: false,
      now: Date.now(),
      missed: null,
      channel_info: CHANNEL_INFO,
      items: [],
    });
  }
}

/** The `?cursor=` of a request target, or null (never throws on a bad query string). */
function cursorOf(url) {
  try {
    return new URL(url, 'http://localhost').searchParams.get('cursor');
  } catch {
    return null;
  }
}

function pathOf(url) {
  return (url || '').split('?', 1)[0];
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The ID of the stream's last entry ('0-0' when it has none): where reading starts. */
async function lastId(redis) {
  const [entry] = await redis.xrevrange(STREAM, '+', '-', 'COUNT', 1);
  return entry ? entry[0] : '0-0';
}

/** The one XREAD loop: one frame per read batch, sent to every open client. */
async function readLoop(redis, wss, history) {
  // Not '$': sent again after a read that timed out empty, '$' would skip whatever was
  // added between that reply and the next XREAD.
  let last = null;
  for (;;) {
    let reply;
    try {
      last ??= await lastId(redis);
      reply = await redis.xread('COUNT', 100, 'BLOCK', 1000, 'STREAMS', STREAM, last);
    } catch (err) {
      console.error(`xread failed: ${err.message}`);
      await sleep(500);
      continue;
    }
    for (const [, entries] of reply || []) {
      if (entries.length === 0) continue;
      const events = entries.map(([id, flat]) => {
        const fields = {};
        for (let i = 0; i + 1 < flat.length; i += 2) fields[flat[i]] = flat[i + 1];
        return { op: 'publish', cursor: id, item: itemOf(id, fields) };
      });
      last = entries[entries.length - 1][0];
      const frame = JSON.stringify({ type: 'events', cursor: last, now: Date.now(), events });
      for (const event of events) history.add(event.cursor, JSON.stringify(event));
      for (const client of wss.clients) {
        if (client.readyState === WebSocket.OPEN) client.send(frame);
      }
    }
  }
}

function heartbeat() {
  this.isAlive = true;
}

function serve({ host, port, redisUrl, pingSeconds }) {
  const history = new History();
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });

  const server = http.createServer((req, res) => {
    if (req.method === 'GET' && pathOf(req.url) === '/healthz') {
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.end('ok');
    } else {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('not found');
    }
  });

  server.on('upgrade', (req, socket, head) => {
    socket.on('error', (err) => console.error(`upgrade socket: ${err.message}`));
    if (pathOf(req.url) !== PATH) {
      socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
  });

  wss.on('connection', (ws, req) => {
    ws.isAlive = true;
    ws.on('pong', heartbeat);
    ws.on('error', (err) => console.error(`websocket: ${err.message}`));
    const cursor = cursorOf(req.url);
    ws.send((cursor !== null && history.after(cursor)) || history.snapshot());
  });

  if (pingSeconds > 0) {
    const every = Math.min(pingSeconds * 1000, MAX_TIMER_MS);
    const timer = setInterval(() => {
      for (const ws of wss.clients) {
        if (ws.isAlive === false) {
          ws.terminate();
          continue;
        }
        ws.isAlive = false;
        ws.ping();
      }
    }, every);
    timer.unref();
  }

  server.on('error', (err) => {
    console.error(`server: ${err.message}`);
    process.exit(1);
  });
  // Node's default backlog (511) drops SYNs in a reconnect storm; ticker and raw use 8192.
  server.listen({ host, port, backlog: 8192 });

  const redis = new Redis(redisUrl);
  redis.on('error', (err) => console.error(`redis: ${err.message}`));
  readLoop(redis, wss, history).catch((err) => {
    console.error(`reader stopped: ${err.stack || err}`);
    process.exit(1);
  });
}

function supervise(procs) {
  let stopping = false;
  for (let i = 0; i < procs; i++) cluster.fork();
  cluster.on('exit', (worker, code, signal) => {
    if (stopping) return;
    console.error(`worker ${worker.process.pid} exited (${signal || code}); forking another`);
    setTimeout(() => cluster.fork(), 500);
  });
  for (const sig of ['SIGTERM', 'SIGINT']) {
    process.on(sig, () => {
      stopping = true;
      for (const worker of Object.values(cluster.workers)) worker.process.kill('SIGTERM');
      process.exit(0);
    });
  }
}

function main() {
  let opts;
  try {
    opts = options();
  } catch (err) {
    console.error(err.message);
    process.exit(2);
  }
  if (opts.procs > 1 && cluster.isPrimary) supervise(opts.procs);
  else serve(opts);
}

main();
