#!/usr/bin/env node
// `npm test`: build the shipped bundles, type-check, provision the services (S3, PostgreSQL, Chromium, code-server), then run
// every test file with node's test runner. `npm test -- <filter>...` runs the files whose path contains one of the
// filters, and provisions only the services those files declare (`// needs: ...`, see scripts/test-needs.mjs).
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ensureChromium } from './chromium/ensure-chromium.mjs';
import { ensurePostgres } from './postgres/ensure-postgres.mjs';
import { ensureS3 } from './s3/ensure-s3.mjs';
import { declaredNeeds, services } from './test-needs.mjs';
import { ensureCodeServer } from './vscode/ensure-code-server.mjs';

const root = join(import.meta.dirname, '..');

function run(label, command, args, env = process.env) {
  process.stdout.write(`\n== ${label}\n`);
  const result = spawnSync(command, args, { cwd: root, stdio: 'inherit', env });
  if (result.status !== 0) {
    process.stdout.write(`\n${label} failed (exit ${result.status ?? result.signal})\n`);
    process.exit(result.status ?? 1);
  }
}

/** Removes the run's temporary directory, unless a filesystem a test mounted is still inside it (never walk into one). */
function removeScratch(dir) {
  const mounts = readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[1] ?? '')
    .filter((point) => point.startsWith(`${dir}/`));
  if (mounts.length > 0) process.stdout.write(`\nleft ${dir} in place: ${mounts.join(', ')} still mounted there\n`);
  else rmSync(dir, { recursive: true, force: true });
}

function findTests(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return name === 'fixtures' || name === 'support' ? [] : findTests(path);
    return name.endsWith('.test.ts') ? [relative(root, path)] : [];
  });
}

const filter = process.argv.slice(2);
const files = findTests(join(root, 'test'))
  .filter((f) => filter.length === 0 || filter.some((part) => f.includes(part)))
  .sort();
if (files.length === 0) {
  process.stdout.write(`no test files match ${filter.join(' ')}\n`);
  process.exit(1);
}

// The services to provision: every one for a full run; with a filter, those the selected files declare on their
// `// needs: s3, chromium` line (test/needs.test.ts checks the declarations against what each file imports).
const wanted = new Map(Object.keys(services).map((name) => [name, []]));
if (filter.length > 0) {
  for (const file of files) {
    let declared;
    try {
      declared = declaredNeeds(root, file);
    } catch (err) {
      process.stdout.write(`\n${err.message}\n`);
      process.exit(1);
    }
    for (const name of declared) wanted.get(name).push(file);
  }
}
const needed = (name) => filter.length === 0 || wanted.get(name).length > 0;
process.stdout.write('\n== services\n');
for (const [name, users] of wanted) {
  const why = filter.length === 0 ? 'full run' : users.length > 0 ? `needed by ${users.join(', ')}` : 'no selected file needs it';
  process.stdout.write(`${needed(name) ? 'provisioning' : 'skipping'} ${name} (${services[name].what}): ${why}\n`);
}

run('build', process.execPath, ['esbuild.mjs']);
run('typecheck', process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '--noEmit', '-p', '.']);

const env = { ...process.env };
// The audit store tests run against a real S3 server with Object Lock (started here unless S3_ENDPOINT is set).
if (needed('s3')) Object.assign(env, ensureS3());
// Several broker replicas share their state in a real PostgreSQL (started here unless DATABASE_URL is set).
if (needed('postgres')) Object.assign(env, ensurePostgres());
// The report page is checked in a real headless Chromium (Debian's chromium, installed here when missing).
if (needed('chromium')) Object.assign(env, { CHROMIUM_PATH: ensureChromium(), PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD: '1' });
// The extension is tested in a real VS Code: code-server (installed here when missing) driven by that Chromium.
// LOUPE_SKIP_VSCODE=1 asks for a fast run: those tests are then skipped, each saying why.
if (needed('code-server')) Object.assign(env, ensureCodeServer());
// A file still running after 10 minutes has hung (a whole file takes a minute or two): the runner ends it and names it, so
// one hang costs minutes, not the whole CI budget. Each test file's process names a test running past 2 minutes.
const hangReport = pathToFileURL(join(root, 'test', 'support', 'hangReport.mjs')).href;
// A failed bare assert.ok says so at once (see the file: Node's own message for it can take minutes under tsx).
const assertOkMessage = pathToFileURL(join(root, 'test', 'support', 'assertOkMessage.mjs')).href;
const testArgs = ['--import', 'tsx', '--import', hangReport, '--import', assertOkMessage, '--test', '--test-reporter=spec', '--test-concurrency=2', '--test-timeout=600000'];
// The tests' temporary files (state directories, keys, downloads, profiles) go to a directory of this run's own,
// removed when the run ends, passed or failed: a machine that runs the suite every day does not fill its /tmp.
const scratch = mkdtempSync(join(tmpdir(), 'loupe-tests-'));
// It stands in for /tmp: other users pass and write there too (the PostgreSQL the tests start runs as postgres).
chmodSync(scratch, 0o1777);
env.TMPDIR = scratch;
process.stdout.write(`\n== tests (${files.length} files)\n`);
const result = spawnSync(process.execPath, [...testArgs, ...files], { cwd: root, stdio: 'inherit', env });
removeScratch(scratch);
if (result.status !== 0) process.stdout.write(`\ntests failed (exit ${result.status ?? result.signal})\n`);
process.exit(result.status ?? 1);
