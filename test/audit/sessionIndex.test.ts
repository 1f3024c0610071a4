import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';
import { startTarget, type TargetProcess } from '../support/target';
import { waitFor } from '../support/wait';

/**
 * One damaged session in the store (a manifest or a first chunk that is not JSON: a disk error, or a newer S3 version
 * written by someone with the bucket's credentials) must not hide every other session from the auditors.
 */
describe('the auditor listing with a damaged session in the store', () => {
  let target: TargetProcess;
  let broker: TestBroker;
  let auditor: string;
  const badManifest = 'sessions/2026/11/30/0badf00d-0000-4000-8000-000000000001/';
  const badChunk = 'sessions/2026/11/30/0badf00d-0000-4000-8000-000000000002/';

  before(async () => {
    target = await startTarget();
    broker = await startTestBroker(basePolicy(target.inspector, { roles: { ...basePolicy('').roles, auditor: { groups: ['auditors'] } }, auditors: ['auditor'] }));
    auditor = await broker.token('audrey', ['auditors']);
    const { client } = await broker.attach();
    await client.close();
    await waitFor(async () => (await broker.api('GET', '/v1/sessions', auditor)).body.sessions?.find((s: any) => s.state === 'ended'), { what: 'the session ended', intervalMs: 100 });
    const store = broker.broker.audit.store;
    const until = new Date(Date.now() + 86_400_000);
    await store.put(`${badManifest}chunk-000000000-000000000.ndjson`, Buffer.from('{"seq":0}\n{"type":"seal"}\n'), until);
    await store.put(`${badManifest}manifest.json`, Buffer.from('not json\n'), until);
    await store.put(`${badChunk}chunk-000000000-000000000.ndjson`, Buffer.from('\u0000\u0001garbage\n'), until);
    await store.put('security/2026/11/30/security-20261130T000000000Z-0badf00d/manifest.json', Buffer.from('not json\n'), until);
    await store.put('grants/2026/11/30/grants-20261130T000000000Z-0badf00d/chunk-000000000-000000000.ndjson', Buffer.from('not json\n'), until);
  });
  after(async () => {
    await broker?.close();
    await target?.stop();
  });

  it('lists the other sessions, and the damaged ones as damaged, saying why; their reports say FAILED', async () => {
    const listed = await broker.api('GET', '/v1/sessions', auditor);
    assert.equal(listed.status, 200, JSON.stringify(listed.body));
    const sessions = listed.body.sessions as any[];
    assert.ok(
      sessions.some((s) => s.state === 'ended' && s.target === 'app'),
      JSON.stringify(sessions),
    );
    const damaged = sessions.filter((s) => s.state === 'damaged');
    assert.deepEqual(damaged.map((s) => s.sessionId).sort(), ['0badf00d-0000-4000-8000-000000000001', '0badf00d-0000-4000-8000-000000000002']);
    for (const s of damaged) assert.match(s.problem, /cannot be read: (manifest\.json|chunk-000000000-000000000\.ndjson) is not JSON/);
    const report = await fetch(`${broker.url}/v1/sessions/0badf00d-0000-4000-8000-000000000001/report`, { headers: { authorization: `Bearer ${auditor}` } });
    assert.equal(report.status, 200);
    assert.match(await report.text(), /Verification FAILED/);
  });

  it('lists the security segments and grant streams, the damaged ones as damaged', async () => {
    for (const kind of ['security', 'grants']) {
      const listed = await broker.api('GET', `/v1/audit/${kind}`, auditor);
      assert.equal(listed.status, 200, JSON.stringify(listed.body));
      const segments = listed.body.segments as any[];
      const damaged = segments.filter((s) => s.state === 'damaged');
      assert.deepEqual(
        damaged.map((s) => s.stream),
        [`${kind}-20261130T000000000Z-0badf00d`],
      );
      assert.match(damaged[0].problem, /its stored objects cannot be read/);
    }
  });
});
