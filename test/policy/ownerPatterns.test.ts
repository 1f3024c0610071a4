// Owners' regular expressions run in the broker on text it does not trust (a target's strings, a requester's
// ticket): a pattern that backtracks must not hold the broker, and one that cannot run in linear time is refused.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { parseConfigText } from '../../broker/config/load';
import { LoupeError } from '../../broker/errors';
import { compileOwnerRegExp } from '../../broker/policy/linearRegExp';
import { mintDevToken } from '../../broker/identity/devIssuer';
import { brokerUrl } from '../support/brokerProcess';
import { ensureBuilt } from '../support/built';
import { CdpClient } from '../support/cdpClient';
import { fixtures, startTarget, type TargetProcess } from '../support/target';
import { basePolicy } from '../support/testBroker';

/** Exponential in V8's backtracking engine on a run of capitals without its dash: 40 of them take hours. */
const backtracking = '^([A-Z]+)+-[0-9]+$';
const hostileTicket = `${'A'.repeat(40)}!`;

function policy(inspector: string): Record<string, any> {
  const base = basePolicy(inspector);
  base.targets.app.access = [{ role: 'dev', modes: ['pause', 'snapshot'], maxDuration: '10m', requireTicket: backtracking }];
  base.targets.app.redact = { names: [], patterns: [{ name: 'order code', regex: '([A-Z]+)+-[0-9]+' }] };
  return base;
}

function problemsOf(policyObject: Record<string, any>): string[] {
  try {
    parseConfigText(stringify({ ...policyObject, stateDir: tmpdir() }), tmpdir());
  } catch (err) {
    if (err instanceof LoupeError && err.code === 'config_invalid') return err.details?.problems as string[];
    throw err;
  }
  return [];
}

describe("owners' patterns run in linear time", () => {
  it('refuses a pattern the linear engine cannot run, saying where and why', () => {
    for (const regex of ['(?<=x)ORDER-\\d+', 'ORDER-(?!0)\\d+', '(ab)\\1', '\\bDE\\d{20}\\b', '[A-Z0-9]{11,30}']) {
      const withTicket = basePolicy('127.0.0.1:9');
      withTicket.targets.app.access[0].requireTicket = regex;
      const ticketProblems = problemsOf(withTicket);
      assert.equal(ticketProblems.length, 1, `${regex}: ${ticketProblems.join('; ')}`);
      assert.match(ticketProblems[0]!, /^targets\.app\.access\[0\]\.requireTicket: cannot run in linear time, /);
      const withPattern = basePolicy('127.0.0.1:9');
      withPattern.targets.app.redact = { patterns: [{ name: 'x', regex }] };
      const problems = problemsOf(withPattern);
      assert.equal(problems.length, 1, `${regex}: ${problems.join('; ')}`);
      assert.match(
        problems[0]!,
        /^targets\.app\.redact\.patterns\[0\]\.regex: cannot run in linear time, and hostile text could make it take hours: lookaround and backreferences are refused, and so is a counted repeat over 16 \(split it: /,
      );
    }
    // What owners write keeps working: classes, alternation, anchors, word boundaries, counted repeats, nesting.
    const fine = basePolicy('127.0.0.1:9');
    fine.targets.app.access[0].requireTicket = '^(?:JIRA|INC)-\\d{1,8}$';
    fine.targets.app.redact = {
      patterns: [
        { name: 'iban', regex: '\\bDE\\d{16}\\d{4}\\b' },
        { name: 'order', regex: backtracking },
      ],
    };
    assert.deepEqual(problemsOf(fine), []);
    // A counted repeat over 16 is split, as the refusal says, and matches as before.
    const iban = compileOwnerRegExp('\\bDE\\d{16}\\d{4}\\b', 'g');
    assert.equal(
      'IBAN DE12345678901234567890, paid'.replace(iban, () => '[iban]'),
      'IBAN [iban], paid',
    );
    const started = performance.now();
    assert.equal(compileOwnerRegExp(`${backtracking.slice(0, -1)}|^(?:[A-Z]+)+-\\d{16}$`).test(hostileTicket), false);
    assert.ok(performance.now() - started < 500);
  });

  describe('through a real broker (its own process) and a real target', () => {
    let target: TargetProcess;
    let proc: ChildProcess | undefined;
    let url: string;
    let token: string;
    const dir = mkdtempSync(join(tmpdir(), 'loupe-patterns-'));
    before(async () => {
      target = await startTarget(join(fixtures, 'pattern-app.js'));
      const configFile = join(dir, 'loupe.yaml');
      writeFileSync(configFile, stringify({ ...policy(target.inspector), stateDir: join(dir, 'state') }));
      proc = spawn(process.execPath, [ensureBuilt(), 'broker', '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      proc.stderr!.on('data', (c) => (stderr += c));
      url = await brokerUrl(proc, () => stderr);
      token = await mintDevToken(parseConfigText(readFileSync(configFile, 'utf8'), dir), { user: 'dev', groups: ['devs'] });
    });
    after(async () => {
      proc?.kill('SIGKILL');
      await target?.stop();
      rmSync(dir, { recursive: true, force: true });
    });

    // A held broker answers nothing: every request here gives up after 5 s, so a stall fails the test, not the run.
    const grant = (ticket: string) =>
      fetch(`${url}/v1/grants`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ target: 'app', mode: 'pause', durationSeconds: 300, reason: 'order codes wrong', ticket }),
        signal: AbortSignal.timeout(5000),
      }).then(async (res) => ({ status: res.status, body: (await res.json()) as any }));

    it('answers a ticket that makes the requireTicket pattern backtrack at once, and keeps serving', async () => {
      const started = performance.now();
      const refused = await grant(hostileTicket);
      const ms = performance.now() - started;
      assert.equal(refused.status, 403, JSON.stringify(refused.body));
      assert.match(refused.body.error.message, /does not match/);
      assert.ok(ms < 2000, `the refusal took ${ms.toFixed(0)} ms`);
      assert.equal((await grant('PAY-1234')).status, 201);
    });

    it("redacts with the owner's pattern, and a target string that makes it backtrack costs no stall", async () => {
      const granted = await grant('PAY-1234');
      assert.equal(granted.status, 201, JSON.stringify(granted.body));
      const client = await CdpClient.connect(granted.body.attachUrl, { authorization: `Bearer ${granted.body.token}` });
      try {
        const shipping = await client.call('Runtime.evaluate', { expression: 'shipping', returnByValue: true });
        // The interpreter marks a whole string that held a match (it was read from a secret).
        assert.equal(shipping.result.value, '[redacted: order code]');
        const started = performance.now();
        const hostile = (await client.sendRaw(JSON.stringify({ id: 7, method: 'Runtime.evaluate', params: { expression: 'hostile', returnByValue: true } }), 7, 5000)).result as any;
        const ms = performance.now() - started;
        assert.equal(hostile.result.value, `${'A'.repeat(5000)}!`);
        assert.ok(ms < 2000, `the answer took ${ms.toFixed(0)} ms`);
        assert.equal((await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(5000) })).status, 200);
      } finally {
        await client.close();
      }
    });
  });
});
