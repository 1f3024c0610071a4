import { strict as assert } from 'node:assert';
import { connect } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { decodeJwt, decodeProtectedHeader, jwtVerify } from 'jose';
import { grantAudience, grantIssuer } from '../../broker/grants/grantStore';
import { loadOrCreateSigningKey, signCompact } from '../../broker/identity/keys';
import { CdpClient } from '../support/cdpClient';
import { startTarget, type TargetProcess } from '../support/target';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';
import { within } from '../support/wait';

const dummyInspector = '127.0.0.1:9';
const ticketPattern = '^https://tickets\\.example\\.com/INC-\\d+$';
const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** app: devs may pause or snapshot for 10m; snap: devs may only snapshot; ticketed: devs need a ticket. */
function grantPolicy(inspector: string): Record<string, any> {
  const base = basePolicy(inspector);
  return {
    ...base,
    targets: {
      ...base.targets,
      snap: { inspector, owners: ['owner'], access: [{ role: 'dev', modes: ['snapshot'], maxDuration: '5m' }] },
      ticketed: { inspector, owners: ['owner'], access: [{ role: 'dev', modes: ['pause'], maxDuration: '5m', requireTicket: ticketPattern }] },
    },
  };
}

const request = (overrides: Record<string, unknown> = {}) => ({ target: 'app', mode: 'pause', durationSeconds: 300, reason: 'checkout 500s since deploy', ...overrides });

/** Attempts an attach and returns the refusal (status and JSON body); fails the test if it opens. */
async function attachRefused(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
  let client: CdpClient | undefined;
  try {
    client = await CdpClient.connect(url, headers);
  } catch (err) {
    const e = err as { status?: number; body?: string };
    assert.equal(typeof e.status, 'number', `attach failed without an HTTP refusal: ${String(err)}`);
    return { status: e.status!, body: JSON.parse(e.body!) };
  }
  await client.close();
  assert.fail(`attach to ${url} was accepted`);
}

const wsBase = (broker: TestBroker) => broker.url.replace(/^http/, 'ws');

describe('grants: POST /v1/grants', () => {
  let broker: TestBroker;
  let devToken: string;
  before(async () => {
    broker = await startTestBroker(grantPolicy(dummyInspector));
    devToken = await broker.token('dev', ['devs']);
  });
  after(async () => {
    await broker.close();
  });

  it('issues a signed EdDSA grant bound to user, target and mode', async () => {
    const before = Math.floor(Date.now() / 1000);
    const res = await broker.api('POST', '/v1/grants', devToken, request({ durationSeconds: 120 }));
    assert.equal(res.status, 201, JSON.stringify(res.body));
    const { grantId, token, expiresAt, attachUrl } = res.body;
    assert.match(grantId, uuid);
    assert.equal(res.body.capped, false);
    assert.equal(res.body.durationSeconds, 120);
    assert.equal(attachUrl, `${wsBase(broker)}/v1/attach/${grantId}`);

    assert.equal(decodeProtectedHeader(token).alg, 'EdDSA');
    const payload = decodeJwt(token);
    assert.equal(payload.jti, grantId);
    assert.equal(payload.sub, 'dev');
    assert.equal(payload.target, 'app');
    assert.equal(payload.mode, 'pause');
    assert.equal(payload.reason, 'checkout 500s since deploy');
    assert.equal(typeof payload.exp, 'number');
    assert.ok(payload.exp! >= before + 120 && payload.exp! <= before + 122, `exp ${payload.exp} is not now + 120s`);
    assert.equal(new Date(expiresAt).getTime(), payload.exp! * 1000);

    // The signature is the broker's grant key, not merely a well-formed header.
    const key = await loadOrCreateSigningKey(broker.stateDir, 'grant-key');
    const verified = await jwtVerify(token, key.publicKey, { issuer: grantIssuer, audience: grantAudience, algorithms: ['EdDSA'] });
    assert.equal(verified.payload.jti, grantId);
  });

  it('caps the duration at the rule maxDuration', async () => {
    const res = await broker.api('POST', '/v1/grants', devToken, request({ durationSeconds: 3600 }));
    assert.equal(res.status, 201);
    assert.equal(res.body.capped, true);
    assert.equal(res.body.durationSeconds, 600);
    const payload = decodeJwt(res.body.token);
    assert.equal(payload.exp! - payload.iat!, 600);
  });

  it('requires a reason', async () => {
    for (const reason of [undefined, '', '   \n\t']) {
      const res = await broker.api('POST', '/v1/grants', devToken, request({ reason }));
      assert.equal(res.status, 400, `reason ${JSON.stringify(reason)}`);
      assert.equal(res.body.error.code, 'bad_request');
      assert.match(res.body.error.message, /reason: required/);
    }
    // Present but not text: said as such, not as missing.
    for (const [reason, kind] of [
      [42, 'number'],
      [['why'], 'an array'],
      [{ text: 'why' }, 'object'],
      [true, 'boolean'],
    ] as const) {
      const res = await broker.api('POST', '/v1/grants', devToken, request({ reason }));
      assert.equal(res.status, 400);
      assert.match(res.body.error.message, new RegExp(`reason: expected a string \\(say why you need to debug production\\), not ${kind}`));
    }
  });

  it('refuses control characters and bidi overrides in the reason, the ticket and the target, which reach logs, terminals and reports', async () => {
    const cases: Record<string, unknown>[] = [
      // A forged row in `loupe audit list`, an erased line on an auditor's terminal, a reason that reads backwards.
      { reason: 'routine check\n8c1e…  2026-11-30T07:00:00Z  app  alice  pause  ended: expired  approved change' },
      { reason: 'routine check\r\u001b[2K\u001b[1Aharmless' },
      { reason: 'routine check \u202edaolyap eht gnidaer' },
      { reason: 'routine\u0000check' },
      { ticket: 'PAY-1\r\nX-Injected: 1' },
      { target: 'app\u001b[0m' },
      // Invisible characters hide text from the reader of a list: a zero-width space, a soft hyphen, a byte order
      // mark, a right-to-left mark.
      { reason: 'routine\u200bcheck' },
      { reason: 'rou\u00adtine check' },
      { ticket: '\ufeffPAY-1' },
      { reason: 'routine check \u200f' },
    ];
    for (const fields of cases) {
      const res = await broker.api('POST', '/v1/grants', devToken, request(fields));
      assert.equal(res.status, 400, JSON.stringify(fields));
      assert.equal(res.body.error.code, 'bad_request');
      const field = Object.keys(fields)[0]!;
      assert.match(
        res.body.error.message,
        new RegExp(`${field}: contains control characters \\(line breaks, tabs, escapes\\), bidirectional overrides or marks, or invisible characters`),
        JSON.stringify(fields),
      );
    }
    // Text in any script, punctuation and emoji are plain text.
    const plain = await broker.api(
      'POST',
      '/v1/grants',
      devToken,
      request({ reason: 'Bestellungen schlagen fehl — 注文 500 · ticket “PAY-9” 🔥 · می‌خواهم · 👩‍💻', ticket: 'https://jira.example.com/browse/PAY-9?x=1&y=2' }),
    );
    assert.equal(plain.status, 201, JSON.stringify(plain.body));
    // A target name is bounded like any other field.
    const long = await broker.api('POST', '/v1/grants', devToken, request({ target: 'a'.repeat(60_000) }));
    assert.equal(long.status, 400);
    assert.match(long.body.error.message, /target: expected a target name \(at most 200 characters\)/);
  });

  it('refuses unknown fields', async () => {
    const res = await broker.api('POST', '/v1/grants', devToken, request({ role: 'admin', approvedBy: 'self' }));
    assert.equal(res.status, 400);
    assert.equal(res.body.error.code, 'bad_request');
    assert.match(res.body.error.message, /unknown field\(s\): role, approvedBy/);
  });

  it('reports every problem of a bad request together', async () => {
    const res = await broker.api('POST', '/v1/grants', devToken, { target: '', mode: 'godmode', durationSeconds: -5 });
    assert.equal(res.status, 400);
    assert.equal(res.body.error.problems.length, 4, JSON.stringify(res.body.error.problems));
    for (const field of ['target', 'mode', 'durationSeconds', 'reason']) assert.match(res.body.error.message, new RegExp(`${field}:`));
  });

  it('refuses a malformed JSON body with a clear message', async () => {
    const res = await broker.api('POST', '/v1/grants', devToken, '{"target": "app", "mode":');
    assert.equal(res.status, 400);
    assert.equal(res.body.error.code, 'bad_request');
    assert.match(res.body.error.message, /^malformed JSON body: /);
  });

  it('refuses a body that is not a JSON object', async () => {
    const res = await broker.api('POST', '/v1/grants', devToken, '["app"]');
    assert.equal(res.status, 400);
    assert.match(res.body.error.message, /expected a JSON object/);
  });

  it('refuses a body that is not declared as JSON', async () => {
    const res = await fetch(`${broker.url}/v1/grants`, {
      method: 'POST',
      headers: { authorization: `Bearer ${devToken}`, 'content-type': 'text/plain' },
      body: JSON.stringify(request()),
    });
    assert.equal(res.status, 400);
    const body = (await res.json()) as any;
    assert.equal(body.error.code, 'bad_request');
    assert.match(body.error.message, /expected Content-Type: application\/json/);
  });

  it('refuses a mode the rule does not allow, naming the rule', async () => {
    const res = await broker.api('POST', '/v1/grants', devToken, request({ target: 'snap', mode: 'pause' }));
    assert.equal(res.status, 403);
    assert.equal(res.body.error.code, 'policy_refused');
    assert.equal(res.body.error.rule, 'targets.snap.access[0] (role dev)');
    assert.match(res.body.error.message, /mode "pause" is not allowed \(allowed: snapshot\)/);
    const allowed = await broker.api('POST', '/v1/grants', devToken, request({ target: 'snap', mode: 'snapshot' }));
    assert.equal(allowed.status, 201);
  });

  it('refuses a user with no role on the target', async () => {
    const res = await broker.api('POST', '/v1/grants', await broker.token('eve', ['marketing']), request());
    assert.equal(res.status, 403);
    assert.equal(res.body.error.code, 'policy_refused');
    assert.equal(res.body.error.rule, 'targets.app.access');
    assert.match(res.body.error.message, /may attach to app/);
  });

  it('refuses an owner who has no access rule', async () => {
    const res = await broker.api('POST', '/v1/grants', await broker.token('olga', ['owners']), request());
    assert.equal(res.status, 403);
    assert.equal(res.body.error.rule, 'targets.app.access');
  });

  it('answers a body over 64 KB with 413 and closes the connection, and the next request is served', async () => {
    const res = await fetch(`${broker.url}/v1/grants`, {
      method: 'POST',
      headers: { authorization: `Bearer ${devToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ target: 'app', mode: 'pause', durationSeconds: 300, reason: 'x'.repeat(1 << 20) }),
    });
    assert.equal(res.status, 413);
    const body = (await res.json()) as any;
    assert.equal(body.error.code, 'payload_too_large');
    assert.match(body.error.message, /request body over 65536 bytes/);
    assert.equal((await broker.api('POST', '/v1/grants', devToken, request({ target: 'billing' }))).status, 403);
  });

  it('a request trickled one byte a second is answered 408 and closed: headers within 10 s, the whole request within 30 s', async () => {
    const { port } = new URL(broker.url);
    // Resolves with the status line the broker answered and how long the connection lived.
    const trickle = (start: string) =>
      new Promise<{ status: string; ms: number }>((resolve, reject) => {
        const started = Date.now();
        const socket = connect(Number(port), '127.0.0.1');
        let answer = '';
        const drip = setInterval(() => socket.writable && socket.write('a'), 1000);
        socket.on('data', (chunk) => (answer += String(chunk)));
        socket.on('error', () => undefined);
        socket.on('close', () => {
          clearInterval(drip);
          resolve({ status: answer.split('\r\n')[0]!, ms: Date.now() - started });
        });
        socket.write(start);
        setTimeout(() => {
          clearInterval(drip);
          socket.destroy();
          reject(new Error(`still open after 45 s (answer so far: ${JSON.stringify(answer.slice(0, 80))})`));
        }, 45_000).unref();
      });
    const [headers, body] = await Promise.all([
      trickle('GET /v1/targets HTTP/1.1\r\nHost: broker\r\nX-Slow: '),
      trickle(`POST /v1/grants HTTP/1.1\r\nHost: broker\r\nAuthorization: Bearer ${devToken}\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n\r\n{"reason":"`),
    ]);
    assert.equal(headers.status, 'HTTP/1.1 408 Request Timeout');
    assert.ok(headers.ms >= 9_000 && headers.ms < 13_000, `slow headers closed after ${headers.ms} ms (Node's default: 90 s)`);
    assert.equal(body.status, 'HTTP/1.1 408 Request Timeout');
    assert.ok(body.ms >= 29_000 && body.ms < 33_000, `slow body closed after ${body.ms} ms (Node's default: 300 s)`);
    assert.equal((await broker.api('GET', '/v1/targets', devToken)).status, 200);
  });

  it('refuses an unknown target', async () => {
    const res = await broker.api('POST', '/v1/grants', devToken, request({ target: 'billing' }));
    assert.equal(res.status, 403);
    assert.equal(res.body.error.code, 'policy_refused');
    assert.equal(res.body.error.rule, 'targets');
    assert.match(res.body.error.message, /no target named "billing"/);
    // Names every object has are no targets either (before: 500 from the prototype's member).
    for (const target of ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf']) {
      const named = await broker.api('POST', '/v1/grants', devToken, request({ target }));
      assert.equal(named.status, 403, `${target}: ${JSON.stringify(named.body)}`);
      assert.match(named.body.error.message, /no target named/);
    }
  });

  it('enforces requireTicket: missing and bad tickets refused, a matching one granted', async () => {
    const missing = await broker.api('POST', '/v1/grants', devToken, request({ target: 'ticketed' }));
    assert.equal(missing.status, 403);
    assert.equal(missing.body.error.rule, 'targets.ticketed.access[0] (role dev)');
    assert.match(missing.body.error.message, /a ticket matching .* is required/);

    for (const ticket of ['INC-12', 'https://tickets.example.com/INC-12 and more', 'https://tickets.evil.com/INC-12']) {
      const bad = await broker.api('POST', '/v1/grants', devToken, request({ target: 'ticketed', ticket }));
      assert.equal(bad.status, 403, `ticket ${ticket}`);
      assert.match(bad.body.error.message, /does not match/);
    }

    const good = await broker.api('POST', '/v1/grants', devToken, request({ target: 'ticketed', ticket: 'https://tickets.example.com/INC-4711' }));
    assert.equal(good.status, 201, JSON.stringify(good.body));
    assert.equal(decodeJwt(good.body.token).ticket, 'https://tickets.example.com/INC-4711');
  });

  it('refuses a grant request without identity', async () => {
    const res = await broker.api('POST', '/v1/grants', undefined, request());
    assert.equal(res.status, 401);
  });
});

describe('grants: DELETE /v1/grants/:id', () => {
  let broker: TestBroker;
  before(async () => {
    broker = await startTestBroker(grantPolicy(dummyInspector));
  });
  after(async () => {
    await broker.close();
  });

  it('another developer may not revoke', async () => {
    const grant = await broker.grant('dev', ['devs']);
    const res = await broker.api('DELETE', `/v1/grants/${grant.grantId}`, await broker.token('dev2', ['devs']));
    assert.equal(res.status, 403);
    assert.equal(res.body.error.code, 'forbidden');
    assert.match(res.body.error.message, /only the grant's holder, an owner of the target or an admin may revoke/);
    // and the grant is still usable afterwards: a ticket can be opened for it
    const ticket = await broker.api('POST', `/v1/grants/${grant.grantId}/tickets`, await broker.token('dev', ['devs']));
    assert.equal(ticket.status, 201);
  });

  for (const [who, sub, groups] of [
    ['the holder', 'dev', ['devs']],
    ['an owner of the target', 'olga', ['owners']],
    ['an admin', 'ada', ['admins']],
  ] as const) {
    it(`${who} may revoke`, async () => {
      const grant = await broker.grant('dev', ['devs']);
      const res = await broker.api('DELETE', `/v1/grants/${grant.grantId}`, await broker.token(sub, [...groups]));
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(res.body.grantId, grant.grantId);
      assert.equal(res.body.revokedBy, sub);
      assert.ok(Math.abs(new Date(res.body.revokedAt).getTime() - Date.now()) < 5000);
      // A revoked grant cannot be turned into an attach ticket.
      const ticket = await broker.api('POST', `/v1/grants/${grant.grantId}/tickets`, await broker.token('dev', ['devs']));
      assert.equal(ticket.status, 403);
      assert.equal(ticket.body.error.code, 'grant_revoked');
      assert.match(ticket.body.error.message, new RegExp(`revoked by ${sub}`));
    });
  }

  it('an unknown grant id is 404', async () => {
    const res = await broker.api('DELETE', '/v1/grants/00000000-0000-4000-8000-000000000000', await broker.token('ada', ['admins']));
    assert.equal(res.status, 404);
    assert.equal(res.body.error.code, 'not_found');
  });
});

describe('grants: attach authentication against a real target', () => {
  let target: TargetProcess;
  let broker: TestBroker;
  const stateDir = mkdtempSync(join(tmpdir(), 'loupe-grants-'));
  const restartBrokers: TestBroker[] = [];
  const clients: CdpClient[] = [];

  /** How far the broker's clock runs ahead of the wall clock (expiry is checked on it, not waited for). */
  let skewMs = 0;
  before(async () => {
    target = await startTarget();
    broker = await startTestBroker(grantPolicy(target.inspector), { clock: () => Date.now() + skewMs });
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    for (const b of restartBrokers) await b.close().catch(() => undefined); // closed in the test unless it failed early
    await broker.close();
    await target.stop();
    rmSync(stateDir, { recursive: true, force: true });
  });

  const connect = async (url: string, headers: Record<string, string> = {}) => {
    const client = await CdpClient.connect(url, headers);
    clients.push(client);
    return client;
  };

  it('a grant token attaches and the session is live', async () => {
    const grant = await broker.grant('dev', ['devs']);
    const client = await connect(grant.attachUrl, { authorization: `Bearer ${grant.token}` });
    const result = await client.call('Runtime.evaluate', { expression: '1 + 1', returnByValue: true });
    assert.equal(result.result.value, 2);
    await client.close();
  });

  it('attach without credentials is 401', async () => {
    const grant = await broker.grant('dev', ['devs']);
    const refused = await attachRefused(grant.attachUrl);
    assert.equal(refused.status, 401);
    assert.equal(refused.body.error.code, 'unauthenticated');
  });

  it('an identity token is not a grant token', async () => {
    const grant = await broker.grant('dev', ['devs']);
    const refused = await attachRefused(grant.attachUrl, { authorization: `Bearer ${await broker.token('dev', ['devs'])}` });
    assert.equal(refused.status, 401);
    assert.equal(refused.body.error.code, 'token_invalid');
  });

  it("a token signed with the broker's own grant key is still held to a grant token's claims", async () => {
    const grant = await broker.grant('dev', ['devs']);
    const key = await loadOrCreateSigningKey(broker.stateDir, 'grant-key');
    const claims = decodeJwt(grant.token);
    const resigned = (payload: Record<string, unknown>, header: Record<string, unknown> = {}) => signCompact(key, { typ: 'JWT', ...header }, JSON.stringify({ ...claims, ...payload }));
    const refusals: [string, RegExp][] = [
      [resigned({ aud: 'urn:loupe:elsewhere' }), /grant token has the wrong audience/],
      [resigned({ iss: 'urn:loupe:dev-issuer' }), /grant token has the wrong issuer/],
      [resigned({ exp: Math.floor(Date.now() / 1000) - 1 }), /grant token has expired/],
      [resigned({ nbf: Math.floor(Date.now() / 1000) + 600 }), /grant token is not yet valid/],
      [resigned({ sub: undefined }), /grant token failed the "sub" check/],
      [resigned({}, { crit: ['exp'] }), /grant token is not a valid JWT/],
    ];
    for (const [token, message] of refusals) {
      const refused = await attachRefused(grant.attachUrl, { authorization: `Bearer ${token}` });
      assert.equal(refused.status, 401, String(message));
      assert.match(refused.body.error.message, message);
    }
    // The same claims, signed the same way, attach: the refusals above are the claims', not the signing's.
    const client = await connect(grant.attachUrl, { authorization: `Bearer ${resigned({})}` });
    await client.close();
  });

  it('a grant token only opens its own grant', async () => {
    const mine = await broker.grant('dev', ['devs']);
    const theirs = await broker.grant('dev2', ['devs']);
    const refused = await attachRefused(theirs.attachUrl, { authorization: `Bearer ${mine.token}` });
    assert.equal(refused.status, 401);
    assert.match(refused.body.error.message, /does not match this grant/);
  });

  it('a revoked grant cannot attach', async () => {
    const grant = await broker.grant('dev', ['devs']);
    const res = await broker.api('DELETE', `/v1/grants/${grant.grantId}`, await broker.token('dev', ['devs']));
    assert.equal(res.status, 200);
    const refused = await attachRefused(grant.attachUrl, { authorization: `Bearer ${grant.token}` });
    assert.equal(refused.status, 403);
    assert.equal(refused.body.error.code, 'grant_revoked');
  });

  it('revoking a grant ends its live session', async () => {
    const grant = await broker.grant('dev', ['devs']);
    const client = await connect(grant.attachUrl, { authorization: `Bearer ${grant.token}` });
    await client.call('Runtime.evaluate', { expression: '1' });
    const res = await broker.api('DELETE', `/v1/grants/${grant.grantId}`, await broker.token('olga', ['owners']));
    assert.equal(res.status, 200);
    const closed = await within(client.closed, 2000, null);
    assert.ok(closed, 'session still open 2s after revocation');
    assert.equal(closed.code, 4002);
  });

  it('revocation survives a broker restart', async () => {
    const first = await startTestBroker(grantPolicy(target.inspector), { stateDir });
    restartBrokers.push(first);
    const revoked = await first.grant('dev', ['devs']);
    const kept = await first.grant('dev', ['devs']);
    assert.equal((await first.api('DELETE', `/v1/grants/${revoked.grantId}`, await first.token('dev', ['devs']))).status, 200);
    await first.close();

    const second = await startTestBroker(grantPolicy(target.inspector), { stateDir });
    restartBrokers.push(second);
    // The unrevoked grant from before the restart still attaches: the refusal below is the revocation, not a new key.
    const client = await connect(`${wsBase(second)}/v1/attach/${kept.grantId}`, { authorization: `Bearer ${kept.token}` });
    await client.close();
    const refused = await attachRefused(`${wsBase(second)}/v1/attach/${revoked.grantId}`, { authorization: `Bearer ${revoked.token}` });
    assert.equal(refused.status, 403);
    assert.equal(refused.body.error.code, 'grant_revoked');
    await second.close();
  });

  it('an attach ticket opens one session, once', async () => {
    const grant = await broker.grant('dev', ['devs']);
    const res = await broker.api('POST', `/v1/grants/${grant.grantId}/tickets`, await broker.token('dev', ['devs']));
    assert.equal(res.status, 201, JSON.stringify(res.body));
    assert.ok(res.body.attachUrl.startsWith(`${grant.attachUrl}?ticket=`));
    assert.ok(new Date(res.body.expiresAt).getTime() > Date.now());
    const client = await connect(res.body.attachUrl);
    assert.equal((await client.call('Runtime.evaluate', { expression: '6 * 7', returnByValue: true })).result.value, 42);
    await client.close();
    const again = await attachRefused(res.body.attachUrl);
    assert.equal(again.status, 401);
    assert.equal(again.body.error.code, 'token_invalid');
    assert.match(again.body.error.message, /ticket is unknown, used or expired/);
  });

  it('a ticket is bound to its grant', async () => {
    const a = await broker.grant('dev', ['devs']);
    const b = await broker.grant('dev', ['devs']);
    const res = await broker.api('POST', `/v1/grants/${a.grantId}/tickets`, await broker.token('dev', ['devs']));
    const refused = await attachRefused(`${b.attachUrl}?ticket=${res.body.ticket}`);
    assert.equal(refused.status, 401);
  });

  it('only the holder may open a ticket', async () => {
    const grant = await broker.grant('dev', ['devs']);
    for (const [sub, groups] of [
      ['dev2', ['devs']],
      ['ada', ['admins']],
      ['olga', ['owners']],
    ] as const) {
      const res = await broker.api('POST', `/v1/grants/${grant.grantId}/tickets`, await broker.token(sub, [...groups]));
      assert.equal(res.status, 403, `${sub} opened a ticket`);
      assert.equal(res.body.error.code, 'forbidden');
    }
  });

  it('a second concurrent attach with the same grant is 409', async () => {
    const grant = await broker.grant('dev', ['devs']);
    const first = await connect(grant.attachUrl, { authorization: `Bearer ${grant.token}` });
    const refused = await attachRefused(grant.attachUrl, { authorization: `Bearer ${grant.token}` });
    assert.equal(refused.status, 409);
    assert.equal(refused.body.error.code, 'session_busy');
    // The first session is untouched by the refused second one.
    assert.equal((await first.call('Runtime.evaluate', { expression: '"still here"', returnByValue: true })).result.value, 'still here');
    await first.close();
  });

  it('an expired grant cannot attach', async () => {
    const grant = await broker.grant('dev', ['devs'], { durationSeconds: 1 });
    const expiresAt = new Date(grant.expiresAt).getTime();
    skewMs = expiresAt - Date.now() + 200;
    try {
      const refused = await attachRefused(grant.attachUrl, { authorization: `Bearer ${grant.token}` });
      assert.ok(refused.status === 401 || refused.status === 403, `status ${refused.status}`);
      assert.match(refused.body.error.code, /^(token|grant)_expired$/);
      assert.match(refused.body.error.message, /expired/);
      const ticket = await broker.api('POST', `/v1/grants/${grant.grantId}/tickets`, await broker.token('dev', ['devs']));
      assert.equal(ticket.status, 403);
      assert.equal(ticket.body.error.code, 'grant_expired');
    } finally {
      skewMs = 0;
    }
  });
});
