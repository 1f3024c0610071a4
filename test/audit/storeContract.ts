import { strict as assert } from 'node:assert';
import { randomUUID } from 'node:crypto';
import { it } from 'node:test';
import { AuditStoreError, type AuditStore } from '../../broker/audit/stores/auditStore';

/**
 * The contract every audit store keeps. `enforcesRetention`: the store itself holds objects in
 * COMPLIANCE mode until their date (S3 Object Lock), rather than only recording the date.
 */
export function runStoreContract(makeStore: () => Promise<AuditStore> | AuditStore, options: { enforcesRetention: boolean }): void {
  const retainUntil = () => new Date(Date.now() + 24 * 3600 * 1000);
  const prefix = () => `contract/${randomUUID()}/`;

  it('passes its start-up check', async () => {
    await (await makeStore()).check();
  });

  it('returns what was put, byte for byte', async () => {
    const store = await makeStore();
    const key = `${prefix()}chunk-000000.ndjson`;
    const body = Buffer.from('{"seq":0}\n{"seq":1}\n\u00e9\u0000binary');
    await store.put(key, body, retainUntil());
    assert.deepEqual(await store.get(key), body);
  });

  it('accepts the same bytes again under the same key (a retried upload)', async () => {
    const store = await makeStore();
    const key = `${prefix()}chunk.ndjson`;
    await store.put(key, Buffer.from('same'), retainUntil());
    await store.put(key, Buffer.from('same'), retainUntil());
    assert.equal((await store.get(key)).toString(), 'same');
  });

  it('refuses other bytes under an existing key and keeps the original', async () => {
    const store = await makeStore();
    const key = `${prefix()}chunk.ndjson`;
    await store.put(key, Buffer.from('original'), retainUntil());
    await assert.rejects(store.put(key, Buffer.from('forged'), retainUntil()), (err: unknown) => err instanceof AuditStoreError && err.code === 'conflict');
    // The same size, other bytes; and longer.
    await assert.rejects(store.put(key, Buffer.from('origina1'), retainUntil()), (err: unknown) => err instanceof AuditStoreError && err.code === 'conflict');
    await assert.rejects(store.put(key, Buffer.from('original and more'), retainUntil()), (err: unknown) => err instanceof AuditStoreError && err.code === 'conflict');
    assert.equal((await store.get(key)).toString(), 'original');
  });

  it('reads an object up to a bound, and answers too_large (with its size) past it without reading it', async () => {
    const store = await makeStore();
    const key = `${prefix()}chunk.ndjson`;
    const body = Buffer.from('x'.repeat(1000));
    await store.put(key, body, retainUntil());
    assert.deepEqual(await store.get(key, 1000), body);
    await assert.rejects(store.get(key, 999), (err: unknown) => err instanceof AuditStoreError && err.code === 'too_large' && err.bytes === 1000 && err.message.includes(key));
    await assert.rejects(store.get(`${prefix()}absent`, 10), (err: unknown) => err instanceof AuditStoreError && err.code === 'not_found');
  });

  it('answers not_found for a missing key', async () => {
    const store = await makeStore();
    await assert.rejects(store.get(`${prefix()}absent`), (err: unknown) => err instanceof AuditStoreError && err.code === 'not_found');
  });

  it('lists the keys under a prefix, sorted, and nothing else', async () => {
    const store = await makeStore();
    const p = prefix();
    for (const name of ['b/2', 'a/1', 'b/1']) await store.put(`${p}${name}`, Buffer.from(name), retainUntil());
    await store.put(`${prefix()}other`, Buffer.from('x'), retainUntil());
    assert.deepEqual(await store.list(p), [`${p}a/1`, `${p}b/1`, `${p}b/2`]);
    assert.deepEqual(await store.list(`${p}b/`), [`${p}b/1`, `${p}b/2`]);
  });

  it(`reports the retention it holds (${options.enforcesRetention ? 'COMPLIANCE' : 'recorded only'})`, async () => {
    const store = await makeStore();
    const key = `${prefix()}sealed`;
    const until = retainUntil();
    await store.put(key, Buffer.from('x'), until);
    const retention = await store.retention(key);
    assert.equal(retention.mode, options.enforcesRetention ? 'COMPLIANCE' : 'NONE');
    assert.ok(retention.retainUntil && Math.abs(retention.retainUntil.getTime() - until.getTime()) < 2000, `retainUntil ${retention.retainUntil?.toISOString()}`);
  });
}
