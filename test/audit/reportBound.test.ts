// A session's report is rendered by the broker that every session shares: it must never hold the broker's event loop
// or memory for a long or changed transcript. A transcript past audit.maxReportBytes gets a clear refusal (the
// transcript itself still downloads, and renders offline), and a transcript changed throughout renders in linear time.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { genesisHash, hashRecord, sha256 } from '../../common/transcript';
import { reportParts } from '../../broker/audit/report';
import { seal } from '../../broker/audit/seal';
import { parseTranscriptText, verifyTranscript } from '../../broker/audit/verify';
import { loadOrCreateSigningKey } from '../../broker/identity/keys';
import { BrokerApi } from '../../extension/adapter/brokerApi';
import { listRecordedSessions, saveTranscript } from '../../extension/transcripts';
import { startTarget, type TargetProcess } from '../support/target';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';
import { sleep, waitFor } from '../support/wait';

const cli = join(__dirname, '..', '..', 'dist', 'cli.js');
const stream = '0b7a61f2-7f0c-4f43-9a51-3d7a8c2e5b10';

/** A sealed transcript of `records` records (no manifest), every `changedEvery`-th record's data changed after it was hashed. */
async function changedTranscript(records: number, changedEvery: number) {
  const key = await loadOrCreateSigningKey(mkdtempSync(join(tmpdir(), 'loupe-report-key-')), 'audit');
  const context = { stream, kind: 'session', grant: 'g-1', actor: { sub: 'alice', name: 'Alice', groups: ['devs'] }, target: 'app', mode: 'pause', reason: 'a long session' };
  let prev = genesisHash(stream);
  const parts: string[] = [];
  for (let seq = 0; seq < records;) {
    const firstSeq = seq;
    let body = '';
    for (let i = 0; i < 500 && seq < records; i++, seq++) {
      const record = {
        seq,
        time: new Date(Date.UTC(2026, 11, 1) + seq).toISOString(),
        type: 'cdp.evaluate',
        code: 'L2000',
        ...context,
        data: { method: 'Runtime.evaluate', params: { expression: `n + ${seq}` } },
        prev,
      };
      prev = hashRecord(record);
      body += JSON.stringify({ ...record, ...(seq % changedEvery === 0 ? { data: { changed: true } } : {}), hash: prev }) + '\n';
    }
    const name = `chunk-${String(firstSeq).padStart(9, '0')}-${String(seq - 1).padStart(9, '0')}.ndjson`;
    const jws = await seal(key, { session: stream, firstSeq, lastSeq: seq - 1, chunkSha256: sha256(body), headHash: prev }, 'loupe-chunk+jws');
    parts.push(body + JSON.stringify({ type: 'seal', chunk: name, jws }) + '\n');
  }
  return { text: parts.join(''), keys: { keys: [key.publicJwk] } };
}

describe('session reports: bounded in the broker', () => {
  it('a transcript changed throughout renders every changed record marked, the event loop turning between parts', async () => {
    // 40,000 records, every other one changed: looked up one by one, the rows took seconds of one turn.
    const { text, keys } = await changedTranscript(40_000, 2);
    const result = await verifyTranscript(parseTranscriptText(text), keys);
    assert.equal(result.ok, false);
    let longest = 0;
    let last = performance.now();
    const ticker = setInterval(() => {
      const now = performance.now();
      longest = Math.max(longest, now - last);
      last = now;
    }, 5);
    let html = '';
    let parts = 0;
    let breaths = 0;
    for (const part of reportParts(result)) {
      html += part;
      if (part === '') breaths++;
      else parts++;
      await new Promise((resolve) => setImmediate(resolve));
    }
    clearInterval(ticker);
    assert.equal(html.match(/<tr class="tampered">/g)?.length, 20_000, 'each changed record has its row, marked');
    assert.ok(parts >= 40, `the timeline comes in parts (${parts})`);
    // And the page's facts are made with breaths between slices of the records (the broker turns its loop at each).
    assert.ok(breaths >= 16, `breaths while the facts were made: ${breaths}`);
    assert.ok(longest < 2000, `the event loop was held ${longest.toFixed(0)} ms at once`);
  });
});

describe('session reports: a transcript over audit.maxReportBytes (real broker, real target)', () => {
  let target: TargetProcess;
  let broker: TestBroker;
  let auditor: BrokerApi;
  let sessionId: string;
  let mediumId: string;
  let smallId: string;
  let plantedId: string;
  let out: string;

  before(async () => {
    target = await startTarget();
    broker = await startTestBroker(
      basePolicy(target.inspector, {
        roles: { ...basePolicy('').roles, auditor: { groups: ['auditors'] } },
        auditors: ['auditor'],
        audit: { maxReportBytes: 1 << 20, uploadInterval: '1s' },
      }),
    );
    auditor = new BrokerApi(broker.url, await broker.token('audrey', ['auditors']));
    out = mkdtempSync(join(tmpdir(), 'loupe-report-bound-'));
    // A little over 1 MiB of records: evaluations with long expressions (each is recorded whole).
    const filler = 'x'.repeat(2000);
    const session = async (evaluations: number) => {
      const { client, grant } = await broker.attach({ durationSeconds: 120 });
      for (let i = 0; i < evaluations; i++) await client.call('Runtime.evaluate', { expression: `'${filler}'.length + ${i}` });
      await client.close();
      const ended = await waitFor(async () => (await listRecordedSessions(auditor)).find((s) => s.grantId === grant.grantId && s.state === 'ended'), {
        what: 'the session listed as ended',
        timeoutMs: 15_000,
        intervalMs: 100,
      });
      return ended.sessionId;
    };
    sessionId = await session(400);
    // Two under the bound: reports the broker renders.
    mediumId = await session(100);
    smallId = await session(2);
    plantedId = await session(2);
  });
  after(async () => {
    await broker?.close();
    await target?.stop();
    if (out) rmSync(out, { recursive: true, force: true });
  });

  it('refuses the report clearly, and the broker serves the transcript and the next request', async () => {
    const res = await fetch(`${broker.url}/v1/sessions/${sessionId}/report`, { headers: { authorization: `Bearer ${await broker.token('audrey', ['auditors'])}` } });
    assert.equal(res.status, 422);
    const body = (await res.json()) as { error: { code: string; message: string } };
    assert.equal(body.error.code, 'report_too_large');
    assert.match(body.error.message, new RegExp(`report of session ${sessionId} is not rendered by the broker: its transcript is over 1 MiB \\(audit\\.maxReportBytes`));
    assert.match(body.error.message, /loupe audit render/);
    assert.equal((await fetch(`${broker.url}/healthz`)).status, 200);
  });

  it('makes reports one at a time: one asked while another is being made waits until that one is sent', async () => {
    const reader = broker.broker.auditReader;
    const audrey = { sub: 'audrey', name: 'Audrey', groups: ['auditors'], issuer: 'test' };
    const drain = async (parts: AsyncGenerator<string>, first = '') => {
      let text = first;
      for await (const part of parts) text += part;
      return text;
    };
    const a = reader.report(audrey, mediumId);
    const aFirst = await a.next();
    assert.equal(aFirst.done, false);
    const b = reader.report(audrey, smallId);
    const bFirst = b.next();
    assert.equal(await Promise.race([bFirst.then(() => 'answered'), sleep(500).then(() => 'waiting')]), 'waiting');
    assert.match(await drain(a, aFirst.value as string), /Verified: \d+ records/);
    const bPart = await bFirst;
    assert.equal(bPart.done, false);
    assert.match(await drain(b, bPart.value as string), new RegExp(smallId));

    // A refusal does not wait its turn; a client that leaves early gives its turn up.
    const c = reader.report(audrey, mediumId);
    await c.next();
    await assert.rejects(reader.report({ ...audrey, groups: ['devs'] }, smallId).next(), /session transcripts are for auditors/);
    await assert.rejects(reader.report(audrey, '00000000-0000-4000-8000-000000000000').next(), /no recorded session/);
    await c.return(undefined);
    assert.match(await drain(reader.report(audrey, smallId)), /Verified: \d+ records/);
  });

  it('an object larger than any Loupe writes, put in the store, is never read: its download and report are refused, the listing answers', async () => {
    const storeDir = (broker.config.audit.store as { dir: string }).dir;
    const find = (dir: string): string | undefined => {
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        if (!entry.isDirectory()) continue;
        if (entry.name === plantedId) return join(dir, entry.name);
        const found = find(join(dir, entry.name));
        if (found) return found;
      }
      return undefined;
    };
    const sessionDir = find(join(storeDir, 'sessions'))!;
    const chunk = join(
      sessionDir,
      readdirSync(sessionDir).find((name) => name.startsWith('chunk-'))!,
    );
    // 300 MiB, sparse: nothing is written to the disk, and a read of it would still be 300 MiB in the broker.
    chmodSync(chunk, 0o644);
    truncateSync(chunk, 300 << 20);
    const authorization = `Bearer ${await broker.token('audrey', ['auditors'])}`;
    const download = await fetch(`${broker.url}/v1/sessions/${plantedId}/transcript`, { headers: { authorization } });
    assert.equal(download.status, 500);
    assert.match(
      ((await download.json()) as { error: { message: string } }).error.message,
      /314572800 bytes in the audit store, larger than any object Loupe writes \(the object was replaced\); not sent/,
    );
    const report = await fetch(`${broker.url}/v1/sessions/${plantedId}/report`, { headers: { authorization } });
    assert.equal(report.status, 422);
    assert.equal(((await report.json()) as { error: { code: string } }).error.code, 'report_too_large');
    const listed = await listRecordedSessions(auditor);
    assert.ok(listed.some((s) => s.sessionId === smallId) && listed.some((s) => s.sessionId === plantedId));
  });

  it('Download Transcript saves and checks the transcript, says why there is no report, and it renders offline', async () => {
    const saved = await saveTranscript(auditor, sessionId, out);
    assert.equal(saved.check.ok, true, JSON.stringify(saved.check.problems));
    assert.ok(saved.check.records > 800, `records: ${saved.check.records}`);
    assert.equal(saved.reportFile, undefined);
    assert.match(saved.reportRefused ?? '', /audit\.maxReportBytes/);
    assert.equal(existsSync(join(saved.dir, 'report.html')), false);
    const report = join(out, 'offline.html');
    const { stdout } = await promisify(execFile)(process.execPath, [cli, 'audit', 'render', saved.dir, '-o', report]);
    assert.match(stdout, /^wrote /);
    const html = readFileSync(report, 'utf8');
    assert.match(html, /Verified: \d+ records/);
    assert.ok(html.includes(sessionId));
  });
});
