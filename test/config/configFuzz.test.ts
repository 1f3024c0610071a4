// Property: whatever the policy file holds, loading it either gives a frozen config or throws config_invalid
// listing problems, each with its path and a message of ours; never another exception, never a silent accept of
// an unknown key. Inputs are a valid policy with fields replaced by arbitrary values, and arbitrary mappings.
// LOUPE_FUZZ_SEED replays a run; LOUPE_FUZZ_FRAMES sets how many inputs.
import { strict as assert } from 'node:assert';
import { tmpdir } from 'node:os';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { parseConfigText, validateConfig } from '../../broker/config/load';
import { listConfigFields } from '../../broker/config/schema';
import { LoupeError } from '../../broker/errors';
import { checkProperty, fuzzFrames, fuzzSeed, jsonArb, keyArb } from '../support/fuzz';

const runs = fuzzFrames(400);
const seed = fuzzSeed();

const fieldPaths = listConfigFields().map((f) =>
  f.path
    .replace(/<name>/g, 'app')
    .replace(/\[\]/g, '.0')
    .split('.')
    .map((k) => (/^\d+$/.test(k) ? Number(k) : k)),
);
const knownKeys = [...new Set(fieldPaths.flat().filter((k): k is string => typeof k === 'string'))];

const policy = () => ({
  server: { host: '127.0.0.1', port: 0 },
  identity: { devIssuer: { enabled: true } },
  roles: { dev: { groups: ['devs'] }, owner: { groups: ['owners'] } },
  admins: ['owner'],
  audit: { store: 'local', retentionDays: 30 },
  alerting: { rules: { refusals: { count: 3, withinSeconds: 60 } }, webhooks: [{ url: 'http://127.0.0.1:1/hook', secret: 'a-secret-of-16-chars' }] },
  targets: {
    app: {
      inspector: '127.0.0.1:9229',
      owners: ['owner'],
      alerts: { sensitiveFiles: { globs: ['src/**'] } },
      access: [{ role: 'dev', modes: ['pause'], maxDuration: '30m', requireApproval: { approvers: 'owner' } }],
      redact: { names: ['pin'], patterns: [{ name: 'iban', regex: 'DE\\d{16}\\d{4}' }] },
    },
  },
});

function setAt(root: Record<string, unknown>, path: readonly (string | number)[], value: unknown): void {
  let node: any = root;
  path.slice(0, -1).forEach((key, i) => {
    if (typeof node[key] !== 'object' || node[key] === null) node[key] = typeof path[i + 1] === 'number' ? [] : {};
    node = node[key];
  });
  node[path.at(-1)!] = value;
}

const valueArb = fc.oneof(
  { weight: 3, arbitrary: jsonArb(knownKeys) },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      '30m',
      '0s',
      '1h30m',
      'pause',
      'snapshot',
      's3',
      'owner',
      'ghost',
      '${X}',
      '',
      ' ',
      '(',
      '.*',
      'Mon-Fri 08:00-19:00 UTC',
      '-----BEGIN PUBLIC KEY-----',
      'http://x',
      'ws://h:1',
      'h:1',
      false,
      true,
      0,
      -1,
      1e9,
      3.5,
      '99999',
      null,
    ),
  },
  { weight: 1, arbitrary: fc.dictionary(fc.constantFrom(...knownKeys), jsonArb(knownKeys), { maxKeys: 4 }) },
);

const mutatedArb = fc.array(fc.tuple(fc.constantFrom(...fieldPaths), valueArb), { minLength: 1, maxLength: 4 }).map((edits) => {
  const p = policy() as Record<string, unknown>;
  for (const [path, value] of edits) setAt(p, path, value);
  return p;
});
const inputArb = fc.oneof(
  { weight: 4, arbitrary: mutatedArb },
  { weight: 1, arbitrary: fc.dictionary(keyArb(knownKeys), jsonArb(knownKeys), { maxKeys: 8 }) },
  { weight: 1, arbitrary: jsonArb(knownKeys) },
);

/** A message zod would write by itself, had a field been left without ours. */
const zodWording = /^(Invalid|Too (small|big)|Expected|Unrecognized)/;

function assertLoadOutcome(load: () => unknown): void {
  let config: unknown;
  try {
    config = load();
  } catch (err) {
    assert.ok(err instanceof LoupeError, `threw ${err instanceof Error ? err.stack : String(err)}`);
    assert.equal(err.code, 'config_invalid');
    const problems = err.details?.problems as string[];
    assert.ok(Array.isArray(problems) && problems.length > 0, 'config_invalid lists its problems');
    for (const problem of problems) {
      const at = problem.indexOf(': ');
      assert.ok(at > 0 && at < problem.length - 2, `a problem without a path or a message: ${problem}`);
      if (!problem.startsWith('policy.yaml: ')) assert.ok(!zodWording.test(problem.slice(at + 2)), `a problem in zod's words, not ours: ${problem}`);
    }
    return;
  }
  assert.ok(Object.isFrozen(config), 'an accepted config is frozen');
}

describe(`config loading under arbitrary input (seed ${seed}, ${runs} inputs)`, () => {
  it('validateConfig: a frozen config, or config_invalid with every problem by path', async () => {
    await checkProperty(
      fc.asyncProperty(inputArb, async (input) => assertLoadOutcome(() => validateConfig(input, tmpdir()))),
      { seed, numRuns: runs },
    );
  });

  it('parseConfigText: the same for YAML text, including text that is not YAML', async () => {
    const textArb = fc.oneof(
      inputArb.map((input) => stringify(input)),
      fc.string({ maxLength: 200 }),
      inputArb.map((input) => stringify(input).slice(0, 80)),
    );
    await checkProperty(
      fc.asyncProperty(textArb, async (text) => assertLoadOutcome(() => parseConfigText(text, tmpdir(), 'policy.yaml', {}))),
      { seed, numRuns: Math.ceil(runs / 2) },
    );
  });

  it('an unknown key anywhere in a valid policy is refused, with its path', async () => {
    // Not directly under roles or targets, where a new key names a new role or target.
    const records = new Set(['roles', 'targets']);
    const mappingPaths = fieldPaths
      .filter((path) => typeof path.at(-1) === 'string')
      .map((path) => path.slice(0, -1))
      .filter((path) => !(path.length === 1 && records.has(String(path[0]))));
    await checkProperty(
      fc.asyncProperty(fc.constantFrom(...mappingPaths), fc.constantFrom('tragets', 'inspectr', 'extra', 'constructor', 'toString'), async (path, key) => {
        const p = policy() as Record<string, unknown>;
        setAt(p, [...path, key], 1);
        try {
          validateConfig(p, tmpdir());
        } catch (err) {
          assert.ok(err instanceof LoupeError);
          const where = [...path, key]
            .map((k) => (typeof k === 'number' ? `[${k}]` : `.${k}`))
            .join('')
            .replace(/^\./, '');
          assert.ok(
            (err.details!.problems as string[]).some((problem) => problem.startsWith(`${where}: unknown`)),
            `${where}: ${String(err.details!.problems)}`,
          );
          return;
        }
        assert.fail(`unknown key ${key} at ${path.join('.')} was accepted`);
      }),
      { seed, numRuns: 100 },
    );
  });
});
