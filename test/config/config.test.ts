import { strict as assert } from 'node:assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { decodeJwt, exportSPKI, generateKeyPair } from 'jose';
import { loadConfig, maxPolicyBytes, parseConfigText, validateConfig } from '../../broker/config/load';
import { LoupeError } from '../../broker/errors';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';
import { brokerUrl } from '../support/brokerProcess';
import { ensureBuilt } from '../support/built';

const root = join(__dirname, '..', '..');
const cli = join(root, 'dist', 'cli.js');

const goodYaml = `
server:
  host: 127.0.0.1
  port: 0
roles:
  dev: { groups: [payments-dev] }
  owner: { groups: [payments-owners] }
admins: [owner]
targets:
  checkout:
    inspector: 127.0.0.1:9229
    owners: [owner]
    access:
      - role: dev
        modes: [snapshot, pause]
        maxDuration: 30m
        requireTicket: '^JIRA-\\d+$'
`;

/** Runs the parser and returns the config_invalid error it must throw. */
function invalid(text: string, env: NodeJS.ProcessEnv = {}, problemsInMessage = true): { error: LoupeError; problems: string[] } {
  try {
    parseConfigText(text, tmpdir(), 'policy.yaml', env);
  } catch (err) {
    assert.ok(err instanceof LoupeError, `expected a LoupeError, got ${String(err)}`);
    assert.equal(err.code, 'config_invalid');
    const problems = err.details?.problems as string[];
    assert.ok(Array.isArray(problems) && problems.length > 0, 'details.problems lists the problems');
    // Every problem appears in the message too, so a log line or CLI output shows them all.
    if (problemsInMessage) for (const p of problems) assert.ok(err.message.includes(p), `message lacks "${p}":\n${err.message}`);
    return { error: err, problems };
  }
  assert.fail('config was accepted');
}

/** goodYaml with one line replaced (a small, readable way to break exactly one thing). */
const withLine = (from: string, to: string) => {
  assert.ok(goodYaml.includes(from), `fixture lacks ${from}`);
  return goodYaml.replace(from, () => to); // a function, so "$'" in `to` is not a replacement pattern
};

const hasProblem = (problems: string[], expected: string | RegExp) =>
  assert.ok(
    problems.some((p) => (typeof expected === 'string' ? p === expected : expected.test(p))),
    `no problem ${expected} in:\n  ${problems.join('\n  ')}`,
  );

describe('config: validation reports each problem with its path', () => {
  it('accepts the good fixture (control)', () => {
    const config = parseConfigText(goodYaml, tmpdir(), 'policy.yaml', {});
    const rule = config.targets.checkout!.access[0]!;
    assert.equal(rule.maxDurationSeconds, 1800);
    assert.deepEqual([...rule.modes], ['snapshot', 'pause']);
    assert.ok(rule.requireTicket!.test('JIRA-12'));
    assert.ok(Object.isFrozen(config) && Object.isFrozen(config.targets.checkout), 'config is frozen');
  });

  it('bad maxDuration', () => {
    for (const bad of ['thirty minutes', '0s', '30', '-5m', '1x']) {
      const { problems } = invalid(withLine('maxDuration: 30m', `maxDuration: "${bad}"`));
      assert.deepEqual(problems, ['targets.checkout.access[0].maxDuration: expected a duration like "30m"'], `maxDuration ${bad}`);
    }
    const { problems } = invalid(withLine('maxDuration: 30m', 'maxDuration: 1800'));
    assert.deepEqual(problems, ['targets.checkout.access[0].maxDuration: expected a duration like "30m"']);
  });

  it('durations are at most 366 days, so the times computed from them stay dates', () => {
    // A maxDuration of 10^9 days answered grant requests 500 internal, after storing a grant no record named.
    hasProblem(invalid(withLine('maxDuration: 30m', 'maxDuration: 999999999d')).problems, 'targets.checkout.access[0].maxDuration: expected a duration like "30m", at most 366d');
    hasProblem(invalid(withLine('maxDuration: 30m', 'maxDuration: 367d')).problems, 'targets.checkout.access[0].maxDuration: expected a duration like "30m", at most 366d');
    assert.equal(parseConfigText(withLine('maxDuration: 30m', 'maxDuration: 366d'), tmpdir()).targets.checkout!.access[0]!.maxDurationSeconds, 366 * 86400);
  });

  it('unknown keys, at the top level and nested', () => {
    const { problems } = invalid(withLine('targets:\n', 'tragets: {}\ntargets:\n').replace('inspector: 127.0.0.1:9229', 'inspector: 127.0.0.1:9229\n    inspectr: x'));
    hasProblem(problems, /^tragets: unknown key \(expected one of: .*targets/);
    hasProblem(problems, /^targets\.checkout\.inspectr: unknown key \(expected one of: inspector, /);
    assert.equal(problems.length, 2);
  });

  it('a key that is not a plain name is quoted in the path, so the path cannot blur into the message', () => {
    const { problems } = invalid(withLine('targets:\n', '": ": {}\n"a.b": 1\ntargets:\n'));
    hasProblem(problems, /^": ": unknown key \(expected one of: /);
    hasProblem(problems, /^"a\.b": unknown key \(expected one of: /);
  });

  it('limits.targetResponseSeconds and maxTargetFrameBytes: defaults, ranges, longer than an evaluation may take', () => {
    const config = parseConfigText(goodYaml, tmpdir(), 'policy.yaml', {});
    assert.equal(config.limits.targetResponseSeconds, 10);
    assert.equal(config.limits.maxTargetFrameBytes, 2 << 20);
    const short = invalid(`limits:\n  evaluateTimeoutMs: 5000\n  targetResponseSeconds: 5\n${goodYaml}`);
    assert.deepEqual(short.problems, ['limits.targetResponseSeconds: must be longer than limits.evaluateTimeoutMs (5000 ms): an evaluation may take that long to answer']);
    const range = invalid(`limits:\n  targetResponseSeconds: 0\n  maxTargetFrameBytes: 1000\n${goodYaml}`);
    assert.deepEqual(range.problems, ['limits.targetResponseSeconds: expected an integer from 1 to 600', 'limits.maxTargetFrameBytes: expected an integer from 65536 to 268435456']);
  });

  it('unknown role in owners', () => {
    const { problems } = invalid(withLine('owners: [owner]', 'owners: [owner, ghost]'));
    assert.deepEqual(problems, ['targets.checkout.owners[1]: unknown role "ghost" (defined roles: dev, owner)']);
  });

  it('unknown role in access.role', () => {
    const { problems } = invalid(withLine('- role: dev', '- role: devs'));
    assert.deepEqual(problems, ['targets.checkout.access[0].role: unknown role "devs" (defined roles: dev, owner)']);
  });

  it('unknown role in admins', () => {
    const { problems } = invalid(withLine('admins: [owner]', 'admins: [root]'));
    assert.deepEqual(problems, ['admins[0]: unknown role "root" (defined roles: dev, owner)']);
  });

  it('bad mode', () => {
    const { problems } = invalid(withLine('modes: [snapshot, pause]', 'modes: [snapshot, god]'));
    assert.deepEqual(problems, ['targets.checkout.access[0].modes[1]: expected one of: pause, snapshot']);
  });

  it('bad regular expression in requireTicket', () => {
    const { problems } = invalid(withLine(`requireTicket: '^JIRA-\\d+$'`, `requireTicket: '^JIRA-(\\d+$'`));
    assert.equal(problems.length, 1);
    assert.match(problems[0]!, /^targets\.checkout\.access\[0\]\.requireTicket: invalid regular expression: /);
  });

  it('bad inspector address', () => {
    for (const bad of ['localhost', 'http://127.0.0.1:9229', '127.0.0.1:9229/path', 'host name:9229']) {
      const { problems } = invalid(withLine('inspector: 127.0.0.1:9229', `inspector: "${bad}"`));
      assert.deepEqual(problems, ['targets.checkout.inspector: expected "host:port" or a ws:// URL'], `inspector ${bad}`);
    }
    for (const good of ['[::1]:9229', 'ws://10.0.0.4:9229/abc', 'app.prod.svc:9229']) {
      parseConfigText(withLine('inspector: 127.0.0.1:9229', `inspector: "${good}"`), tmpdir(), 'policy.yaml', {});
    }
  });

  it('HMAC and "none" algorithms in an issuer', async () => {
    const { publicKey } = await generateKeyPair('RS256', { extractable: true });
    const pem = await exportSPKI(publicKey);
    const issuer = { issuer: 'https://idp.example', publicKey: pem, algorithms: ['RS256', 'HS256', 'none'] };
    try {
      validateConfig(basePolicy('127.0.0.1:9', { identity: { issuers: [issuer] } }), tmpdir());
      assert.fail('HMAC algorithm accepted');
    } catch (err) {
      assert.ok(err instanceof LoupeError);
      const problems = err.details!.problems as string[];
      assert.deepEqual(problems, [
        'identity.issuers[0].algorithms[1]: "HS256" is not an asymmetric JWS algorithm (allowed: RS*, PS*, ES*, EdDSA)',
        'identity.issuers[0].algorithms[2]: "none" is not an asymmetric JWS algorithm (allowed: RS*, PS*, ES*, EdDSA)',
      ]);
    }
    // and the same issuer with only RS256 is fine
    validateConfig(basePolicy('127.0.0.1:9', { identity: { issuers: [{ ...issuer, algorithms: ['RS256'] }] } }), tmpdir());
  });

  it('an issuer public key that is not a key is reported at load, not at broker start', () => {
    const issuer = { issuer: 'https://idp.example', publicKey: '-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n', algorithms: ['RS256'] };
    try {
      validateConfig(basePolicy('127.0.0.1:9', { identity: { issuers: [issuer] } }), tmpdir());
    } catch (err) {
      assert.ok(err instanceof LoupeError);
      hasProblem(err.details!.problems as string[], /^identity\.issuers\[0\]\.publicKey: /);
      return;
    }
    assert.fail('a PEM block that holds no key was accepted; the broker would only fail when it starts, with no path');
  });

  it('missing targets', () => {
    for (const text of ['roles: { dev: { groups: [g] } }\n', 'roles: { dev: { groups: [g] } }\ntargets: {}\n', 'roles: { dev: { groups: [g] } }\ntargets:\n']) {
      const { problems } = invalid(text);
      assert.deepEqual(problems, ['targets: at least one target is required']);
    }
  });

  it('top level that is not a mapping', () => {
    const { error, problems } = invalid('- just\n- a list\n', {}, false);
    assert.deepEqual(problems, ['(root): expected a mapping']);
    assert.match(error.message, /expected a YAML mapping at the top level/);
  });

  it('YAML syntax error', () => {
    const { error, problems } = invalid('targets:\n  checkout: {inspector: 127.0.0.1:9229\n  owners: [a\n');
    assert.ok(
      problems.every((p) => p.startsWith('policy.yaml: ')),
      problems.join('\n'),
    );
    assert.match(error.message, /^invalid config:/);
  });

  it('duplicate keys are a syntax error, not a silent override', () => {
    const { problems } = invalid(withLine('    inspector: 127.0.0.1:9229', '    inspector: 127.0.0.1:9229\n    inspector: 10.0.0.1:9229'));
    assert.ok(
      problems.some((p) => p.startsWith('policy.yaml: ') && /unique|duplicate/i.test(p)),
      problems.join('\n'),
    );
  });

  it('a "__proto__" key is refused, saying where, not dropped without a word', () => {
    // Turned into objects, such a key sets a prototype instead of a property: the validation would never see it.
    for (const yaml of [`${goodYaml}  __proto__: { inspector: 10.0.0.1:9229 }\n`, `__proto__: { admins: [mallory] }\n${goodYaml}`]) {
      hasProblem(invalid(yaml).problems, /policy\.yaml: "__proto__" is not a key Loupe reads \(line \d+, column \d+\): it would be dropped without effect; remove it/);
    }
  });

  it('a duplicate key says which key and where, also in a mapping of thousands of keys', () => {
    const { problems } = invalid(withLine('    inspector: 127.0.0.1:9229', '    inspector: 127.0.0.1:9229\n    inspector: 10.0.0.1:9229'));
    hasProblem(problems, 'policy.yaml: Map keys must be unique; "inspector" is repeated at line 12, column 5');
    // Keys that become one property (1 and "1") override each other just the same.
    hasProblem(invalid(`${goodYaml}alerting: { webhooks: [], x: 1, "x": 2 }\n`).problems, /"x" is repeated at line \d+, column \d+/);
    // yaml's own check compares each key with every earlier one (7 s for 24,000 keys here); this one reads each once.
    const many = `${goodYaml}  ${Array.from({ length: 20_000 }, (_, i) => `t${i}: 1`).join('\n  ')}\n  t7: 2\n`;
    const started = performance.now();
    hasProblem(invalid(many).problems, /"t7" is repeated at line 20018, column 3/);
    assert.ok(performance.now() - started < 5000, `took ${Math.round(performance.now() - started)} ms`);
  });

  it('a policy over 512 KiB is refused by its size, before it is parsed; from a file, no more than that is read', () => {
    const huge = `${goodYaml}# ${'x'.repeat(maxPolicyBytes)}\n`;
    const { problems } = invalid(huge);
    assert.deepEqual(problems, [`policy.yaml: the policy file is ${Buffer.byteLength(huge)} bytes; at most 524288 bytes (512 KiB) are read (split rarely used targets out, or shorten it)`]);
    const dir = mkdtempSync(join(tmpdir(), 'loupe-policy-'));
    try {
      const file = join(dir, 'policy.yaml');
      writeFileSync(file, huge);
      assert.throws(
        () => loadConfig(file),
        (err: LoupeError) => err.code === 'config_invalid' && /the policy file is \d+ bytes; at most 524288 bytes/.test(err.message),
      );
      writeFileSync(file, goodYaml);
      assert.equal(Object.keys(loadConfig(file).targets).join(), 'checkout');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a policy with thousands of mistakes is refused at once, listing the first 500 and how many more', () => {
    // 5,000 broken targets (424 KB): each problem used to be ranked by searching every target name (20 s here).
    const targets = Array.from({ length: 5000 }, (_, i) => `  t${i}: {inspector: 'x', owners: [nobody], access: [{role: nobody, maxDuration: zz}]}`).join('\n');
    const started = performance.now();
    const { error, problems } = invalid(`${goodYaml}${targets}\n`, {}, false);
    const took = performance.now() - started;
    assert.equal(problems.length, 501);
    assert.match(problems[500]!, /^… and \d+ more problem\(s\)$/);
    assert.equal(problems[0], 'targets.t0.inspector: expected "host:port" or a ws:// URL');
    assert.ok(error.message.length < 50_000, `message of ${error.message.length} characters`);
    assert.ok(took < 8000, `took ${Math.round(took)} ms`);
  });

  it('environment substitution: a missing variable is reported with its path', () => {
    const { problems } = invalid(withLine('inspector: 127.0.0.1:9229', 'inspector: ${CHECKOUT_INSPECTOR}'));
    assert.deepEqual(problems, ['targets.checkout.inspector: environment variable CHECKOUT_INSPECTOR is not set']);
    // An empty variable counts as missing.
    const empty = invalid(withLine('inspector: 127.0.0.1:9229', 'inspector: ${CHECKOUT_INSPECTOR}'), { CHECKOUT_INSPECTOR: '' });
    assert.deepEqual(empty.problems, problems);
  });

  it('environment substitution: set variables and ${VAR:-default}', () => {
    const text = withLine('inspector: 127.0.0.1:9229', 'inspector: ${CHECKOUT_HOST:-127.0.0.1}:${CHECKOUT_PORT:-9229}').replace('port: 0', 'port: ${BROKER_PORT}');
    const defaults = parseConfigText(text, tmpdir(), 'policy.yaml', { BROKER_PORT: '7171' });
    assert.equal(defaults.targets.checkout!.inspector, '127.0.0.1:9229');
    assert.equal(defaults.server.port, 7171);
    const set = parseConfigText(text, tmpdir(), 'policy.yaml', { BROKER_PORT: '0', CHECKOUT_HOST: 'checkout.prod.svc', CHECKOUT_PORT: '9230' });
    assert.equal(set.targets.checkout!.inspector, 'checkout.prod.svc:9230');
  });

  it('environment values are data: they are never parsed as YAML', () => {
    const { problems } = invalid(withLine('inspector: 127.0.0.1:9229', 'inspector: ${EVIL}'), { EVIL: '127.0.0.1:9229\n    owners: [dev]' });
    assert.deepEqual(problems, ['targets.checkout.inspector: expected "host:port" or a ws:// URL']);
  });

  it('client heartbeat limits: defaults, ranges, and a bound longer than the interval', () => {
    const config = parseConfigText(goodYaml, tmpdir(), 'policy.yaml', {});
    assert.equal(config.limits.clientPingIntervalMs, 5000);
    assert.equal(config.limits.clientUnresponsiveMs, 10000);
    const limits = (text: string) => withLine('server:\n', `limits: { ${text} }\nserver:\n`);
    assert.equal(parseConfigText(limits('clientPingIntervalMs: 200, clientUnresponsiveMs: 1000'), tmpdir(), 'policy.yaml', {}).limits.clientUnresponsiveMs, 1000);
    assert.deepEqual(invalid(limits('clientPingIntervalMs: 0, clientUnresponsiveMs: soon')).problems, [
      'limits.clientPingIntervalMs: expected an integer from 50 to 60000',
      'limits.clientUnresponsiveMs: expected an integer from 100 to 600000',
    ]);
    assert.deepEqual(invalid(limits('clientPingIntervalMs: 5000, clientUnresponsiveMs: 5000')).problems, [
      'limits.clientUnresponsiveMs: must be longer than limits.clientPingIntervalMs (5000 ms): a client gets at least one ping to answer',
    ]);
  });

  it('several problems in one file are all listed, each with its path', () => {
    const text = `
servre: {}
server: { port: 99999 }
roles:
  dev: { groups: [payments-dev] }
targets:
  checkout:
    inspector: nowhere
    owners: [ghost]
    access:
      - role: phantom
        modes: [snapshot, yolo]
        maxDuration: forever
        requireTicket: '[unclosed'
`;
    const { problems } = invalid(text);
    const expected = [
      /^servre: unknown key/,
      /^server\.port: expected an integer from 0 to 65535$/,
      /^targets\.checkout\.inspector: expected "host:port" or a ws:\/\/ URL$/,
      /^targets\.checkout\.owners\[0\]: unknown role "ghost"/,
      /^targets\.checkout\.access\[0\]\.role: unknown role "phantom"/,
      /^targets\.checkout\.access\[0\]\.modes\[1\]: expected one of: pause, snapshot$/,
      /^targets\.checkout\.access\[0\]\.maxDuration: expected a duration like "30m"$/,
      /^targets\.checkout\.access\[0\]\.requireTicket: invalid regular expression/,
    ];
    for (const e of expected) hasProblem(problems, e);
    assert.equal(problems.length, expected.length, problems.join('\n'));
  });
});

/** Runs the built CLI and collects its exit code and output. */
async function runCli(args: string[], cwd: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const proc = spawn(process.execPath, [cli, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  proc.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const [code] = (await once(proc, 'close')) as [number | null];
  return { code, stdout, stderr };
}

describe('config: the loupe CLI', () => {
  const dir = mkdtempSync(join(tmpdir(), 'loupe-cli-'));
  const stateDir = join(dir, 'state');
  const goodFile = join(dir, 'good.yaml');
  const badFile = join(dir, 'bad.yaml');
  const brokers: TestBroker[] = [];
  const procs: ChildProcess[] = [];
  // The same policy as good.yaml, for a broker started in this process on the same state directory.
  const policy = {
    ...basePolicy('127.0.0.1:9'),
    roles: { dev: { groups: ['g1'] }, owner: { groups: ['owners'] }, admin: { groups: ['admins'] } },
  };

  before(() => {
    ensureBuilt();
    writeFileSync(goodFile, JSON.stringify({ ...policy, stateDir }, null, 2)); // JSON is YAML
    writeFileSync(
      badFile,
      `
roles:
  dev: { groups: [g1] }
targets:
  checkout:
    inspector: "not an address"
    owners: [ghost]
    access:
      - role: dev
        modes: [pause, teleport]
        maxDuration: 30 minutes
`,
    );
  });
  after(async () => {
    for (const proc of procs) {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGKILL');
        await once(proc, 'exit');
      }
    }
    for (const b of brokers) await b.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const badProblems = [
    'targets.checkout.inspector: expected "host:port" or a ws:// URL',
    'targets.checkout.owners[0]: unknown role "ghost" (defined roles: dev)',
    'targets.checkout.access[0].modes[1]: expected one of: pause, snapshot',
    'targets.checkout.access[0].maxDuration: expected a duration like "30m"',
  ];

  it('broker --config bad.yaml exits non-zero and prints every problem with its path', async () => {
    const { code, stdout, stderr } = await runCli(['broker', '--config', badFile], dir);
    assert.notEqual(code, 0);
    assert.equal(stdout, '', 'nothing on stdout: no LOUPE_BROKER_URL line');
    for (const p of badProblems) assert.ok(stderr.includes(p), `stderr lacks "${p}":\n${stderr}`);
    assert.ok(!/\n\s+at /.test(stderr), `a stack trace is not a config report:\n${stderr}`);
  });

  it('policy check bad.yaml exits 1 with the same problems', async () => {
    const { code, stderr } = await runCli(['policy', 'check', badFile], dir);
    assert.equal(code, 1);
    for (const p of badProblems) assert.ok(stderr.includes(p), `stderr lacks "${p}":\n${stderr}`);
  });

  it('policy check good.yaml exits 0', async () => {
    const { code, stdout, stderr } = await runCli(['policy', 'check', goodFile], dir);
    assert.equal(code, 0, stderr);
    assert.match(stdout, /valid \(1 target\(s\), 3 role\(s\)\)/);
  });

  it('policy check of a missing file exits 1 and says it cannot read it', async () => {
    const { code, stderr } = await runCli(['policy', 'check', join(dir, 'nope.yaml')], dir);
    assert.equal(code, 1);
    assert.match(stderr, /cannot read config/);
  });

  it('token prints a JWT that the broker accepts', async () => {
    const { code, stdout, stderr } = await runCli(['token', '--config', goodFile, '--user', 'alice', '--groups', 'g1,g2'], dir);
    assert.equal(code, 0, stderr);
    const token = stdout.trim();
    assert.match(token, /^[\w-]+\.[\w-]+\.[\w-]+$/);
    const claims = decodeJwt(token);
    assert.equal(claims.sub, 'alice');
    assert.deepEqual(claims.groups, ['g1', 'g2']);

    // Closed before the next test starts a CLI broker on the same state directory.
    const broker = await startTestBroker(policy, { stateDir });
    brokers.push(broker);
    try {
      const res = await broker.api('GET', '/v1/targets', token);
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.deepEqual(
        res.body.targets.map((t: { name: string }) => t.name),
        ['app'],
        'group g1 maps to role dev',
      );
      const grant = await broker.api('POST', '/v1/grants', token, { target: 'app', mode: 'snapshot', durationSeconds: 60, reason: 'cli token check' });
      assert.equal(grant.status, 201);
      assert.equal(decodeJwt(grant.body.token).sub, 'alice');
    } finally {
      brokers.splice(brokers.indexOf(broker), 1);
      await broker.close();
    }
  });

  it('token without --user fails with a usage hint', async () => {
    const { code, stdout, stderr } = await runCli(['token', '--config', goodFile], dir);
    assert.equal(code, 2);
    assert.equal(stdout, '');
    assert.match(stderr, /missing --user/);
  });

  it('broker --config good.yaml serves, accepts a CLI token, and stops on SIGTERM', async () => {
    const proc = spawn(process.execPath, [cli, 'broker', '--config', goodFile], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    procs.push(proc);
    let stderr = '';
    proc.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const url = await brokerUrl(proc, () => stderr, 10_000);
    const health = await fetch(`${url}/healthz`);
    assert.equal(health.status, 200);
    const { stdout: token } = await runCli(['token', '--config', goodFile, '--user', 'bob', '--groups', 'g1'], dir);
    const res = await fetch(`${url}/v1/targets`, { headers: { authorization: `Bearer ${token.trim()}` } });
    assert.equal(res.status, 200);
    assert.equal(((await res.json()) as any).targets[0].name, 'app');
    proc.kill('SIGTERM');
    const [code] = (await once(proc, 'exit')) as [number | null];
    assert.equal(code, 0, stderr);
  });

  it('an unknown subcommand exits 2 with usage', async () => {
    const { code, stdout, stderr } = await runCli(['frobnicate'], dir);
    assert.equal(code, 2);
    assert.equal(stdout, '');
    assert.match(stderr, /^usage:/);
    assert.match(stderr, /loupe broker --config/);
    assert.match(stderr, /loupe policy check/);
  });
});
