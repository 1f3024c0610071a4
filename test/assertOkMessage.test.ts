import { strict as assert } from 'node:assert';
import strictAssert from 'node:assert/strict';
import { describe, it } from 'node:test';
// Loaded by scripts/test.mjs into every test file's process; imported here too so the file also runs on its own.
import './support/assertOkMessage.mjs';

describe("the tests' assert.ok", () => {
  it('fails a bare assert.ok at once, naming the value, through either import', () => {
    assert.throws(() => assert.ok({ n: 0 }.n), /^AssertionError \[ERR_ASSERTION\]: The expression evaluated to a falsy value: 0 \(assert\.ok without a message/);
    assert.throws(() => strictAssert.ok(''), /falsy value: ''/);
    assert.throws(
      () => assert.ok(null),
      (err: Error & { actual?: unknown; operator?: string }) => err.actual === null && err.operator === '==',
    );
  });

  it('leaves assert.ok with a message, and a passing one, as they were', () => {
    assert.throws(() => assert.ok(false, 'what went wrong'), /^AssertionError \[ERR_ASSERTION\]: what went wrong$/);
    assert.throws(() => assert.ok(0, new RangeError('mine')), RangeError);
    assert.doesNotThrow(() => assert.ok(1));
    assert.doesNotThrow(() => strictAssert.ok('yes', 'fine'));
  });
});
