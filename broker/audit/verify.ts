import type { JSONWebKeySet } from 'jose';
import { checkTranscript, manifestName, parseTranscriptText, type Transcript, type TranscriptRetention, type VerifyResult as CheckResult } from '../../common/transcript';
import type { AuditEvent } from './events';
import { openSeal } from './seal';
import type { AuditStore } from './stores/auditStore';

export { parseTranscriptText, type Transcript };
export type VerifyResult = CheckResult<AuditEvent>;

/** Reads a stream's objects from a store, with their retention when `withRetention`. */
export async function readTranscriptFromStore(store: AuditStore, prefix: string, withRetention: boolean): Promise<Transcript> {
  const keys = await store.list(prefix);
  const stream = prefix.replace(/\/$/, '').split('/').pop()!;
  const chunks: Transcript['chunks'][number][] = [];
  let manifestLine: string | undefined;
  let manifestRetention: TranscriptRetention | undefined;
  for (const key of keys) {
    const name = key.slice(prefix.length);
    const body = (await store.get(key)).toString('utf8');
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
  return { stream, chunks, ...(manifestLine ? { manifestLine } : {}), ...(manifestRetention ? { manifestRetention } : {}) };
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
