// A broker hosted in a process (the bench, an embedding service) leaves nothing running once closed: the process
// exits by itself. Each scenario runs in its own process (test/support/closeScenario.ts) against a real target.
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, describe, it } from 'node:test';

const script = join(__dirname, 'support', 'closeScenario.ts');

/** Runs a scenario; resolves with its output and how long its process lived after the broker closed. */
function run(scenario: string): Promise<{ code: number | null; out: string; afterCloseMs: number }> {
  const child = spawn(process.execPath, ['--import', 'tsx', script, scenario], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let closedAt = 0;
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    out += chunk;
    if (!closedAt && out.includes('broker closed')) closedAt = Date.now();
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  // Far past any bound of the broker's own: the pause watchdog here is 30 s, webhook retries take minutes.
  const limit = setTimeout(() => child.kill('SIGKILL'), 25_000);
  return new Promise((resolve) =>
    child.once('exit', (code) => {
      clearTimeout(limit);
      resolve({ code, out, afterCloseMs: closedAt ? Date.now() - closedAt : -1 });
    }),
  );
}

describe('a closed broker leaves nothing running: its process exits by itself (real target, broker in the process)', () => {
  const scenarios: [string, string][] = [
    ['pause-outstanding', 'a pause the client asked for arrives while its session ends'],
    ['paused-at-close', 'closed while a session holds the target paused'],
    ['snapshot-capturing', 'closed while a snapshot breakpoint captures'],
    ['webhook-retrying', 'closed while an alert waits to be retried'],
    ['webhook-unanswered', 'closed while an alert delivery waits for an answer'],
  ];
  for (const [scenario, what] of scenarios) {
    it(`${what}`, async () => {
      const { code, out, afterCloseMs } = await run(scenario);
      const file = /dead letters: (\S+)/.exec(out)?.[1];
      after(() => file && rmSync(dirname(file), { recursive: true, force: true }));
      assert.equal(code, 0, out);
      assert.ok(afterCloseMs >= 0 && afterCloseMs < 5000, `the process lived ${afterCloseMs} ms after the broker closed:\n${out}`);
      const closeMs = Number(/broker closed in (\d+) ms/.exec(out)?.[1]);
      // Webhook deliveries under way get 2 s to finish at shutdown; nothing else waits.
      assert.ok(closeMs < 4000, `close took ${closeMs} ms`);
      if (scenario.startsWith('webhook')) {
        // The alert is not lost: it is in the dead-letter file, not retried, saying why.
        assert.ok(file && existsSync(file), out);
        const letters = readFileSync(file, 'utf8')
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l));
        assert.equal(letters.length, 1, JSON.stringify(letters));
        assert.equal(letters[0].alert.rule, 'refusals');
        assert.match(letters[0].lastError, scenario === 'webhook-retrying' ? /^HTTP 503; not retried: the broker shut down$/ : /^the broker shut down during the delivery/);
      }
    });
  }
});
