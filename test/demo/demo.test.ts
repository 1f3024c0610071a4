import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';

describe('npm run demo', () => {
  it('runs a real audited session end to end and reports each gate decision', () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'loupe-demo-'));
    const run = spawnSync(process.execPath, [join(__dirname, '..', '..', 'scripts', 'demo.mjs'), '--once'], {
      encoding: 'utf8',
      env: { ...process.env, LOUPE_STATE_DIR: stateDir, LOUPE_PORT: '0' },
      timeout: 60_000,
    });
    assert.equal(run.status, 0, `${run.stdout}\n${run.stderr}`);
    const out = run.stdout;
    assert.match(out, /403: grant refused: a ticket matching .* is required/);
    assert.match(out, /condition "\(prices\.book = 0\)" assignment changes program state/);
    assert.match(out, /paused in priceOrder\(\)/);
    assert.match(out, /total = 52\.5/);
    assert.match(out, /= 47\.25/);
    assert.match(out, /user\.password read as a variable = "\[redacted: password\]"/);
    assert.match(out, /evaluate "process\.exit\(1\)" → REFUSED by the broker \(never sent to V8\): EvalError: Refused by Loupe/);
    assert.match(out, /Debugger\.setScriptSource → REFUSED: .*would change the code running in production/);
    assert.match(out, /alice's request completed after the resume: charged 47\.25/);
    assert.match(out, /20\/20 health checks answered/);
    assert.match(out, /ended: client_closed/);
    assert.match(out, /loupe audit verify → OK: session [0-9a-f-]{36}: \d+ records in \d+ sealed chunk\(s\), chain intact, manifest sealed/);
    assert.match(out, /report: .*report\.html/);
    assert.match(out, /webhook POST http:\/\/127\.0\.0\.1:\d+\/loupe-alerts \(signature verified\): alert\.refusals on checkout: \d+ refusals within 60 s \(threshold 3\)/);
    assert.match(out, /GET \/v1\/alerts as the service owner: [1-9]\d* alert\(s\)/);
  });
});
