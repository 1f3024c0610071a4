// needs: s3
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { calculateJwkThumbprint, CompactSign, exportJWK, generateKeyPair } from 'jose';
import { readKeyObject } from '../../broker/audit/publishedKeys';
import { S3AuditStore } from '../../broker/audit/stores/s3Store';
import { freshLockedBucket, s3Settings } from '../support/s3';
import { startReplicas, type Replica, type ReplicaSet } from '../support/replicas';
import { fixtures, markerLine, startTarget, type TargetProcess } from '../support/target';
import { waitFor } from '../support/wait';

// Every replica seals with its own audit key and publishes it in the audit store they share; GET /v1/audit/keys on
// any replica serves all of them, so `loupe audit verify` checks a session whichever replica recorded it.

const appLine = markerLine(join(fixtures, 'app.js'), 'work');
const cli = join(__dirname, '..', '..', 'dist', 'cli.js');

const run = (args: string[], env: NodeJS.ProcessEnv = process.env) =>
  new Promise<{ status: number; stdout: string; stderr: string }>((resolve) =>
    execFile(process.execPath, [cli, ...args], { env, encoding: 'utf8' }, (err, stdout, stderr) => resolve({ status: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr })),
  );

describe('audit keys of several replicas', () => {
  let target: TargetProcess;
  let bucket: string;
  let set: ReplicaSet;
  let auditor: string;

  before(async () => {
    target = await startTarget();
    bucket = await freshLockedBucket('loupe-replica-keys');
    set = await startReplicas({
      names: ['a', 'b'],
      config: {
        roles: { dev: { groups: ['devs'] }, auditor: { groups: ['auditors'] } },
        auditors: ['auditor'],
        audit: { store: 's3', s3: { bucket, endpoint: s3Settings().endpoint, region: 'us-east-1', forcePathStyle: true }, retentionDays: 1, chunkMaxEvents: 8, uploadInterval: '1s' },
        targets: { app: { inspector: target.inspector, maxPauseSeconds: 30, access: [{ role: 'dev', modes: ['pause', 'snapshot'], maxDuration: '10m' }] } },
      },
    });
    auditor = await set.token('audrey', ['auditors']);
  });
  after(async () => {
    await set?.close();
    await target?.stop();
  });

  /** A short session recorded by `replica`: a breakpoint, a pause, an evaluation, then the client leaves. */
  async function recordSession(replica: Replica): Promise<string> {
    const grant = await replica.api('POST', '/v1/grants', await set.token('dana', ['devs']), { target: 'app', mode: 'pause', durationSeconds: 300, reason: `recorded on ${replica.name}` });
    assert.equal(grant.status, 201, JSON.stringify(grant.body));
    const client = await replica.attach(grant.body);
    await client.call('Debugger.enable');
    const { breakpointId } = await client.call('Debugger.setBreakpointByUrl', { lineNumber: appLine, urlRegex: 'app\\.js$' });
    const paused = await client.waitEvent('Debugger.paused');
    await client.call('Debugger.evaluateOnCallFrame', { callFrameId: paused.params.callFrames[0].callFrameId, expression: 'local.label' });
    await client.call('Debugger.removeBreakpoint', { breakpointId });
    await client.call('Debugger.resume');
    await client.close();
    const session = await waitFor(async () => (await replica.api('GET', '/v1/sessions', auditor)).body.sessions.find((s: any) => s.grantId === grant.body.grantId && s.state === 'ended'), {
      what: `the session recorded on ${replica.name}, ended and stored`,
      intervalMs: 200,
      timeoutMs: 20_000,
    });
    return session.sessionId;
  }

  it('each replica seals with its own key; /v1/audit/keys on either publishes both; `loupe audit verify` checks a session of either through either', async () => {
    const [a, b] = [set.get('a'), set.get('b')];
    const onA = await recordSession(a);
    const onB = await recordSession(b);

    const keysOfA = (await a.api('GET', '/v1/audit/keys', undefined)).body;
    const keysOfB = (await b.api('GET', '/v1/audit/keys', undefined)).body;
    const kids = (set: { keys: { kid: string }[] }) => set.keys.map((k) => k.kid).sort();
    assert.equal(keysOfA.keys.length, 2, 'two replicas, two keys');
    assert.deepEqual(kids(keysOfA), kids(keysOfB), 'both replicas publish the same set');
    for (const key of keysOfA.keys) {
      assert.equal(key.d, undefined, 'never a private part');
      assert.equal(key.kid, await calculateJwkThumbprint({ kty: key.kty, crv: key.crv, x: key.x }));
    }

    const sealKids: string[] = [];
    for (const [sessionId, through] of [
      [onA, b],
      [onB, a],
      [onB, b],
    ] as const) {
      const dir = mkdtempSync(join(tmpdir(), 'loupe-replica-verify-'));
      const env = { ...process.env, LOUPE_BROKER_URL: through.url, LOUPE_TOKEN: auditor };
      const downloaded = await run(['audit', 'download', sessionId, '-o', dir], env);
      assert.equal(downloaded.status, 0, downloaded.stderr);
      const verified = await run(['audit', 'verify', dir], env);
      assert.equal(verified.status, 0, `session ${sessionId} through ${through.name}: ${verified.stdout}${verified.stderr}`);
      const kid = /audit key (\S+)\)/.exec(verified.stdout)?.[1];
      assert.ok(kid, verified.stdout);
      sealKids.push(kid);
      // The report a replica renders verifies too, whichever replica recorded the session.
      const report = await fetch(`${through.url}/v1/sessions/${sessionId}/report`, { headers: { authorization: `Bearer ${auditor}` } });
      assert.doesNotMatch(await report.text(), /Verification FAILED/);
    }
    assert.notEqual(sealKids[0], sealKids[1], 'the two sessions were sealed with two different keys');
    assert.equal(sealKids[1], sealKids[2]);

    // Offline, from the bucket alone: the keys every replica published there.
    const sessionB = (await b.api('GET', '/v1/sessions', auditor)).body.sessions.find((s: any) => s.sessionId === onB);
    const fromBucket = await run(['audit', 'verify', `s3://${bucket}/${sessionB.prefix}`]);
    assert.equal(fromBucket.status, 0, fromBucket.stdout + fromBucket.stderr);
    assert.match(fromBucket.stdout, /every object is under COMPLIANCE retention/);
  });

  it('a transcript sealed with a key no replica published fails verification, naming the key', async () => {
    const a = set.get('a');
    const sessionId = await recordSession(a);
    const dir = mkdtempSync(join(tmpdir(), 'loupe-replica-forged-'));
    const env = { ...process.env, LOUPE_BROKER_URL: a.url, LOUPE_TOKEN: auditor };
    assert.equal((await run(['audit', 'download', sessionId, '-o', dir], env)).status, 0);
    // Re-seal every chunk and the manifest with a key of our own: each signature is valid, only the key is nobody's.
    const { privateKey, publicKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
    const rogueKid = await calculateJwkThumbprint(await exportJWK(publicKey));
    const file = join(dir, 'transcript.ndjson');
    const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
    const resealed: string[] = [];
    for (const line of lines) {
      const record = JSON.parse(line);
      if (typeof record.jws !== 'string') {
        resealed.push(line);
        continue;
      }
      const [header, payload] = record.jws.split('.');
      const { typ } = JSON.parse(Buffer.from(header, 'base64url').toString('utf8'));
      record.jws = await new CompactSign(Buffer.from(payload, 'base64url')).setProtectedHeader({ alg: 'EdDSA', kid: rogueKid, typ }).sign(privateKey);
      resealed.push(JSON.stringify(record));
    }
    writeFileSync(file, resealed.join('\n') + '\n');
    const verified = await run(['audit', 'verify', dir], env);
    assert.equal(verified.status, 1, verified.stdout);
    assert.match(verified.stdout, /^FAILED: session /);
    assert.match(verified.stdout, new RegExp(`sealed with audit key ${rogueKid}, which no broker published \\(published: [\\w-]+, [\\w-]+\\)`));
  });

  it('serves only well-formed public keys named by their thumbprint; a key object that is not one is left out and logged', async () => {
    const a = set.get('a');
    const store = new S3AuditStore({ bucket, ...s3Settings() });
    const retain = new Date(Date.now() + 86400_000);
    const { privateKey, publicKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
    const pub = await exportJWK(publicKey);
    const kid = await calculateJwkThumbprint(pub);
    const other = await calculateJwkThumbprint(await exportJWK((await generateKeyPair('EdDSA', { crv: 'Ed25519' })).publicKey));
    const since = a.stderr().length;
    // A private key, a key under another key's name, and a body that is not JSON.
    await store.put(`keys/${kid}.jwks.json`, Buffer.from(JSON.stringify({ keys: [{ ...(await exportJWK(privateKey)), kid }] })), retain);
    await store.put(`keys/${other}.jwks.json`, Buffer.from(JSON.stringify({ keys: [{ ...pub, kid }] })), retain);
    await store.put(`keys/${'x'.repeat(43)}.jwks.json`, Buffer.from('not json'), retain);
    await new Promise((r) => setTimeout(r, 1100)); // past the listing's one-second reuse
    const served = (await a.api('GET', '/v1/audit/keys', undefined)).body.keys.map((k: any) => k.kid);
    assert.equal(served.length, 2, `only the two replicas' keys: ${served.join(', ')}`);
    assert.ok(!served.includes(kid) && !served.includes(other));
    await a.waitForLog(/holds a private key; refused/, { since });
    await a.waitForLog(/is not the key's thumbprint/, { since });
    await a.waitForLog(/not JSON/, { since });
  });

  it('a replica started later is published by the others within a second or so', async () => {
    const c = await startReplicas({
      names: ['late'],
      config: {
        audit: { store: 's3', s3: { bucket, endpoint: s3Settings().endpoint, region: 'us-east-1', forcePathStyle: true }, retentionDays: 1 },
        targets: { app: { inspector: target.inspector, access: [] } },
      },
    });
    try {
      const own = (await c.get('late').api('GET', '/v1/audit/keys', undefined)).body.keys.map((k: any) => k.kid);
      assert.equal(own.length, 3, 'it serves every key already in the store, its own among them');
      const a = set.get('a');
      await waitFor(async () => (await a.api('GET', '/v1/audit/keys', undefined)).body.keys.length === 3, {
        what: "replica a to publish the late replica's key",
        timeoutMs: 3000,
        intervalMs: 100,
      });
    } finally {
      await c.close();
    }
  });

  it('readKeyObject never throws on any input, and accepts only an Ed25519 public key whose thumbprint is its kid and its name', async () => {
    const { publicKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
    const pub = await exportJWK(publicKey);
    const kid = await calculateJwkThumbprint(pub);
    const good = await readKeyObject(`keys/${kid}.jwks.json`, Buffer.from(JSON.stringify({ keys: [{ ...pub, kid, alg: 'EdDSA', use: 'sig' }] })));
    assert.deepEqual(good, { key: { kty: 'OKP', crv: 'Ed25519', x: pub.x, kid, alg: 'EdDSA', use: 'sig' } });
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(fc.constant(`keys/${kid}.jwks.json`), fc.string({ maxLength: 60 })),
        fc.oneof(
          fc.json({ maxDepth: 4 }),
          fc
            .record({
              keys: fc.array(
                fc.record(
                  {
                    kty: fc.constantFrom('OKP', 'EC', 'RSA'),
                    crv: fc.constantFrom('Ed25519', 'X25519', 'P-256'),
                    x: fc.oneof(fc.constant(pub.x!), fc.string()),
                    kid: fc.oneof(fc.constant(kid), fc.string()),
                    d: fc.option(fc.string(), { nil: undefined }),
                  },
                  { requiredKeys: ['kty', 'crv', 'x', 'kid'] },
                ),
                { maxLength: 2 },
              ),
            })
            .map((v) => JSON.stringify(v)),
        ),
        async (name, text) => {
          const read = await readKeyObject(name, Buffer.from(text));
          if ('key' in read) {
            assert.equal(name, `keys/${kid}.jwks.json`);
            assert.equal(read.key.kid, kid);
            assert.equal(read.key.x, pub.x);
            assert.equal((read.key as any).d, undefined);
          } else assert.match(read.problem, /: \S/, 'a reason after the name');
        },
      ),
      { numRuns: 300 },
    );
  });
});
