#!/usr/bin/env node
// `npm run bench`: builds dist/, makes sure the S3 server with Object Lock is up, runs the measurements
// (bench/run.ts, through tsx) and prints the table from bench/results.json. Every figure is a median and a
// p99 over many samples, with its ratio to a baseline measured in the same run on the same machine.
//
// Sections: 1 CDP round trip; 2 target pause per snapshot hit (inside the target); 2e-2g audit recording and
// upload; 3 demo service throughput under a session; 4 idle sessions (memory, time to open 100); 5 an
// evaluation through Loupe's interpreter vs V8 on one paused frame; 6 a Debug Console evaluation through Loupe's
// VS Code adapter vs a raw CDP client through the broker (the adapter's own share); 7 recording under load (20
// sessions × 50 evaluations/s on one broker vs one session on it idle; records per broker CPU second); 8 grants and attaches through
// one broker vs three replicas on PostgreSQL.
//
//   npm run bench                 the full run (about 3 minutes on 2 cores; budget 5 minutes)
//   npm run bench -- --no-s3      skip the S3 upload figure (no server started)
//   npm run bench -- --no-postgres  skip section 8 (no PostgreSQL started)
//   npm run bench -- --print      only print the table of the last bench/results.json
//   BENCH_SECTIONS=2,3 npm run bench -- --no-s3   only those sections (1, 2, 2e for 2e-2g, 3, 4, 5, 6, 7, 8); with
//   BENCH_RESULTS=/tmp/x.json the results go there instead of bench/results.json (also for --print)
//   BENCH_BROKER_PROFILE=/tmp/prof  section 1's brokers run under --cpu-prof, their profiles written there at exit
//   (summarize with bench/lib/summarizeProfile.mjs; the figures of a profiled run are not the ones to publish)
//
// S3: uses S3_ENDPOINT / AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_REGION when set; otherwise runs
// scripts/s3/start-rgw.sh $LOUPE_RGW_DIR (default /tmp/loupe-rgw). If the bench started that server it
// stops it again at the end (scripts/s3/stop-rgw.sh), unless --keep-s3; a server that was already
// running is left as it was.
//
// PostgreSQL (section 8): uses DATABASE_URL when set; otherwise runs scripts/postgres/start-postgres.sh
// $LOUPE_POSTGRES_DIR (default /tmp/loupe-postgres), and stops it at the end if the bench started it.
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..');
const resultsFile = process.env.BENCH_RESULTS ?? join(root, 'bench', 'results.json');
const args = new Set(process.argv.slice(2));
const t0 = Date.now();
const say = (line) => process.stdout.write(`${line}\n`);

function machineLine() {
  return `Node ${process.version} (V8 ${process.versions.v8}) on ${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} cores, ${process.platform} ${release()}`;
}

async function s3Answers(endpoint) {
  try {
    const res = await fetch(endpoint, { signal: AbortSignal.timeout(2000) });
    await res.arrayBuffer();
    return true;
  } catch {
    return false;
  }
}

/** Returns { env, stop } : the S3 settings for the run and how to undo what we started. */
async function ensureS3() {
  if (args.has('--no-s3')) return { env: {}, stop: async () => undefined, note: 'skipped (--no-s3)' };
  if (process.env.S3_ENDPOINT) return { env: {}, stop: async () => undefined, note: `S3_ENDPOINT=${process.env.S3_ENDPOINT} from the environment` };
  const dir = process.env.LOUPE_RGW_DIR || '/tmp/loupe-rgw';
  const port = process.env.RGW_PORT || '7480';
  const wasRunning = await s3Answers(`http://127.0.0.1:${port}/`);
  say(`== S3 server: ${wasRunning ? 'reusing' : 'starting'} the Ceph RGW with Object Lock in ${dir}`);
  const started = Date.now();
  const result = spawnSync('bash', [join(root, 'scripts', 's3', 'start-rgw.sh'), dir], { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
  const env = {};
  for (const line of (result.stdout ?? '').split('\n')) {
    const match = /^([A-Z][A-Z0-9_]*)=(.*)$/.exec(line.trim());
    if (match) env[match[1]] = match[2];
  }
  if (result.status !== 0 || !env.S3_ENDPOINT) {
    say(`S3 server did not start (exit ${result.status ?? result.signal}); the S3 upload figure is skipped. Logs: ${dir}/log/`);
    return { env: {}, stop: async () => undefined, note: 'failed to start; skipped' };
  }
  const note = `${env.S3_ENDPOINT} (${wasRunning ? 'already running' : `started in ${((Date.now() - started) / 1000).toFixed(1)} s`})`;
  const stop = async () => {
    if (wasRunning || args.has('--keep-s3')) return;
    say(`== stopping the S3 server the bench started (${dir})`);
    spawnSync('bash', [join(root, 'scripts', 's3', 'stop-rgw.sh'), dir], { stdio: ['ignore', 'inherit', 'inherit'] });
  };
  return { env, stop, note };
}

/** Returns { env, stop, note }: DATABASE_URL for section 8, and how to undo what we started. */
function ensurePostgres() {
  const none = (note) => ({ env: {}, stop: () => undefined, note });
  if (args.has('--no-postgres')) return none('skipped (--no-postgres); section 8 is skipped');
  if (process.env.DATABASE_URL) return none('DATABASE_URL from the environment');
  const dir = process.env.LOUPE_POSTGRES_DIR || '/tmp/loupe-postgres';
  const script = (name, ...rest) => spawnSync('bash', [join(root, 'scripts', 'postgres', name), dir, ...rest], { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
  const started = script('start-postgres.sh');
  const wasRunning = /already running/.test(started.stderr ?? '');
  const url = /^DATABASE_URL=(\S+)$/m.exec(started.stdout ?? '')?.[1];
  if (started.status !== 0 || !url) {
    say(`PostgreSQL did not start (exit ${started.status ?? started.signal}); section 8 is skipped. ${started.stderr?.trim().split('\n').at(-1) ?? ''}`);
    return none('failed to start; section 8 skipped');
  }
  const stop = () => {
    if (wasRunning || args.has('--keep-postgres')) return;
    say(`== stopping the PostgreSQL server the bench started (${dir})`);
    script('stop-postgres.sh');
  };
  return { env: { DATABASE_URL: url }, stop, note: `${dir} (${wasRunning ? 'already running' : 'started'})` };
}

// ---------------------------------------------------------------------------------------------------
// The table

const ms = (x) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x >= 1 ? x.toFixed(2) : x.toFixed(3));
const ratio = (x) => (!Number.isFinite(x) ? 'n/a' : x >= 100 ? `${x.toFixed(0)}×` : x >= 10 ? `${x.toFixed(1)}×` : `${x.toFixed(2)}×`);
const rate = (x) => (x >= 1e6 ? `${(x / 1e6).toFixed(2)}M` : x >= 1e4 ? `${(x / 1e3).toFixed(1)}k` : x.toFixed(0));

function table(headers, rows) {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells) => cells.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join('  ');
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

function printResults(r) {
  say('');
  say(`Machine: ${machineLine()}`);
  say(`Results of ${r.generatedAt} (measured on Node ${r.machine.node}, ${r.machine.cpu}, ${r.machine.cores} cores), in ${r.durationSeconds.toFixed(1)} s`);
  const load = (l) => l?.map((x) => x.toFixed(2)).join(' ') ?? '?';
  say(`Load average before / after: ${load(r.machine.loadavgBefore)} / ${load(r.machine.loadavgAfter)} (other work on this machine widens p99s; ratios come from interleaved rounds)`);
  if (r.sectionSeconds)
    say(
      `Seconds per section: ${Object.entries(r.sectionSeconds)
        .map(([k, s]) => `${k}: ${s.toFixed(1)}`)
        .join(', ')}`,
    );
  if (r.roundTrip) printRoundTrip(r);
  if (r.pause) printPause(r.pause);
  if (r.audit) printAudit(r);
  if (r.upload) printUpload(r);
  if (r.roundTrip) printAdded(r);
  if (r.throughput) printThroughput(r.throughput, r.machine.cores);
  if (r.sessions) printSessions(r.sessions);
  if (r.evaluation) printEvaluation(r.evaluation);
  if (r.adapter) printAdapter(r.adapter);
  if (r.recording) printRecording(r.recording);
  if (r.replicas) printReplicas(r.replicas);
  say('');
}

function printRoundTrip(r) {
  const v = r.roundTrip.variants;
  say('');
  say('1. CDP round trip, Debugger domain enabled (ms per call; ratios are median/median and p99/p99)');
  say(`   Runtime.evaluate('1'): direct and relay clients send ${JSON.stringify(r.evaluateParamsAsForwarded)}, what the broker's gate forwards;`);
  say('   Runtime.getProperties of a 100-field global object ({ownProperties:true}). Interleaved rounds, same client code for all.');
  for (const op of ['evaluate', 'getProperties']) {
    say('');
    const rows = ['plain', 'quickack', 'relay', 'broker', 'brokerMem', 'brokerLoupe']
      .filter((k) => v[k])
      .map((k) => {
        const s = v[k][op];
        return [
          v[k].name,
          s.n,
          ms(s.median),
          ms(s.p99),
          `${ratio(s.median / v.plain[op].median)} / ${ratio(s.p99 / v.plain[op].p99)}`,
          `${ratio(s.median / v.relay[op].median)} / ${ratio(s.p99 / v.relay[op].p99)}`,
        ];
      });
    say(table([op === 'evaluate' ? 'Runtime.evaluate' : 'Runtime.getProperties (100 fields)', 'n', 'median', 'p99', 'vs (a) med / p99', 'vs (c) med / p99'], rows));
  }
  say('');
  say('   Goals (broker, median and p99):');
  for (const op of ['evaluate', 'getProperties']) {
    const b = v.broker[op];
    const vsPlain = [b.median / v.plain[op].median, b.p99 / v.plain[op].p99];
    const vsRelay = [b.median / v.relay[op].median, b.p99 / v.relay[op].p99];
    const mark = (xs, goal) => `${xs.map(ratio).join(' / ')} ${xs.every((x) => x <= goal) ? 'MET' : xs[0] <= goal ? 'MET at median, MISSED at p99' : 'MISSED'}`;
    say(`   ${op.padEnd(14)} broker ≤ 0.1 × plain direct: ${mark(vsPlain, 0.1)};  broker ≤ 1.5 × bare relay: ${mark(vsRelay, 1.5)}`);
  }
  if (r.roundTrip.fdatasyncMs) {
    // The promise (durable before forwarded) costs at least one fdatasync per request: the goal is that floor plus a small software budget.
    const floor = r.roundTrip.fdatasyncMs;
    const append = r.roundTrip.fdatasyncAppendMs;
    say(
      `   Disk floor, one write + fdatasync into a preallocated region in the broker's state dir, as the WAL commits (${floor.n} samples across the rounds): median ${ms(floor.median)} ms, p99 ${ms(floor.p99)} ms` +
        (append ? `; growing the file instead: median ${ms(append.median)} ms, p99 ${ms(append.p99)} ms` : ''),
    );
    for (const [op, budget] of [
      ['evaluate', 0.3],
      ['getProperties', 0.5],
    ]) {
      const limit = floor.median + budget;
      for (const k of ['broker', 'brokerLoupe']) {
        if (!v[k]) continue;
        const added = v[k][op].median - v.relay[op].median;
        const who = k === 'broker' ? '(d) − (c)' : "(d'') − (c)";
        say(`   ${op.padEnd(14)} added by the broker ${who}, median: ${ms(added)} ms ≤ disk floor ${ms(floor.median)} + ${budget} ms = ${ms(limit)} ms: ${added <= limit ? 'MET' : 'NOT MET'}`);
      }
    }
    const spaced = r.roundTrip.fdatasyncSpacedMs;
    if (spaced && v.brokerMem) {
      // Where (d)'s added time goes: (d') − (c) is software (its state on tmpfs), (d) − (d') the disk.
      const part = (op) => `${op} software (d') − (c) ${ms(v.brokerMem[op].median - v.relay[op].median)} ms, disk (d) − (d') ${ms(v.broker[op].median - v.brokerMem[op].median)} ms`;
      say(
        `   The same write after 1 ms asleep, as a commit between round trips meets the disk: median ${ms(spaced.median)} ms, p99 ${ms(spaced.p99)} ms (${ratio(spaced.median / floor.median)} the floor above: on this VM an idle CPU wakes to the I/O's completion more slowly). Decomposition, medians: ${part('evaluate')}; ${part('getProperties')}.`,
      );
    }
    say("   (d) holds a grant with evaluation: v8, so V8 answers evaluate in (a)-(d) alike; (d'') is the default grant, where Loupe's interpreter answers it in the broker.");
  }
  say(
    `   Recording check: the broker's local store holds ${r.roundTrip.brokerStoredSessionEvents} session events for ${r.roundTrip.brokerTimedRoundTrips} round trips (2 records each: the request, durable before forwarding; the response, chained in the turn of the reply, once the reply has left, and durable with the next group commit; (d)'s evaluations add a v8Evaluation alert each, which joins that commit too).`,
  );
}

function printAudit(r) {
  const a = r.audit;
  say('');
  say('2e. Audit recorder: events made durable (µs per event; samples are batches, or single records when sequential)');
  say(
    table(
      ['figure', 'n', 'median µs/ev', 'p99 µs/ev', 'events/s', 'vs baseline (ev/s)', 'vs sequential (ev/s)'],
      [
        [
          'baseline: chainEvent + encode, no WAL',
          a.baseline.usPerEvent.n,
          ms(a.baseline.usPerEvent.median),
          ms(a.baseline.usPerEvent.p99),
          rate(a.baseline.eventsPerSecond),
          ratio(1),
          ratio(a.baseline.eventsPerSecond / a.sequential.eventsPerSecond),
        ],
        [
          `recorder + WAL group commit, ${a.groupCommit.inFlight} in flight`,
          a.groupCommit.usPerEvent.n,
          ms(a.groupCommit.usPerEvent.median),
          ms(a.groupCommit.usPerEvent.p99),
          rate(a.groupCommit.eventsPerSecond),
          ratio(a.groupCommit.eventsPerSecond / a.baseline.eventsPerSecond),
          ratio(a.groupCommit.eventsPerSecond / a.sequential.eventsPerSecond),
        ],
        [
          'recorder + WAL, sequential (1 in flight)',
          a.sequential.usPerEvent.n,
          ms(a.sequential.usPerEvent.median),
          ms(a.sequential.usPerEvent.p99),
          rate(a.sequential.eventsPerSecond),
          ratio(a.sequential.eventsPerSecond / a.baseline.eventsPerSecond),
          ratio(1),
        ],
      ],
    ),
  );
  say(
    `   batch of ${a.groupCommit.inFlight} durable: median ${ms(a.groupCommit.batchMs.median)} ms, p99 ${ms(a.groupCommit.batchMs.p99)} ms; one record alone: median ${ms(a.sequential.recordMs.median)} ms, p99 ${ms(a.sequential.recordMs.p99)} ms; closing the ${a.groupCommit.events}-event stream (last uploads + manifest): ${ms(a.groupCommit.closeMs)} ms`,
  );
  say('   Local store uploads (every 500 events) run alongside, as in the broker.');
}

function printUpload(r) {
  const u = r.upload;
  say('');
  say(`2f. Upload of durable events in sealed chunks of ${r.counts.chunkMaxEvents} (seal + put + WAL note; samples are chunks)`);
  const uploadRow = (label, x) => [
    label,
    x.chunks,
    ms(x.chunkCycleMs.median),
    ms(x.chunkCycleMs.p99),
    ms(x.putMs.median),
    ms(x.putMs.p99),
    rate(x.eventsPerSecond),
    ratio(x.eventsPerSecond / u.local.eventsPerSecond),
  ];
  const uploadRows = [uploadRow('local directory store (baseline)', u.local)];
  if (u.s3) uploadRows.push(uploadRow(`S3 + Object Lock ${u.s3.retention?.mode ?? '?'} (RGW)`, u.s3));
  say(table(['store', 'chunks', 'chunk ms med', 'chunk ms p99', 'put ms med', 'put ms p99', 'events/s', 'vs local (ev/s)'], uploadRows));
  if (!u.s3) say(`   S3: ${u.s3Skipped}`);
  else say(`   S3 bucket ${u.s3.bucket}: first chunk retained ${u.s3.retention?.mode ?? 'no retention!'} until ${u.s3.retention?.retainUntil ?? '-'}; ${u.s3.bytes} bytes in ${u.s3.chunks} objects`);
  const b = u.busy;
  if (b) {
    say('');
    say(
      `2h. A busy session's uploads: ${rate(b.recordsPerSecond)} records/s for ${b.seconds.toFixed(1)} s through the trail with the default chunking (chunkMaxEvents ${b.options.chunkMaxEvents}, chunkMaxBytes ${kib(b.options.chunkMaxBytes)}, uploadInterval ${b.options.uploadIntervalMs / 1000} s), to ${b.store}`,
    );
    say(`   ${b.chunkPuts} chunk PUTs while recording ${b.records} records: ${b.putsPerSecond.toFixed(2)} PUTs/s, ${b.recordsPerPut?.toFixed(0) ?? '-'} records and ${kib(b.bytesPerPut)} per PUT`);
    say(`   Goal: a busy session costs a few PUTs a second at most (≤ 3/s): ${b.putsPerSecond.toFixed(2)}/s ${b.putsPerSecond <= 3 ? 'MET' : 'MISSED'}`);
  }
}

function printAdded(r) {
  const v = r.roundTrip.variants;
  say('');
  say('2g. Latency the broker adds per recorded CDP round trip: (d) broker − (c) bare relay (differences of medians and of p99s)');
  const added = (op, from, to, label) => {
    const addMed = v[to][op].median - v[from][op].median;
    const addP99 = v[to][op].p99 - v[from][op].p99;
    // A difference of two p99s is only meaningful for the whole; the split rows show medians only.
    const whole = from === 'relay' && to === 'broker';
    return [`${op}: ${label}`, ms(addMed), whole ? ms(addP99) : '-', ratio(addMed / v.relay[op].median), whole ? ratio(addP99 / v.relay[op].p99) : '-'];
  };
  const addedRows = [];
  for (const op of ['evaluate', 'getProperties']) {
    addedRows.push(added(op, 'relay', 'broker', 'added, (d) − (c)'));
    if (v.brokerMem) {
      addedRows.push(added(op, 'relay', 'brokerMem', "  software: gate, hashing, JSON, (d') − (c)"));
      addedRows.push(added(op, 'brokerMem', 'broker', "  disk: WAL commits, (d) − (d')"));
    }
  }
  say(table(['call', 'added median ms', 'added p99 ms', 'added / relay (median)', 'added / relay (p99)'], addedRows));
  if (v.brokerMem) say("   (d') runs the same broker with its state dir (WAL, audit store) on tmpfs: not a durable setup, only to split software time from disk time.");
  if (v.plain.getProperties.median < 5)
    say(
      `   Note: plain direct getProperties does not stall (median ${ms(v.plain.getProperties.median)} ms): its reply is one write with nothing unacknowledged before it; the ~40 ms Nagle stall hits evaluate, whose reply follows a Debugger.scriptParsed event.`,
    );
}

const medP99 = (s) => `${ms(s.median)} / ${ms(s.p99)}`;
const ratioPair = (s, base) => `${ratio(s.median / base.median)} / ${ratio(s.p99 / base.p99)}`;
const kib = (bytes) => (Number.isFinite(bytes) ? `${(bytes / 1024).toFixed(0)} KiB` : '-');
const mib = (bytes) => (Number.isFinite(bytes) ? `${(bytes / 2 ** 20).toFixed(1)} MiB` : '-');

function printPause(p) {
  const v = p.variants;
  say('');
  say(`2. Target pause per breakpoint hit, measured INSIDE the target (ms the breakpoint line took: process.hrtime.bigint() before and after it;`);
  say(`   line ${p.line} of bench/fixtures/pause-target.js, 5 frames deep; bursts of hits ${p.gapMs} ms apart; interleaved rounds; one target process per row)`);
  const rows = Object.entries(v).map(([key, x]) => [
    x.name,
    x.pauseMs.n,
    ms(x.pauseMs.median),
    ms(x.pauseMs.p99),
    key === 'floor' ? '-' : ratioPair(x.pauseMs, v.bare.pauseMs),
    x.brokerPauseMs ? medP99(x.brokerPauseMs) : '-',
    x.captures !== undefined ? `${x.framesExpanded} of ${x.framesCaptured}` : '-',
    x.captures !== undefined ? `${x.bytes.median}` : '-',
    x.captures !== undefined ? `${x.truncated}/${x.captures}` : '-',
  ]);
  say(table(['figure', 'n', 'median', 'p99', 'vs (a) med / p99', 'broker pauseMs med / p99', 'frames expanded', 'bytes med', 'cut short'], rows));
  say('   Goals (snapshot rows, inside the target): within 2× of the bare pause/resume (a), and p99 under 5 ms:');
  for (const key of ['snap1', 'snap5', 'snap1Closures', 'snap1Mem', 'snap5Mem']) {
    const x = v[key];
    if (!x) continue;
    const r2 = [x.pauseMs.median / v.bare.pauseMs.median, x.pauseMs.p99 / v.bare.pauseMs.p99];
    const within = r2.every((y) => y <= 2) ? 'MET' : r2[0] <= 2 ? 'MET at median, MISSED at p99' : 'MISSED';
    say(`   ${x.name.padEnd(52)} ≤ 2 × (a): ${r2.map(ratio).join(' / ')} ${within};  p99 < 5 ms: ${ms(x.pauseMs.p99)} ms ${x.pauseMs.p99 < 5 ? 'MET' : 'MISSED'}`);
  }
  const cut = Object.values(v).filter((x) => x.truncated > 0);
  if (cut.length > 0)
    say(
      `   Cut short: ${cut.map((x) => `${x.name.split(' ')[0]} ${x.truncated}/${x.captures} (${x.truncatedReasons.join('; ')})`).join(', ')}: the capture stops at its time budget, so "frames expanded" can stay below expandFrames.`,
    );
  if (v.bareReads)
    say(
      `   (a') makes (b)'s reads itself (the broker's capture engine with (b)'s limits, over a direct link like (a)'s), with the resume right behind its last reads, as the broker sends it: no broker, gate, redaction or record. It is the floor under (b): ${ratio(v.bareReads.pauseMs.median / v.bare.pauseMs.median)} of (a) at the median.`,
    );
  if (v.bareReads5)
    say(
      `   (a'') does the same with (c)'s limits (5 frames expanded): the floor under (c), ${ratio(v.bareReads5.pauseMs.median / v.bare.pauseMs.median)} of (a) at the median; (c) adds ${ratio(v.snap5.pauseMs.median / v.bareReads5.pauseMs.median)} on top of it.`,
    );
  say("   broker pauseMs: the broker's own figure (from the Debugger.paused it read to the Debugger.resume it issued); the target also pays the event's transit and the resume's way out.");
  if (v.cond)
    say('   (d) is not a snapshot: a pause-mode breakpoint whose condition is false, checked by the broker on each pause (the per-request cost of section 3 (d)); pause budget at 1000 ms/s here.');
}

function printThroughput(t, cores) {
  const v = t.variants;
  const base = v.none;
  say('');
  say(`3. Demo service throughput: GET ${t.url}, ${t.concurrency} keep-alive workers (bench/load.mjs, own process), ${t.durationMs / 1000} s per run after ${t.warmupMs / 1000} s warm-up,`);
  say(
    `   ${base.rounds} interleaved rounds; req/s: median of the rounds; vs (a): median over rounds of req/s / the same round's (a), and its range; breakpoints on line ${t.hotLine} of examples/demo/service.js (const charged =); condition ${t.condition}`,
  );
  const rows = Object.values(v).map((x) => [
    x.name,
    rate(x.rps.median),
    x.rpsPerRound.map(rate).join(' '),
    ratio(x.ratioToNone.median),
    `${(100 * (1 - x.ratioToNone.median)).toFixed(1)} %`,
    `${ratio(x.ratioToNone.min)}–${ratio(x.ratioToNone.max)}`,
    ms(x.latencyMedianMs),
    ms(x.latencyP99Ms),
    x.serviceCpuPerSecond.toFixed(2),
    x.serviceCpuUsPerRequest ? `${x.serviceCpuUsPerRequest.median.toFixed(1)} (${ratio(x.cpuPerRequestToNone.median)})` : '-',
    x.brokerCpuPerSecond.toFixed(2),
    Object.entries(x.eventsPerSecond)
      .map(([k, n]) => `${k.replace(/^Loupe\./, '')} ${n.toFixed(1)}`)
      .join(', ') || '-',
  ]);
  say(table(['variant', 'req/s', 'per round', 'vs (a)', 'loss', 'vs (a) range', 'latency med ms', 'p99 ms', 'service CPU', 'service CPU µs/req (vs (a))', 'broker CPU', 'client events/s'], rows));
  const loss = (x) => 1 - x.ratioToNone.median;
  // The goals are judged by the service's CPU per request (what the variant costs the target), which other work on
  // a shared machine sways far less than req/s; the req/s loss is shown beside it.
  const cpuLoss = (x) => (x.cpuPerRequestToNone ? x.cpuPerRequestToNone.median - 1 : NaN);
  const goal = (x, bound) => `${(100 * cpuLoss(x)).toFixed(1)} % ${cpuLoss(x) < bound ? 'MET' : 'MISSED'} (req/s loss ${(100 * loss(x)).toFixed(1)} %)`;
  const pairs = t.idlePairs;
  if (pairs?.pairs > 0) {
    const idleLoss = pairs.cpuPerRequestToNone.median - 1;
    say(
      `   (b) against (a) in ${pairs.pairs} adjacent pairs of runs after the rounds, no breakpoint row between them (in the rounds, the run after a breakpoint row pays for re-optimizing the hot function), alternating which goes first: service CPU per request (b)/(a) per pair ${pairs.cpuPerRequestToNonePerPair.map((x) => x.toFixed(3)).join(' ')}; req/s (b)/(a) median ${ratio(pairs.ratioToNone.median)}`,
    );
    say(
      `   Goals (service CPU per request over (a)): < 1 % with an idle session (the pairs' median): ${(100 * idleLoss).toFixed(1)} % ${idleLoss < 0.01 ? 'MET' : 'MISSED'} (in the rounds: ${(100 * cpuLoss(v.idle)).toFixed(1)} %, req/s loss ${(100 * (1 - pairs.ratioToNone.median)).toFixed(1)} %);  < 5 % with a rate-limited snapshot breakpoint: ${goal(v.snapshot, 0.05)}`,
    );
  } else say(`   Goals (service CPU per request over (a)): < 1 % with an idle session: ${goal(v.idle, 0.01)};  < 5 % with a rate-limited snapshot breakpoint: ${goal(v.snapshot, 0.05)}`);
  say('   CPU columns: cores used by the service and the broker during the runs (CPU seconds / wall seconds, /proc);');
  say(
    "   service CPU µs/req: the service's CPU time per answered request, median over rounds, and its median paired ratio to (a): what the variant costs the target, less swayed than req/s by other work on the machine.",
  );
  if (v.falseCondition.suspendedRuns > 0) {
    const s = v.falseCondition.suspension;
    say(
      `   (d): the broker suspended the breakpoint in ${v.falseCondition.suspendedRuns} of ${v.falseCondition.rounds} runs, ${v.falseCondition.suspendedAfterMs.join(', ')} ms after it was set (within the warm-up), with "${s.reason}"; its row is mostly the service after the suspension.`,
    );
    const d2 = v.falseConditionNoBudget;
    if (d2)
      say(
        `   What the budget charged per hit: ${ms(s.pauseMsPerSecond / s.hitsPerSecond)} ms; what each hit cost the service with no suspension, (d'): ${ms(1000 / d2.rps.median)} ms of a ${rate(d2.rps.median)} req/s service, against ${ms(1000 / base.rps.median)} ms per request in (a).`,
      );
  }
  if (base.serviceCpuPerSecond < 0.9)
    say(
      `   Note: in (a) the service used ${base.serviceCpuPerSecond.toFixed(2)} of a core: the load generator, on the same ${cores} cores, bounds the baseline, so a small loss (as in (b)) is under-reported, not over-reported.`,
    );
}

function printSessions(s) {
  const p = s.paths;
  say('');
  const fresh = (x) => (Number.isFinite(x.proxyBytesPerSessionFreshMedian) ? x.proxyBytesPerSessionFreshMedian : x.proxyBytesPerSession);
  say(
    `4. Idle sessions: ${s.sessions} opened at once on one target, each Debugger.enable'd; ${s.rounds} interleaved rounds (time: wall per round, and per session; memory: the first round of a fresh process, median over ${p.relay.proxyBytesPerSessionFresh?.length ?? 1})`,
  );
  const rows = Object.values(p).map((x) => [
    x.name,
    x.wallMsPerRound.map((w) => ms(w)).join(' '),
    ratio(x.wallMs.median / p.direct.wallMs.median),
    ratio(x.wallMs.median / p.relay.wallMs.median),
    medP99(x.totalMs),
    x.grantMs.median > 0 ? medP99(x.grantMs) : '-',
    medP99(x.attachMs),
    medP99(x.enableMs),
  ]);
  say(table([`open ${s.sessions} at once`, 'wall ms per round', 'vs (a)', 'vs (c)', 'per session med / p99', 'grant med / p99', 'attach med / p99', 'enable med / p99'], rows));
  const memRows = Object.values(p).map((x) => [
    x.name,
    Number.isFinite(x.proxyRssBeforeBytes) ? `${mib(x.proxyRssBeforeBytes)} → ${mib(x.proxyRssAfterBytes)}` : '- (no proxy process)',
    Number.isFinite(fresh(x)) ? kib(fresh(x)) : '-',
    x.proxyBytesPerSessionFresh?.length ? x.proxyBytesPerSessionFresh.map(kib).join(' ') : '-',
    x.proxyBytesPerSessionPerRound.map((b) => (b === null ? '-' : kib(b))).join(' '),
    Number.isFinite(x.proxyRssAfterCloseBytes) ? mib(x.proxyRssAfterCloseBytes) : '-',
    Number.isFinite(fresh(x)) && fresh(p.relay) > 0 ? ratio(fresh(x) / fresh(p.relay)) : '-',
    kib(x.targetBytesPerSession),
  ]);
  say(table(['memory', 'proxy RSS before → after (timed rounds)', 'per session (median)', 'fresh processes', 'timed rounds', 'after close', 'vs (c)', 'target RSS per session'], memRows));
  const time = p.broker.wallMs.median / p.relay.wallMs.median;
  const memory = fresh(p.broker) / fresh(p.relay);
  say(
    `   Goals (broker vs the bare relay (c)): time to open ${s.sessions} ≤ 2×: ${ratio(time)} ${time <= 2 ? 'MET' : 'MISSED'};  memory per session ≤ 2×: ${Number.isFinite(memory) ? ratio(memory) : '-'} ${memory <= 2 ? 'MET' : 'MISSED'}`,
  );
  say(
    `   per session = (RSS with the ${s.sessions} sessions settled ${s.settleMs} ms − RSS before) / ${s.sessions}; each RSS read after a full GC in that proxy (HeapProfiler.collectGarbage through its own inspector), so garbage not yet collected does not count. Fresh processes: the timed rounds' first, then one new proxy process each (warmed up by 5 sessions one after another, as the timed rounds' proxies), since later rounds of a process start from a heap that once held them.`,
  );
}

function printEvaluation(e) {
  say('');
  say(
    `5. Evaluation on one paused frame: Loupe's interpreter (reads by Runtime.getProperties) vs V8 evaluateOnCallFrame (throwOnSideEffect + timeout), one QUICKACK connection, ${e.counts.rounds} interleaved rounds of ${e.counts.perRound} (bench/evaluation.ts)`,
  );
  const rows = e.rows.map((r) => [
    r.expression,
    medP99(r.v8),
    medP99(r.loupe),
    ratio(r.loupe.median / r.v8.median),
    medP99(r.loupeScoped),
    ratio(r.loupeScoped.median / r.v8.median),
    medP99(r.loupeWarm),
    ratio(r.loupeWarm.median / r.v8.median),
    String(r.reads),
  ]);
  say(table(['expression', 'V8 med / p99', 'Loupe, fresh reader', 'vs V8', 'scopes read at pause', 'vs V8', 'warm reader', 'vs V8', 'reads'], rows));
  say(
    "   fresh reader: nothing cached (first expression of a pause); scopes read at pause: the session reads the frame's scopes as the pause arrives; warm: the pause's cache (watch expressions re-evaluated).",
  );
}

function printRecording(x) {
  say('');
  say(
    `7. Recording under load: ${x.sessions} sessions × ${x.rate} requests/s (${x.requests ?? x.expression}) for ${x.durationMs / 1000} s on one broker${x.warmupMs ? ` (after ${x.warmupMs / 1000} s of the same load, not measured)` : ''}; baseline: one session at the same rate on the same broker, idle otherwise, ${x.idleMs / 1000} s`,
  );
  const row = (label, y) => [
    label,
    `${y.answered} / ${y.sent}`,
    y.errors,
    `${y.missingAtEnd} / ${y.missingAfterDrain}`,
    medP99(y.latencyMs),
    ratioPair(y.latencyMs, x.idle.latencyMs),
    (y.brokerCpuSeconds / y.wallSeconds).toFixed(2),
  ];
  say(
    table(
      ['run', 'answered / sent', 'errors', `unanswered at end / after ${x.drainMs / 1000} s`, 'latency ms med / p99', 'vs idle med / p99', 'broker CPU (cores)'],
      [row('(a) idle broker, 1 session', x.idle), row(`(b) ${x.sessions} sessions`, x.load)],
    ),
  );
  const l = x.load;
  say(
    `   Records made in the load window: ${l.records} (${(l.recordsPerRequest ?? l.recordsPerEvaluation).toFixed(2)} per request), ${rate(l.recordsPerSecond)}/s with the broker at ${l.brokerCpuSeconds.toFixed(2)} CPU s${l.brokerUserSeconds !== undefined ? ` (user ${l.brokerUserSeconds.toFixed(2)}, system ${l.brokerSystemSeconds.toFixed(2)})` : ''} over ${l.wallSeconds.toFixed(1)} s: ${rate(l.recordsPerCpuSecond)} records per broker CPU second; fdatasync floor median ${ms(x.fdatasyncMs.median)} ms`,
  );
  const p99Ratio = l.latencyMs.p99 / x.idle.latencyMs.p99;
  const allAnswered = l.answered === l.sent && l.errors === 0 && l.missingAtEnd <= x.sessions;
  say(`   Goals: all answered, no backlog (at most one per session in flight when the schedule ends): ${l.answered}/${l.sent}, ${l.missingAtEnd} in flight ${allAnswered ? 'MET' : 'NOT MET'};`);
  say(
    `          p99 within 3 × the idle broker's: ${ratio(p99Ratio)} ${p99Ratio <= 3 ? 'MET' : 'NOT MET'};  ≥ 10,000 records per broker core-second: ${rate(l.recordsPerCpuSecond)} ${l.recordsPerCpuSecond >= 10_000 ? 'MET' : 'NOT MET'}`,
  );
}

function printAdapter(a) {
  const p90 = (s) => `${ms(s.median)} / ${ms(s.p90)} / ${ms(s.p99)}`;
  const signed = (x) => `${x >= 0 ? '+' : '−'}${ms(Math.abs(x))}`;
  const shares = (x) => `${signed(x.median)} / ${signed(x.p90)}`;
  say('');
  say("6. Debug Console evaluation through Loupe's VS Code adapter vs a raw CDP client sending the same Debugger.evaluateOnCallFrame through the same broker process (bench/adapter.ts)");
  say(
    `   all attached to one target paused in test/fixtures/preview-app.js; each round one sample per path, the order rotating; ${a.counts.rounds} rounds of ${a.counts.perRound}; paced: ${a.counts.pacedGapMs} ms apart`,
  );
  say('   (b) adapter: dist/debugAdapter.js under a DAP client over stdin/stdout; (c) inline: the same adapter in the measuring process, messages as objects, as VS Code runs it');
  const rows = a.rows.map((r) => [
    r.expression,
    r.pacing,
    p90(r.raw),
    p90(r.adapter),
    shares(r.share),
    p90(r.inline),
    shares(r.inlineShare),
    r.own ? `${ms(r.own.median)} / ${ms(r.own.p90)}` : '-',
    Number.isFinite(r.adapterCpuUs) ? r.adapterCpuUs.toFixed(0) : '-',
    r.shown.length > 40 ? `${r.shown.slice(0, 39)}…` : r.shown,
  ]);
  say(
    table(
      [
        'expression',
        'pacing',
        '(a) raw CDP p50 / p90 / p99',
        '(b) adapter p50 / p90 / p99',
        '(b) share p50 / p90',
        '(c) inline p50 / p90 / p99',
        '(c) share p50 / p90',
        '(b) CPU µs/eval',
        'adapter shows',
      ],
      rows,
    ),
  );
  const goal = (x) => (x.median <= 1 && x.p90 <= 1 ? 'MET' : 'NOT MET');
  for (const r of a.rows) {
    say(
      `   Goal "adapter share <= broker round trip + 1 ms" (${r.expression}, ${r.pacing}): (b) ${signed(r.share.median)} ms p50, ${signed(r.share.p90)} ms p90 ${goal(r.share)}; (c) inline ${signed(r.inlineShare.median)} ms p50, ${signed(r.inlineShare.p90)} ms p90 ${goal(r.inlineShare)}`,
    );
  }
  for (const r of a.rows.filter((x) => x.own)) {
    say(
      `   The adapter's own time per evaluation (${r.expression}, ${r.pacing}): ${ms(r.own.median)} ms p50, ${ms(r.own.p90)} ms p90: within 1 ms ${r.own.median <= 1 && r.own.p90 <= 1 ? 'MET' : 'NOT MET'}`,
    );
  }
  say('   share: the path − (a) at the same percentile (other processes on a shared machine move it by milliseconds either way);');
  say("   (c) own: inside the inline adapter, DAP request to CDP frame sent plus CDP answer received to DAP response, the broker's round trip excluded;");
  say('   (b) CPU: the adapter process per evaluation (/proc). (b) adds a process and a pipe each way, which VS Code does not have.');
}

function printReplicas(x) {
  say('');
  if (x.skipped) {
    say(`8. One broker vs three replicas on PostgreSQL: skipped (${x.skipped})`);
    return;
  }
  const { single, replicas } = x.variants;
  const c = x.counts;
  say(
    `8. Grants and attaches: one broker (state in files) vs three replicas on one PostgreSQL (bench/replicas.ts); ${c.rounds} interleaved rounds of ${c.grants} grants (${c.concurrency} in flight, spread over the replicas) and ${c.attaches} attaches (granted by one replica, attached through the next)`,
  );
  const rows = [single, replicas].map((v) => [
    v.name,
    rate(v.grantsPerSecond.median),
    v.grantsPerSecondPerRound.map(rate).join(' '),
    medP99(v.grantMs),
    medP99(v.attachMs),
    ratioPair(v.attachMs, single.attachMs),
    medP99(v.enableMs),
  ]);
  say(table(['variant', 'grants/s', 'per round', 'grant ms med / p99', 'attach ms med / p99', 'attach vs (a)', 'Debugger.enable ms med / p99'], rows));
  const r = replicas.attachMs.median / single.attachMs.median;
  say(`   Goal: attach median through the replicas within 1.5× of the single broker's: ${ratio(r)} ${r <= 1.5 ? 'MET' : 'MISSED'}`);
  say('   attach: the WebSocket upgrade sent until the socket is open (the grant checked, its one live session claimed, the target connected).');
}

// ---------------------------------------------------------------------------------------------------

if (args.has('--print')) {
  printResults(JSON.parse(readFileSync(resultsFile, 'utf8')));
  process.exit(0);
}

say(`== loupe bench on ${machineLine()}`);
say('== build (node esbuild.mjs)');
const build = spawnSync(process.execPath, ['esbuild.mjs'], { cwd: root, stdio: 'inherit' });
if (build.status !== 0) {
  say(`build failed (exit ${build.status ?? build.signal})`);
  process.exit(1);
}
const s3 = await ensureS3();
say(`== S3: ${s3.note}`);
const postgres = (process.env.BENCH_SECTIONS ?? '8')
  .split(',')
  .map((x) => x.trim())
  .includes('8')
  ? ensurePostgres()
  : { env: {}, stop: () => undefined, note: 'not needed (section 8 not selected)' };
say(`== PostgreSQL: ${postgres.note}`);
say('== measuring (bench/run.ts)');
let code;
try {
  // The AWS SDK warns on every run that its 2027 releases will need Node 22; that is not a bench finding.
  const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'bench', 'run.ts')], {
    cwd: root,
    stdio: 'inherit',
    env: { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true', ...process.env, ...s3.env, ...postgres.env },
  });
  const forward = (signal) => child.kill(signal);
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);
  code = await new Promise((resolve) => child.on('exit', (c, signal) => resolve(c ?? (signal ? 1 : 0))));
  process.off('SIGINT', forward);
  process.off('SIGTERM', forward);
} finally {
  await s3.stop();
  postgres.stop();
}
if (code !== 0) {
  say(`bench failed (exit ${code})`);
  process.exit(code);
}
printResults(JSON.parse(readFileSync(resultsFile, 'utf8')));
say(`== total ${((Date.now() - t0) / 1000).toFixed(1)} s; results in ${resultsFile}`);
