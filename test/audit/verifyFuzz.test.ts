import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { genesisHash, hashRecord, ndjsonLines, parseTranscriptLines, sha256 } from '../../common/transcript';
import { checkTranscript as checkInEditor } from '../../extension/transcripts';
import { renderReport } from '../../broker/audit/report';
import { seal } from '../../broker/audit/seal';
import { parseTranscriptText, transcriptToText, verifyTranscript } from '../../broker/audit/verify';
import { loadOrCreateSigningKey, type SigningKey } from '../../broker/identity/keys';

const cli = join(__dirname, '..', '..', 'dist', 'cli.js');
const stream = '6f1c1e7e-2b9a-4c55-9d57-7b3c1c0e0a11';

const context = { stream, kind: 'session' as const, grant: 'g-1', actor: { sub: 'alice', name: 'Alice', groups: ['devs'] }, target: 'app', mode: 'pause', reason: 'fuzzing' };

/** A sealed transcript as the broker writes it: `chunks` chunks of `perChunk` records, then the manifest. */
async function sealedTranscript(key: SigningKey, chunks = 3, perChunk = 3): Promise<string> {
  let prev = genesisHash(stream);
  let seq = 0;
  let text = '';
  const infos: { name: string; firstSeq: number; lastSeq: number; sha256: string; headHash: string }[] = [];
  for (let c = 0; c < chunks; c++) {
    let body = '';
    const firstSeq = seq;
    for (let i = 0; i < perChunk; i++, seq++) {
      const record: Record<string, unknown> = {
        seq,
        time: new Date(Date.UTC(2026, 10, 30, 8, 0, seq)).toISOString(),
        type: seq === 0 ? 'session.started' : seq === chunks * perChunk - 1 ? 'session.ended' : 'cdp.evaluate',
        code: 'L2000',
        ...context,
        data: seq === chunks * perChunk - 1 ? { endReason: 'client_closed' } : { params: { expression: `x${seq}` } },
        prev,
      };
      prev = hashRecord(record);
      body += JSON.stringify({ ...record, hash: prev }) + '\n';
    }
    const info = { name: `chunk-${String(firstSeq).padStart(9, '0')}-${String(seq - 1).padStart(9, '0')}.ndjson`, firstSeq, lastSeq: seq - 1, sha256: sha256(body), headHash: prev };
    infos.push(info);
    const jws = await seal(key, { session: stream, firstSeq, lastSeq: seq - 1, chunkSha256: info.sha256, headHash: prev }, 'loupe-chunk+jws');
    text += body + JSON.stringify({ type: 'seal', chunk: info.name, jws }) + '\n';
  }
  const payload = {
    session: stream,
    kind: 'session',
    chunks: infos,
    lastSeq: seq - 1,
    headHash: prev,
    closedAt: '2026-11-30T08:01:00.000Z',
    endReason: 'client_closed',
    context: { ...context, startedAt: '2026-11-30T08:00:00.000Z', retentionDays: 365 },
  };
  const jws = await seal(key, payload, 'loupe-manifest+jws');
  return text + JSON.stringify({ type: 'manifest', ...payload, jws }) + '\n';
}

/** The lines of a transcript that carry something (the verifier skips empty lines, so they change nothing). */
const meaningful = (text: string) => text.split('\n').filter((l) => l !== '');

/** Any JSON value, as a line: records that are not objects, arrays, nulls, numbers, odd keys. */
const jsonLine = fc.oneof(
  fc.jsonValue().map((v) => JSON.stringify(v) ?? 'null'),
  fc.constantFrom('null', '[]', '0', '"seal"', 'true', '{"type":"seal"}', '{"type":"manifest"}', '{"type":"seal","jws":null}', '{"type":"manifest","jws":"a.b.c"}', '{"__proto__":{"seq":0}}'),
  fc.string(),
);

describe('the verifier under fuzzed transcripts (fast-check)', () => {
  it('never throws and never accepts a changed transcript: in `loupe audit verify`, the report and the editor', async () => {
    const key = await loadOrCreateSigningKey(mkdtempSync(join(tmpdir(), 'loupe-fuzz-key-')), 'audit');
    const keys = { keys: [key.publicJwk] };
    const original = await sealedTranscript(key);
    const lines = meaningful(original);
    assert.equal((await verifyTranscript(parseTranscriptText(original), keys)).ok, true, 'the untouched transcript verifies');
    const mutation = fc.oneof(
      fc.record({ op: fc.constant('replace' as const), at: fc.nat(), line: jsonLine }),
      fc.record({ op: fc.constant('insert' as const), at: fc.nat(), line: jsonLine }),
      fc.record({ op: fc.constant('drop' as const), at: fc.nat(), count: fc.integer({ min: 1, max: 4 }) }),
      fc.record({ op: fc.constant('duplicate' as const), at: fc.nat() }),
      fc.record({ op: fc.constant('swap' as const), at: fc.nat(), with: fc.nat() }),
      fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }),
      fc.record({ op: fc.constant('flip' as const), at: fc.nat(), offset: fc.nat(), char: fc.string({ minLength: 1, maxLength: 1 }) }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(mutation, { minLength: 1, maxLength: 3 }), async (mutations) => {
        const out = [...lines];
        for (const m of mutations) {
          const at = out.length ? m.at % out.length : 0;
          if (m.op === 'replace') out[at] = m.line;
          else if (m.op === 'insert') out.splice(at, 0, m.line);
          else if (m.op === 'drop') out.splice(at, m.count);
          else if (m.op === 'duplicate' && out.length) out.splice(at, 0, out[at]!);
          else if (m.op === 'swap' && out.length) [out[at], out[m.with % out.length]] = [out[m.with % out.length]!, out[at]!];
          else if (m.op === 'truncate') out.length = at;
          else if (m.op === 'flip' && out.length) {
            const line = out[at]!;
            const i = m.offset % Math.max(1, line.length);
            out[at] = line.slice(0, i) + m.char + line.slice(i + 1);
          }
        }
        const text = out.map((l) => l + '\n').join('');
        const changed = meaningful(text).join('\n') !== lines.join('\n');
        const started = performance.now();
        const transcript = parseTranscriptText(text);
        const result = await verifyTranscript(transcript, keys);
        renderReport(result);
        transcriptToText(transcript);
        const editor = await checkInEditor(text, keys);
        assert.ok(performance.now() - started < 2000, 'verification is fast');
        if (changed) {
          assert.equal(result.ok, false, `accepted a changed transcript:\n${text}`);
          assert.equal(editor.ok, false, `the editor accepted a changed transcript:\n${text}`);
          assert.ok(result.problems.length > 0 && result.problems.every((p) => typeof p === 'string' && p.length > 0));
        }
      }),
      { numRuns: 400, seed: 20261130 },
    );
  });

  it("names each change that kept every seal intact: the manifest's unsigned copies, added fields, lines moved after it", async () => {
    const key = await loadOrCreateSigningKey(mkdtempSync(join(tmpdir(), 'loupe-fuzz-key-')), 'audit');
    const keys = { keys: [key.publicJwk] };
    const lines = meaningful(await sealedTranscript(key));
    const manifest = JSON.parse(lines.at(-1)!);
    const withManifest = (m: object) => [...lines.slice(0, -1), JSON.stringify(m)].map((l) => l + '\n').join('');
    const check = async (what: string, text: string, problem: RegExp) => {
      const result = await verifyTranscript(parseTranscriptText(text), keys);
      assert.equal(result.ok, false, `${what}: accepted`);
      assert.ok(
        result.problems.some((p) => problem.test(p)),
        `${what}: ${result.problems.join('; ')}`,
      );
      assert.equal((await checkInEditor(text, keys)).ok, false, `${what}: accepted by the editor`);
      assert.match(renderReport(result), /Verification FAILED/);
    };
    await check("the manifest line's chunk list", withManifest({ ...manifest, chunks: manifest.chunks.slice(1) }), /manifest: field chunks differs from what its seal signed/);
    await check('a field added to the manifest', withManifest({ ...manifest, approvedBy: 'mallory' }), /manifest: field approvedBy is not in what its seal signed \(added\)/);
    await check('the signed context', withManifest({ ...manifest, context: { ...manifest.context, reason: 'routine' } }), /manifest: field context differs/);
    await check('the last seal moved after the manifest', [...lines.slice(0, -2), lines.at(-1), lines.at(-2)].map((l) => l + '\n').join(''), /1 line\(s\) after the manifest/);
    await check('the manifest twice', [...lines, lines.at(-1)].map((l) => l + '\n').join(''), /1 line\(s\) after the manifest/);

    // A manifest from a broker that did not sign its context: the context must match the chain's first record.
    const { context, jws: _jws, type: _type, ...legacy } = manifest;
    const legacyJws = await seal(key, legacy, 'loupe-manifest+jws');
    const legacyText = (c: object) => withManifest({ type: 'manifest', ...legacy, context: c, jws: legacyJws });
    const untouched = await verifyTranscript(parseTranscriptText(legacyText(context)), keys);
    assert.equal(untouched.ok, true, untouched.problems.join('; '));
    assert.ok(untouched.notes.some((n) => /did not sign its context/.test(n)));
    await check('an unsigned context', legacyText({ ...context, actor: { sub: 'bob', name: 'Bob', groups: [] } }), /manifest: context field actor differs from the chain's first record/);
  });

  it('reading a saved transcript line by line from its bytes (as `loupe audit verify` does) gives what reading it whole gives', async () => {
    const key = await loadOrCreateSigningKey(mkdtempSync(join(tmpdir(), 'loupe-fuzz-key-')), 'audit');
    const sealed = await sealedTranscript(key, 2, 2);
    const line = fc.oneof(fc.constantFrom(...sealed.split('\n')), fc.string({ unit: 'binary' }), fc.json());
    fc.assert(
      fc.property(fc.array(line, { maxLength: 12 }), fc.constantFrom('\n', '\n\n', ''), (lines, end) => {
        const bytes = Buffer.from(lines.join('\n') + end, 'utf8');
        assert.deepEqual(parseTranscriptLines(ndjsonLines(bytes)), parseTranscriptText(bytes.toString('utf8')));
      }),
      { numRuns: 300 },
    );
  });

  it('`loupe audit verify` names a record that is not a JSON object as changed, and exits 1 without a stack', () => {
    for (const bad of ['null', '[]', '7', '"text"']) {
      const dir = mkdtempSync(join(tmpdir(), 'loupe-fuzz-cli-'));
      writeFileSync(join(dir, 'transcript.ndjson'), `${bad}\n{"type":"manifest","jws":"x.y.z"}\n`);
      writeFileSync(join(dir, 'keys.json'), JSON.stringify({ keys: [] }));
      let status = 0;
      let out = '';
      try {
        execFileSync(process.execPath, [cli, 'audit', 'verify', dir], { encoding: 'utf8', stdio: 'pipe', timeout: 30_000 });
      } catch (err) {
        status = (err as { status: number }).status;
        out = String((err as { stdout: string }).stdout) + String((err as { stderr: string }).stderr);
      }
      assert.equal(status, 1, `${bad}: ${out}`);
      assert.match(out, /^FAILED: session /m, `${bad}: ${out}`);
      assert.match(out, /line 1: not an audit record \(a JSON object\)/, `${bad}: ${out}`);
      assert.doesNotMatch(out, /TypeError|    at /, `${bad}: ${out}`);
    }
  });
});

describe('the audit CLI with keys that are not a key set', () => {
  it('names the keys file and what it expected', () => {
    for (const [keys, expected] of [
      ['nope', /keys\.json: not JSON \(expected the audit keys as a JWKS/],
      ['{"keys": 3}', /keys\.json: not a JWKS \(expected \{"keys": \[\.\.\.\]\}/],
      ['null', /keys\.json: not a JWKS/],
    ] as const) {
      const dir = mkdtempSync(join(tmpdir(), 'loupe-badkeys-'));
      writeFileSync(join(dir, 'transcript.ndjson'), '{}\n');
      writeFileSync(join(dir, 'keys.json'), keys);
      let out = '';
      let status = 0;
      try {
        execFileSync(process.execPath, [cli, 'audit', 'verify', dir], { encoding: 'utf8', stdio: 'pipe', timeout: 30_000 });
      } catch (err) {
        status = (err as { status: number }).status;
        out = String((err as { stderr: string }).stderr) + String((err as { stdout: string }).stdout);
      }
      assert.equal(status, 1, out);
      assert.match(out, expected, out);
    }
  });
});

describe('the audit CLI against a server that never answers', () => {
  it('verify --keys <url> and download give up with a clear error, bounded by LOUPE_HTTP_TIMEOUT_SECONDS', async () => {
    const { createServer } = await import('node:net');
    const held: import('node:net').Socket[] = [];
    const server = createServer((socket) => void held.push(socket)).listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    const url = `http://127.0.0.1:${(server.address() as import('node:net').AddressInfo).port}`;
    const dir = mkdtempSync(join(tmpdir(), 'loupe-silent-'));
    writeFileSync(join(dir, 'transcript.ndjson'), '');
    const { execFile } = await import('node:child_process');
    const run = (args: string[]) =>
      new Promise<{ status: number; out: string; ms: number }>((resolve) => {
        const started = Date.now();
        execFile(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 20_000, env: { ...process.env, LOUPE_HTTP_TIMEOUT_SECONDS: '1' } }, (err, stdout, stderr) =>
          resolve({ status: err ? Number((err as { code?: number }).code ?? -1) : 0, out: stdout + stderr, ms: Date.now() - started }),
        );
      });
    try {
      const verify = await run(['audit', 'verify', dir, '--keys', `${url}/v1/audit/keys`]);
      assert.equal(verify.status, 1, verify.out);
      assert.match(verify.out, /cannot fetch audit keys from http:\/\/127\.0\.0\.1:\d+\/v1\/audit\/keys: no answer within 1 s/);
      const download = await run(['audit', 'download', '6f1c1e7e-2b9a-4c55-9d57-7b3c1c0e0a11', '--broker', url, '--token', 'x', '-o', join(dir, 'out')]);
      assert.equal(download.status, 1, download.out);
      assert.match(download.out, /cannot reach the broker at http:\/\/127\.0\.0\.1:\d+: no answer within 1 s/);
    } finally {
      for (const socket of held) socket.destroy();
      server.close();
    }
  });
});
