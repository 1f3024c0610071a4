// `loupe connect`'s arguments (every mistake named, fuzzed) and its countdown marks.
import { strict as assert } from 'node:assert';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { connectSettings, ConnectUsageError, type ConnectValues } from '../../broker/connect/options';
import { countdownMarks } from '../../broker/connect/countdown';
import { fuzzFrames, fuzzSeed } from '../support/fuzz';

const env = { LOUPE_BROKER_URL: 'https://loupe.example.com/', LOUPE_TOKEN: 'tok' };
const usageError = (pattern: RegExp) => (err: unknown) => err instanceof ConnectUsageError && pattern.test(err.message);

describe('loupe connect: arguments', () => {
  it('defaults: pause, 15 min, port 9229, Loupe evaluation, the token of LOUPE_TOKEN', () => {
    const s = connectSettings({ reason: ' INC-1 ' }, ['checkout'], env);
    assert.deepEqual(s, {
      target: 'checkout',
      reason: 'INC-1',
      mode: 'pause',
      evaluation: 'loupe',
      durationSeconds: 900,
      port: 9229,
      broker: 'https://loupe.example.com',
      identity: { kind: 'token', token: 'tok', from: 'LOUPE_TOKEN' },
    });
  });

  it('names each mistake', () => {
    const cases: [ConnectValues, string[], Record<string, string>, RegExp][] = [
      [{ reason: 'r' }, [], env, /missing <target>/],
      [{ reason: 'r' }, ['a', 'b'], env, /one target at a time: got "a", "b"/],
      [{}, ['t'], env, /missing --reason/],
      [{ reason: '   ' }, ['t'], env, /missing --reason/],
      [{ reason: 'r', mode: 'Pause' }, ['t'], env, /--mode: expected one of pause, snapshot, got "Pause"/],
      [{ reason: 'r', evaluation: 'js' }, ['t'], env, /--evaluation: expected one of loupe, v8, got "js"/],
      [{ reason: 'r', duration: '15' }, ['t'], env, /--duration: expected a duration like "15m" or "1h", got "15"/],
      [{ reason: 'r', port: '65536' }, ['t'], env, /--port: expected a port number 0-65535, got "65536"/],
      [{ reason: 'r', port: '-1' }, ['t'], env, /--port: expected a port number/],
      [{ reason: 'r' }, ['t'], { LOUPE_TOKEN: 't' }, /missing --broker <url> \(or LOUPE_BROKER_URL\)/],
      [{ reason: 'r', broker: 'loupe.example.com' }, ['t'], env, /--broker: "loupe\.example\.com" is not a URL/],
      [{ reason: 'r', broker: 'ftp://x' }, ['t'], env, /--broker: expected an http\(s\) URL/],
      [{ reason: 'r' }, ['t'], { LOUPE_BROKER_URL: 'http://b' }, /no identity: set LOUPE_TOKEN, pass --token-file/],
      [{ reason: 'r', issuer: 'https://idp' }, ['t'], { LOUPE_BROKER_URL: 'http://b' }, /--issuer https:\/\/idp needs --client-id/],
      [{ reason: 'r', 'token-file': '/nonexistent/token' }, ['t'], env, /--token-file: cannot read \/nonexistent\/token: ENOENT/],
    ];
    for (const [values, positionals, e, pattern] of cases) assert.throws(() => connectSettings(values, positionals, e), usageError(pattern), `${JSON.stringify(values)} ${pattern}`);
  });

  it('--token-file wins over LOUPE_TOKEN and must hold one token; a sign-in is configured by flags or environment', () => {
    const dir = mkdtempSync(join(tmpdir(), 'loupe-connect-'));
    writeFileSync(join(dir, 'token'), 'eyJ.file.token\n');
    writeFileSync(join(dir, 'empty'), '\n');
    writeFileSync(join(dir, 'two'), 'a\nb\n');
    assert.deepEqual(connectSettings({ reason: 'r', 'token-file': join(dir, 'token') }, ['t'], env).identity, { kind: 'token', token: 'eyJ.file.token', from: join(dir, 'token') });
    assert.throws(() => connectSettings({ reason: 'r', 'token-file': join(dir, 'empty') }, ['t'], env), usageError(/is empty/));
    assert.throws(() => connectSettings({ reason: 'r', 'token-file': join(dir, 'two') }, ['t'], env), usageError(/must hold one token/));
    const device = connectSettings({ reason: 'r' }, ['t'], { LOUPE_BROKER_URL: 'http://b', LOUPE_OIDC_ISSUER: 'https://idp', LOUPE_OIDC_CLIENT_ID: 'cli', LOUPE_OIDC_RESOURCE: 'urn:loupe' });
    assert.deepEqual(device.identity, { kind: 'device', oidc: { issuer: 'https://idp', clientId: 'cli', scopes: 'openid profile', resource: 'urn:loupe' } });
  });

  it('fuzz: any arguments give settings or a ConnectUsageError, never another failure; settings stay within bounds', () => {
    const word = fc.oneof(fc.string({ maxLength: 12 }), fc.constantFrom('pause', 'snapshot', 'v8', 'loupe', '15m', '1h30m', '0', '9229', '65535', 'http://b', 'https://idp', '/dev/null', ''));
    const values = fc.record(
      { reason: word, ticket: word, mode: word, evaluation: word, duration: word, port: word, broker: word, issuer: word, 'client-id': word, scopes: word, resource: word },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(values, fc.array(word, { maxLength: 3 }), fc.record({ LOUPE_BROKER_URL: word, LOUPE_TOKEN: word }, { requiredKeys: [] }), (v, positionals, e) => {
        let s;
        try {
          s = connectSettings(v, positionals, e);
        } catch (err) {
          if (err instanceof ConnectUsageError) return;
          throw err;
        }
        assert.equal(positionals.length, 1);
        assert.ok(s.reason.length > 0 && s.reason === s.reason.trim());
        assert.ok(['pause', 'snapshot'].includes(s.mode));
        assert.ok(Number.isInteger(s.port) && s.port >= 0 && s.port <= 65535);
        assert.ok(s.durationSeconds > 0);
        assert.match(s.broker, /^https?:\/\//);
      }),
      { numRuns: fuzzFrames(2000), seed: fuzzSeed() },
    );
  });
});

describe('loupe connect: countdown', () => {
  const words = (ms: number) => countdownMarks(ms).map((m) => m.words);
  it('every 5 minutes, then each of the last 5 minutes, then 10 s', () => {
    assert.deepEqual(words(15 * 60_000), ['10 min', '5 min', '4 min', '3 min', '2 min', '1 min', '10 s']);
    assert.deepEqual(words(30 * 60_000), ['25 min', '20 min', '15 min', '10 min', '5 min', '4 min', '3 min', '2 min', '1 min', '10 s']);
    assert.deepEqual(words(12_000), ['10 s']);
    assert.deepEqual(words(5_000), []);
  });
  it('every 30 minutes in a grant of hours, never more than 25 lines for 8 h', () => {
    const marks = words(8 * 3600_000);
    assert.equal(marks[0], '7 h 30 min');
    assert.ok(marks.includes('7 h') && marks.includes('30 min') && !marks.includes('25 min'), marks.join(', '));
    assert.ok(marks.length <= 25, `${marks.length} lines`);
    const ms = countdownMarks(8 * 3600_000).map((m) => m.ms);
    assert.deepEqual(
      ms,
      [...ms].sort((a, b) => b - a),
      'in order',
    );
  });
});
