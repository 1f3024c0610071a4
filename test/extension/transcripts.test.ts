// "Loupe: Download Transcript…" without VS Code (extension/transcripts.ts, what the command runs) against a real broker
// that recorded a real session on a real target: the auditor lists sessions, saves one (transcript, keys, report), the
// saved folder verifies with the broker's own verifier and `loupe audit verify`, the extension's check agrees with the
// broker's on the real transcript and on tampered copies, and someone without an auditor role is refused clearly.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { downloadSession, verifyLocation } from '../../broker/audit/auditCli';
import { createAuditStore } from '../../broker/audit/stores/createStore';
import { ndjsonLines, parseTranscriptLines } from '../../common/transcript';
import { parseTranscriptText, readTranscriptFromStore, transcriptToText, verifyTranscript } from '../../broker/audit/verify';
import { BrokerApi } from '../../extension/adapter/brokerApi';
import { checkTranscript, describeCheck, listRecordedSessions, NotAuditorError, saveTranscript, sessionRow, type RecordedSession } from '../../extension/transcripts';
import { fixtures, markerLine, startTarget, type TargetProcess } from '../support/target';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';
import { waitFor } from '../support/wait';

const cli = join(__dirname, '..', '..', 'dist', 'cli.js');
const appLine = markerLine(join(fixtures, 'app.js'), 'work');

describe('Download Transcript (extension/transcripts.ts) against a real broker and a recorded session', () => {
  let target: TargetProcess;
  let broker: TestBroker;
  let auditor: BrokerApi;
  let auditorToken: string;
  let session: RecordedSession;
  let out: string;

  before(async () => {
    target = await startTarget();
    broker = await startTestBroker(
      basePolicy(target.inspector, {
        roles: { ...basePolicy('').roles, auditor: { groups: ['auditors'] } },
        auditors: ['auditor'],
        // Small chunks: the transcript holds several seals.
        audit: { chunkMaxEvents: 6, uploadInterval: '1s' },
      }),
    );
    auditorToken = await broker.token('audrey', ['auditors']);
    auditor = new BrokerApi(broker.url, auditorToken);
    out = mkdtempSync(join(tmpdir(), 'loupe-transcripts-'));
    // A real session: a breakpoint hit, a variable read, an evaluation and one V8 refuses, resumed, closed.
    const { client } = await broker.attach({ durationSeconds: 120 });
    await client.call('Debugger.enable');
    const { breakpointId } = await client.call('Debugger.setBreakpointByUrl', { lineNumber: appLine, urlRegex: 'app\\.js$' });
    const frame = (await client.waitEvent('Debugger.paused')).params.callFrames[0];
    const local = frame.scopeChain.find((s: any) => s.type === 'local');
    await client.call('Runtime.getProperties', { objectId: local.object.objectId, ownProperties: true });
    await client.call('Debugger.evaluateOnCallFrame', { callFrameId: frame.callFrameId, expression: 'local.label' });
    await client.call('Debugger.evaluateOnCallFrame', { callFrameId: frame.callFrameId, expression: 'globalThis.leak = local' });
    await client.call('Debugger.removeBreakpoint', { breakpointId });
    await client.call('Debugger.resume');
    await client.close();
    session = await waitFor(async () => (await listRecordedSessions(auditor)).find((s) => s.state === 'ended'), { what: 'the session listed as ended', timeoutMs: 15_000, intervalMs: 100 });
  });
  after(async () => {
    await broker?.close();
    await target?.stop();
    if (out) rmSync(out, { recursive: true, force: true });
  });

  it('lists the recorded session for an auditor, as the quick pick shows it', () => {
    assert.equal(session.target, 'app');
    assert.equal(session.user.sub, 'dev');
    assert.equal(session.endReason, 'client_closed');
    const row = sessionRow(session);
    assert.equal(row.label, `app · ${session.user.name || 'dev'}`);
    assert.equal(row.description, `${session.startedAt} · pause · ended (client_closed)`);
    assert.equal(row.detail, `investigating a test · session ${session.sessionId}`);
  });

  it('saves transcript, keys and report; the folder verifies with the broker’s verifier and `loupe audit verify`', async () => {
    const saved = await saveTranscript(auditor, session.sessionId, out);
    assert.equal(saved.dir, join(out, `loupe-session-${session.sessionId}`));
    assert.deepEqual(readdirSync(saved.dir).sort(), ['keys.json', 'report.html', 'transcript.ndjson']);

    // The broker's own verifier, on exactly what was saved.
    const { result } = await verifyLocation(saved.dir);
    assert.deepEqual(result.problems, []);
    assert.equal(result.ok, true);
    const types = result.events.map((e) => e.type);
    for (const type of ['session.started', 'cdp.breakpoint.set', 'cdp.breakpoint.hit', 'cdp.properties.read', 'cdp.evaluate', 'cdp.resume', 'session.ended'])
      assert.ok(types.includes(type as any), `the transcript records ${type}`);
    // …and the CLI an auditor runs offline, also against the broker's published keys rather than the saved ones.
    for (const args of [[saved.dir], [saved.dir, '--keys', `${broker.url}/v1/audit/keys`]]) {
      // Not spawnSync: the CLI asks the broker, which runs in this process.
      const run = await new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) =>
        execFile(process.execPath, [cli, 'audit', 'verify', ...args], { encoding: 'utf8', timeout: 30_000 }, (err, stdout, stderr) =>
          resolve({ status: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
        ),
      );
      assert.equal(run.status, 0, `loupe audit verify ${args.join(' ')}: ${run.stdout}${run.stderr}`);
      assert.match(run.stdout, new RegExp(`^OK: session ${session.sessionId}: ${result.events.length} records in \\d+ sealed chunk\\(s\\), chain intact, manifest sealed`));
    }

    // The extension's own check (what the notification says) agrees.
    const keys = (await broker.api('GET', '/v1/audit/keys', undefined)).body;
    assert.deepEqual(JSON.parse(readFileSync(saved.keysFile, 'utf8')), keys, 'keys.json is the broker’s published key set');
    assert.deepEqual(saved.check.problems, []);
    assert.equal(saved.check.ok, true);
    assert.equal(saved.check.sessionId, session.sessionId);
    assert.equal(saved.check.records, result.events.length);
    assert.equal(saved.check.chunks, parseTranscriptText(readFileSync(saved.transcriptFile, 'utf8')).chunks.length);
    assert.ok(saved.check.chunks >= 3, `several sealed chunks (${saved.check.chunks})`);
    assert.equal(saved.check.sealedEnd, true);
    assert.deepEqual(saved.check.kids, [keys.keys[0].kid]);
    assert.equal(describeCheck(saved.check), `verified: ${result.events.length} records in ${saved.check.chunks} sealed chunks, hash chain intact, manifest sealed (audit key ${keys.keys[0].kid})`);

    // The report the command opens, written to the folder: the broker's rendering of this session, verified.
    const report = readFileSync(saved.reportFile!, 'utf8');
    assert.match(report, /^<!doctype html>/i);
    assert.ok(report.includes(session.sessionId), 'the report names the session');
    assert.ok(report.includes('investigating a test'), 'and its reason');
    assert.doesNotMatch(report, /Verification FAILED/);
  });

  it('finds what the broker’s verifier finds in a tampered transcript, naming the same first problem', async () => {
    const text = await auditor.transcript(session.sessionId);
    const keys = await auditor.auditKeys();
    const lines = text.trimEnd().split('\n');
    const records = lines
      .map((l, i) => [l, i] as const)
      .filter(([l]) => !/"type":"(seal|manifest)"/.test(l))
      .map(([, i]) => i);
    const variants: [string, string[]][] = [];
    const changed = [...lines];
    changed[records[4]!] = changed[records[4]!]!.replace('investigating a test', 'investigating a tesT');
    variants.push(['a changed record', changed]);
    const deleted = [...lines];
    deleted.splice(records[3]!, 1);
    variants.push(['a deleted record', deleted]);
    const swapped = [...lines];
    [swapped[records[1]!], swapped[records[2]!]] = [swapped[records[2]!]!, swapped[records[1]!]!];
    variants.push(['two records swapped', swapped]);
    variants.push(['the end cut off', lines.slice(0, records.at(-1)!)]);
    const forged = [...lines];
    const seal = lines.findIndex((l) => /"type":"seal"/.test(l));
    forged[seal] = forged[seal]!.replace(/"jws":"([^".]+)\.([^".]+)\.([^"]+)"/, (_m, h, p, s) => `"jws":"${h}.${p}.${s.slice(0, -4)}AAAA"`);
    variants.push(['a forged seal', forged]);
    for (const [what, variant] of variants) {
      const tampered = variant.join('\n') + '\n';
      const theirs = await verifyTranscript(parseTranscriptText(tampered), keys as any);
      const ours = await checkTranscript(tampered, keys, session.sessionId);
      assert.equal(theirs.ok, false, `${what}: the broker's verifier fails it`);
      assert.equal(ours.ok, false, `${what}: so does the extension's check`);
      assert.equal(ours.problems[0], theirs.problems[0], `${what}: the same first problem`);
      assert.match(describeCheck(ours), /^verification FAILED: /);
    }
    // Keys that are not the broker's: nothing verifies.
    const otherKeys = { keys: [{ ...keys.keys[0], x: Buffer.alloc(32, 7).toString('base64url') }] };
    const wrongKey = await checkTranscript(text, otherKeys);
    assert.equal(wrongKey.ok, false);
    assert.match(wrongKey.problems[0]!, /seal does not verify against the audit keys \(signature verification failed\)/);
    // The untouched transcript passes both.
    assert.equal((await checkTranscript(text, keys)).ok, true);
  });

  it('refuses someone without an auditor role clearly, and writes nothing', async () => {
    const dev = new BrokerApi(broker.url, await broker.token('dev', ['devs']));
    await assert.rejects(listRecordedSessions(dev), (err: unknown) => {
      assert.ok(err instanceof NotAuditorError);
      assert.equal(err.message, 'Download Transcript is for auditors: the broker refused (session transcripts are for auditors (roles: auditor)). Ask for a role listed in the broker\'s "auditors".');
      return true;
    });
    const elsewhere = mkdtempSync(join(tmpdir(), 'loupe-transcripts-dev-'));
    try {
      await assert.rejects(saveTranscript(dev, session.sessionId, elsewhere), NotAuditorError);
      assert.deepEqual(readdirSync(elsewhere), [], 'nothing written');
    } finally {
      rmSync(elsewhere, { recursive: true, force: true });
    }
    // A session that does not exist is not a refusal: the broker's words pass through.
    await assert.rejects(saveTranscript(auditor, '00000000-0000-4000-8000-000000000000', out), /no recorded session/);
    assert.equal(existsSync(join(out, 'loupe-session-00000000-0000-4000-8000-000000000000')), false);
  });

  /** The session's stored objects: the local store's files under its prefix, in order. */
  const storedObjects = async () => {
    const store = createAuditStore(broker.config.audit.store);
    const keys = (await store.list('sessions/')).filter((k) => k.includes(`/${session.sessionId}/`));
    const prefix = keys[0]!.slice(0, keys[0]!.lastIndexOf('/') + 1);
    return { store, keys, prefix };
  };
  const download = (sessionId: string) => fetch(`${broker.url}/v1/sessions/${sessionId}/transcript`, { headers: { authorization: `Bearer ${auditorToken}` } });

  it('sends the transcript as it reads it from the store (chunked, never one string), byte for byte what the store holds', async () => {
    const { store, keys, prefix } = await storedObjects();
    assert.ok(keys.length >= 3, `several chunks and the manifest (${keys.length} objects)`);
    const res = await download(session.sessionId);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('transfer-encoding'), 'chunked');
    assert.equal(res.headers.get('content-length'), null);
    assert.equal(await res.text(), transcriptToText(await readTranscriptFromStore(store, prefix, false)));
    // `loupe audit verify` reads the saved file line by line (parseTranscriptLines over its bytes): the same transcript.
    const bytes = Buffer.from(await (await download(session.sessionId)).arrayBuffer());
    assert.deepEqual(parseTranscriptLines(ndjsonLines(bytes)), parseTranscriptText(bytes.toString('utf8')));
  });

  it('clients that go away mid-download leave the broker serving: the next download is whole', async () => {
    for (let i = 0; i < 20; i++) {
      const controller = new AbortController();
      const res = await fetch(`${broker.url}/v1/sessions/${session.sessionId}/transcript`, { headers: { authorization: `Bearer ${auditorToken}` }, signal: controller.signal });
      assert.equal(res.status, 200);
      controller.abort();
      await assert.rejects(res.text());
    }
    const whole = await download(session.sessionId);
    assert.equal((await verifyTranscript(parseTranscriptText(await whole.text()), (await auditor.auditKeys()) as any)).ok, true);
  });

  it('a store that fails after the first object cuts the download: no short transcript passes for a whole one', async () => {
    const { keys } = await storedObjects();
    const store = broker.config.audit.store;
    assert.ok(store.kind === 'local');
    const file = join(store.dir, keys[1]!);
    const saved = readFileSync(file);
    // The second object, unreadable: listed, but its read fails as the response is under way.
    rmSync(file, { force: true });
    symlinkSync(join(tmpdir(), 'loupe-missing-object'), file);
    try {
      const res = await download(session.sessionId);
      assert.equal(res.status, 200, 'the first object went out');
      await assert.rejects(res.text(), 'the body ends in an error, not in a short transcript');
      const dir = mkdtempSync(join(tmpdir(), 'loupe-cut-'));
      try {
        // A part cut at a chunk's end would verify as a live session's transcript: neither client keeps it.
        await assert.rejects(downloadSession({ broker: broker.url, token: auditorToken }, session.sessionId, dir), /the transcript download was cut short, and nothing was kept/);
        assert.equal(existsSync(join(dir, 'transcript.ndjson')), false);
        await assert.rejects(saveTranscript(auditor, session.sessionId, dir), /the download from the Loupe broker was cut short, and nothing was kept/);
        assert.deepEqual(readdirSync(join(dir, `loupe-session-${session.sessionId}`)), []);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    } finally {
      rmSync(file, { force: true });
      writeFileSync(file, saved);
    }
    const whole = await download(session.sessionId);
    assert.equal((await verifyTranscript(parseTranscriptText(await whole.text()), (await auditor.auditKeys()) as any)).ok, true, 'whole again');
  });
});
