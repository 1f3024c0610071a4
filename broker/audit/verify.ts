import type { JSONWebKeySet } from 'jose';
import { checkTranscript, manifestName, parseTranscriptText, type Transcript, type TranscriptRetention, type VerifyResult as CheckResult } from '../../common/transcript';
import type { AuditEvent } from './events';
import { openSeal } from './seal';
import { LoupeError } from '../errors';
import { AuditStoreError, maxAuditObjectBytes, type AuditStore } from './stores/auditStore';

export { parseTranscriptText, type Transcript };
export type VerifyResult = CheckResult<AuditEvent>;

/**
 * Reads a stream's objects from a store, with their retention when `withRetention`. A store that keeps versions (S3)
 * shows the newest, and Object Lock does not stop a newer version or a delete marker from being added: each object
 * must have exactly one version, or the transcript is reported as changed.
 */
export async function readTranscriptFromStore(
  store: AuditStore,
  prefix: string,
  withRetention: boolean,
  /** Refused (with tooLarge's error) once the objects read pass maxBytes. */
  bound?: { maxBytes: number; tooLarge(bytes: number): Error },
): Promise<Transcript> {
  const problems = store.versions ? await versionProblems(store, prefix) : [];
  const keys = await store.list(prefix);
  const stream = prefix.replace(/\/$/, '').split('/').pop()!;
  const chunks: Transcript['chunks'][number][] = [];
  let manifestLine: string | undefined;
  let manifestRetention: TranscriptRetention | undefined;
  let bytes = 0;
  for (const key of keys) {
    const name = key.slice(prefix.length);
    const left = bound ? bound.maxBytes - bytes : Infinity;
    let object: Buffer;
    try {
      object = await store.get(key, Math.min(maxAuditObjectBytes, left));
    } catch (err) {
      if (!(err instanceof AuditStoreError && err.code === 'too_large')) throw err;
      if (bound && err.bytes! > left) throw bound.tooLarge(bytes + err.bytes!);
      // Never read: what it holds fails verification as a missing object would.
      problems.push(`${name}: ${err.bytes} bytes, larger than any object Loupe writes (the object was replaced); not read`);
      continue;
    }
    bytes += object.length;
    const body = object.toString('utf8');
    const retention = withRetention ? await store.retention(key) : undefined;
    if (name === manifestName) {
      manifestLine = body.trim();
      manifestRetention = retention;
      continue;
    }
    const lines = body.split('\n').filter((l) => l !== '');
    const sealLine = lines.at(-1);
    chunks.push({ name, lines: lines.slice(0, -1), ...(sealLine ? { sealLine } : {}), ...(retention ? { retention } : {}) });
  }
  return { stream, chunks, ...(manifestLine ? { manifestLine } : {}), ...(manifestRetention ? { manifestRetention } : {}), ...(problems.length ? { problems } : {}) };
}

async function sameBytes(store: AuditStore, key: string, ids: readonly string[]): Promise<boolean> {
  if (!store.getVersion) return false;
  const first = await store.getVersion(key, ids[0]!);
  for (const id of ids.slice(1)) if (!(await store.getVersion(key, id)).equals(first)) return false;
  return true;
}

async function versionProblems(store: AuditStore, prefix: string): Promise<string[]> {
  let versions;
  try {
    versions = await store.versions!(prefix);
  } catch (err) {
    return [`cannot list the versions of the stored objects, so an overwrite cannot be ruled out (${(err as Error).message})`];
  }
  const problems: string[] = [];
  for (const [key, { etags, ids, deleteMarkers }] of versions) {
    const name = key.slice(prefix.length);
    // The same bytes twice is a retried upload whose first answer was lost; other bytes are a rewrite. ETags differ
    // for the same bytes under some encryption settings, so differing ETags are settled by the bytes themselves.
    if (new Set(etags).size > 1 && !(await sameBytes(store, key, ids).catch(() => false))) {
      problems.push(`${name}: overwritten in the store: ${etags.length} versions of this write-once object with different content (the first, as sealed when written, is still retained)`);
    }
    if (deleteMarkers > 0) problems.push(`${name}: deleted in the store (a delete marker hides ${etags.length} retained version(s) of this write-once object)`);
  }
  return problems;
}

/**
 * A stream's objects as the NDJSON transcriptToText writes, one stored object at a time, the manifest last: a
 * transcript of any size is served without being held whole (one string stops at 512 MiB in V8).
 */
export async function* transcriptTextParts(store: AuditStore, prefix: string): AsyncGenerator<string> {
  let manifestLine = '';
  for (const key of await store.list(prefix)) {
    // An object larger than any Loupe writes is not sent: the download is refused or cut there, never held whole.
    const body = (
      await store.get(key, maxAuditObjectBytes).catch((err: unknown) => {
        if (!(err instanceof AuditStoreError && err.code === 'too_large')) throw err;
        throw new LoupeError('internal', `${key}: ${err.bytes} bytes in the audit store, larger than any object Loupe writes (the object was replaced); not sent`);
      })
    ).toString('utf8');
    if (key.slice(prefix.length) === manifestName) {
      manifestLine = body.trim();
      continue;
    }
    const text = body
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => l + '\n')
      .join('');
    if (text !== '') yield text;
  }
  if (manifestLine !== '') yield manifestLine + '\n';
}

export function transcriptToText(transcript: Transcript): string {
  return transcript.chunks.map((c) => [...c.lines, ...(c.sealLine ? [c.sealLine] : [])].map((l) => l + '\n').join('')).join('') + (transcript.manifestLine ? transcript.manifestLine + '\n' : '');
}

/**
 * Checks every hash link, every seal against the published keys, that no sequence number is missing,
 * that the manifest matches the chunks, and (when asked) COMPLIANCE retention on every object.
 */
export function verifyTranscript(transcript: Transcript, keys: JSONWebKeySet, options: { requireRetention?: boolean; now?: Date } = {}): Promise<VerifyResult> {
  return checkTranscript<AuditEvent>(transcript, (jws, typ) => openSeal(jws, keys, typ), options);
}
