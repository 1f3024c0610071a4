import { NodeHttpHandler } from '@smithy/node-http-handler';
import { createHash } from 'node:crypto';
import {
  CreateBucketCommand,
  GetObjectCommand,
  GetObjectLockConfigurationCommand,
  GetObjectRetentionCommand,
  HeadObjectCommand,
  ListObjectVersionsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { AuditStoreError, tooLarge, type AuditStore, type ObjectVersions, type Retention } from './auditStore';

/**
 * Where and how to reach S3. Every field falls back to the SDK's usual sources: `endpoint` to
 * `S3_ENDPOINT` (then the SDK's own `AWS_ENDPOINT_URL_S3`/`AWS_ENDPOINT_URL`), `region` to `AWS_REGION`
 * / `AWS_DEFAULT_REGION` (then `us-east-1` when a custom endpoint is set), `credentials` to the SDK's
 * default chain (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, profiles, instance roles...).
 * `forcePathStyle` defaults to true with a custom endpoint (S3-compatible servers such as Ceph RGW),
 * false on AWS.
 */
export interface S3ConnectionOptions {
  readonly endpoint?: string;
  readonly region?: string;
  readonly forcePathStyle?: boolean;
  readonly credentials?: { readonly accessKeyId: string; readonly secretAccessKey: string; readonly sessionToken?: string };
}

export interface S3AuditStoreOptions extends S3ConnectionOptions {
  readonly bucket: string;
  /** Key prefix inside the bucket, e.g. `loupe/audit/`; a trailing `/` is added when missing. */
  readonly prefix?: string;
}

/** An S3 client with the settings that work against both AWS S3 and Ceph RGW (see scripts/s3/start-rgw.sh). */
export function createS3Client(options: S3ConnectionOptions = {}): S3Client {
  const endpoint = options.endpoint ?? (process.env.S3_ENDPOINT || undefined);
  const region = options.region ?? (process.env.AWS_REGION || process.env.AWS_DEFAULT_REGION || (endpoint ? 'us-east-1' : undefined));
  return new S3Client({
    ...(endpoint ? { endpoint } : {}),
    ...(region ? { region } : {}),
    ...(options.credentials ? { credentials: options.credentials } : {}),
    forcePathStyle: options.forcePathStyle ?? endpoint !== undefined,
    // A store that hangs must fail like one that refuses, so the fail-closed bound can act on it.
    // throwOnRequestTimeout: without it the SDK only warns, and a put to a silent store never ends, so the
    // uploader would wait on it for good instead of retrying once the store answers again.
    requestHandler: new NodeHttpHandler({ connectionTimeout: 3_000, requestTimeout: 10_000, throwOnRequestTimeout: true }),
    maxAttempts: 2,
    // Checksums only where an operation requires one (we add our own on PutObject). The SDK's default,
    // WHEN_SUPPORTED, sends stream bodies as aws-chunked with a trailing checksum, which RGW 16 refuses (411).
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

interface SdkError {
  name?: string;
  message?: string;
  code?: string;
  $metadata?: { httpStatusCode?: number };
}

function errorName(err: unknown): string {
  const e = err as SdkError;
  return e?.name && e.name !== 'Error' ? e.name : (e?.code ?? e?.name ?? 'Error');
}

function httpStatus(err: unknown): number | undefined {
  return (err as SdkError)?.$metadata?.httpStatusCode;
}

/** `NoSuchKey` (GetObject, GetObjectRetention) or `NotFound` (HeadObject: a 404 has no body). Never a missing bucket. */
function isMissingKey(err: unknown): boolean {
  const name = errorName(err);
  return name === 'NoSuchKey' || name === 'NotFound' || (httpStatus(err) === 404 && name !== 'NoSuchBucket' && !isNoLockConfiguration(err));
}

/** The bucket (or, for GetObjectRetention, the object) has no Object Lock configuration. AWS and RGW name it differently. */
function isNoLockConfiguration(err: unknown): boolean {
  const name = errorName(err);
  return name === 'ObjectLockConfigurationNotFoundError' || name === 'NoSuchObjectLockConfiguration';
}

/** A condition on a write failed because the key exists: 412 (If-None-Match: *), or 409 for a concurrent conditional write (AWS). */
function isExistsOnConditionalWrite(err: unknown): boolean {
  const name = errorName(err);
  return name === 'PreconditionFailed' || name === 'ConditionalRequestConflict' || httpStatus(err) === 412;
}

function describeError(err: unknown): string {
  const e = err as SdkError;
  const status = httpStatus(err);
  const name = errorName(err);
  // RGW sends some errors without a message; the SDK then says "UnknownError".
  const message = e?.message && e.message !== 'UnknownError' && e.message !== name ? `: ${e.message}` : '';
  return `${name}${status ? ` (HTTP ${status})` : ''}${message}`;
}

const md5 = (body: Buffer) => createHash('md5').update(body).digest('base64');

function createLockedBucketHint(bucket: string): string {
  return `create it with Object Lock enabled (aws s3api create-bucket --bucket ${bucket} --object-lock-enabled-for-bucket)`;
}

/**
 * Audit objects in an S3 bucket with Object Lock: each object is written once, in COMPLIANCE mode until
 * its retain-until date, so nobody (root included) can delete or shorten it before then.
 *
 * Write-once: put() first asks whether the key exists (HeadObject); if it does, the same bytes are a
 * success (a retried upload) and other bytes a `conflict`. The PutObject also carries
 * `If-None-Match: *`, which makes AWS refuse the write atomically when two writers race. Ceph RGW 16
 * honours that header only on unversioned buckets and ignores it on versioned ones, which every Object
 * Lock bucket is; there the HeadObject check is the guard, and a racing second writer would add a second
 * version (both stay retained; get() and list() see the newest).
 *
 * Integrity: every PutObject sends Content-MD5 (the only checksum RGW verifies) and
 * x-amz-checksum-sha256 (ChecksumAlgorithm SHA256). AWS refuses Object Lock writes that carry neither.
 */
export class S3AuditStore implements AuditStore {
  readonly description: string;
  readonly bucket: string;
  readonly prefix: string;
  /** The SDK client; exposed so that tests can watch the requests it sends. */
  readonly client: S3Client;
  private readonly endpoint: string | undefined;

  constructor(options: S3AuditStoreOptions) {
    if (!options.bucket) throw new AuditStoreError('misconfigured', 'S3 audit store: no bucket given');
    this.bucket = options.bucket;
    const prefix = (options.prefix ?? '').replace(/^\/+/, '');
    this.prefix = prefix === '' || prefix.endsWith('/') ? prefix : `${prefix}/`;
    this.endpoint = options.endpoint ?? (process.env.S3_ENDPOINT || undefined);
    this.client = createS3Client(options);
    this.description = `s3://${this.bucket}/${this.prefix}${this.endpoint ? ` (${this.endpoint})` : ''}`;
  }

  /** Closes the client's connections. */
  destroy(): void {
    this.client.destroy();
  }

  async check(): Promise<void> {
    const where = `bucket ${this.bucket}${this.endpoint ? ` at ${this.endpoint}` : ''}`;
    let enabled: string | undefined;
    try {
      const out = await this.client.send(new GetObjectLockConfigurationCommand({ Bucket: this.bucket }));
      enabled = out.ObjectLockConfiguration?.ObjectLockEnabled;
    } catch (err) {
      const name = errorName(err);
      if (isNoLockConfiguration(err)) {
        throw new AuditStoreError(
          'misconfigured',
          `${where} has no Object Lock, so audit objects there could be deleted or overwritten: create a new bucket with Object Lock enabled (aws s3api create-bucket --bucket NEW-BUCKET --object-lock-enabled-for-bucket) and configure the store with it`,
          { cause: err },
        );
      }
      if (name === 'NoSuchBucket') throw new AuditStoreError('misconfigured', `${where} does not exist: ${createLockedBucketHint(this.bucket)}`, { cause: err });
      if (name === 'InvalidAccessKeyId' || name === 'SignatureDoesNotMatch' || name === 'CredentialsProviderError') {
        throw new AuditStoreError('misconfigured', `${where}: S3 credentials refused or missing (${describeError(err)}): check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the store's credentials`, {
          cause: err,
        });
      }
      if (name === 'AccessDenied' || httpStatus(err) === 403) {
        throw new AuditStoreError(
          'misconfigured',
          `${where}: access denied reading its Object Lock configuration (${describeError(err)}): the broker's credentials need s3:GetBucketObjectLockConfiguration, s3:PutObject, s3:PutObjectRetention, s3:GetObject, s3:GetObjectRetention and s3:ListBucket on it`,
          { cause: err },
        );
      }
      if (/region is missing/i.test((err as SdkError)?.message ?? '')) {
        throw new AuditStoreError('misconfigured', `${where}: no S3 region configured: set AWS_REGION or the store's region`, { cause: err });
      }
      const status = httpStatus(err);
      throw new AuditStoreError('unavailable', status ? `${where}: the S3 server answered GetObjectLockConfiguration with ${describeError(err)}` : `${where} is unreachable: ${describeError(err)}`, {
        cause: err,
      });
    }
    if (enabled !== 'Enabled') {
      throw new AuditStoreError('misconfigured', `${where} does not have Object Lock enabled (ObjectLockEnabled: ${enabled ?? 'absent'}): ${createLockedBucketHint(this.bucket)}`);
    }
  }

  async put(key: string, body: Buffer, retainUntil: Date): Promise<void> {
    const Key = this.objectKey(key);
    if (await this.exists(key, Key)) return this.compareExisting(key, body);
    try {
      await this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key,
          Body: body,
          ContentType: 'application/octet-stream',
          ContentMD5: md5(body),
          ChecksumAlgorithm: 'SHA256',
          IfNoneMatch: '*',
          ObjectLockMode: 'COMPLIANCE',
          ObjectLockRetainUntilDate: retainUntil,
        }),
      );
    } catch (err) {
      if (isExistsOnConditionalWrite(err)) return this.compareExisting(key, body);
      throw this.failure('PutObject', key, err);
    }
  }

  async get(key: string, maxBytes = Infinity): Promise<Buffer> {
    const Key = this.objectKey(key);
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key }));
      if (!out.Body) return Buffer.alloc(0);
      if ((out.ContentLength ?? 0) > maxBytes) {
        (out.Body as { destroy?: () => void }).destroy?.();
        throw tooLarge(key, out.ContentLength!, maxBytes);
      }
      return Buffer.from(await out.Body.transformToByteArray());
    } catch (err) {
      if (err instanceof AuditStoreError) throw err;
      if (isMissingKey(err)) throw new AuditStoreError('not_found', `no audit object ${key} in ${this.description}`, { cause: err });
      throw this.failure('GetObject', key, err);
    }
  }

  async list(prefix: string): Promise<string[]> {
    const full = this.prefix + prefix;
    const keys: string[] = [];
    let token: string | undefined;
    do {
      let out;
      try {
        out = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: full, ContinuationToken: token }));
      } catch (err) {
        throw this.failure('ListObjectsV2', prefix, err);
      }
      for (const object of out.Contents ?? []) {
        if (object.Key?.startsWith(full)) keys.push(object.Key.slice(this.prefix.length));
      }
      token = out.IsTruncated ? out.NextContinuationToken : undefined;
    } while (token);
    return keys.sort();
  }

  async versions(prefix: string): Promise<Map<string, ObjectVersions>> {
    const full = this.prefix + prefix;
    const found = new Map<string, { etags: { etag: string; id: string; at: number }[]; deleteMarkers: number }>();
    const entry = (key: string) => found.get(key) ?? found.set(key, { etags: [], deleteMarkers: 0 }).get(key)!;
    let keyMarker: string | undefined;
    let versionMarker: string | undefined;
    do {
      let out;
      try {
        out = await this.client.send(new ListObjectVersionsCommand({ Bucket: this.bucket, Prefix: full, KeyMarker: keyMarker, VersionIdMarker: versionMarker }));
      } catch (err) {
        throw this.failure('ListObjectVersions', prefix, err);
      }
      for (const v of out.Versions ?? []) {
        if (v.Key?.startsWith(full)) entry(v.Key.slice(this.prefix.length)).etags.push({ etag: v.ETag ?? '', id: v.VersionId ?? '', at: v.LastModified?.getTime() ?? 0 });
      }
      for (const m of out.DeleteMarkers ?? []) if (m.Key?.startsWith(full)) entry(m.Key.slice(this.prefix.length)).deleteMarkers++;
      keyMarker = out.IsTruncated ? out.NextKeyMarker : undefined;
      versionMarker = out.IsTruncated ? out.NextVersionIdMarker : undefined;
    } while (keyMarker);
    return new Map(
      [...found].map(([key, v]) => {
        const sorted = v.etags.sort((a, b) => a.at - b.at);
        return [key, { etags: sorted.map((e) => e.etag), ids: sorted.map((e) => e.id), deleteMarkers: v.deleteMarkers }];
      }),
    );
  }

  async getVersion(key: string, versionId: string): Promise<Buffer> {
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key), VersionId: versionId }));
      return out.Body ? Buffer.from(await out.Body.transformToByteArray()) : Buffer.alloc(0);
    } catch (err) {
      throw this.failure('GetObject', `${key} (version ${versionId})`, err);
    }
  }

  async retention(key: string): Promise<Retention> {
    const Key = this.objectKey(key);
    try {
      const out = await this.client.send(new GetObjectRetentionCommand({ Bucket: this.bucket, Key }));
      const mode = out.Retention?.Mode;
      const retainUntil = out.Retention?.RetainUntilDate;
      if (mode !== 'COMPLIANCE' && mode !== 'GOVERNANCE') return { mode: 'NONE' };
      return retainUntil ? { mode, retainUntil: new Date(retainUntil) } : { mode };
    } catch (err) {
      if (isNoLockConfiguration(err)) {
        // The object has no retention (AWS: NoSuchObjectLockConfiguration; RGW: ObjectLockConfigurationNotFoundError), or is absent.
        if (!(await this.exists(key, Key))) throw new AuditStoreError('not_found', `no audit object ${key} in ${this.description}`);
        return { mode: 'NONE' };
      }
      if (isMissingKey(err)) throw new AuditStoreError('not_found', `no audit object ${key} in ${this.description}`, { cause: err });
      throw this.failure('GetObjectRetention', key, err);
    }
  }

  private objectKey(key: string): string {
    if (key === '' || key.startsWith('/') || /[\u0000-\u001f\u007f]/.test(key) || key.split('/').some((part) => part === '' || part === '.' || part === '..')) {
      throw new AuditStoreError('misconfigured', `invalid audit object key "${key}"`);
    }
    return this.prefix + key;
  }

  private async exists(key: string, Key: string): Promise<boolean> {
    try {
      await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key }));
      return true;
    } catch (err) {
      if (isMissingKey(err)) return false;
      throw this.failure('HeadObject', key, err);
    }
  }

  private async compareExisting(key: string, body: Buffer): Promise<void> {
    let existing: Buffer;
    try {
      existing = await this.get(key);
    } catch (err) {
      throw err instanceof AuditStoreError && err.code !== 'not_found' ? err : this.failure('GetObject', key, err);
    }
    if (!existing.equals(body)) {
      throw new AuditStoreError('conflict', `audit object ${key} already exists in ${this.description} with other content; objects are write-once`);
    }
  }

  private failure(operation: string, key: string, err: unknown): AuditStoreError {
    const hint = errorName(err) === 'NoSuchBucket' ? `; ${createLockedBucketHint(this.bucket)}` : '';
    return new AuditStoreError('unavailable', `S3 ${operation} ${key} in ${this.description} failed: ${describeError(err)}${hint}`, { cause: err });
  }
}

/**
 * Creates `bucket` with Object Lock enabled (which also turns versioning on). Idempotent: an existing
 * bucket is accepted if it has Object Lock, and refused ('misconfigured') if not, since RGW cannot add
 * Object Lock to an existing bucket. Takes an S3Client or the options to make one.
 */
export async function createLockedBucket(target: S3Client | S3ConnectionOptions, bucket: string): Promise<void> {
  const client = target instanceof S3Client ? target : createS3Client(target);
  try {
    try {
      await client.send(new CreateBucketCommand({ Bucket: bucket, ObjectLockEnabledForBucket: true }));
    } catch (err) {
      // AWS outside us-east-1 answers BucketAlreadyOwnedByYou for our own bucket; us-east-1 and RGW answer 200.
      if (errorName(err) !== 'BucketAlreadyOwnedByYou') {
        throw new AuditStoreError(errorName(err) === 'BucketAlreadyExists' ? 'misconfigured' : 'unavailable', `cannot create bucket ${bucket}: ${describeError(err)}`, { cause: err });
      }
    }
    let enabled: string | undefined;
    try {
      enabled = (await client.send(new GetObjectLockConfigurationCommand({ Bucket: bucket }))).ObjectLockConfiguration?.ObjectLockEnabled;
    } catch (err) {
      if (!isNoLockConfiguration(err)) throw new AuditStoreError('unavailable', `cannot read the Object Lock configuration of bucket ${bucket}: ${describeError(err)}`, { cause: err });
    }
    if (enabled !== 'Enabled')
      throw new AuditStoreError(
        'misconfigured',
        `bucket ${bucket} already exists without Object Lock; use another name (Ceph RGW cannot add Object Lock to an existing bucket; on AWS: aws s3api put-object-lock-configuration --bucket ${bucket} --object-lock-configuration ObjectLockEnabled=Enabled)`,
      );
  } finally {
    if (client !== target) client.destroy();
  }
}
