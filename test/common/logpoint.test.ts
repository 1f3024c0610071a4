// The logpoint template parser the broker's gate and the debug adapter share: one table, both sides.
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { parseLogTemplate } from '../../common/logpoint';
import { gateClientFrame } from '../../broker/gate/cdpGate';

const parsed: [string, string[], string[]][] = [
  ['plain text', ['plain text'], []],
  ['', [''], []],
  ['{a}', ['', ''], ['a']],
  ['user {user.id} paid {order.total.toFixed(2)}', ['user ', ' paid ', ''], ['user.id', 'order.total.toFixed(2)']],
  ['obj {{a: 1}.a} end', ['obj ', ' end'], ['{a: 1}.a']],
  ['{ spaced }', ['', ''], ['spaced']],
  ['{a}{b}', ['', '', ''], ['a', 'b']],
  ['deep {f({x: {y: 1}})}', ['deep ', ''], ['f({x: {y: 1}})']],
];

const refused: [string, RegExp][] = [
  ['a {b {c}', /"\{" at position 3 that is never closed/],
  ['a {b', /"\{" at position 3 that is never closed/],
  ['{', /"\{" at position 1 that is never closed/],
  ['a } b', /"\}" at position 3 that closes no "\{"/],
  ['{a}}', /"\}" at position 4 that closes no "\{"/],
];

describe('logpoint template', () => {
  for (const [message, literals, expressions] of parsed) {
    it(`parses ${JSON.stringify(message)}`, () => {
      assert.deepEqual(parseLogTemplate(message), { ok: true, template: { literals, expressions } });
    });
  }
  for (const [message, error] of refused) {
    it(`refuses ${JSON.stringify(message)}, saying which brace and the accepted form`, () => {
      const result = parseLogTemplate(message);
      assert.equal(result.ok, false);
      if (result.ok) return;
      assert.match(result.error, error);
      assert.match(result.error, /matching braces, e\.g\. "user \{user\.id\} paid \{order\.total\}"/);
    });
  }

  it("the broker gate refuses an unbalanced message with the parser's words", () => {
    const frame = JSON.stringify({ id: 1, method: 'Loupe.setLogpoint', params: { lineNumber: 3, url: 'file:///a.js', logMessage: 'a {b {c}' } });
    const decision = gateClientFrame(frame, false, 'pause', { maxFrameBytes: 4096, evaluateTimeoutMs: 500 });
    assert.equal(decision.action, 'refuse');
    if (decision.action !== 'refuse') return;
    assert.equal(decision.rule, 'logpoint.template');
    assert.match(decision.message, /Loupe\.setLogpoint refused: the logpoint message has a "\{" at position 3 that is never closed/);
  });
});
