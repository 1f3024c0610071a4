import { strict as assert } from 'node:assert';
import { appendFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, truncateSync } from 'node:fs';
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
