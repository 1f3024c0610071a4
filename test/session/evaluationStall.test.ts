import { strict as assert } from 'node:assert';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { after, before, describe, it } from 'node:test';
import { maxJsonDepth } from '../../broker/eval/result';
import { maxEvaluationsAtOnce } from '../../broker/session/evaluation';
import { fixtures, markerLine, startTarget, type TargetProcess } from '../support/target';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';

const appLine = markerLine(join(fixtures, 'app.js'), 'work');
/** `[a, a]` nested 20 deep: 20 arrays, 2^20 elements when walked; joining it is exponential work. */
const nested = 'Array.from({ length: 20 }).reduce((a) => [a, a], [1])';
/** Costly Loupe expressions, each refused by a bound after a while: none may hold the broker's loop meanwhile. */
/** 15 texts of 1 MiB nested 524,000 deep, each parsed in a callback: V8 took 230 ms a parse, 3.4 s without a turn. */
const deepParses = '["[".repeat(524000) + "]".repeat(524000)].flatMap((s) => Array.from({ length: 15 }, () => s)).map((s) => JSON.parse(s))';
const costly = [
  `${nested}.join().length`,
  `${nested}.toString().length`,
  `JSON.stringify(${nested}).length`,
  `Object.entries(Array.from({ length: 18 }).reduce((a) => ({ a, b: a }), { x: 1 }))`,
  deepParses,
];

describe("one client's costly evaluations never stall the broker", () => {
  let target: TargetProcess;
  let broker: TestBroker;
  before(async () => {
    target = await startTarget(join(fixtures, 'app.js'));
    broker = await startTestBroker(basePolicy(target.inspector, { targets: { app: { ...basePolicy('').targets.app, inspector: target.inspector, maxPauseSeconds: 2 } } }));
  });
  after(async () => {
    await broker?.close();
    await target?.stop();
  });

  it('the loop keeps turning, another session is answered, and the pause watchdog resumes the target at its bound', async () => {
    const { client } = await broker.attach();
    const other = await broker.attach();
    await client.call('Debugger.enable');
    await client.call('Debugger.setBreakpointByUrl', { lineNumber: appLine, urlRegex: 'app\\.js$' });
    await client.waitEvent('Debugger.paused');
    const pausedAt = Date.now();
    // The broker runs in this process: its loop's longest stall is this loop's.
    const delay = monitorEventLoopDelay({ resolution: 10 });
    delay.enable();
    const storm = Array.from({ length: 16 }, (_, i) => client.send('Runtime.evaluate', { expression: costly[i % costly.length]! }));
    // Meanwhile another developer's session on the same broker is answered within a fraction of the stall before.
    const asked = Date.now();
    const answer = await other.client.call('Runtime.evaluate', { expression: '1 + 1' });
    const otherMs = Date.now() - asked;
    const answers = await Promise.all(storm);
    delay.disable();
    const stallMs = delay.max / 1e6;
    assert.equal(answer.result.value, 2);
    assert.ok(otherMs < 1500, `another session waited ${otherMs} ms for 1 + 1`);
    assert.ok(stallMs < 500, `the broker's loop stood still for ${stallMs.toFixed(0)} ms`);
    for (const reply of answers)
      assert.match(String(reply.result?.result?.description ?? JSON.stringify(reply)), /Refused by Loupe: .*(budget per evaluation|Loupe's bound for JSON)|frame|paused|resumed|not paused/);
    // The watchdog ran on time: the target was resumed near maxPauseSeconds, not after the storm.
    const resumed = await broker.waitForRecord('watchdog.resumed');
    assert.ok(Date.parse(resumed.time) - pausedAt < 3500, `the watchdog resumed the target ${Date.parse(resumed.time) - pausedAt} ms after the pause`);
    await target.ticksAdvance(2);
    await client.close();
    await other.client.close();
  });

  it('JSON.parse of deeply nested text is refused before V8 parses it, and text nested within the bound parses', async () => {
    const { client } = await broker.attach();
    const delay = monitorEventLoopDelay({ resolution: 10 });
    delay.enable();
    const refused = await client.call('Runtime.evaluate', { expression: deepParses });
    delay.disable();
    assert.match(refused.result.description, new RegExp(`Refused by Loupe: JSON.parse of text nested more than ${maxJsonDepth} levels deep: Loupe's bound for JSON`));
    assert.ok(delay.max / 1e6 < 500, `the broker's loop stood still for ${(delay.max / 1e6).toFixed(0)} ms`);
    const within = await client.call('Runtime.evaluate', { expression: `JSON.parse("[".repeat(${maxJsonDepth}) + '"[{"' + "]".repeat(${maxJsonDepth})).length`, returnByValue: true });
    assert.equal(within.result.value, 1);
    await client.close();
  });

  it(`answers every one of many evaluations sent at once (at most ${maxEvaluationsAtOnce} run together, the rest wait their turn), cheap ones among costly ones included`, async () => {
    const { client } = await broker.attach();
    const replies = await Promise.all(Array.from({ length: 3 * maxEvaluationsAtOnce }, (_, i) => client.send('Runtime.evaluate', { expression: i % 2 ? `${nested}.join().length` : `${i} * 2` })));
    replies.forEach((reply, i) => {
      if (i % 2) assert.match(reply.result.result.description, /Refused by Loupe: the expression needed more than .*budget per evaluation/);
      else assert.equal(reply.result.result.value, i * 2);
    });
    const outcomes = broker.records.filter((r) => r.type === 'cdp.evaluate' && String((r.data as any).params?.expression ?? '').startsWith('Array.from'));
    assert.ok(outcomes.length >= replies.length / 2, 'each evaluation recorded');
    await client.close();
  });
});
