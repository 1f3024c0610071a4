// A client's refused frames are recorded, but its untrusted text is cut in the record: a flood of megabyte method
// names once made a megabyte record each, until the audit store fell behind, the trail failed closed and every
// session on the broker ended. Real broker, real target.
import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { CdpClient } from '../support/cdpClient';
import { startTarget, type TargetProcess } from '../support/target';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';

describe('refused frames with huge untrusted text', () => {
  let target: TargetProcess;
  let broker: TestBroker;
  let client: CdpClient;
  before(async () => {
    target = await startTarget();
    broker = await startTestBroker(basePolicy(target.inspector));
    ({ client } = await broker.attach());
  });
  after(async () => {
    await client?.close();
    await broker?.close();
    await target?.stop();
  });

  it('records a megabyte method name by its start, length and SHA-256, and answers every frame', async () => {
    const method = `Evil.${'x'.repeat(500_000)}`;
    const replies = await Promise.all(Array.from({ length: 20 }, (_, i) => client.sendRaw(JSON.stringify({ id: 1000 + i, method, params: {} }), 1000 + i)));
    for (const reply of replies) assert.match(String(reply.error?.message), /refused/i, JSON.stringify(reply).slice(0, 300));
    const record = await broker.waitForRecord('cdp.refused', (e) => e.data.id === 1019);
    const sha = createHash('sha256').update(method).digest('hex');
    assert.equal(record.data.method, `Evil.${'x'.repeat(195)}… (${method.length} characters, sha256 ${sha})`);
    const refused = broker.records.filter((e) => e.type === 'cdp.refused');
    assert.equal(refused.length, 20);
    assert.ok(Math.max(...refused.map((e) => JSON.stringify(e).length)) < 2000, 'each record stays small');
    // A well-behaved request on the same session is still answered.
    assert.equal((await client.call('Runtime.evaluate', { expression: '1 + 2' })).result.value, 3);
  });
});
