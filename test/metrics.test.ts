import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { BrokerMetrics } from '../broker/metrics';
import type { AuditEvent } from '../broker/audit/events';

const refused = (method: unknown, seq: number) => ({ seq, type: 'cdp.refused', data: { method, rule: 'allowlist' } }) as unknown as AuditEvent;

describe('metrics: clients choose method names, so their labels are bounded', () => {
  it('counts at most 200 distinct method labels; the rest as "(other)", nothing lost', async () => {
    const metrics = new BrokerMetrics({ liveSessions: () => 0, walDepth: () => 0, auditState: () => 'ok' });
    for (let i = 0; i < 5000; i++) metrics.onEvent(refused(`Made.up${i}`, i));
    metrics.onEvent(refused('x'.repeat(100), 5000));
    metrics.onEvent(refused({ toString: 'x' }, 5001));
    metrics.onEvent(refused('Made.up7', 5002));
    const series = (await metrics.registry.getSingleMetric('loupe_cdp_messages_total')!.get()).values;
    assert.equal(series.length, 202);
    const count = (method: string) => series.find((v) => v.labels.method === method)?.value;
    assert.equal(count('(other)'), 4801);
    assert.equal(count('(invalid)'), 1);
    assert.equal(count('Made.up7'), 2);
    assert.equal(
      series.reduce((sum, v) => sum + v.value, 0),
      5003,
    );
  });
});
