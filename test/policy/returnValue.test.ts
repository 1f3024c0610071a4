import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { makeSecrets, secretsApp } from '../eval/support/secrets';
import { startTarget, type TargetProcess } from '../support/target';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';

describe('a pause at a function return', () => {
  const secrets = makeSecrets();
  let target: TargetProcess;
  let broker: TestBroker;
  before(async () => {
    target = await startTarget(secretsApp, { LOUPE_FIXTURE_SECRETS: JSON.stringify(secrets.fixture), ...secrets.env });
    broker = await startTestBroker(basePolicy(target.inspector));
  });
  after(async () => {
    await broker.close();
    await target.stop();
  });

  it('shows the marker for a value the function returns from a redacted name (getKey returns the module binding fnApiKey)', async () => {
    const { client, grant } = await broker.attach({ mode: 'pause' });
    const frames: string[] = [];
    client.socket.on('message', (data) => frames.push(data.toString()));
    await client.call('Debugger.enable');
    const scriptId = client.events.find((e) => e.method === 'Debugger.scriptParsed' && /secrets-app\.js$/.test(e.params.url))!.params.scriptId;
    const line = readFileSync(secretsApp, 'utf8')
      .split('\n')
      .findIndex((l) => l.includes('function getKey'));
    const { locations } = await client.call('Debugger.getPossibleBreakpoints', { start: { scriptId, lineNumber: line, columnNumber: 0 }, end: { scriptId, lineNumber: line + 3, columnNumber: 0 } });
    const atReturn = locations.find((l: { type?: string }) => l.type === 'return');
    const { breakpointId } = await client.call('Debugger.setBreakpoint', { location: atReturn });
    const paused = await client.waitEvent('Debugger.paused', (m) => m.params.hitBreakpoints?.includes(breakpointId), 15_000);
    assert.deepEqual(paused.params.callFrames[0].returnValue, { type: 'string', value: '[redacted: value of a redacted field]' });
    await client.call('Debugger.removeBreakpoint', { breakpointId });
    await client.call('Debugger.resume');
    await client.close();
    await broker.waitForRecord('session.ended', (e) => e.grant === grant.grantId);
    assert.deepEqual(
      frames.filter((f) => f.includes(secrets.fixture.fnApiKey)).map((f) => f.slice(0, 200)),
      [],
      'no frame the client received holds the returned key',
    );
  });
});
