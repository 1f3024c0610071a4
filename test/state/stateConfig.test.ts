import { strict as assert } from 'node:assert';
import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { stringify } from 'yaml';
import { Broker } from '../../broker/broker';
import { parseConfigText } from '../../broker/config/load';
import { LoupeError } from '../../broker/errors';
import { StateUnavailableError } from '../../broker/state/stateBackend';

const targets = { app: { inspector: '127.0.0.1:9229', owners: ['owner'], access: [{ role: 'owner', modes: ['snapshot'], maxDuration: '5m' }] } };
const roles = { owner: { groups: ['owners'] } };
const minimal = (state: unknown) => stringify({ roles, targets, ...(state === undefined ? {} : { state }) });

function problems(text: string, env: NodeJS.ProcessEnv = {}): string[] {
  try {
    parseConfigText(text, '/tmp', 'loupe.yaml', env);
  } catch (err) {
    assert.ok(err instanceof LoupeError && err.code === 'config_invalid');
    return err.details?.problems as string[];
  }
  assert.fail('the config was accepted');
}

describe('the state section of the config', () => {
  it('defaults to the state directory, with the lease, grace and poll of one broker', () => {
    const config = parseConfigText(minimal(undefined), '/tmp');
    assert.deepEqual(config.state, { sessionLeaseSeconds: 15, outageGraceSeconds: 60, noticePollSeconds: 2 });
  });

  it('takes PostgreSQL from the environment, with its schema, replica name and bounds', () => {
    const config = parseConfigText(minimal({ postgres: { url: '${DATABASE_URL}' }, replica: 'broker-0', sessionLease: '5s', outageGrace: '2m', noticePoll: '1s' }), '/tmp', 'loupe.yaml', {
      DATABASE_URL: 'postgres://loupe@db:5432/loupe',
    });
    assert.deepEqual(config.state, {
      postgres: { url: 'postgres://loupe@db:5432/loupe', schema: 'loupe' },
      replica: 'broker-0',
      sessionLeaseSeconds: 5,
      outageGraceSeconds: 120,
      noticePollSeconds: 1,
    });
  });

  it('reports every wrong field by its path', () => {
    const found = problems(minimal({ postgres: { url: 'mysql://db/x', schema: 'x; DROP TABLE grants' }, replica: 'has space', sessionLease: 'soon', extra: 1 }));
    for (const expected of [
      /state\.postgres\.url: expected a PostgreSQL URL/,
      /state\.postgres\.schema: expected a plain SQL identifier/,
      /state\.replica: expected a name/,
      /state\.sessionLease: expected a duration/,
      /state\.extra/,
    ])
      assert.ok(
        found.some((p) => expected.test(p)),
        `no problem matches ${expected}: ${found.join(' | ')}`,
      );
    assert.ok(problems(minimal({ postgres: { url: '${DATABASE_URL}' } })).some((p) => /DATABASE_URL is not set/.test(p)));
  });

  it('refuses to start a broker whose database cannot be reached, saying which and why', async () => {
    const port = await new Promise<number>((resolve) => {
      const server = createServer().listen(0, '127.0.0.1', () => {
        const { port } = server.address() as { port: number };
        server.close(() => resolve(port));
      });
    });
    const stateDir = mkdtempSync(join(tmpdir(), 'loupe-state-'));
    const config = parseConfigText(stringify({ roles, targets, stateDir, state: { postgres: { url: `postgres://loupe:secret@127.0.0.1:${port}/loupe` } } }), stateDir);
    await assert.rejects(Broker.create(config), (err: unknown) => {
      assert.ok(err instanceof StateUnavailableError);
      assert.match(err.message, new RegExp(`PostgreSQL at 127\\.0\\.0\\.1:${port}/loupe\\) cannot be reached`));
      assert.doesNotMatch(err.message, /secret/, 'the password stays out of the message');
      return true;
    });
    // The state directory's lock was released: a broker can start there.
    const local = await Broker.create(parseConfigText(stringify({ roles, targets, stateDir }), stateDir));
    await local.shutdown();
  });
});
