import { strict as assert } from 'node:assert';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fixtures, markerLine, startTarget, type TargetProcess } from '../support/target';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';

const appLine = markerLine(join(fixtures, 'app.js'), 'work');
// Nested repetition: V8's backtracking engine tries every way to split each script URL, on the target's main thread
// with no time limit (measured on Node 20: the target printed no tick again; only SIGKILL ended it).
const catastrophic = '^(([a-z/:.-]+)+)+X$';

describe('URL patterns V8 runs on the target (urlRegex, blackbox patterns)', () => {
  let target: TargetProcess;
  let broker: TestBroker;
  before(async () => {
    target = await startTarget();
    broker = await startTestBroker(basePolicy(target.inspector));
  });
  after(async () => {
    await broker.close();
    await target.stop();
  });

  for (const mode of ['snapshot', 'pause'] as const) {
    it(`a backtracking urlRegex is refused before it reaches V8, with the reason, and the target keeps running (${mode} mode)`, async () => {
      const { client, grant } = await broker.attach({ mode });
      await client.call('Debugger.enable');
      for (const [id, method, params] of [
        [11, 'Debugger.setBreakpointByUrl', { lineNumber: appLine, urlRegex: catastrophic }],
        [12, 'Loupe.setLogpoint', { lineNumber: appLine, urlRegex: catastrophic, logMessage: 'n={n}' }],
        [13, 'Debugger.setBreakpointByUrl', { lineNumber: appLine, urlRegex: `${'(?:.|.)'.repeat(40)}X` }],
        [14, 'Debugger.setBreakpointByUrl', { lineNumber: appLine, urlRegex: '(a)\\1' }],
      ] as const) {
        const reply = await client.sendRaw(JSON.stringify({ id, method, params }), id, 5000);
        assert.ok(reply.error, `${method} ${params.urlRegex} must be refused`);
        assert.match(reply.error.message, new RegExp(`^${method.replace('.', '\\.')} refused: urlRegex ".*": it (repeats a group|can match one URL in more than \\d+ ways|has a backreference)`));
        assert.match(reply.error.message, /no time limit/);
      }
      await target.ticksAdvance(3, 3000);
      // A pattern of the kind clients write (js-debug's case-insensitive form) still sets the breakpoint.
      const { breakpointId, locations } = await client.call('Debugger.setBreakpointByUrl', { lineNumber: appLine, urlRegex: '[aA][pP][pP]\\.[jJ][sS](?:$|\\?)' });
      assert.equal(locations.length, 1);
      await client.call('Debugger.removeBreakpoint', { breakpointId });
      await client.close();
      await broker.waitForRecord('session.ended', (e) => e.grant === grant.grantId);
      const refused = broker.records.filter((e) => e.type === 'cdp.refused' && e.grant === grant.grantId && (e.data as { rule?: string }).rule === 'pattern.backtracking');
      assert.equal(refused.length, 4, 'each refusal is on the record');
    });
  }

  it('a backtracking blackbox pattern is refused, and stepping still works with the patterns clients send', async () => {
    const { client } = await broker.attach({ mode: 'pause' });
    await client.call('Debugger.enable');
    for (const [id, patterns, index] of [
      [21, [catastrophic], 0],
      [22, ['/node_modules/', `${'a?'.repeat(30)}${'a'.repeat(30)}`], 1],
    ] as const) {
      const reply = await client.sendRaw(JSON.stringify({ id, method: 'Debugger.setBlackboxPatterns', params: { patterns } }), id, 5000);
      assert.match(reply.error?.message ?? '', new RegExp(`^Debugger\\.setBlackboxPatterns refused: patterns\\[${index}\\] ".*": it (repeats a group|can match one URL)`), JSON.stringify(patterns));
    }
    const many = await client.send('Debugger.setBlackboxPatterns', { patterns: Array.from({ length: 65 }, (_, i) => `^/vendor-${i}/`) });
    assert.match(many.error?.message ?? '', /^Debugger\.setBlackboxPatterns refused: 65 patterns, at most 64 /);
    await client.call('Debugger.setBlackboxPatterns', { patterns: ['/node_modules/', '^node:'] });
    const { breakpointId } = await client.call('Debugger.setBreakpointByUrl', { lineNumber: appLine, urlRegex: 'app\\.js$' });
    await client.waitEvent('Debugger.paused', () => true, 5000);
    await client.call('Debugger.removeBreakpoint', { breakpointId });
    const stepped = await client.sendRaw(JSON.stringify({ id: 30, method: 'Debugger.stepOver', params: {} }), 30, 5000);
    assert.ok(stepped.result, JSON.stringify(stepped));
    await client.call('Debugger.resume');
    await target.ticksAdvance(3, 3000);
    await client.close();
  });
});
