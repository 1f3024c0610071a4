#!/usr/bin/env node
// The load generator of bench section 3: a bounded keep-alive HTTP loop (node:http Agent), run as its own
// process so that it never shares an event loop with the broker or the bench. `concurrency` workers each
// send one GET, read the whole answer, and send the next, over `concurrency` kept-alive sockets. Answers
// completed in [warmupMs, warmupMs + durationMs] are counted (with their latency); then it stops and prints
// one JSON line: {requests, seconds, rps, errors, non200, latencyMs: {median, p99, max}, answered} (answered:
// every answer, warm-up included, to divide the service's CPU time by).
// Usage: node bench/load.mjs <url> <concurrency> <durationMs> [warmupMs]
import { Agent, get } from 'node:http';

const [url, concurrencyArg, durationArg, warmupArg] = process.argv.slice(2);
if (!url || !concurrencyArg || !durationArg) {
  process.stderr.write('usage: node bench/load.mjs <url> <concurrency> <durationMs> [warmupMs]\n');
  process.exit(2);
}
const concurrency = Number(concurrencyArg);
const durationMs = Number(durationArg);
const warmupMs = Number(warmupArg ?? 0);
const agent = new Agent({ keepAlive: true, maxSockets: concurrency, maxFreeSockets: concurrency });
const now = () => Number(process.hrtime.bigint()) / 1e6;

const start = now();
const measureFrom = start + warmupMs;
const stopAt = measureFrom + durationMs;
let requests = 0;
let answered = 0;
let errors = 0;
let non200 = 0;
const latencies = [];

function one() {
  return new Promise((resolve) => {
    const sent = now();
    const req = get(url, { agent }, (res) => {
      if (res.statusCode !== 200) non200++;
      res.on('data', () => undefined);
      res.on('end', () => {
        const done = now();
        answered++;
        if (done >= measureFrom && done <= stopAt) {
          requests++;
          latencies.push(done - sent);
        }
        resolve();
      });
      res.on('error', () => (errors++, resolve()));
    });
    req.setTimeout(30_000, () => req.destroy(new Error('timeout')));
    req.on('error', () => (errors++, resolve()));
  });
}

async function worker() {
  while (now() < stopAt) await one();
}

await Promise.all(Array.from({ length: concurrency }, worker));
agent.destroy();
latencies.sort((a, b) => a - b);
const pick = (p) => latencies[Math.min(latencies.length - 1, Math.max(0, Math.ceil((p / 100) * latencies.length) - 1))] ?? NaN;
const seconds = durationMs / 1000;
process.stdout.write(`${JSON.stringify({ requests, seconds, rps: requests / seconds, errors, non200, latencyMs: { median: pick(50), p99: pick(99), max: latencies.at(-1) ?? NaN }, answered })}\n`);
