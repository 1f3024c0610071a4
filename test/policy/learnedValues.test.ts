import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
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
});
