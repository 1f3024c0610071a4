import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { defaultRedaction, marker, Redactor } from '../../broker/policy/redact';

describe('values learned under sensitive names', () => {
  it('are scrubbed from later text; the working directory of PWD / OLDPWD is not learned (every path would read as a secret)', () => {
    const redactor = new Redactor(defaultRedaction);
    redactor.learnPairs([
      ['PWD', '/srv/checkout'],
      ['OLDPWD', 'C:\\services\\checkout'],
      ['pwd', 'hunter2-zebra'],
      ['PWD', 'not a path at all'],
    ]);
    const learned = marker('value of a redacted field');
    assert.equal(redactor.scrub('Error: boom\n    at handle (/srv/checkout/app.js:3:9)'), 'Error: boom\n    at handle (/srv/checkout/app.js:3:9)');
    assert.equal(redactor.scrub('at C:\\services\\checkout\\app.js'), 'at C:\\services\\checkout\\app.js');
    assert.equal(redactor.scrub('login with hunter2-zebra'), `login with ${learned}`);
    assert.equal(redactor.scrub('said not a path at all'), `said ${learned}`);
    // The names themselves stay sensitive: their values are markers wherever the name shows.
    assert.deepEqual(redactor.byValue({ PWD: '/srv/checkout', user: 'ann' }), { PWD: marker('PWD'), user: 'ann' });
  });

  it('never quote a learned secret that is itself a sensitive-looking name: an object keyed by a token shows neither the key nor the marker naming it', () => {
    // `{ [apiKey]: 5 }` with apiKey 'KEYED-SECRET-…': once learned, the key reads as sensitive and its value is a marker.
    const word = fc.constantFrom('SECRET', 'token', 'Password', 'apikey', 'AUTH');
    const secret = fc.tuple(fc.stringMatching(/^[A-Z]{2,6}$/), word, fc.stringMatching(/^[0-9a-f]{4,12}$/)).map(([a, w, b]) => `${a}-${w}-${b}`);
    fc.assert(
      fc.property(secret, (key) => {
        const redactor = new Redactor(defaultRedaction);
        redactor.learnPairs([['apiKey', key]]);
        const read = { result: [{ name: key, value: { type: 'number', value: 5, description: '5' }, enumerable: true, isOwn: true }] };
        redactor.response('Runtime.getProperties', read);
        const preview = { type: 'object', properties: [{ name: key, type: 'number', value: '5' }] };
        redactor.preview(preview);
        const entries = { type: 'object', subtype: 'map', entries: [{ key: { type: 'string', description: key }, value: { type: 'number', description: '5' } }] };
        redactor.preview(entries);
        const out = JSON.stringify([read, preview, entries, redactor.hits]);
        assert.ok(!out.includes(key), out);
        assert.equal((read.result[0]!.value as { value: unknown }).value, marker('a redacted name'));
      }),
      { numRuns: 200 },
    );
  });
});
