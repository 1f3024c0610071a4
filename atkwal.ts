import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AuditTrail } from './broker/audit/auditTrail';
import { streamPrefix, type StreamContext } from './broker/audit/events';
import { LocalDirectoryStore } from './broker/audit/stores/localStore';
import { readTranscriptFromStore, verifyTranscript } from './broker/audit/verify';
import { WriteAheadLog } from './broker/audit/wal';
import { loadOrCreateSigningKey } from './broker/identity/keys';
const walOptions = { maxBatch: 64, segmentBytes: 1 << 20 };
(async () => {
  for (const mode of process.argv.slice(2)) {
    const dir = mkdtempSync(join(tmpdir(), 'atkwal-'));
    const key = await loadOrCreateSigningKey(dir, 'k');
    const store = new LocalDirectoryStore(join(dir, 'store'));
    const walDir = join(dir, 'wal');
    const options = { chunkMaxEvents: 100, uploadIntervalMs: 3600_000, failClosedAfterMs: 3600_000, clock: Date.now };
    const first = await WriteAheadLog.open(walDir, walOptions);
    const t1 = new AuditTrail(first.wal, store, key, options);
    const ctx: StreamContext = { stream: '6a1e0c1e-0000-4000-8000-000000000001', kind: 'session', target: 'app', startedAt: new Date().toISOString(), retentionDays: 1 };
    const { stream, opened } = t1.openStream(ctx);
    await opened;
    for (let i = 0; i < 6; i++) await stream.record('cdp.request', { i });
    await t1.stop();
    const seg = join(
      walDir,
      readdirSync(walDir)
        .filter((n) => /^wal-\d+\.log$/.test(n))
        .sort()
        .at(-1)!,
    );
    let text = readFileSync(seg, 'utf8').replace(/\0+$/, '');
    const lines = text.split('\n');
    const idx = lines.findIndex((l) => l.includes('"seq":3,'));
    if (mode === 'null') lines[idx] = '{"t":"event","event":null}';
    if (mode === 'noctx') lines.splice(idx, 0, '{"t":"open"}');
    if (mode === 'alter') lines[idx] = lines[idx]!.replace('"i":3', '"i":7');
    if (mode === 'garbage') lines[idx] = 'xx' + lines[idx]!.slice(2);
    if (mode === 'seqstr') lines[idx] = lines[idx]!.replace('"seq":3,', '"seq":"3",');
    writeFileSync(seg, lines.join('\n'));
    try {
      const second = await WriteAheadLog.open(walDir, walOptions);
      console.log(
        mode,
        'repairs',
        second.wal.repairs.map((r) => r.kind),
      );
      const logs: string[] = [];
      const t2 = new AuditTrail(second.wal, store, key, { ...options, log: (l) => logs.push(l) });
      await t2.recover(second.recovered);
      await t2.settle(5000);
      const r = await verifyTranscript(await readTranscriptFromStore(store, streamPrefix(ctx), false), { keys: [key.publicJwk] });
      console.log(mode, 'verify ok', r.ok, r.problems.slice(0, 3), logs.slice(0, 3));
      await t2.stop();
    } catch (e) {
      console.log(mode, 'THROW', (e as Error).stack?.split('\n').slice(0, 3).join(' | '));
    }
  }
  process.exit(0);
})();
