// The measuring half of `npm run bench` (scripts/bench.mjs builds dist/, makes sure S3 is up, then runs
// this with tsx). Every figure is a distribution (median, p99) and a ratio to a baseline measured in this
// same run on this same machine. Writes bench/results.json; scripts/bench.mjs prints the table from it.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { AuditTrail } from '../broker/audit/auditTrail';
import { chainEventLine, genesisHash, type AuditEvent, type StreamContext } from '../broker/audit/events';
import { createLockedBucket, S3AuditStore } from '../broker/audit/stores/s3Store';
import { LocalDirectoryStore } from '../broker/audit/stores/localStore';
import type { AuditStore } from '../broker/audit/stores/auditStore';
import { eventLinePrefix, WriteAheadLog } from '../broker/audit/wal';
import { loadOrCreateSigningKey, type SigningKey } from '../broker/identity/keys';
import { basePolicy } from '../test/support/testBroker';
import { startTarget, type TargetProcess } from '../test/support/target';
import { benchAdapter } from './adapter';
import { benchBusyUpload } from './busyUpload';
import { benchEvaluation } from './evaluation';
import { spawnNode, type Child } from './lib/procs';
import { RttClient } from './lib/rttClient';
import { nowMs, summarize, type Summary } from './lib/stats';
import { benchPause } from './pause';
import { fdatasyncSamples, spacedFdatasyncSamples } from './lib/disk';
import { benchReplicas } from './replicas';
import { benchLoad, benchSessions, storedSessionEvents } from './sessions';
import { benchThroughput } from './throughput';

const root = join(__dirname, '..');
const fixture = join(__dirname, 'fixtures', 'target.js');
const resultsFile = process.env.BENCH_RESULTS ?? join(__dirname, 'results.json');
const log = (line: string) => process.stderr.write(`bench: ${line}\n`);

/** Sample counts: sized so the whole run stays far under 5 minutes on 2 cores. */
const counts = {
  rounds: Number(process.env.BENCH_ROUNDS ?? 10),
  /** Per round, per operation: the fast variants (b, c, d). */
  perRound: Number(process.env.BENCH_PER_ROUND ?? 100),
  /** Per round, per operation: the plain direct client, whose round trips cost ~40 ms each. */
  perRoundPlain: Number(process.env.BENCH_PER_ROUND_PLAIN ?? 15),
  warmup: 30,
  auditEvents: 20_000,
  auditInFlight: 200,
  auditSequentialMax: 3000,
  auditSequentialBudgetMs: 4000,
  uploadEvents: 40_000,
  chunkMaxEvents: 500,
  /** Section 2h: one busy session's records through the default chunking (bench/busyUpload.ts). */
  busyUpload: { perSecond: 2000, seconds: 4 },
  /** Section 2: bursts of breakpoint hits, gapMs apart, per variant and round. */
  pause: { rounds: Number(process.env.BENCH_PAUSE_ROUNDS ?? 5), perRound: Number(process.env.BENCH_PAUSE_PER_ROUND ?? 50), warmup: 20, gapMs: 10 },
  /** Section 3: per variant and round, `concurrency` keep-alive workers for durationMs after warmupMs. */
  load: {
    rounds: Number(process.env.BENCH_LOAD_ROUNDS ?? 5),
    idlePairs: Number(process.env.BENCH_IDLE_PAIRS ?? 8),
    concurrency: 32,
    durationMs: Number(process.env.BENCH_LOAD_MS ?? 2000),
    warmupMs: 500,
  },
  /** Section 4: sessions opened at once, per path and round. */
  sessions: { sessions: Number(process.env.BENCH_SESSIONS ?? 100), rounds: 4, memoryRounds: Number(process.env.BENCH_MEMORY_ROUNDS ?? 4), settleMs: 1000 },
  /** Section 7: sessions × evaluations a second on one broker, against one session on it idle (bench/sessions.ts). */
  recording: {
    sessions: Number(process.env.BENCH_LOAD_SESSIONS ?? 20),
    rate: 50,
    durationMs: Number(process.env.BENCH_LOAD_SESSIONS_MS ?? 20_000),
    idleMs: 10_000,
    warmupMs: 5000,
    drainMs: 5000,
    requests: process.env.BENCH_LOAD_REQUESTS === 'mixed' ? ('mixed' as const) : ('evaluate' as const),
  },
  /** Section 5: evaluations per variant and round (bench/evaluation.ts). */
  evaluation: { rounds: 5, perRound: 60, warmup: 30 },
  /** Section 6: Debug Console evaluations per path, expression, pacing and round (bench/adapter.ts). */
  adapter: { rounds: Number(process.env.BENCH_ADAPTER_ROUNDS ?? 3), perRound: Number(process.env.BENCH_ADAPTER_PER_ROUND ?? 50), warmup: 20, pacedGapMs: 150 },
  /** Section 8: grants and attaches per variant and round, one broker vs three replicas (bench/replicas.ts). */
  replicas: { rounds: Number(process.env.BENCH_REPLICA_ROUNDS ?? 4), grants: 100, concurrency: 8, attaches: 25 },
};
/** BENCH_SECTIONS=1,2,2e,3,4,5,6,7,8 runs only those (2e stands for the audit sections 2e-2g); default all. */
const sections = new Set((process.env.BENCH_SECTIONS ?? '1,2,2e,3,4,5,6,7,8').split(',').map((x) => x.trim()));

// ---------------------------------------------------------------------------------------------------
// 1. CDP round trips

type Variant = 'plain' | 'quickack' | 'relay' | 'broker' | 'brokerMem' | 'brokerLoupe';
const variantNames: Record<Variant, string> = {
  plain: '(a) direct, plain ws client',
  quickack: '(b) direct, ws client + TCP_QUICKACK',
  relay: '(c) bare ws relay (QUICKACK to target)',
  broker: '(d) broker: gate + durable audit (local store)',
  brokerMem: "(d') broker, state dir on tmpfs (decomposition)",
  brokerLoupe: "(d'') broker, default grant: Loupe's interpreter answers evaluate",
};
/** tmpfs, for the decomposition variant (d'): the same broker with fdatasync made nearly free. Not a durable setup. */
const tmpfsDir = (() => {
  try {
    return readFileSync('/proc/mounts', 'utf8')
      .split('\n')
      .some((l) => l.split(' ')[1] === '/dev/shm' && l.split(' ')[2] === 'tmpfs')
      ? '/dev/shm'
      : undefined;
  } catch {
    return undefined;
  }
})();

/**
 * What reaches the target's V8 for `Runtime.evaluate({expression:'1'})`: the broker's gate forces these
 * (broker/gate/cdpGate.ts), so the direct and relay clients send them too, to give the target the same work.
 */
const evaluateAsForwarded = { expression: '1', throwOnSideEffect: true, timeout: 1000, disableBreaks: true };

interface Path {
  readonly variant: Variant;
  readonly client: RttClient;
  readonly evaluateParams: Record<string, unknown>;
  objectId?: string;
  readonly samples: { evaluate: number[]; getProperties: number[] };
}

async function startBroker(target: TargetProcess, stateDir: string): Promise<{ child: Child; url: string; configFile: string }> {
  const configFile = join(stateDir, 'bench-broker.yaml');
  // The default config: local audit store under the state dir, chunkMaxEvents 500, WAL with group commit. The access
  // rule also allows V8 evaluation, so that (d) can send Runtime.evaluate to V8 as (a)-(c) do.
  const policy = basePolicy(target.inspector);
  policy.targets.app.access = [{ role: 'dev', modes: ['pause', 'snapshot'], evaluation: ['loupe', 'v8'], maxDuration: '10m' }];
  writeFileSync(configFile, stringify({ ...policy, stateDir: join(stateDir, 'state') }));
  // BENCH_BROKER_PROFILE=<dir>: the broker runs under --cpu-prof, its profile written there at exit (where its time goes).
  const profile = process.env.BENCH_BROKER_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_BROKER_PROFILE}`] : [];
  const child = await spawnNode([...profile, join(root, 'dist', 'cli.js'), 'broker', '--config', configFile], /LOUPE_BROKER_URL=(\S+)/, { cwd: root, label: 'broker (dist/cli.js)' });
  return { child, url: child.ready, configFile };
}

async function attachThroughBroker(url: string, configFile: string, evaluation?: 'v8'): Promise<RttClient> {
  const identity = execFileSync(process.execPath, [join(root, 'dist', 'cli.js'), 'token', '--config', configFile, '--user', 'dev', '--groups', 'devs'], { encoding: 'utf8' }).trim();
  const res = await fetch(`${url}/v1/grants`, {
    method: 'POST',
    headers: { authorization: `Bearer ${identity}`, 'content-type': 'application/json' },
    body: JSON.stringify({ target: 'app', mode: 'pause', durationSeconds: 600, reason: 'benchmark: round-trip latency', ...(evaluation ? { evaluation } : {}) }),
  });
  const body = (await res.json()) as { attachUrl?: string; token?: string };
  if (res.status !== 201 || !body.attachUrl) throw new Error(`grant refused: ${res.status} ${JSON.stringify(body)}`);
  return RttClient.connect(body.attachUrl, { headers: { authorization: `Bearer ${body.token}` } });
}

async function prepare(path: Path): Promise<void> {
  await path.client.call('Debugger.enable');
  const { result } = await path.client.call('Runtime.evaluate', { expression: 'bigObject' });
  if (typeof result?.objectId !== 'string') throw new Error(`${path.variant}: no objectId for bigObject: ${JSON.stringify(result)}`);
  path.objectId = result.objectId;
  const props = await path.client.call('Runtime.getProperties', { objectId: path.objectId, ownProperties: true });
  const fields = (props.result as { name: string }[]).filter((p) => p.name.startsWith('field')).length;
  if (fields !== 100) throw new Error(`${path.variant}: bigObject has ${fields} fields, expected 100`);
}

async function roundTrips(path: Path, n: number, keep: boolean): Promise<void> {
  for (let i = 0; i < n; i++) {
    const ms = await path.client.timed('Runtime.evaluate', path.evaluateParams);
    if (keep) path.samples.evaluate.push(ms);
  }
  for (let i = 0; i < n; i++) {
    const ms = await path.client.timed('Runtime.getProperties', { objectId: path.objectId, ownProperties: true });
    if (keep) path.samples.getProperties.push(ms);
  }
}

async function benchRoundTrips(scratch: string) {
  log(`section 1: starting ${tmpfsDir ? 5 : 4} targets, the bare relay and the broker${tmpfsDir ? 's' : ''}`);
  const targets = await Promise.all(['plain', 'quickack', 'relay', 'broker', ...(tmpfsDir ? ['brokerMem'] : [])].map(() => startTarget(fixture)));
  const [tPlain, tQuick, tRelay, tBroker, tBrokerMem] = targets as [TargetProcess, TargetProcess, TargetProcess, TargetProcess, TargetProcess | undefined];
  const children: Child[] = [];
  const clients: RttClient[] = [];
  const memDir = tmpfsDir ? mkdtempSync(join(tmpfsDir, 'loupe-bench-')) : undefined;
  try {
    const relay = await spawnNode([join(__dirname, 'relay.mjs'), tRelay.wsUrl], /relay listening on (ws:\/\/\S+)/, { cwd: root, label: 'relay' });
    children.push(relay);
    const stateDir = join(scratch, 'broker');
    mkdirSync(stateDir, { recursive: true });
    const broker = await startBroker(tBroker, stateDir);
    children.push(broker.child);
    const brokerMem = memDir && tBrokerMem ? await startBroker(tBrokerMem, memDir) : undefined;
    if (brokerMem) children.push(brokerMem.child);

    const paths: Path[] = [];
    const add = (variant: Variant, client: RttClient, evaluateParams: Record<string, unknown>) => {
      clients.push(client);
      paths.push({ variant, client, evaluateParams, samples: { evaluate: [], getProperties: [] } });
    };
    add('plain', await RttClient.connect(tPlain.wsUrl), evaluateAsForwarded);
    add('quickack', await RttClient.connect(tQuick.wsUrl, { quickAck: true }), evaluateAsForwarded);
    add('relay', await RttClient.connect(`${relay.ready}/`), evaluateAsForwarded);
    // Through the broker the client sends the plain request; the gate adds the rest. (d) and (d') hold grants with
    // evaluation: v8, so V8 answers evaluate as in (a)-(c); (d'') holds the default grant, where Loupe's interpreter
    // answers it in the broker (no target round trip for '1').
    add('broker', await attachThroughBroker(broker.url, broker.configFile, 'v8'), { expression: '1' });
    if (brokerMem) add('brokerMem', await attachThroughBroker(brokerMem.url, brokerMem.configFile, 'v8'), { expression: '1' });
    add('brokerLoupe', await attachThroughBroker(broker.url, broker.configFile), { expression: '1' });
    for (const path of paths) await prepare(path);

    log(`section 1: warm-up (${counts.warmup} of each call per fast variant)`);
    for (const path of paths) await roundTrips(path, path.variant === 'plain' ? 3 : counts.warmup, false);
    // Interleaved rounds, rotating the order, so drift on a shared machine hits every variant alike. Each round also
    // times the disk's floor for a durable record (append + fdatasync) in the broker's state dir.
    const floorSamples: number[] = [];
    const appendFloorSamples: number[] = [];
    const spacedFloorSamples: number[] = [];
    for (let round = 0; round < counts.rounds; round++) {
      const order = paths.map((_, i) => paths[(i + round) % paths.length]!);
      for (const path of order) await roundTrips(path, path.variant === 'plain' ? counts.perRoundPlain : counts.perRound, true);
      floorSamples.push(...fdatasyncSamples(stateDir, 30, 'preallocated'));
      appendFloorSamples.push(...fdatasyncSamples(stateDir, 30, 'append'));
      spacedFloorSamples.push(...(await spacedFdatasyncSamples(stateDir, 30)));
      log(`section 1: round ${round + 1}/${counts.rounds} done`);
    }
    const eventsSeen = Object.fromEntries(paths.map((p) => [p.variant, p.client.events]));
    for (const c of clients.splice(0)) await c.close();
    const brokerExit = await broker.child.stop();
    const stored = storedSessionEvents(join(stateDir, 'state', 'audit-store'));
    const measured = 2 * 2 * (counts.rounds * counts.perRound + counts.warmup); // sessions (d) and (d'') on the same broker
    log(`section 1: broker exited (${brokerExit}); its local store holds ${stored} session events for ${measured} timed round trips (+ setup)`);
    return {
      variants: Object.fromEntries(
        paths.map((p) => [p.variant, { name: variantNames[p.variant], quickAck: p.client.quickAck, evaluate: summarize(p.samples.evaluate), getProperties: summarize(p.samples.getProperties) }]),
      ) as Partial<Record<Variant, { name: string; quickAck: boolean; evaluate: Summary; getProperties: Summary }>>,
      fdatasyncMs: summarize(floorSamples),
      fdatasyncAppendMs: summarize(appendFloorSamples),
      fdatasyncSpacedMs: summarize(spacedFloorSamples),
      eventsSeenByClient: eventsSeen,
      brokerStoredSessionEvents: stored,
      brokerTimedRoundTrips: measured,
    };
  } finally {
    for (const c of clients) await c.close();
    for (const child of children.reverse()) await child.stop();
    await Promise.all(targets.map((t) => t.stop()));
    if (memDir) rmSync(memDir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------------
// 2. Audit

const benchContext = (label: string): StreamContext => ({
  stream: `bench-${label}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`,
  kind: 'session',
  grant: 'g-0123456789abcdef',
  actor: { sub: 'dev', name: 'Dev Eloper', groups: ['devs'] },
  target: 'app',
  mode: 'pause',
  reason: 'benchmark: audit throughput',
  startedAt: new Date().toISOString(),
  retentionDays: 1,
});

/** A typical recorded request, as DebugSession records a gated Runtime.evaluate. */
const sampleData = (i: number) => ({
  id: i,
  targetId: i + 1,
  method: 'Runtime.evaluate',
  params: { expression: `order.items[${i % 10}].price`, throwOnSideEffect: true, timeout: 1000, disableBreaks: true },
  decision: 'rewrite',
  rewrites: ['throwOnSideEffect forced', 'timeout 1000ms forced'],
});

async function openTrail(dir: string, store: AuditStore, key: SigningKey) {
  const { wal } = await WriteAheadLog.open(join(dir, 'wal'), { maxBatch: 512, segmentBytes: 8 << 20, preallocateBytes: 1 << 20, gatherMs: 1 }); // as Broker.create
  const trail = new AuditTrail(wal, store, key, { chunkMaxEvents: counts.chunkMaxEvents, uploadIntervalMs: 1000, failClosedAfterMs: 60_000, clock: Date.now });
  return trail;
}

async function benchAudit(scratch: string, key: SigningKey) {
  // (e0) baseline: the same event construction (chain hash over canonical JSON, WAL line encoding), no disk.
  log(`section 2e: baseline, ${counts.auditEvents} events through chainEvent + encoding only`);
  const context = benchContext('baseline');
  const baselineBatches: number[] = [];
  let head = genesisHash(context.stream);
  let sink = 0;
  const baselineStart = nowMs();
  for (let seq = 0; seq < counts.auditEvents; seq += counts.auditInFlight) {
    const start = nowMs();
    for (let i = seq; i < seq + counts.auditInFlight; i++) {
      const { event, json } = chainEventLine(context, i, head, new Date().toISOString(), 'cdp.evaluate', sampleData(i));
      head = event.hash;
      sink += `${eventLinePrefix}${json}}\n`.length;
    }
    baselineBatches.push(nowMs() - start);
  }
  const baselineMs = nowMs() - baselineStart;

  // (e1) the recorder: AuditStream.record through the WAL with group commit, 200 in flight.
  log(`section 2e: recorder with WAL group commit, ${counts.auditEvents} events, ${counts.auditInFlight} in flight`);
  const groupDir = join(scratch, 'audit-group');
  const groupTrail = await openTrail(groupDir, new LocalDirectoryStore(join(groupDir, 'store')), key);
  const group = groupTrail.openStream(benchContext('group'));
  await group.opened;
  const groupBatches: number[] = [];
  const groupStart = nowMs();
  for (let seq = 0; seq < counts.auditEvents; seq += counts.auditInFlight) {
    const start = nowMs();
    const batch: Promise<AuditEvent>[] = [];
    for (let i = seq; i < seq + counts.auditInFlight; i++) batch.push(group.stream.record('cdp.evaluate', sampleData(i)));
    await Promise.all(batch);
    groupBatches.push(nowMs() - start);
  }
  const groupMs = nowMs() - groupStart;
  const closeStart = nowMs();
  await group.stream.close('benchmark');
  const groupCloseMs = nowMs() - closeStart;
  await groupTrail.stop();

  // (e2) the same recorder with one record in flight: one write + fdatasync per event.
  log(`section 2e: recorder, sequential (one in flight), up to ${counts.auditSequentialMax} events or ${counts.auditSequentialBudgetMs} ms`);
  const seqDir = join(scratch, 'audit-seq');
  const seqTrail = await openTrail(seqDir, new LocalDirectoryStore(join(seqDir, 'store')), key);
  const sequential = seqTrail.openStream(benchContext('sequential'));
  await sequential.opened;
  const seqSamples: number[] = [];
  const seqStart = nowMs();
  for (let i = 0; i < counts.auditSequentialMax && nowMs() - seqStart < counts.auditSequentialBudgetMs; i++) {
    const start = nowMs();
    await sequential.stream.record('cdp.evaluate', sampleData(i));
    seqSamples.push(nowMs() - start);
  }
  const seqMs = nowMs() - seqStart;
  await sequential.stream.close('benchmark');
  await seqTrail.stop();

  const perEvent = (batches: number[], size: number) => summarize(batches.map((ms) => (ms * 1000) / size));
  return {
    checksum: sink,
    baseline: {
      events: counts.auditEvents,
      ms: baselineMs,
      eventsPerSecond: (counts.auditEvents / baselineMs) * 1000,
      usPerEvent: perEvent(baselineBatches, counts.auditInFlight),
      batchMs: summarize(baselineBatches),
    },
    groupCommit: {
      events: counts.auditEvents,
      inFlight: counts.auditInFlight,
      ms: groupMs,
      eventsPerSecond: (counts.auditEvents / groupMs) * 1000,
      usPerEvent: perEvent(groupBatches, counts.auditInFlight),
      batchMs: summarize(groupBatches),
      closeMs: groupCloseMs,
    },
    sequential: { events: seqSamples.length, inFlight: 1, ms: seqMs, eventsPerSecond: (seqSamples.length / seqMs) * 1000, usPerEvent: perEvent(seqSamples, 1), recordMs: summarize(seqSamples) },
  };
}

/** Wraps a store to time each put (chunk uploads) without changing what the trail does. */
function timedStore(store: AuditStore, puts: { key: string; start: number; end: number; bytes: number }[]): AuditStore {
  return {
    description: store.description,
    check: () => store.check(),
    get: (key) => store.get(key),
    list: (prefix) => store.list(prefix),
    retention: (key) => store.retention(key),
    async put(key, body, retainUntil) {
      const start = nowMs();
      await store.put(key, body, retainUntil);
      puts.push({ key, start, end: nowMs(), bytes: body.length });
    },
  };
}

/**
 * (f) Upload throughput: a stream holding `uploadEvents` durable, not yet uploaded events (as after a burst,
 * or a restart) is uploaded by AuditStream.upload in sealed chunks of 500: seal (EdDSA JWS over the chunk
 * hash), put, note it in the WAL. Samples are per chunk.
 */
async function uploadThroughput(label: string, dir: string, store: AuditStore, key: SigningKey) {
  const puts: { key: string; start: number; end: number; bytes: number }[] = [];
  const trail = await openTrail(dir, timedStore(store, puts), key);
  const context = benchContext(label);
  const events: AuditEvent[] = [];
  const lines: string[] = [];
  let head = genesisHash(context.stream);
  const startedAt = new Date().toISOString();
  for (let seq = 0; seq < counts.uploadEvents; seq++) {
    const { event, json } = chainEventLine(context, seq, head, startedAt, 'cdp.evaluate', sampleData(seq));
    head = event.hash;
    events.push(event);
    lines.push(json);
  }
  // Opened as a recovered stream: every event pending, nothing uploaded yet.
  const { stream } = trail.openStream(context, { context, events, lines, chunks: [], closed: false });
  const start = nowMs();
  await stream.upload();
  const ms = nowMs() - start;
  await trail.stop();
  const cycles = puts.map((p, i) => p.end - (i === 0 ? start : puts[i - 1]!.end));
  const chunkEvents = counts.chunkMaxEvents;
  return {
    store: store.description,
    events: counts.uploadEvents,
    chunks: puts.length,
    bytes: puts.reduce((s, p) => s + p.bytes, 0),
    ms,
    eventsPerSecond: (counts.uploadEvents / ms) * 1000,
    chunkCycleMs: summarize(cycles),
    putMs: summarize(puts.map((p) => p.end - p.start)),
    usPerEvent: summarize(cycles.map((c) => (c * 1000) / chunkEvents)),
  };
}

async function benchUpload(scratch: string, key: SigningKey) {
  log(`section 2f: upload of ${counts.uploadEvents} events in chunks of ${counts.chunkMaxEvents} to the local directory store`);
  const local = await uploadThroughput('upload-local', join(scratch, 'upload-local'), new LocalDirectoryStore(join(scratch, 'upload-local', 'store')), key);
  const { S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION } = process.env;
  if (!S3_ENDPOINT || !AWS_ACCESS_KEY_ID || !AWS_SECRET_ACCESS_KEY) {
    log('section 2f: no S3 settings (S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY): S3 upload skipped');
    log(`section 2h: a busy session, ${counts.busyUpload.perSecond} records/s for ${counts.busyUpload.seconds} s, to the local directory store`);
    const busy = await benchBusyUpload(join(scratch, 'busy-local'), new LocalDirectoryStore(join(scratch, 'busy-local', 'store')), key, benchContext('busy'), counts.busyUpload, sampleData);
    return { local, s3: null, s3Skipped: 'no S3 settings in the environment', busy };
  }
  const connection = {
    endpoint: S3_ENDPOINT,
    region: AWS_REGION || 'us-east-1',
    forcePathStyle: true as const,
    credentials: { accessKeyId: AWS_ACCESS_KEY_ID, secretAccessKey: AWS_SECRET_ACCESS_KEY },
  };
  const bucket = `loupe-bench-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
  await createLockedBucket(connection, bucket);
  const s3 = new S3AuditStore({ ...connection, bucket, prefix: 'bench/' });
  try {
    await s3.check();
    log(`section 2f: upload of ${counts.uploadEvents} events in chunks of ${counts.chunkMaxEvents} to ${s3.description} (Object Lock COMPLIANCE)`);
    const result = await uploadThroughput('upload-s3', join(scratch, 'upload-s3'), s3, key);
    // One object back: its retention proves the Object Lock path was exercised.
    const first = (await s3.list('sessions/')).find((k) => k.includes('/chunk-'));
    const retention = first ? await s3.retention(first) : undefined;
    log(`section 2h: a busy session, ${counts.busyUpload.perSecond} records/s for ${counts.busyUpload.seconds} s, to ${s3.description}`);
    const busy = await benchBusyUpload(join(scratch, 'busy-s3'), s3, key, benchContext('busy'), counts.busyUpload, sampleData);
    return { local, s3: { ...result, bucket, retention: retention ? { mode: retention.mode, retainUntil: retention.retainUntil?.toISOString() } : null }, busy };
  } finally {
    s3.destroy();
  }
}

// ---------------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const started = nowMs();
  const loadBefore = loadavg();
  const scratch = mkdtempSync(join(tmpdir(), 'loupe-bench-'));
  try {
    const timings: Record<string, number> = {};
    const timed = async <T>(name: string, run: () => Promise<T>): Promise<T> => {
      const start = nowMs();
      try {
        return await run();
      } finally {
        timings[name] = (nowMs() - start) / 1000;
      }
    };
    const roundTrip = sections.has('1') ? await timed('1', () => benchRoundTrips(scratch)) : null;
    const pause = sections.has('2') ? await timed('2', () => benchPause(scratch, counts.pause, tmpfsDir, log)) : null;
    const key = await loadOrCreateSigningKey(join(scratch, 'keys'), 'audit-key');
    const audit = sections.has('2e') ? await timed('2e', () => benchAudit(scratch, key)) : null;
    const upload = sections.has('2e') ? await timed('2f', () => benchUpload(scratch, key)) : null;
    const throughput = sections.has('3') ? await timed('3', () => benchThroughput(scratch, counts.load, log)) : null;
    const sessionsResult = sections.has('4') ? await timed('4', () => benchSessions(scratch, counts.sessions, log)) : null;
    const evaluation = sections.has('5') ? await timed('5', () => benchEvaluation(counts.evaluation)) : null;
    const adapter = sections.has('6') ? await timed('6', () => benchAdapter(counts.adapter)) : null;
    const recording = sections.has('7') ? await timed('7', () => benchLoad(scratch, counts.recording, log)) : null;
    // A section that fails is reported as skipped with its reason; the figures of the others are kept.
    const replicas = sections.has('8')
      ? await timed('8', () => benchReplicas(scratch, counts.replicas, log)).catch((err: Error) => {
          log(`section 8 failed: ${err.message}`);
          return { skipped: `failed: ${err.message}` };
        })
      : null;
    const results = {
      generatedAt: new Date().toISOString(),
      machine: {
        node: process.version,
        v8: process.versions.v8,
        cpu: cpus()[0]?.model ?? 'unknown',
        cores: cpus().length,
        platform: `${process.platform} ${process.arch}`,
        scratchDir: scratch,
        loadavgBefore: loadBefore,
        loadavgAfter: loadavg(),
      },
      counts,
      evaluateParamsAsForwarded: evaluateAsForwarded,
      roundTrip,
      pause,
      audit,
      upload,
      throughput,
      sessions: sessionsResult,
      evaluation,
      adapter,
      recording,
      replicas,
      sectionSeconds: timings,
      durationSeconds: (nowMs() - started) / 1000,
    };
    writeFileSync(resultsFile, JSON.stringify(results, null, 2) + '\n');
    log(`wrote ${resultsFile}`);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`bench failed: ${(err as Error).stack ?? err}\n`);
    process.exit(1);
  },
);
