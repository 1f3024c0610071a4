import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { exceptionLearningLimits } from '../../broker/session/exceptionLearning';
import { useGeneratedApp } from '../support/generatedApp';
import { markerLine } from '../support/target';

const secret = 'CROWDEDSECRET-value-77';
/** More objects in the module's scope than the pause's reads, declared before the container held under a sensitive name. */
const crowd = exceptionLearningLimits.reads + 10;

const names = Array.from({ length: crowd }, (_, i) => `m${i}`);
const crowdedApp = [
  "'use strict';",
  ...names.map((name, i) => `const ${name} = { n: ${i} };`),
  `const credentials = { key: '${secret}' };`,
  'const client = { opts: credentials };',
  'let counter = 0;',
  'function work(n) {',
  `  const sum = n + ${names.map((name) => `${name}.n`).join(' + ')} + (n < 0 ? credentials.key.length : 0);`,
  '  return sum + client.opts.key.length; // BREAK:work',
  '}',
  'setInterval(() => { counter++; work(counter); process.stdout.write(`tick ${counter}\\n`); }, 50);',
  "process.stdout.write('ready\\n');",
];

describe('a module holding more objects than the pause reads', () => {
  const generated = useGeneratedApp('crowded-app.js', crowdedApp);

  it('still learns its container held under a sensitive name first: an alias of it shows the marker', async () => {
    const { client, grant } = await generated.broker.attach();
    const frames: string[] = [];
    client.socket.on('message', (data) => frames.push(data.toString()));
    await client.call('Debugger.enable');
    await client.call('Debugger.setBreakpointByUrl', { lineNumber: markerLine(generated.app, 'work'), urlRegex: 'crowded-app\\.js$' });
    const paused = await client.waitEvent('Debugger.paused');
    const callFrameId = paused.params.callFrames[0].callFrameId;
    const result = (await client.call('Debugger.evaluateOnCallFrame', { callFrameId, expression: 'client.opts.key' })).result;
    assert.match(result.value, /^\[redacted: /, `the alias showed ${JSON.stringify(result)}`);
    await client.call('Debugger.resume');
    await client.close();
    await generated.broker.waitForRecord('session.ended', (e) => e.grant === grant.grantId);
    assert.ok(!frames.some((f) => f.includes(secret)), 'the value reached the client');
    assert.ok(!JSON.stringify(await generated.broker.sessionEvents()).includes(secret), 'the value reached the audit trail');
  });
});
