import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { ensureBuilt } from './support/built';

const root = join(__dirname, '..');
const cli = join(root, 'dist', 'cli.js');

/** Runs the shipped CLI (dist/cli.js) to its exit. */
function loupe(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const run = spawnSync(process.execPath, [cli, ...args], { cwd: root, encoding: 'utf8', env: { ...process.env, LOUPE_BROKER_URL: '', LOUPE_TOKEN: '' }, timeout: 30_000 });
  return { code: run.status, stdout: run.stdout, stderr: run.stderr };
}

/** Every command, and the options its usage must name. */
const commands: [string[], RegExp[]][] = [
  [['broker'], [/--config <file\.yaml>/, /--port <n>/]],
  [['token'], [/--config <file\.yaml>/, /--user <id>/, /--groups/, /--name/, /--ttl/]],
  [['policy', 'check'], [/<file\.yaml>/]],
  [
    ['policy', 'explain'],
    [/--config/, /--user/, /--target/, /--mode/, /--at/, /--ticket/, /--duration/],
  ],
  [['connect'], [/<target>/, /--reason/, /--ticket/, /--mode/, /--duration/, /--port/, /--broker <url>/, /--token-file/, /--issuer/, /--client-id/]],
  [
    ['audit', 'list'],
    [/--target/, /--user/, /--from/, /--security/, /--grants/, /--broker <url>/, /--token/],
  ],
  [
    ['audit', 'download'],
    [/-o, --output <dir>/, /--broker <url>/, /--token/],
  ],
  [
    ['audit', 'verify'],
    [/<dir \| s3:\/\//, /--keys/],
  ],
  [
    ['audit', 'render'],
    [/-o, --output <file>/, /--keys/],
  ],
];

describe('the loupe CLI: --help on every command, and unknown options named', () => {
  before(() => {
    ensureBuilt();
  });

  it('loupe --help, loupe -h, loupe help and a bare loupe print the overview on stdout and exit 0', () => {
    for (const args of [['--help'], ['-h'], ['help'], []]) {
      const run = loupe(...args);
      assert.equal(run.code, 0, `loupe ${args.join(' ')}: ${run.stderr}`);
      assert.equal(run.stderr, '', `loupe ${args.join(' ')}`);
      for (const [command] of commands) assert.match(run.stdout, new RegExp(`loupe ${command.join(' ')} `), `loupe ${args.join(' ')} lists loupe ${command.join(' ')}`);
      assert.match(run.stdout, /loupe <command> --help/);
    }
  });

  for (const [command, options] of commands) {
    it(`loupe ${command.join(' ')} --help (and -h, and loupe help ${command.join(' ')}) prints its usage on stdout and exits 0`, () => {
      const run = loupe(...command, '--help');
      assert.equal(run.code, 0, run.stderr);
      assert.equal(run.stderr, '');
      assert.ok(run.stdout.startsWith(`usage: loupe ${command.join(' ')} `), run.stdout);
      for (const option of options) assert.match(run.stdout, option);
      assert.deepEqual(loupe(...command, '-h'), run);
      assert.deepEqual(loupe('help', ...command), run);
    });

    it(`loupe ${command.join(' ')} with an unknown option exits 2, naming it and pointing to --help`, () => {
      const run = loupe(...command, '--no-such-option');
      assert.equal(run.code, 2, run.stderr);
      assert.equal(run.stdout, '');
      assert.match(run.stderr, /unknown option '--no-such-option'/);
      assert.ok(run.stderr.includes(`loupe ${command.join(' ')} --help`), run.stderr);
    });
  }

  it('loupe policy --help and loupe audit --help list their commands', () => {
    for (const [group, subs] of [
      ['policy', ['check', 'explain']],
      ['audit', ['list', 'download', 'verify', 'render']],
    ] as const) {
      const run = loupe(group, '--help');
      assert.equal(run.code, 0, run.stderr);
      assert.equal(run.stderr, '');
      for (const sub of subs) assert.match(run.stdout, new RegExp(`loupe ${group} ${sub}`));
      assert.deepEqual(loupe('help', group), run);
    }
  });

  it('an unknown command exits 2 with its name and the usage on stderr', () => {
    for (const args of [['frobnicate'], ['policy', 'frobnicate'], ['audit', 'frobnicate'], ['help', 'frobnicate']]) {
      const run = loupe(...args);
      assert.equal(run.code, 2, `loupe ${args.join(' ')}`);
      assert.equal(run.stdout, '');
      assert.match(run.stderr, /unknown command 'frobnicate'/);
      assert.match(run.stderr, /usage:/);
    }
  });

  it("a missing argument still exits 2 with the command's usage", () => {
    const run = loupe('audit', 'verify');
    assert.equal(run.code, 2);
    assert.match(run.stderr, /missing <dir \| s3:\/\/…>/);
    assert.match(run.stderr, /usage: loupe audit verify /);
  });
});
