import { strict as assert } from 'node:assert';
import { tmpdir } from 'node:os';
import { describe, it } from 'node:test';
import type { AuditEvent } from '../../broker/audit/events';
import { AlertEngine, type Alert } from '../../broker/alerts/alertEngine';
import { validateConfig } from '../../broker/config/load';
import { basePolicy } from '../support/testBroker';

const stream = 'c0ffee00-0000-4000-8000-000000000001';
let seq = 0;
const event = (type: string, data: Record<string, unknown>) =>
  ({
    seq: seq++,
    time: new Date(Date.UTC(2026, 11, 1, 12)).toISOString(),
    type,
    code: 'L0000',
    stream,
    kind: 'session',
    target: 'app',
    actor: { sub: 'dev', name: 'dev', groups: ['devs'] },
    grant: 'g',
    data,
    prev: '',
    hash: '',
  }) as unknown as AuditEvent;

function engineWith(alerts: Record<string, unknown>) {
  const base = basePolicy('127.0.0.1:9');
  const config = validateConfig({ ...base, targets: { app: { ...base.targets.app, alerts } } }, tmpdir());
  const fired: Alert[] = [];
  const hooks = { record: async () => undefined, endSession: () => undefined, requireApproval: () => undefined, deliver: (alert: Alert) => fired.push(alert) };
  const engine = new AlertEngine(config, hooks, { touchFirstAttach: async () => undefined, countInWindow: async () => 0 }, () => Date.UTC(2026, 11, 1, 12));
  const keys = () => [...(engine as unknown as { sessions: Map<string, { lastFired: Map<string, number> }> }).sessions.get(stream)!.lastFired.keys()];
  return { engine, fired, remembered: () => keys().length, keys };
}

describe('alert rules: what a long session keeps', () => {
  it('every V8 evaluation fires its alert, and none is remembered for it', () => {
    const { engine, fired, keys } = engineWith({ v8Evaluation: {} });
    engine.onEvent(event('session.started', { evaluation: 'v8' }));
    for (let i = 0; i < 20_000; i++) engine.onEvent(event('cdp.evaluate', { params: { expression: 'x' } }));
    assert.equal(fired.filter((a) => a.rule === 'v8Evaluation').length, 20_000, 'the same expression again fires again');
    // Only other rules' keys (a first attach, the evaluation rate's cooldown), none per evaluation.
    assert.deepEqual(
      keys().filter((k) => k.startsWith('v8Evaluation')),
      [],
    );
    assert.ok(keys().length <= 3, keys().join(', '));
  });

  it('distinct alerts held back by their text are remembered up to a bound, the newest kept', () => {
    const { engine, fired, remembered } = engineWith({ sensitiveReads: {} });
    engine.onEvent(event('session.started', {}));
    for (let i = 0; i < 5000; i++) engine.onEvent(event('cdp.evaluate', { params: { expression: `password + ${i}` } }));
    const reads = () => fired.filter((a) => a.rule === 'sensitiveReads').length;
    assert.equal(reads(), 5000);
    assert.equal(remembered(), 1000);
    // The last one is still held back; the first was forgotten and fires again.
    engine.onEvent(event('cdp.evaluate', { params: { expression: 'password + 4999' } }));
    assert.equal(reads(), 5000);
    engine.onEvent(event('cdp.evaluate', { params: { expression: 'password + 0' } }));
    assert.equal(reads(), 5001);
  });
});
