import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { compileRedaction, defaultRedaction, Redactor } from '../../broker/policy/redact';
import { maxParsedSourceChars, redactSource } from '../../broker/policy/sourceRedact';
import { sourceRedaction } from '../../broker/policy/sourceRedactThread';
import { fuzzSeed } from '../support/fuzz';

const redactor = () => new Redactor(defaultRedaction);
const jwt = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlX3NlY3JldA';

describe('script source redaction', () => {
  const cases: [string, string, string][] = [
    ['a string assigned to a redacted name', 'const apiKey = "sk_live_abcdef123456";', 'const apiKey = "[redacted: apiKey]";'],
    ['a property of an object literal', "const c = { db: { password: 'hunter2', host: 'db' } };", "const c = { db: { password: '[redacted: password]', host: 'db' } };"],
    ['a quoted property key', 'const h = { "x-api-key": "k-123" };', 'const h = { "x-api-key": "[redacted: x-api-key]" };'],
    ['a number assigned to a redacted name', 'const pin = 4821;', 'const pin = "[redacted: pin]";'],
    ['a member assignment', 'req.headers.authorization = "Basic dXNlcjpwYXNz";', 'req.headers.authorization = "[redacted: authorization]";'],
    ['a computed member assignment', "cfg['clientSecret'] = 'abc';", "cfg['clientSecret'] = '[redacted: clientSecret]';"],
    ['both branches of a conditional', 'let token = prod ? "aaaa1111" : "bbbb2222";', 'let token = prod ? "[redacted: token]" : "[redacted: token]";'],
    ['a default value', 'function f(password = "letmein") {}', 'function f(password = "[redacted: password]") {}'],
    ['a class field', 'class A { secret = "s3"; #otp = "123456"; }', 'class A { secret = "[redacted: secret]"; #otp = "[redacted: otp]"; }'],
    ['a concatenation', 'const secret = "abc" + "def";', 'const secret = "[redacted: secret]" + "[redacted: secret]";'],
    ['a template literal', 'const token = `tok-${n}-x`;', 'const token = `[redacted: token]${n}[redacted: token]`;'],
    ['a Map entry', "const m = new Map([['token', 'tok-1'], ['region', 'eu']]);", "const m = new Map([['token', '[redacted: token]'], ['region', 'eu']]);"],
    ['a value set under a redacted key', "res.setHeader('Set-Cookie', 'sid=abc'); h.set('apiKey', k);", "res.setHeader('Set-Cookie', '[redacted: Set-Cookie]'); h.set('apiKey', k);"],
    ['a JWT anywhere', `log("${jwt}");`, 'log("[redacted: JWT]");'],
    ['a bearer token inside a longer string', 'fetch(u, { h: "Bearer abcdefghijkl and more" });', 'fetch(u, { h: "[redacted: bearer token] and more" });'],
    ['a card number passing Luhn', 'const n = "4111 1111 1111 1111";', 'const n = "[redacted: card number]";'],
    ['a getter under a redacted name returns its value', "class S { get apiKey() { return 'sk_live_1'; } }", "class S { get apiKey() { return '[redacted: apiKey]'; } }"],
    [
      'an object getter: every return, not a nested function',
      "const o = { get token() { if (a) return 'x1'; const f = () => 'kept'; return b || 'x2'; } };",
      "const o = { get token() { if (a) return '[redacted: token]'; const f = () => 'kept'; return b || '[redacted: token]'; } };",
    ],
    [
      'an arrow or function named as a secret',
      "const getToken = () => 't-1'; function password() { return 'p-1'; }",
      "const getToken = () => '[redacted: getToken]'; function password() { return '[redacted: password]'; }",
    ],
    [
      'a method of a redacted container is its code',
      "const credentials = { key: 'k', describe() { return 'about'; } };",
      "const credentials = { key: '[redacted: credentials]', describe() { return 'about'; } };",
    ],
    [
      'a flat list of names and values; a list of names holds none',
      "const raw = ['Host', 'h', 'X-Api-Key', 'k-1']; const names = ['password', 'token'];",
      "const raw = ['Host', 'h', 'X-Api-Key', '[redacted: X-Api-Key]']; const names = ['password', 'token'];",
    ],
    ['a password in a connection string', "const dbUrl = 'postgres://app:pw-123@db:5432/orders';", "const dbUrl = 'postgres://app:[redacted: password in a URL]@db:5432/orders';"],
    [
      'names in other languages',
      "const c = { Passwort: 'a1', contraseña: 'b2', пароль: 'c3', mot_de_passe: 'd4' };",
      "const c = { Passwort: '[redacted: Passwort]', contraseña: '[redacted: contraseña]', пароль: '[redacted: пароль]', mot_de_passe: '[redacted: mot_de_passe]' };",
    ],
  ];
  for (const [what, source, expected] of cases) {
    it(`replaces ${what}`, () => assert.equal(redactSource(source, redactor()).source, expected));
  }

  it('keeps everything else as it is', () => {
    const source = 'const host = "db.local"; // password here is a comment\nconst tokens = new Map();\nconsole.log("hello", 42);\n';
    assert.equal(redactSource(source, redactor()).source, source);
  });

  it('keeps a string continued over lines on its lines', () => {
    const source = 'const secret = "abc\\\ndef";\nconst b = 2;';
    const out = redactSource(source, redactor()).source;
    assert.equal(out, 'const secret = "[redacted: secret]\\\n";\nconst b = 2;');
  });

  it('keeps every line where it was, so breakpoints still land', () => {
    const source = 'const a = 1;\nconst secret = `multi\nline\nvalue`;\nconst b = 2;\n';
    const out = redactSource(source, redactor()).source;
    assert.equal(out.split('\n').length, source.split('\n').length);
    assert.equal(out.split('\n')[4], 'const b = 2;');
    assert.doesNotMatch(out, /multi|value/);
  });

  it('scrubs a source that does not parse by pattern and pair', () => {
    const source = 'const password = "hunter2"; this is not javascript {{{ Bearer abcdefghijklmn';
    const out = redactSource(source, redactor()).source;
    assert.doesNotMatch(out, /hunter2|abcdefghijklmn/);
    const key = 'password = "a\nb" {{{\n-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nAAAB\n-----END RSA PRIVATE KEY-----\nnext';
    const lines = redactSource(key, redactor()).source.split('\n');
    assert.equal(lines.length, 7);
    assert.equal(lines[6], 'next');
    assert.doesNotMatch(lines.join('\n'), /MIIEow|AAAB/);
  });

  it('redacts what a policy adds and nothing when redaction is off', () => {
    const custom = new Redactor(compileRedaction(['customerEmail'], [{ name: 'account', regex: /ACC-\d{8}/g }]));
    assert.equal(redactSource('const customerEmail = "a@b.c"; const x = "ACC-12345678";', custom).source, 'const customerEmail = "[redacted: customerEmail]"; const x = "[redacted: account]";');
    const off = new Redactor(compileRedaction([], []));
    assert.equal(redactSource('const password = "x";', off).source, 'const password = "x";');
  });

  it('handles hostile sources without throwing, deep nesting included', () => {
    const deep = `const password = ${'['.repeat(20_000)}"x"${']'.repeat(20_000)};`;
    const out = redactSource(deep, redactor()).source;
    assert.doesNotMatch(out, /"x"/);
    const huge = `const password = "${'a'.repeat(maxParsedSourceChars)}";`;
    assert.doesNotMatch(redactSource(huge, redactor()).source.slice(0, 100), /aaaa/);
  });

  it('never throws and never changes the number of lines (fuzzed)', () => {
    const seed = fuzzSeed();
    const piece = fc.oneof(
      fc.constantFrom(
        'const ',
        'password',
        ' = ',
        '"',
        '-----BEGIN RSA PRIVATE KEY-----',
        '-----END RSA PRIVATE KEY-----',
        '\r\n',
        '\u2028',
        "'",
        '`',
        '${',
        '}',
        '{',
        '}',
        ':',
        ',',
        ';',
        '\n',
        'token',
        'x',
        '1',
        '+',
        '?',
        '(',
        ')',
        '[',
        ']',
        'Bearer abcdefghij',
        '//',
        '/*',
        '*/',
        '\\',
      ),
      fc.string({ maxLength: 4 }),
    );
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 60 }), (parts) => {
        const source = parts.join('');
        const out = redactSource(source, redactor()).source;
        const lines = (text: string) => text.split(/\r\n|[\r\n\u2028\u2029]/).length;
        assert.equal(lines(out), lines(source), `${JSON.stringify(source)} became ${JSON.stringify(out)}`);
      }),
      { seed, numRuns: 2000 },
    );
  });
});

describe('the source redaction thread', () => {
  const bundle = (kb: number) => {
    const parts = ['const password = "hunter2-in-a-bundle";'];
    for (let i = 0, size = 0; size < kb * 1024; i++) size += parts[parts.push(`function f${i}(a, b) { return { id: ${i}, name: "item ${i}", total: a * b + ${i} }; }`) - 1]!.length + 1;
    return parts.join('\n');
  };

  it('redacts a large source off the event loop: the loop keeps turning', async () => {
    const source = bundle(2000);
    let longestGapMs = 0;
    let last = performance.now();
    const ticker = setInterval(() => {
      const now = performance.now();
      longestGapMs = Math.max(longestGapMs, now - last);
      last = now;
    }, 5);
    // A generous bound: how long parsing takes depends on the machine's load, which is not under test here.
    const out = await sourceRedaction.redact(source, redactor(), 120_000);
    clearInterval(ticker);
    assert.match(out.source, /^const password = "\[redacted: password\]";/);
    assert.equal(out.source.length, source.length + '[redacted: password]'.length - 'hunter2-in-a-bundle'.length);
    // Parsing 2 MB takes hundreds of milliseconds; none of them on this thread.
    assert.ok(longestGapMs < 250, `the event loop stalled ${Math.round(longestGapMs)} ms`);
  });

  it('fails a job that takes too long, never answering with the unredacted source, and recovers', async () => {
    await assert.rejects(sourceRedaction.redact(bundle(3000), redactor(), 1), /not redacted within 1 ms, so it is not shown/);
    const out = await sourceRedaction.redact('const token = "abc";', redactor());
    assert.equal(out.source, 'const token = "[redacted: token]";');
  });

  it('records what it redacted on the session redactor and uses what the session learned', async () => {
    const session = redactor();
    session.learnPairs([['password', 'learned-secret-value']]);
    const out = await sourceRedaction.redact('const greeting = "hello";\nconst copy = "learned-secret-value";', session);
    assert.equal(out.source, 'const greeting = "hello";\nconst copy = "[redacted: value of a redacted field]";');
    assert.ok(session.hits.includes('learned value'));
  });
});

describe("a function object's description (its source text)", () => {
  it('shows a getter under a redacted name without the literal it returns, as a debugger lists the accessor', () => {
    const r = redactor();
    const getter = { type: 'function', className: 'Function', description: "get apiKey() { return 'sk_live_ZQgetter51Abc'; }", objectId: '1.1.1' };
    r.properties({ result: [{ name: 'apiKey', get: getter, set: { type: 'undefined' }, isOwn: false }] });
    assert.equal(getter.description, "get apiKey() { return '[redacted: apiKey]'; }");
    const method = { type: 'function', description: "label() { return 'plain-label'; }" };
    r.remoteObject(method);
    assert.equal(method.description, "label() { return 'plain-label'; }");
  });
});
