// A script's source is kept by the session for reads and searches: a value learned after its first read must leave
// it too, or the client reads in the source what it is refused in the variables.
import { strict as assert } from 'node:assert';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fixtures, markerLine, startTarget, type TargetProcess } from '../support/target';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';

const app = join(fixtures, 'source-alias-app.js');
const secret = 'sk-live-SRCALIAS1aaaaaaaa';

describe('script sources and values learned after their first read (real broker, real target)', () => {
  let target: TargetProcess;
  let broker: TestBroker;
  before(async () => {
    target = await startTarget(app);
    broker = await startTestBroker(basePolicy(target.inspector));
  });
  after(async () => {
    await broker.close();
    await target.stop();
  });

  it('a literal learned as a secret after the source was read is gone from the next read and from searches', async () => {
    const { client } = await broker.attach();
    const parsed = client.waitEvent('Debugger.scriptParsed', (m) => /source-alias-app\.js$/.test(m.params.url));
    await client.call('Debugger.enable');
    const { scriptId } = (await parsed).params;
    const source = async () => (await client.call('Debugger.getScriptSource', { scriptId })).scriptSource as string;
    // Under a plain name, nothing says the literal is secret yet.
    assert.ok((await source()).includes(secret), 'the first read shows the literal');
    await client.call('Debugger.setBreakpointByUrl', { lineNumber: markerLine(app, 'tick'), urlRegex: 'source-alias-app\\.js$' });
    const paused = await client.waitEvent('Debugger.paused');
    const read = await client.call('Debugger.evaluateOnCallFrame', { callFrameId: paused.params.callFrames[0].callFrameId, expression: 'config.apiKey', returnByValue: true });
    assert.equal(read.result.value, '[redacted: apiKey]');
    const after = await source();
    assert.ok(!after.includes(secret), `the source after the value was learned: ${after.split('\n')[3]}`);
    assert.match(after.split('\n')[3]!, /^const KEY = '\[redacted: [^\]]+\]';$/);
    assert.deepEqual((await client.call('Debugger.searchInContent', { scriptId, query: 'sk-live-S' })).result, [], 'a search finds it no more');
    assert.equal(after.split('\n').length, (await source()).split('\n').length);
    await client.call('Debugger.resume');
    await client.close();
  });
});
