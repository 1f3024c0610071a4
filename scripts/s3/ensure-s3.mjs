// Makes sure the S3 server with Object Lock that the audit tests need is running, and returns its
// settings (S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION) for the tests' environment.
//
// If S3_ENDPOINT is already set, that server is used as is. Otherwise scripts/s3/start-rgw.sh starts
// (or reuses) a Ceph RADOS Gateway on 127.0.0.1 in $LOUPE_RGW_DIR (default /tmp/loupe-rgw), installing
// its Debian packages the first time. The cluster is left running afterwards: the next run reuses it
// in under a second. Stop it with: bash scripts/s3/stop-rgw.sh /tmp/loupe-rgw [--purge]
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

const startScript = join(import.meta.dirname, 'start-rgw.sh');

/** Returns the variables to add to the tests' environment; exits the process with a clear message when the server cannot be started. */
export function ensureS3({ env = process.env, out = process.stdout } = {}) {
  if (env.S3_ENDPOINT) {
    out.write(`\n== S3 server: using S3_ENDPOINT=${env.S3_ENDPOINT} from the environment\n`);
    return {};
  }
  const dir = env.LOUPE_RGW_DIR || '/tmp/loupe-rgw';
  out.write(`\n== S3 server (Ceph RADOS Gateway with Object Lock, ${dir})\n`);
  const started = Date.now();
  // Progress (stderr) goes straight to the terminal; stdout carries only the KEY=VALUE settings.
  const result = spawnSync('bash', [startScript, dir], { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8', env });
  const settings = {};
  for (const line of (result.stdout ?? '').split('\n')) {
    const match = /^([A-Z][A-Z0-9_]*)=(.*)$/.exec(line.trim());
    if (match) settings[match[1]] = match[2];
  }
  const problem = result.error
    ? `could not run bash ${startScript}: ${result.error.message}`
    : result.status !== 0
      ? `bash ${startScript} ${dir} failed (exit ${result.status ?? result.signal})`
      : !settings.S3_ENDPOINT || !settings.AWS_ACCESS_KEY_ID || !settings.AWS_SECRET_ACCESS_KEY
        ? `bash ${startScript} ${dir} printed no S3_ENDPOINT/AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY lines (stdout: ${JSON.stringify(result.stdout)})`
        : undefined;
  if (problem) {
    out.write(
      `\nS3 server failed to start: ${problem}.\n` +
        `The audit store tests need a real S3 server with Object Lock, so the tests were not run.\n` +
        `Logs: ${dir}/log/ and ${dir}/apt.log. To use another S3-compatible server with Object Lock instead, set\n` +
        `S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_REGION before npm test.\n`,
    );
    process.exit(1);
  }
  out.write(`S3 server ready at ${settings.S3_ENDPOINT} (${((Date.now() - started) / 1000).toFixed(1)} s); left running for the next run\n`);
  return settings;
}
