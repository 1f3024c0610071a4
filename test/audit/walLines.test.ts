import { strict as assert } from 'node:assert';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { AuditTrail } from '../../broker/audit/auditTrail';
import { chainEvent, genesisHash, type StreamContext } from '../../broker/audit/events';
import { LocalDirectoryStore } from '../../broker/audit/stores/localStore';
import { readTranscriptFromStore, verifyTranscript } from '../../broker/audit/verify';
import { WriteAheadLog } from '../../broker/audit/wal';
import { loadOrCreateSigningKey } from '../../broker/identity/keys';

describe("a recovered chain uploads each event's line as the WAL holds it", () => {
  const dirs: string[] = [];
  after(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  it("an older broker's WAL (events in their own key order, keys that JSON.parse reorders): the chunk a crashed run began is the same bytes, and verifies", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'loupe-wal-lines-'));
    dirs.push(dir);
    const walDir = join(dir, 'wal');
    mkdirSync(walDir);
    const context: StreamContext = { stream: 's-lines', kind: 'session', grant: 'g-1', actor: { sub: 'dev', name: 'Dev', groups: ['devs'] }, startedAt: new Date().toISOString(), retentionDays: 1 };
    // What an older broker wrote: JSON.stringify of each event, not its canonical form; "10" before "9" as the client sent
    // them, which JSON.parse then JSON.stringify would reorder.
    let head = genesisHash(context.stream);
    const lines: string[] = [];
    for (let seq = 0; seq < 3; seq++) {
      const event = chainEvent(context, seq, head, new Date().toISOString(), 'cdp.request', { method: 'Runtime.callFunctionOn', params: JSON.parse(`{"b":${seq},"10":"ten","9":"nine"}`) });
      head = event.hash;
      const line = JSON.stringify(event).replace('"9":"nine","10":"ten"', '"10":"ten","9":"nine"');
      assert.notEqual(line, JSON.stringify(JSON.parse(line)));
      lines.push(line);
    }
    const wal = [{ t: 'open', context }, ...lines.map((line) => ({ line })), { t: 'uploading', stream: context.stream, firstSeq: 0, lastSeq: 2 }]
      .map((r) => ('line' in r ? `{"t":"event","event":${r.line as string}}` : JSON.stringify(r)) + '\n')
      .join('');
    writeFileSync(join(walDir, 'wal-00000001.log'), wal);

    const { wal: reopened, recovered } = await WriteAheadLog.open(walDir, { maxBatch: 64, segmentBytes: 1 << 20 });
    assert.deepEqual(recovered.get(context.stream)?.lines, lines);
    const store = new LocalDirectoryStore(join(dir, 'store'));
    const key = await loadOrCreateSigningKey(join(dir, 'keys'), 'audit-key');
    const trail = new AuditTrail(reopened, store, key, { chunkMaxEvents: 100, uploadIntervalMs: 60_000, failClosedAfterMs: 60_000, clock: Date.now });
    await trail.recover(recovered);
    assert.ok(await trail.settle(10_000), 'the recovered chain closed');
    await trail.stop();

    const keys = await store.list('sessions/');
    const first = keys.find((k) => k.endsWith('chunk-000000000-000000002.ndjson'));
    assert.ok(first, `the chunk begun before the crash, with its boundaries: ${keys.join(', ')}`);
    assert.ok(
      readFileSync(join(dir, 'store', first))
        .toString('utf8')
        .startsWith(lines.map((l) => l + '\n').join('')),
      'the lines byte for byte',
    );
    const prefix = first.slice(0, first.lastIndexOf('/') + 1);
    const result = await verifyTranscript(await readTranscriptFromStore(store, prefix, false), { keys: [key.publicJwk] });
    assert.ok(result.ok, result.problems.join('; '));
  });
});
