import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { RecordLabels } from '../../broker/session/labels';

const frameIn = (scriptId: string) => ({ url: '', location: { scriptId, lineNumber: 0 } });

describe('RecordLabels: script URLs from Debugger.scriptParsed', () => {
  it("gives each session its own scripts' URLs, whatever other sessions heard (any ids, URLs, lengths)", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.string({ minLength: 1, maxLength: 12 }), fc.string({ maxLength: 3000 })), { maxLength: 40 }),
        fc.array(fc.tuple(fc.string({ minLength: 1, maxLength: 12 }), fc.string({ maxLength: 3000 })), { maxLength: 40 }),
        (mine, theirs) => {
          const a = new RecordLabels();
          const b = new RecordLabels();
          const expected = new Map<string, string>();
          for (const [i, [id, url]] of mine.entries()) {
            a.scriptParsed(id, url);
            expected.set(id, url);
            const other = theirs[i];
            if (other) b.scriptParsed(other[0], other[1]);
          }
          for (const [id, url] of expected) assert.equal(a.urlOf(frameIn(id)), url || undefined);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("keeps the labels right past the shared table's bound (hostile targets sending many long, unique URLs)", () => {
    const sessions = Array.from({ length: 4 }, () => new RecordLabels());
    // 4 sessions × 800 scripts × ~1,500 characters: the shared table is emptied several times on the way.
    for (let i = 0; i < 800; i++) {
      for (const [s, labels] of sessions.entries()) labels.scriptParsed(String(i), `file:///app/${s}/${'x'.repeat(1500)}/${i}.js`);
    }
    for (const [s, labels] of sessions.entries()) {
      for (const i of [0, 1, 399, 799]) assert.equal(labels.urlOf(frameIn(String(i))), `file:///app/${s}/${'x'.repeat(1500)}/${i}.js`);
    }
  });
});
