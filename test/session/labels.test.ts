import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { maxScriptChars, maxScripts, maxScriptUrl, RecordLabels, scriptTableCount } from '../../broker/session/labels';
import { startTarget, type TargetProcess } from '../support/target';
import { basePolicy, startTestBroker } from '../support/testBroker';

const frameIn = (scriptId: string) => ({ url: '', location: { scriptId, lineNumber: 0 } });
const processUrl = (n: number) => `ws://127.0.0.1:9229/00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;

describe('RecordLabels: script URLs from Debugger.scriptParsed', () => {
  it("gives each target process's sessions its own scripts' URLs, whatever other processes' sessions heard (any ids, URLs, lengths)", () => {
    let n = 0;
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.string({ minLength: 1, maxLength: 12 }), fc.string({ maxLength: 3000 })), { maxLength: 40 }),
        fc.array(fc.tuple(fc.string({ minLength: 1, maxLength: 12 }), fc.string({ maxLength: 3000 })), { maxLength: 40 }),
        fc.boolean(),
        (mine, theirs, keyed) => {
          // Another process, or a session without a process URL (its own table).
          const a = new RecordLabels(keyed ? processUrl(++n) : undefined);
          const b = new RecordLabels(processUrl(++n));
          const expected = new Map<string, string>();
          for (const [i, [id, url]] of mine.entries()) {
            a.scriptParsed(id, url);
            expected.set(id, url);
            const other = theirs[i];
            if (other) b.scriptParsed(other[0], other[1]);
          }
          for (const [id, url] of expected) assert.equal(a.urlOf(frameIn(id)), url || undefined);
          a.release();
          b.release();
        },
      ),
      { numRuns: 300 },
    );
    assert.equal(scriptTableCount(), 0, 'every table went with its last session');
  });

  it("shares one table among a process's sessions while one lives, and drops it with the last", () => {
    const url = processUrl(1_000_001);
    const first = new RecordLabels(url);
    first.scriptParsed('7', 'file:///app/a.js');
    const second = new RecordLabels(url);
    // The second session knows the script before it hears of it itself (script ids are the isolate's).
    assert.equal(second.urlOf(frameIn('7')), 'file:///app/a.js');
    second.scriptParsed('8', 'file:///app/b.js');
    assert.equal(first.urlOf(frameIn('8')), 'file:///app/b.js');
    assert.equal(scriptTableCount(), 1);
    first.release();
    first.release(); // idempotent: the second session's table stays
    assert.equal(scriptTableCount(), 1);
    assert.equal(second.urlOf(frameIn('7')), 'file:///app/a.js');
    second.release();
    assert.equal(scriptTableCount(), 0);
    // A later session of the same URL starts afresh.
    const third = new RecordLabels(url);
    assert.equal(third.urlOf(frameIn('7')), undefined);
    third.release();
    // Another process (a restart has a new id) never sees them.
    const other = new RecordLabels(processUrl(1_000_002));
    assert.equal(other.urlOf(frameIn('8')), undefined);
    other.release();
    assert.equal(scriptTableCount(), 0);
  });

  it(`keeps at most ${maxScripts} scripts a table (a target sending scriptParsed without end), still updating those it has`, () => {
    const labels = new RecordLabels(processUrl(1_000_003));
    for (let i = 0; i < maxScripts + 1000; i++) labels.scriptParsed(String(i), `file:///app/${i % 100}.js`);
    assert.equal(labels.scriptUrls.size, maxScripts);
    assert.equal(labels.urlOf(frameIn(String(maxScripts))), undefined, 'past the bound: named by script id');
    labels.scriptParsed('0', 'file:///app/renamed.js');
    assert.equal(labels.urlOf(frameIn('0')), 'file:///app/renamed.js');
    labels.release();
    assert.equal(scriptTableCount(), 0);
  });

  it('bounds what a table holds in characters too: URLs cut, ids longer than V8 gives ignored, no new script past the budget', () => {
    const labels = new RecordLabels(processUrl(1_000_004));
    labels.scriptParsed('1', `file:///app/${'u'.repeat(10_000)}.js`);
    assert.equal(labels.urlOf(frameIn('1'))!.length, maxScriptUrl);
    assert.ok(labels.urlOf(frameIn('1'))!.startsWith('file:///app/uuu'));
    labels.scriptParsed('9'.repeat(100), 'file:///app/long-id.js');
    assert.equal(labels.urlOf(frameIn('9'.repeat(100))), undefined, 'not a V8 script id');
    const perScript = maxScriptUrl + 6;
    const fits = Math.floor(maxScriptChars / perScript);
    for (let i = 0; i < fits + 100; i++) labels.scriptParsed(String(100_000 + i), `file:///${String(i).padStart(6, '0')}${'x'.repeat(maxScriptUrl)}`);
    const kept = [...labels.scriptUrls.values()].reduce((n, url) => n + url.length, 0) + [...labels.scriptUrls.keys()].reduce((n, id) => n + id.length, 0);
    assert.ok(kept <= maxScriptChars, `${kept} characters kept`);
    assert.ok(labels.scriptUrls.size < fits + 100 && labels.scriptUrls.size > fits - 10, `${labels.scriptUrls.size} scripts kept`);
    assert.equal(labels.urlOf(frameIn(String(100_000 + fits + 99))), undefined, 'past the budget: named by script id');
    // One already known is still updated.
    labels.scriptParsed('1', 'file:///app/short.js');
    assert.equal(labels.urlOf(frameIn('1')), 'file:///app/short.js');
    labels.release();
  });

  it("keeps the labels right past the shared strings' bound (hostile targets sending many long, unique URLs)", () => {
    const sessions = Array.from({ length: 4 }, (_, i) => new RecordLabels(processUrl(2_000_000 + i)));
    // 4 processes × 800 scripts × ~1,500 characters: the shared strings are emptied several times on the way.
    for (let i = 0; i < 800; i++) {
      for (const [s, labels] of sessions.entries()) labels.scriptParsed(String(i), `file:///app/${s}/${'x'.repeat(1500)}/${i}.js`);
    }
    for (const [s, labels] of sessions.entries()) {
      for (const i of [0, 1, 399, 799]) assert.equal(labels.urlOf(frameIn(String(i))), `file:///app/${s}/${'x'.repeat(1500)}/${i}.js`);
      labels.release();
    }
  });
});

describe('script tables of real sessions', () => {
  let target: TargetProcess;
  before(async () => {
    target = await startTarget();
  });
  after(async () => {
    await target.stop();
  });

  it('two sessions on one target share one table; it goes when both have ended, whichever way they end', async () => {
    const broker = await startTestBroker(basePolicy(target.inspector));
    try {
      const before = scriptTableCount();
      const { client: one } = await broker.attach({ mode: 'pause' });
      const { client: two } = await broker.attach({ mode: 'pause' });
      await one.call('Debugger.enable');
      await two.call('Debugger.enable');
      assert.equal(scriptTableCount(), before + 1, 'one table for the process');
      // Both hear the same scripts; each session's frames are named from the table.
      const scripts = (c: typeof one) => c.events.filter((e) => e.method === 'Debugger.scriptParsed').map((e) => `${e.params.scriptId} ${e.params.url}`);
      assert.deepEqual(new Set(scripts(two)), new Set(scripts(one)));
      await one.close();
      await broker.waitForRecord('session.ended');
      assert.equal(scriptTableCount(), before + 1, 'the live session keeps it');
      await broker.close();
      assert.equal(scriptTableCount(), before, 'gone with the last session (ended by the broker closing)');
    } finally {
      await broker.close().catch(() => undefined);
    }
  });
});
