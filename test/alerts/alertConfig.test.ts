import { strict as assert } from 'node:assert';
import { tmpdir } from 'node:os';
import { describe, it } from 'node:test';
import { validateConfig } from '../../broker/config/load';
import { LoupeError } from '../../broker/errors';
import { basePolicy } from '../support/testBroker';

function problemsOf(policy: Record<string, unknown>): string[] {
  try {
    validateConfig(policy, tmpdir());
  } catch (err) {
    assert.ok(err instanceof LoupeError);
    return err.details!.problems as string[];
  }
  return [];
}

describe('alert configuration', () => {
  it('reports every bad rule with its path', () => {
    const base = basePolicy('127.0.0.1:9');
    const problems = problemsOf({
      ...base,
      alerting: { rules: { refusals: { count: 0 } }, webhooks: [{ url: 'ftp://x', secret: 'short', format: 'xml' }], ecs: '' },
      targets: {
        app: {
          ...base.targets.app,
          alerts: { nope: {}, offHours: { hours: 'Mon-Fri 08:00-19:00 Mars/Olympus' }, sensitiveFiles: { globs: [], action: 'require-approval' }, longPause: { seconds: 5, action: 'page-someone' } },
        },
      },
    });
    assert.deepEqual(problems, [
      'alerting.rules.refusals.count: expected a positive integer',
      'alerting.webhooks[0].url: expected an http(s) URL',
      'alerting.webhooks[0].secret: expected a string of at least 16 characters (used for the HMAC signature)',
      'alerting.webhooks[0].format: expected json or slack',
      'alerting.ecs: expected "stdout" or a file path',
      'targets.app.alerts.nope: unknown alert rule (expected one of: offHours, evaluationRate, readRate, capturedBytes, refusals, sensitiveReads, firstAttach, longPause, watchdogResume, sensitiveFiles, concurrentTargets, targetUnresponsive, v8Evaluation)',
      'targets.app.alerts.offHours.hours: unknown time zone "Mars/Olympus" (use an IANA name like Europe/Berlin or UTC)',
      'targets.app.alerts.longPause.action: expected one of: none, end-session, require-approval',
    ]);
  });

  it('require-approval is an action, and needs the target to have owners (they approve)', () => {
    const base = basePolicy('127.0.0.1:9');
    const config = validateConfig({ ...base, targets: { app: { ...base.targets.app, alerts: { refusals: { count: 3, withinSeconds: 60, action: 'require-approval' } } } } }, tmpdir());
    assert.equal(config.targets.app!.alerts.refusals!.action, 'require-approval');
    const problems = problemsOf({ ...base, alerting: { rules: { sensitiveReads: { action: 'require-approval' } } }, targets: { app: { ...base.targets.app, owners: [] } } });
    assert.deepEqual(problems, ["targets.app.owners: required: alert rule(s) sensitiveReads use action require-approval, and the target's owners are its approvers"]);
  });

  it('applies defaults, lets a target tighten or switch off a rule, and parses sizes', () => {
    const base = basePolicy('127.0.0.1:9');
    const config = validateConfig(
      {
        ...base,
        alerting: { rules: { capturedBytes: { perSession: '2MB' } } },
        targets: { app: { ...base.targets.app, alerts: { refusals: { count: 2, action: 'end-session' }, firstAttach: false } } },
      },
      tmpdir(),
    );
    const rules = config.targets.app!.alerts;
    assert.deepEqual(rules.refusals, { action: 'end-session', count: 2, withinSeconds: 60 });
    assert.equal(rules.firstAttach, undefined);
    assert.equal(rules.capturedBytes!.perSession, 2 * 1024 * 1024);
    assert.equal(rules.evaluationRate!.perMinute, 60);
    assert.equal(rules.offHours, undefined);
  });
});
