// Makes sure the headless Chromium that the browser tests drive (through playwright-core) is installed,
// and returns its executable path for the tests' environment (CHROMIUM_PATH).
//
// If CHROMIUM_PATH is already set, that executable is used as is. Otherwise Debian's `chromium` package
// provides /usr/bin/chromium; it is installed with apt-get (as root, or through passwordless sudo) only
// when missing, so later runs take well under a second. `apt-get update` runs first when apt has no list
// for the package (a clean image), or after an install that failed on stale lists. apt-get waits for the
// dpkg lock (up to 5 minutes) when another install holds it. apt's output goes to a log file; progress
// lines go to stderr. Nothing but Debian's packages is downloaded: Playwright never fetches a browser.
//
// Run directly it prints the path: node scripts/chromium/ensure-chromium.mjs
import { spawnSync } from 'node:child_process';
import { accessSync, appendFileSync, constants, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const debianPath = '/usr/bin/chromium';
const packages = ['chromium'];

const isExecutable = (path) => {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
};

/** `chromium --version`, or throws with what went wrong (a broken install, missing libraries). */
function chromiumVersion(path, env) {
  const result = spawnSync(path, ['--version'], { encoding: 'utf8', env, timeout: 30_000 });
  if (result.error || result.status !== 0) {
    const why = result.error ? result.error.message : `exit ${result.status ?? result.signal}: ${(result.stderr || result.stdout).trim().slice(-500)}`;
    throw new Error(`${path} --version failed (${why})`);
  }
  return result.stdout.trim();
}

/** Installs Debian's chromium with apt-get; throws with a clear message (and the end of apt's log) when it cannot. */
function installChromium(env, log) {
  if (spawnSync('sh', ['-c', 'command -v apt-get'], { env }).status !== 0) {
    throw new Error(`${debianPath} is missing and there is no apt-get here to install Debian's ${packages.join(' ')}; install Chromium yourself and set CHROMIUM_PATH`);
  }
  let sudo = [];
  if (process.getuid?.() !== 0) {
    if (spawnSync('sudo', ['-n', 'true'], { env, stdio: 'ignore' }).status === 0) sudo = ['sudo', '-n'];
    else throw new Error(`${debianPath} is missing; run as root (or with passwordless sudo), or install it once: apt-get install ${packages.join(' ')}`);
  }
  const aptLog = join(mkdtempSync(join(tmpdir(), 'loupe-chromium-apt-')), 'apt.log');
  const apt = (...args) => {
    const command = [...sudo, 'env', 'DEBIAN_FRONTEND=noninteractive', 'apt-get', '-o', 'DPkg::Lock::Timeout=300', ...args];
    const result = spawnSync(command[0], command.slice(1), { env, encoding: 'utf8', maxBuffer: 64 << 20 });
    const output = `$ ${command.join(' ')}\n${result.stdout ?? ''}${result.stderr ?? ''}${result.error ? `${result.error.message}\n` : ''}`;
    appendFileSync(aptLog, output);
    return result.status === 0;
  };
  const failed = (what) => {
    let tail = '';
    try {
      tail = readFileSync(aptLog, 'utf8').trimEnd().split('\n').slice(-20).join('\n');
    } catch {
      /* no log */
    }
    return new Error(`${what} (log: ${aptLog})${tail ? `\n${tail}` : ''}`);
  };
  // An unreachable third-party source makes `apt-get update` fail although Debian's lists were fetched:
  // go on, and let the install say whether the package can be had.
  const update = () => apt('update', '-qq') || log(`apt-get update reported errors (log: ${aptLog}); trying the install anyway`);
  let updated = false;
  // A clean image has no package lists at all: update before installing.
  if (spawnSync('apt-cache', ['show', ...packages], { env, stdio: 'ignore' }).status !== 0) {
    log(`apt-get update (no package list for ${packages.join(' ')})`);
    update();
    updated = true;
  }
  log(`installing ${packages.join(' ')} (apt-get, Debian's packages)`);
  const install = () => apt('install', '-y', '-qq', '--no-install-recommends', ...packages);
  if (!install()) {
    if (updated) throw failed(`apt-get install ${packages.join(' ')} failed`);
    // stale or partial lists (no candidate, or .debs the mirror no longer has): refresh, retry once
    log('install failed; apt-get update and retry');
    update();
    if (!install()) throw failed(`apt-get install ${packages.join(' ')} failed`);
  }
  if (!isExecutable(debianPath)) throw failed(`apt-get installed ${packages.join(' ')} but ${debianPath} is still missing`);
}

/**
 * Returns the path of a working Chromium executable, installing Debian's `chromium` first when needed.
 * Progress goes to `err` (stderr). On failure it writes a clear message to `out` and exits the process,
 * or throws when `exitOnFailure` is false.
 */
export function ensureChromium({ env = process.env, out = process.stdout, err = process.stderr, exitOnFailure = true } = {}) {
  const started = Date.now();
  const log = (line) => err.write(`ensure-chromium: [${((Date.now() - started) / 1000).toFixed(1)}s] ${line}\n`);
  out.write(`\n== Chromium (headless, for the browser tests)\n`);
  try {
    let path = env.CHROMIUM_PATH;
    if (path) {
      if (!isExecutable(path)) throw new Error(`CHROMIUM_PATH=${path} is not an executable file`);
    } else {
      path = debianPath;
      if (!isExecutable(path)) installChromium(env, log);
    }
    const version = chromiumVersion(path, env);
    out.write(`${version} at ${path}${env.CHROMIUM_PATH ? ' (CHROMIUM_PATH from the environment)' : ''} (${((Date.now() - started) / 1000).toFixed(1)} s)\n`);
    return path;
  } catch (error) {
    const message = `Chromium is not available: ${error.message}\nThe browser tests need a real headless Chromium (Debian's chromium package, or CHROMIUM_PATH).`;
    if (!exitOnFailure) throw new Error(message, { cause: error });
    out.write(`\n${message}\nThe tests were not run.\n`);
    process.exit(1);
  }
}

if (process.argv[1] && import.meta.filename === process.argv[1]) {
  try {
    process.stdout.write(`${ensureChromium({ out: process.stderr, exitOnFailure: false })}\n`);
  } catch (error) {
    process.stderr.write(`${error.message}\n`);
    process.exit(1);
  }
}
