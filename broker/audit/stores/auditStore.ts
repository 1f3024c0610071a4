/**
 * Where sealed audit objects end up. Objects are written once and never changed: a store refuses to
 * overwrite a key. Every store runs the same contract suite (test/audit/storeContract.ts).
 */
export interface Retention {
  readonly mode: 'COMPLIANCE' | 'GOVERNANCE' | 'NONE';
  readonly retainUntil?: Date;
}

export interface AuditStore {
  /** A short description for logs and errors, e.g. `s3://bucket/prefix` or `dir:/var/lib/loupe/audit`. */
  readonly description: string;
  /**
   * How many puts an upload round runs at once (default 16). A store whose puts are file operations keeps this below
   * the thread pool's size, so the write-ahead log's own writes and syncs never queue behind a round's.
   */
  readonly uploadConcurrency?: number;
  /** Start-up check: the store is reachable, writable and (for S3) has Object Lock enabled. Throws with a clear message otherwise. */
  check(): Promise<void>;
  /** Writes an object once, retained until `retainUntil`. Writing the same key with the same bytes again succeeds (an upload retried after a crash); different bytes are refused. */
  put(key: string, body: Buffer, retainUntil: Date): Promise<void>;
  /**
   * Reads an object; throws an error with code 'not_found' when absent, and with code 'too_large' (and its `bytes`)
   * when it is over `maxBytes`, without reading it.
   */
  get(key: string, maxBytes?: number): Promise<Buffer>;
  /** Keys under a prefix, sorted. */
  list(prefix: string): Promise<string[]>;
  /** The retention the store holds for a key. */
  retention(key: string): Promise<Retention>;
  /**
   * Every version each object under a prefix has, for a store that keeps versions (S3 with Object Lock): an audit
   * object is written once, so a second version with other content, or a delete marker, is an attempt to change it.
   */
  versions?(prefix: string): Promise<Map<string, ObjectVersions>>;
  /** Reads one version of an object (stores that keep versions). */
  getVersion?(key: string, versionId: string): Promise<Buffer>;
}

/** The stored versions of one object: the ETag of each (oldest first) and how many delete markers. */
export interface ObjectVersions {
  readonly etags: readonly string[];
  /** The version ids, in the order of etags. */
  readonly ids: readonly string[];
  readonly deleteMarkers: number;
}

export class AuditStoreError extends Error {
  override readonly name = 'AuditStoreError';
  constructor(
    readonly code: 'not_found' | 'conflict' | 'unavailable' | 'misconfigured' | 'too_large',
    message: string,
    options?: { cause?: unknown; bytes?: number },
  ) {
    super(message, options);
    this.bytes = options?.bytes;
  }

  /** The object's size, for 'too_large'. */
  readonly bytes: number | undefined;
}

/**
 * More than any object Loupe writes (a chunk holds at most audit.chunkMaxBytes, 64 MiB at most, plus one event and its
 * seal): a larger one was put there by someone else, and is never read whole into the broker's memory.
 */
export const maxAuditObjectBytes = 256 << 20;

export const tooLarge = (key: string, bytes: number, maxBytes: number) => new AuditStoreError('too_large', `audit object ${key} is ${bytes} bytes, over the ${maxBytes} read of it`, { bytes });
