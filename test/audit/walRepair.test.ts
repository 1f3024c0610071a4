import { strict as assert } from 'node:assert';
import { appendFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AuditTrail } from '../../broker/audit/auditTrail';
import { streamPrefix, type StreamContext } from '../../broker/audit/events';
import { LocalDirectoryStore } from '../../broker/audit/stores/localStore';
import { renderReport } from '../../broker/audit/report';
import { readTranscriptFromStore, verifyTranscript } from '../../broker/audit/verify';
import { WriteAheadLog } from '../../broker/audit/wal';
import { loadOrCreateSigningKey, type SigningKey } from '../../broker/identity/keys';
import { basePolicy, startTestBroker } from '../support/testBroker';

const walOptions = { maxBatch: 64, segmentBytes: 1 << 20 };
const lastSegment = (walDir: string) =>
  join(
    walDir,
    readdirSync(walDir)
      .filter((n) => /^wal-\d+\.log$/.test(n))
      .sort()
      .at(-1)!,
  );

describe('a damaged write-ahead log is repaired on restart', () => {
  let dir: string;
  let key: SigningKey;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'loupe-walrepair-'));
    key = await loadOrCreateSigningKey(dir, 'audit-key');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('a WAL cut inside a record that was already uploaded is reconciled from the store, and the chain verifies', async () => {
    const store = new LocalDirectoryStore(join(dir, 'store'));
    const walDir = join(dir, 'wal');
    const options = { chunkMaxEvents: 100, uploadIntervalMs: 3600_000, failClosedAfterMs: 3600_000, clock: Date.now };
    const first = await WriteAheadLog.open(walDir, walOptions);
    const crashed = new AuditTrail(first.wal, store, key, options);
    const ctx: StreamContext = { stream: '6a1e0c1e-0000-4000-8000-000000000001', kind: 'session', target: 'app', startedAt: new Date().toISOString(), retentionDays: 1 };
    const { stream, opened } = crashed.openStream(ctx);
    await opened;
    for (let i = 0; i < 6; i++) await stream.record('cdp.request', { i });
    await stream.upload(); // chunk 0-5 is in the store
    await crashed.stop();
    // The disk loses the WAL's end: cut inside the record of seq 3 (so seq 3-5 and the upload notes are gone).
    const segment = lastSegment(walDir);
    const text = readFileSync(segment, 'utf8');
    truncateSync(segment, Buffer.byteLength(text.slice(0, text.indexOf('"seq":3,'))));

    const logs: string[] = [];
    const second = await WriteAheadLog.open(walDir, walOptions);
    assert.equal(second.wal.repairs.length, 1);
    assert.equal(second.wal.repairs[0]!.kind, 'torn_tail');
    assert.ok(statSync(segment).size < Buffer.byteLength(text.slice(0, text.indexOf('"seq":3,'))), 'the torn record was cut off');
    const restarted = new AuditTrail(second.wal, store, key, { ...options, log: (l) => logs.push(l) });
    await restarted.recover(second.recovered);
    assert.ok(await restarted.settle(10_000));
    assert.deepEqual(
      restarted.reconciled.map((r) => [r.fromSeq, r.toSeq]),
      [[3, 5]],
    );
    assert.ok(
      logs.some((l) => /seq 3-5 reconciled from the store/.test(l)),
      logs.join('\n'),
    );
    const result = await verifyTranscript(await readTranscriptFromStore(store, streamPrefix(ctx), false), { keys: [key.publicJwk] });
    assert.deepEqual(result.problems, []);
    assert.deepEqual(
      result.events.map((e) => e.seq),
      [0, 1, 2, 3, 4, 5, 6],
    );
    assert.equal(result.events.at(-1)!.data.endReason, 'broker_crashed');
    await restarted.stop();
  });

  it('a torn tail says so in the broker log and in the audit trail', async () => {
    const stateDir = join(dir, 'broker-state');
    const policy = basePolicy('127.0.0.1:9', { audit: { uploadInterval: '1s' } });
    const firstRun = await startTestBroker(policy, { stateDir });
    await firstRun.close();
    appendFileSync(lastSegment(join(stateDir, 'audit-wal')), '{"t":"event","event":{"seq":7,"ti');
    const logs: string[] = [];
    const secondRun = await startTestBroker(policy, { stateDir, log: (l) => logs.push(l) });
    assert.ok(
      logs.some((l) => /write-ahead log torn tail repaired: .*wal-\d+\.log at byte \d+/.test(l)),
      logs.join('\n'),
    );
    const store = secondRun.broker.audit.store;
    await secondRun.close();
    const grantEvents = [];
    for (const key of await store.list('grants/')) {
      if (!key.includes('/chunk-')) continue;
      for (const line of (await store.get(key)).toString('utf8').split('\n')) if (line) grantEvents.push(JSON.parse(line));
    }
    const repaired = grantEvents.filter((e) => e.type === 'audit.wal_repaired');
    assert.equal(repaired.length, 1);
    assert.equal(repaired[0].data.kind, 'torn_tail');
    assert.equal(repaired[0].code, 'L5003');
  });
});

describe('a request whose response was not recorded when the broker stopped', () => {
  it('verify and the report say its answer may have been delivered', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'loupe-unanswered-'));
    try {
      const key = await loadOrCreateSigningKey(dir, 'audit-key');
      const store = new LocalDirectoryStore(join(dir, 'store'));
      const walDir = join(dir, 'wal');
      const options = { chunkMaxEvents: 100, uploadIntervalMs: 3600_000, failClosedAfterMs: 3600_000, clock: Date.now };
      const first = await WriteAheadLog.open(walDir, walOptions);
      const crashed = new AuditTrail(first.wal, store, key, options);
      const ctx: StreamContext = { stream: '6a1e0c1e-0000-4000-8000-000000000002', kind: 'session', target: 'app', startedAt: new Date().toISOString(), retentionDays: 1 };
      const { stream, opened } = crashed.openStream(ctx);
      await opened;
      // As the session records them: the request (durable, then forwarded), then its response, for two requests;
      // the broker dies before the second response is recorded.
      const answered = await stream.record('cdp.evaluate', { id: 1, targetId: 10, method: 'Runtime.evaluate', params: { expression: '1' }, decision: 'rewrite' });
      await stream.record('cdp.response', { id: 1, targetId: 10, requestSeq: answered.seq, method: 'Runtime.evaluate', result: {} });
      const unanswered = await stream.record('cdp.breakpoint.set', { id: 2, targetId: 11, method: 'Debugger.setBreakpointByUrl', params: { lineNumber: 3 }, decision: 'allow' });
      await crashed.stop();
      const second = await WriteAheadLog.open(walDir, walOptions);
      const restarted = new AuditTrail(second.wal, store, key, options);
      await restarted.recover(second.recovered);
      assert.ok(await restarted.settle(10_000));
      const result = await verifyTranscript(await readTranscriptFromStore(store, streamPrefix(ctx), false), { keys: [key.publicJwk] });
      assert.deepEqual(result.problems, []);
      assert.deepEqual(result.notes, [
        `seq ${unanswered.seq} (Debugger.setBreakpointByUrl, client id 2): forwarded to the target, but no response was recorded before the broker stopped; its answer may have been delivered to the client`,
      ]);
      assert.match(renderReport(result, { source: 'test' }), /its answer may have been delivered to the client/);
      await restarted.stop();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('a record damaged inside a write-ahead-log segment (not its tail)', () => {
  /** A WAL with one session of six requests, not uploaded, whose record of seq 3 `damage` rewrites. */
  async function damagedWal(dir: string, key: SigningKey, damage: (line: string) => string) {
    const walDir = join(dir, 'wal');
    const first = await WriteAheadLog.open(walDir, walOptions);
    const trail = new AuditTrail(first.wal, new LocalDirectoryStore(join(dir, 'store')), key, { chunkMaxEvents: 100, uploadIntervalMs: 3600_000, failClosedAfterMs: 3600_000, clock: Date.now });
    const ctx: StreamContext = { stream: '6a1e0c1e-0000-4000-8000-000000000003', kind: 'session', target: 'app', startedAt: new Date().toISOString(), retentionDays: 1 };
    const { stream, opened } = trail.openStream(ctx);
    await opened;
    for (let i = 0; i < 6; i++) await stream.record('cdp.request', { i });
    await trail.stop();
    const segment = lastSegment(walDir);
    const lines = readFileSync(segment, 'utf8').replace(/\0+$/, '').split('\n');
    const at = lines.findIndex((l) => l.includes('"seq":3,'));
    lines[at] = damage(lines[at]!);
    writeFileSync(segment, lines.join('\n'));
    return { walDir, ctx, store: new LocalDirectoryStore(join(dir, 'store')) };
  }

  for (const [what, damage, why] of [
    ['a record of another shape', () => '{"t":"event","event":null}', /not a write-ahead-log record \(event: no event\)/],
    ['an opening with no context', (l: string) => `{"t":"open"}\n${l}`, /not a write-ahead-log record \(open: no context\)/],
    ['an event whose content no longer matches its hash', (l: string) => l.replace('"i":3', '"i":7'), /its hash does not match its content/],
  ] as const) {
    it(`${what}: the WAL opens, names the record it skips, and the stored chain shows the gap`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'loupe-walcorrupt-'));
      try {
        const key = await loadOrCreateSigningKey(dir, 'audit-key');
        const { walDir, ctx, store } = await damagedWal(dir, key, damage);
        const second = await WriteAheadLog.open(walDir, walOptions);
        assert.equal(second.wal.repairs.length, 1, JSON.stringify(second.wal.repairs));
        assert.equal(second.wal.repairs[0]!.kind, 'unreadable_record');
        assert.match(second.wal.repairs[0]!.why ?? '', why);
        const restarted = new AuditTrail(second.wal, store, key, { chunkMaxEvents: 100, uploadIntervalMs: 3600_000, failClosedAfterMs: 3600_000, clock: Date.now });
        await restarted.recover(second.recovered);
        assert.ok(await restarted.settle(10_000));
        const result = await verifyTranscript(await readTranscriptFromStore(store, streamPrefix(ctx), false), { keys: [key.publicJwk] });
        if (what.startsWith('an opening')) assert.deepEqual(result.problems, []);
        else assert.match(result.problems[0] ?? '', /\(seq 4\): records 3\.\.3 are missing \(deleted\)/);
        await restarted.stop();
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }

  it('the broker starts, and its log and grant stream name the record skipped and why', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'loupe-walcorrupt-'));
    try {
      const stateDir = join(dir, 'broker-state');
      const policy = basePolicy('127.0.0.1:9', { audit: { uploadInterval: '1s' } });
      const firstRun = await startTestBroker(policy, { stateDir });
      await firstRun.close();
      const segment = lastSegment(join(stateDir, 'audit-wal'));
      writeFileSync(segment, '{"t":"uploaded","stream":"x"}\n' + readFileSync(segment, 'utf8'));
      const logs: string[] = [];
      const secondRun = await startTestBroker(policy, { stateDir, log: (l) => logs.push(l) });
      assert.ok(
        logs.some((l) => /write-ahead log unreadable record skipped: .*wal-\d+\.log at byte 0 \(\d+ bytes\): not a write-ahead-log record \(uploaded: no chunk\)/.test(l)),
        logs.join('\n'),
      );
      const store = secondRun.broker.audit.store;
      await secondRun.close();
      const repaired = [];
      for (const key of await store.list('grants/')) {
        if (!key.includes('/chunk-')) continue;
        for (const line of (await store.get(key)).toString('utf8').split('\n')) if (line.includes('"audit.wal_repaired"')) repaired.push(JSON.parse(line));
      }
      assert.equal(repaired.length, 1);
      assert.equal(repaired[0].data.kind, 'unreadable_record');
      assert.match(repaired[0].data.why, /uploaded: no chunk/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
