// Loaded into each test file's process by scripts/test.mjs. The runner ends a file that outlives its timeout and then
// names only the file; this names the test (or the hook) still running, and what the process waits on, well before.
import { after, afterEach, beforeEach } from 'node:test';

const reportAfterMs = Number(process.env.LOUPE_TEST_HANG_REPORT_MS) || 120_000;

// Only in a test file's own process: a process the tests start inherits neither this flag nor `node:test`.
if (/\.test\.[cm]?[jt]s$/.test(process.argv[1] ?? '')) {
  const file = process.argv[1];
  const started = Date.now();
  /** Tests under way, with when they began and when they were last reported. */
  const running = new Map();
  let lastEnded = started;

  beforeEach((t) => running.set(t, { name: t.name, since: Date.now(), reported: 0 }));
  afterEach((t) => {
    running.delete(t);
    lastEnded = Date.now();
  });

  const seconds = (ms) => `${Math.round(ms / 1000)} s`;
  /** A handle, as much as tells whose it is: a socket's addresses, a child's command, a server's port. */
  const describe = (handle) => {
    const name = handle?.constructor?.name ?? typeof handle;
    if (typeof handle?.remotePort === 'number') return `${name} ${handle.localAddress}:${handle.localPort} -> ${handle.remoteAddress}:${handle.remotePort}`;
    const address = typeof handle?.address === 'function' ? handle.address() : undefined;
    if (typeof address?.port === 'number') return `${name} on ${address.address}:${address.port}`;
    if (Array.isArray(handle?.spawnargs)) return `${name} pid ${handle.pid}: ${handle.spawnargs.join(' ').slice(0, 200)}`;
    return typeof handle?._handle?.fd === 'number' ? `${name} fd ${handle._handle.fd}` : name;
  };
  const report = (what) => {
    const waits = process.getActiveResourcesInfo().reduce((acc, kind) => acc.set(kind, (acc.get(kind) ?? 0) + 1), new Map());
    const on = [...waits].map(([kind, n]) => `${kind} ×${n}`).join(', ') || 'nothing';
    const handles = process
      ._getActiveHandles()
      .map((h) => `\n  ${describe(h)}`)
      .join('');
    process.stderr.write(`\n[still running] ${file}: ${what}; the process waits on: ${on}${handles}\n`);
  };

  // Every test has ended: a process still alive a while later is held by something a test (or the code it tested)
  // left open. Named after 10 s; after a minute the file fails, rather than holding the run until its timeout.
  const lingerMs = Number(process.env.LOUPE_TEST_LINGER_MS) || 60_000;
  after(() => {
    setTimeout(() => report(`every test has ended, and the process has not exited ${seconds(lingerMs / 6)} later`), lingerMs / 6).unref();
    setTimeout(() => {
      report(`every test has ended, and the process has not exited ${seconds(lingerMs)} later: failing the file`);
      process.exit(1);
    }, lingerMs).unref();
  });

  setInterval(() => {
    const now = Date.now();
    for (const test of running.values()) {
      if (now - test.since < reportAfterMs || now - test.reported < reportAfterMs) continue;
      test.reported = now;
      report(`test "${test.name}" has run for ${seconds(now - test.since)}`);
    }
    // No test under way for that long: a before or after hook is what runs.
    if (running.size === 0 && now - lastEnded >= reportAfterMs) {
      lastEnded = now;
      report(`no test has ended for ${seconds(reportAfterMs)} (a before or after hook runs); the file has run for ${seconds(now - started)}`);
    }
  }, 5_000).unref();
}
