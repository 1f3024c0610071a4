import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLockedBucket, type S3ConnectionOptions } from '../../broker/audit/stores/s3Store';

export interface S3Settings extends S3ConnectionOptions {
  readonly endpoint: string;
  readonly region: string;
  readonly forcePathStyle: true;
  readonly credentials: { readonly accessKeyId: string; readonly secretAccessKey: string };
}

/**
 * The S3 server the tests run against (Ceph RGW with Object Lock, started by scripts/s3/start-rgw.sh),
 * from S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_REGION. Throws when they are absent.
 */
export function s3Settings(): S3Settings {
  const { S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION } = process.env;
  const missing = Object.entries({ S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY })
    .filter(([, value]) => !value)
    .map(([name]) => name);
  if (missing.length > 0) {
    throw new Error(
      `the S3 tests need a real S3 server with Object Lock, but ${missing.join(', ')} ${missing.length === 1 ? 'is' : 'are'} not set: ` +
        'run them through `npm test`, which starts the S3 server (scripts/s3/start-rgw.sh), or start it yourself: ' +
        'set -a; eval "$(bash scripts/s3/start-rgw.sh)"; set +a',
    );
  }
  return {
    endpoint: S3_ENDPOINT!,
    region: AWS_REGION || 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: AWS_ACCESS_KEY_ID!, secretAccessKey: AWS_SECRET_ACCESS_KEY! },
  };
}

/** A new bucket name, unique across runs (S3 rules: 3-63 chars, lower case, digits, hyphens). */
export function uniqueBucketName(label = 'loupe-test'): string {
  return `${label}-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`.slice(0, 63);
}

/**
 * Creates a uniquely named bucket with Object Lock (and so versioning) and returns its name. Buckets
 * holding locked objects cannot be deleted before their retention ends, so tests leave them behind;
 * the test cluster is disposable (scripts/s3/stop-rgw.sh --purge).
 */
export async function freshLockedBucket(label = 'loupe-test'): Promise<string> {
  const bucket = uniqueBucketName(label);
  await createLockedBucket(s3Settings(), bucket);
  return bucket;
}

const s3Scripts = join(__dirname, '..', '..', 'scripts', 's3');

export interface OwnRgw {
  /** The cluster's data directory (its ceph.conf, PID files and logs). */
  readonly dir: string;
  /** S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION of this cluster. */
  readonly settings: Record<string, string>;
  /** Stops the cluster and deletes its directory. */
  stop(): void;
}

/**
 * A Ceph RGW cluster of the caller's own, for tests that stop or freeze their S3 server: a fresh directory and
 * free ports picked at start (scripts/s3/start-rgw.sh with RGW_PORT=auto), so neither the shared cluster, another
 * run, nor a leftover process of an earlier run can collide with it.
 */
export function startOwnRgw(label: string): OwnRgw {
  const dir = mkdtempSync(join(tmpdir(), `loupe-rgw-${label}-`));
  const started = spawnSync('bash', [join(s3Scripts, 'start-rgw.sh'), dir], { encoding: 'utf8', env: { ...process.env, RGW_PORT: 'auto', RGW_MON_PORT: 'auto' }, timeout: 300_000 });
  if (started.status !== 0) {
    spawnSync('bash', [join(s3Scripts, 'stop-rgw.sh'), dir, '--purge'], { encoding: 'utf8' });
    throw new Error(`start-rgw.sh ${dir} failed (exit ${started.status ?? started.signal}):\n${started.stderr}`);
  }
  const settings = Object.fromEntries(
    started.stdout
      .trim()
      .split('\n')
      .map((l) => l.split('=', 2) as [string, string]),
  );
  return { dir, settings, stop: () => void spawnSync('bash', [join(s3Scripts, 'stop-rgw.sh'), dir, '--purge'], { encoding: 'utf8' }) };
}
