import { strict as assert } from 'node:assert';
import { request } from 'node:http';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { CdpClient } from '../support/cdpClient';
import { assertAllWell, checkProperty, fuzzFrames, fuzzSeed, jsonArb, startHttpTarget, type HttpTarget } from '../support/fuzz';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';
import { waitFor } from '../support/wait';

/**
 * Property: whatever HTTP request reaches the broker's API (any method, path, query, Authorization value, content
 * type and body, a forged or mangled token, a real token of any role), the answer comes within a bound and is a
 * decision: a success, or a 4xx/503 whose JSON body says what was refused and why. Never a 500, never a fault in
 * the log; afterwards the broker still serves, a session opened before the run still evaluates, and the target
 * still serves.
 */
const total = fuzzFrames(600);
const seed = fuzzSeed();

const b64 = (value: unknown): string => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

const uuidArb = fc.oneof(fc.uuid(), fc.constant('00000000-0000-0000-0000-000000000000'), fc.string({ maxLength: 40 }), fc.stringMatching(/^[0-9a-f-]{36}$/));
const segmentIdArb = fc.oneof(fc.stringMatching(/^(security|grants)-[0-9TZ-]{1,30}-[0-9a-f]{8}$/), fc.string({ maxLength: 60 }));

/** Paths near the API's routes (and some far from them): ids valid, malformed, encoded, traversing. */
const pathArb = fc.oneof(
  fc.constantFrom('/v1/targets', '/v1/grants', '/v1/requests', '/v1/alerts', '/v1/sessions', '/v1/audit/security', '/v1/audit/grants', '/v1/audit/keys', '/healthz', '/readyz', '/metrics'),
  fc.tuple(uuidArb, fc.constantFrom('', '/tickets', '/revoke', '/collect')).map(([id, tail]) => `/v1/grants/${encodeURIComponent(id)}${tail}`),
  fc.tuple(uuidArb, fc.constantFrom('', '/approve', '/deny', '/withdraw', '/collect')).map(([id, tail]) => `/v1/requests/${encodeURIComponent(id)}${tail}`),
  fc.tuple(uuidArb, fc.constantFrom('/transcript', '/report', '')).map(([id, tail]) => `/v1/sessions/${encodeURIComponent(id)}${tail}`),
  fc.tuple(fc.constantFrom('security', 'grants'), segmentIdArb, fc.constantFrom('/transcript', '/report')).map(([kind, id, tail]) => `/v1/audit/${kind}/${encodeURIComponent(id)}${tail}`),
  fc.constantFrom('/', '/v1', '/v1/', '/v1//grants', '/v1/grants/', '/v1/../healthz', '/%2e%2e/v1/targets', '/v1/targets?', '/v1/grants%00', '/v1/%ZZ'),
  fc.webPath(),
  fc.string({ maxLength: 200 }).map((s) => `/${encodeURIComponent(s)}`),
);

const queryArb = fc.option(fc.dictionary(fc.constantFrom('target', 'user', 'since', 'until', 'limit', 'ticket', 'format', 'x'), fc.string({ maxLength: 40 }), { maxKeys: 4 }), { nil: undefined });

/** Token-shaped strings: forged headers (alg none, HS256 key confusion, unknown kid, crit), odd claims of every type. */
const forgedTokenArb = fc
  .tuple(
    fc.record(
      {
        alg: fc.constantFrom('none', 'HS256', 'EdDSA', 'ES256', 'RS256', 'PS256', 'xyz', ''),
        typ: fc.constantFrom('JWT', 'at+jwt', 'x'),
        kid: fc.string({ maxLength: 30 }),
        crit: fc.array(fc.string({ maxLength: 8 }), { maxLength: 2 }),
        jku: fc.constant('http://evil.example/keys'),
        b64: fc.boolean(),
      },
      { requiredKeys: ['alg'] },
    ),
    fc.oneof(
      fc.record(
        {
          iss: fc.oneof(fc.constant('loupe-dev'), fc.string({ maxLength: 20 }), fc.integer(), fc.constant(null)),
          aud: fc.oneof(fc.constant('loupe'), fc.array(fc.string({ maxLength: 10 }), { maxLength: 3 }), fc.integer()),
          sub: fc.oneof(fc.constantFrom('dev', 'owner', 'admin'), fc.string({ maxLength: 20 }), fc.integer(), fc.object()),
          exp: fc.oneof(fc.integer(), fc.double(), fc.string({ maxLength: 12 }), fc.constant(Number.MAX_SAFE_INTEGER)),
          nbf: fc.oneof(fc.integer(), fc.string({ maxLength: 5 })),
          groups: fc.oneof(fc.array(fc.constantFrom('devs', 'owners', 'admins'), { maxLength: 3 }), fc.string({ maxLength: 10 }), fc.object()),
        },
        { requiredKeys: [] },
      ),
      jsonArb(['iss', 'aud', 'sub', 'exp', 'groups']),
    ),
    fc.oneof(
      fc.constant(''),
      fc.base64String({ maxLength: 90 }).map((s) => s.replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')),
    ),
  )
  .map(([header, payload, signature]) => `${b64(header)}.${b64(payload)}.${signature}`);

/** What a request carries as Authorization: a real token (by index into the suite's), one mangled, a forgery, junk. */
type AuthChoice = { kind: 'real' | 'mangled'; index: number; at: number } | { kind: 'raw'; value: string } | { kind: 'none' };
const authArb: fc.Arbitrary<AuthChoice> = fc.oneof(
  fc.record({ kind: fc.constant('real' as const), index: fc.nat(3), at: fc.nat() }),
  fc.record({ kind: fc.constant('mangled' as const), index: fc.nat(3), at: fc.nat() }),
  forgedTokenArb.map((token) => ({ kind: 'raw' as const, value: `Bearer ${token}` })),
  fc
    .oneof(fc.string({ maxLength: 100 }), fc.constantFrom('Bearer', 'Bearer ', 'bearer x', 'Basic ZGV2OmRldg==', `Bearer ${'a'.repeat(9000)}`, 'Bearer a.b', 'Bearer ..', 'Bearer a.b.c.d'))
    .map((value) => ({ kind: 'raw' as const, value })),
  fc.constant({ kind: 'none' as const }),
);

/** Bodies: JSON of any shape, grant requests with fields of every type, text that is not JSON, bytes that are not UTF-8, too much. */
type Body = { kind: 'none' } | { kind: 'text'; text: string } | { kind: 'bytes'; bytes: Buffer };
const grantShapedArb = fc.record(
  {
    target: fc.oneof(fc.constantFrom('app', 'other', 'constructor', '__proto__'), fc.string({ maxLength: 20 }), fc.integer()),
    mode: fc.oneof(fc.constantFrom('pause', 'snapshot', 'write'), fc.string({ maxLength: 10 }), fc.boolean()),
    durationSeconds: fc.oneof(fc.integer({ min: -10, max: 100_000 }), fc.double(), fc.string({ maxLength: 5 }), fc.constant(1e308)),
    reason: fc.oneof(fc.string({ maxLength: 300 }), fc.constant('x'.repeat(5000)), fc.integer()),
    ticket: fc.oneof(fc.string({ maxLength: 40 }), fc.constant(null)),
    evaluation: fc.oneof(fc.constantFrom('v8', 'loupe', 'eval'), fc.integer()),
    comment: fc.oneof(fc.string({ maxLength: 50 }), fc.integer()),
  },
  { requiredKeys: [] },
);
const bodyArb: fc.Arbitrary<Body> = fc.oneof(
  fc.constant({ kind: 'none' as const }),
  // A well-formed grant request, so the granting path itself is exercised.
  fc
    .record({ mode: fc.constantFrom('pause', 'snapshot'), durationSeconds: fc.integer({ min: 1, max: 3600 }) })
    .map((r) => ({ kind: 'text' as const, text: JSON.stringify({ target: 'app', ...r, reason: 'fuzz: a well-formed request' }) })),
  grantShapedArb.map((value) => ({ kind: 'text' as const, text: JSON.stringify(value) })),
  jsonArb(['target', 'mode', 'durationSeconds', 'reason', 'comment', '__proto__']).map((value) => ({ kind: 'text' as const, text: JSON.stringify(value) ?? 'null' })),
  fc.string({ maxLength: 200 }).map((text) => ({ kind: 'text' as const, text })),
  fc.constantFrom('{', '{"target":', '[1,2', '{"__proto__":{"admin":true}}', '"\\ud800"', `{"reason":"${'\\u0000'.repeat(50)}"}`).map((text) => ({ kind: 'text' as const, text })),
  fc
    .uint8Array({ minLength: 1, maxLength: 64 })
    .map((bytes) => ({ kind: 'bytes' as const, bytes: Buffer.concat([Buffer.from('{"reason":"'), Buffer.from([0xff, 0xfe]), Buffer.from(bytes), Buffer.from('"}')]) })),
  fc.constantFrom(70 * 1024, 300 * 1024).map((n) => ({ kind: 'text' as const, text: `{"reason":"${'y'.repeat(n)}"}` })),
);

const methodArb = fc.oneof(fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD'), fc.constantFrom('GET', 'POST'), fc.constantFrom('TRACE', 'PROPFIND', 'CONNECT'));

/** Mostly a route's own method and path (ids well-formed or not), so most requests reach authentication and the handlers. */
const routeArb: fc.Arbitrary<[string, string]> = fc.oneof(
  fc.constantFrom<[string, string]>(
    ['GET', '/v1/targets'],
    ['POST', '/v1/grants'],
    ['GET', '/v1/requests'],
    ['GET', '/v1/alerts'],
    ['GET', '/v1/sessions'],
    ['GET', '/v1/audit/security'],
    ['GET', '/v1/audit/grants'],
  ),
  fc.tuple(fc.constantFrom('POST /v1/grants/%s/revoke', 'POST /v1/grants/%s/tickets', 'POST /v1/requests/%s/collect'), fc.uuid()).map(([t, id]) => t.replace('%s', id).split(' ') as [string, string]),
  fc
    .tuple(fc.constantFrom('GET /v1/requests/%s', 'POST /v1/requests/%s/approve', 'POST /v1/requests/%s/deny', 'POST /v1/requests/%s/withdraw'), fc.uuid())
    .map(([t, id]) => t.replace('%s', id).split(' ') as [string, string]),
  fc.tuple(fc.constantFrom('GET /v1/sessions/%s/transcript', 'GET /v1/sessions/%s/report'), fc.uuid()).map(([t, id]) => t.replace('%s', id).split(' ') as [string, string]),
);
const requestLineArb: fc.Arbitrary<[string, string]> = fc.oneof({ weight: 3, arbitrary: routeArb }, { weight: 2, arbitrary: fc.tuple(methodArb, pathArb) });
const contentTypeArb = fc.option(
  fc.constantFrom('application/json', 'application/json; charset=utf-8', 'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/json; charset=latin1', ''),
  { nil: undefined },
);

interface Answer {
  status: number;
  contentType: string;
  body: string;
}

/** One raw request (node:http, so any method, header and body goes as given), answered within `timeoutMs` or failed. */
function send(base: string, method: string, path: string, headers: Record<string, string>, body: Buffer | undefined, timeoutMs = 5_000): Promise<Answer> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    let settled = false;
    const settle = (outcome: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      outcome();
    };
    const answered = (status: number, contentType: string, chunks: Buffer[]) => settle(() => resolve({ status, contentType, body: Buffer.concat(chunks).toString('utf8') }));
    const failed = (err: Error) => settle(() => reject(err));
    const req = request({ host: url.hostname, port: url.port, method, path, headers: { ...headers, ...(body ? { 'content-length': String(body.length) } : {}) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => answered(res.statusCode ?? 0, String(res.headers['content-type'] ?? ''), chunks));
      res.on('error', failed);
      res.on('close', () => failed(new Error(`the answer to ${method} ${path} was cut off`)));
    });
    // A CONNECT's answer comes as 'connect' (node hands over the socket): its body is what follows the head.
    req.on('connect', (res, socket, head) => {
      const chunks: Buffer[] = [head];
      socket.on('data', (c: Buffer) => chunks.push(c));
      socket.on('end', () => answered(res.statusCode ?? 0, String(res.headers['content-type'] ?? ''), chunks));
      socket.on('error', failed);
    });
    req.on('error', failed);
    const deadline = setTimeout(() => {
      req.destroy();
      failed(new Error(`no answer to ${method} ${path.slice(0, 200)} within ${timeoutMs} ms`));
    }, timeoutMs);
    req.end(body);
  });
}

describe(`fuzz: ${total} generated HTTP requests to a live broker's API (seed ${seed})`, () => {
  let target: HttpTarget;
  let broker: TestBroker;
  let victim: CdpClient;
  const tokens: string[] = [];
  const logged: string[] = [];
  before(async () => {
    target = await startHttpTarget();
    const policy = basePolicy(target.inspector);
    policy.targets.app.access[0].maxDuration = '12h';
    broker = await startTestBroker(policy, { log: (line) => logged.push(line) });
    victim = (await broker.attach({ durationSeconds: 12 * 3600 })).client;
    await victim.call('Runtime.enable');
    // One token per kind of caller: a developer, an owner, an admin, a user with no role.
    tokens.push(await broker.token('dev', ['devs']), await broker.token('owner', ['owners']), await broker.token('admin', ['admins']), await broker.token('nobody', []));
  });
  after(async () => {
    await victim?.close();
    await broker?.close();
    await target?.stop();
  });

  it('request lines the URL parser refuses or misreads, CONNECT, and requests node cannot parse are refused in words, and fault nothing', async () => {
    const port = Number(new URL(broker.url).port);
    /** The raw answer to one raw request, once the broker closes the connection. */
    const raw = (text: string) =>
      new Promise<string>((resolve, reject) => {
        const socket = connect(port, '127.0.0.1');
        let answer = '';
        socket.on('data', (chunk) => (answer += String(chunk)));
        socket.on('close', () => resolve(answer));
        socket.on('error', reject);
        socket.write(text);
        setTimeout(() => reject(new Error(`no answer to ${JSON.stringify(text.slice(0, 60))} within 5 s (so far: ${JSON.stringify(answer)})`)), 5000).unref();
      });
    const upgrade = 'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n';
    const cases: [string, RegExp, RegExp][] = [
      // `new URL('///', base)` throws: over HTTP that was a 500, as an upgrade an uncaught exception in the broker.
      ['GET /// HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n', /^HTTP\/1\.1 404 /, /"code":"not_found","message":"no route GET \/\/\/"/],
      [`GET /// HTTP/1.1\r\nHost: b\r\n${upgrade}\r\n`, /^HTTP\/1\.1 404 /, /"message":"no WebSocket endpoint at \/\/\/"/],
      // `//host/path` was read as a host and the path it names: now the path is what the client sent.
      ['GET //evil.example/v1/targets HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n', /^HTTP\/1\.1 404 /, /no route GET \/\/evil\.example\/v1\/targets/],
      [`GET //evil.example/v1/attach/00000000-0000-0000-0000-000000000000 HTTP/1.1\r\nHost: b\r\n${upgrade}\r\n`, /^HTTP\/1\.1 404 /, /no WebSocket endpoint at \/\/evil\.example/],
      ['CONNECT broker:443 HTTP/1.1\r\nHost: broker:443\r\n\r\n', /^HTTP\/1\.1 405 /, /"code":"method_not_allowed","message":"CONNECT is not supported: the broker is not a proxy"/],
      ['GET ?x=1 HTTP/1.1\r\nHost: b\r\n\r\n', /^HTTP\/1\.1 400 /, /"code":"bad_request","message":"malformed HTTP request \(HPE_INVALID_URL\)"/],
      ['BREW /v1/targets HTTP/1.1\r\nHost: b\r\n\r\n', /^HTTP\/1\.1 400 /, /malformed HTTP request \(HPE_INVALID_METHOD\)/],
      [`GET /v1/targets HTTP/1.1\r\nHost: b\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`, /^HTTP\/1\.1 431 /, /"code":"headers_too_large"/],
    ];
    for (const [text, status, body] of cases) {
      const answer = await raw(text);
      assert.match(answer, status, `${JSON.stringify(text.slice(0, 60))} answered ${JSON.stringify(answer.slice(0, 200))}`);
      assert.match(answer, body, `${JSON.stringify(text.slice(0, 60))} answered ${JSON.stringify(answer.slice(0, 300))}`);
    }
    // A HEAD's answer has no body, even when node could not parse the request.
    const head = await raw('HEAD ?x=1 HTTP/1.1\r\nHost: b\r\n\r\n');
    assert.match(head, /^HTTP\/1\.1 400 [^]*\r\n\r\n$/);
    assert.deepEqual(
      logged.filter((line) => /^internal error|^fault in/.test(line)),
      [],
    );
    assert.equal((await fetch(`${broker.url}/healthz`)).status, 200);
  });

  it('upgrades to the attach path with any id, ticket and Authorization are refused in words, or attach only with what a grant gives', async () => {
    const port = Number(new URL(broker.url).port);
    const grant = await broker.grant('dev', ['devs']);
    const attachPath = new URL(grant.attachUrl).pathname;
    const answers = new Map<string, number>();
    await checkProperty(
      fc.asyncProperty(
        fc.oneof(
          fc.constant(attachPath),
          uuidArb.map((id) => `/v1/attach/${encodeURIComponent(id)}`),
          pathArb,
        ),
        fc.option(fc.oneof(fc.string({ maxLength: 60 }), fc.uuid(), fc.constant('')), { nil: undefined }),
        authArb,
        async (path, ticket, auth) => {
          const authorization =
            auth.kind === 'real'
              ? `Bearer ${auth.index % 2 === 0 ? grant.token : tokens[auth.index % tokens.length]}`
              : auth.kind === 'mangled'
                ? `Bearer ${grant.token.slice(0, auth.at % grant.token.length)}A${grant.token.slice((auth.at % grant.token.length) + 1)}`
                : auth.kind === 'raw'
                  ? auth.value.replace(/[^\t\x20-\x7e\x80-\xff]/g, '?')
                  : undefined;
          const target = `${path}${ticket === undefined ? '' : `?ticket=${encodeURIComponent(ticket)}`}`;
          const text = `GET ${target} HTTP/1.1\r\nHost: b\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n${authorization === undefined ? '' : `Authorization: ${authorization}\r\n`}\r\n`;
          const answer = await new Promise<string>((resolve, reject) => {
            const socket = connect(port, '127.0.0.1');
            let got = '';
            const timer = setTimeout(() => (socket.destroy(), reject(new Error(`no answer to an upgrade at ${target} within 5 s (so far: ${JSON.stringify(got.slice(0, 100))})`))), 5000);
            socket.on('data', (chunk) => {
              got += String(chunk);
              // Attached: the session is real, so it is ended at once (the broker records it like any other).
              if (got.startsWith('HTTP/1.1 101')) socket.destroy();
            });
            socket.on('close', () => (clearTimeout(timer), resolve(got)));
            socket.on('error', () => undefined);
            socket.write(text);
          });
          const status = Number(/^HTTP\/1\.1 (\d{3}) /.exec(answer)?.[1]);
          answers.set(String(status), (answers.get(String(status)) ?? 0) + 1);
          const what = `upgrade at ${target} (auth ${auth.kind}) answered ${JSON.stringify(answer.slice(0, 300))}`;
          if (status === 101) {
            assert.equal(path, attachPath, `attached off the grant's own path: ${what}`);
            assert.equal(authorization, `Bearer ${grant.token}`, `attached without the grant's token: ${what}`);
            // One live session per grant: the next attach waits for this one's end to be seen.
            await waitFor(() => broker.broker.liveSessions.length <= 1, { what: 'the fuzz session to end', timeoutMs: 5000, intervalMs: 10 });
            return;
          }
          assert.ok([400, 401, 403, 404, 409].includes(status), `not a refusal: ${what}`);
          const body = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as { error?: { code?: unknown; message?: unknown } };
          assert.ok(typeof body.error?.code === 'string' && typeof body.error.message === 'string' && body.error.message.length > 0, `a refusal that does not say why: ${what}`);
        },
      ),
      { numRuns: Math.ceil(total / 3), seed, endOnFailure: true },
    );
    process.stdout.write(`# attach upgrade fuzz: answers ${JSON.stringify(Object.fromEntries(answers))}\n`);
    assert.deepEqual(
      logged.filter((line) => /^internal error|^fault in/.test(line)),
      [],
    );
  });

  it('every request is answered within its bound with a decision that says why; the broker, a live session and the target carry on', { timeout: 300_000 }, async () => {
    const statuses = new Map<number, number>();
    let sent = 0;
    const started = Date.now();
    await checkProperty(
      fc.asyncProperty(requestLineArb, queryArb, authArb, contentTypeArb, bodyArb, async ([method, path], query, auth, contentType, body) => {
        sent++;
        const headers: Record<string, string> = {};
        if (auth.kind === 'real') headers.authorization = `Bearer ${tokens[auth.index % tokens.length]}`;
        else if (auth.kind === 'mangled') {
          const token = tokens[auth.index % tokens.length]!;
          const at = auth.at % token.length;
          headers.authorization = `Bearer ${token.slice(0, at)}${token[at] === 'A' ? 'B' : 'A'}${token.slice(at + 1)}`;
        } else if (auth.kind === 'raw') {
          // A header value node:http would refuse to send (control characters) is sent as the rest of the class would be.
          headers.authorization = auth.value.replace(/[^\t\x20-\x7e\x80-\xff]/g, '?');
        }
        if (contentType !== undefined) headers['content-type'] = contentType;
        const search = query ? `?${new URLSearchParams(query).toString()}` : '';
        const payload = body.kind === 'text' ? Buffer.from(body.text) : body.kind === 'bytes' ? body.bytes : undefined;
        let answer: Answer;
        try {
          answer = await send(broker.url, method, `${path}${search}`, headers, method === 'GET' || method === 'HEAD' ? undefined : payload);
        } catch (err) {
          // Only an over-limit body may lose its answer to a reset while the client still writes it.
          const code = (err as NodeJS.ErrnoException).code;
          if ((code === 'EPIPE' || code === 'ECONNRESET') && payload && payload.length > 64 * 1024) return;
          throw err;
        }
        statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1);
        const what = `${method} ${path}${search} (auth ${auth.kind}) answered ${answer.status}: ${answer.body.slice(0, 300)}`;
        assert.ok(answer.status >= 200 && answer.status < 500 ? true : answer.status === 503, `an answer that is no decision: ${what}`);
        if (answer.status >= 400 && method !== 'HEAD') {
          assert.match(answer.contentType, /^application\/json/, `a refusal not in JSON: ${what}`);
          const parsed = JSON.parse(answer.body) as { error?: { code?: unknown; message?: unknown } };
          assert.equal(typeof parsed.error?.code, 'string', `a refusal without its code: ${what}`);
          assert.ok(typeof parsed.error?.message === 'string' && parsed.error.message.length > 0, `a refusal that does not say why: ${what}`);
        }
      }),
      { numRuns: total, seed, endOnFailure: true },
    );
    const seconds = (Date.now() - started) / 1000;
    process.stdout.write(`# HTTP API fuzz: ${sent} requests in ${seconds.toFixed(1)} s, seed ${seed}; answers ${JSON.stringify(Object.fromEntries([...statuses].sort((a, b) => a[0] - b[0])))}\n`);
    const faults = logged.filter((line) => /^internal error|^fault in/.test(line));
    assert.deepEqual(faults, [], 'no request reached an internal error or a fault');
    await assertAllWell(broker, victim, target, 1, logged);
    // The API still decides: a developer is granted, and attaches.
    const grant = await broker.grant('dev', ['devs']);
    const client = await CdpClient.connect(grant.attachUrl, { authorization: `Bearer ${grant.token}` });
    assert.equal((await client.call('Runtime.evaluate', { expression: '1 + 1', returnByValue: true })).result.value, 2);
    await client.close();
  });
});
