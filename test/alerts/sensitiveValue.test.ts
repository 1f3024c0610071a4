import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { sensitiveValue } from '../../broker/alerts/alertEngine';

describe('alert rules: values that look like secrets', () => {
  const pieces = ['4', '1', '0', ' ', '-', 'Bearer ', 'eyJ', '.', 'abcdefgh', '-----BEGIN', '[redacted: ', 'password', ']', 'x'];

  it('a short text matches no pattern, so skipping it changes no answer (fast-check)', () => {
    // Trailing spaces take a text past the length check and let no pattern match that did not match before.
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...pieces), { maxLength: 12 }), fc.string({ maxLength: 12 }), (parts, noise) => {
        for (const text of [parts.join(''), noise, parts.join('') + noise]) {
          if (text.length < 13) assert.equal(sensitiveValue(`${text}${' '.repeat(13)}`), undefined, text);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('finds each kind at its shortest', () => {
    assert.equal(sensitiveValue('4111111111111'), undefined, '13 digits failing the Luhn check');
    assert.equal(sensitiveValue('4222222222222'), 'a card number');
    assert.equal(sensitiveValue('Bearer abcdefghijkl'), 'a bearer token');
    assert.equal(sensitiveValue('eyJabcdefgh.abcdefgh.abcdefgh'), 'a JWT');
    assert.equal(sensitiveValue('-----BEGIN PRIVATE KEY-----'), 'a private key');
    assert.equal(sensitiveValue('[redacted: x]'), 'a x (redacted)');
    assert.equal(sensitiveValue('[redacted: ]'), undefined);
    assert.equal(sensitiveValue('1234'), undefined);
  });
});
