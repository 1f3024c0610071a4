/**
 * "Loupe: Download Transcript…" without `vscode`: list the recorded sessions (auditors), save a session's transcript
 * with the broker's published audit keys and its report into a folder (the layout `loupe audit download` writes, so
 * `loupe audit verify <folder>` checks it offline), and verify the saved transcript here, against those keys, with the
 * broker's own checks (common/transcript.ts) and node:crypto for the seals (no broker code in the extension bundle). The extension shows what this returns; tests drive it against a real broker.
 */
import { createPublicKey, verify as verifySignature, type JsonWebKey } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { checkTranscript as verifyTranscriptWith, ndjsonLines, parseTranscriptLines, parseTranscriptText, type SealOpener, type Transcript } from '../common/transcript';
import { BrokerApiError, describeBrokerError, type BrokerApi, type RecordedSession } from './adapter/brokerApi';

export type { RecordedSession };

/** The broker refused because the caller holds no auditor role (403): said plainly, with the broker's words. */
export class NotAuditorError extends Error {
  constructor(readonly brokerMessage: string) {
    super(`Download Transcript is for auditors: the broker refused (${brokerMessage}). Ask for a role listed in the broker's "auditors".`);
  }
}

function refusal(err: unknown): Error {
  if (err instanceof BrokerApiError && err.status === 403) return new NotAuditorError(err.message);
  return err instanceof Error ? err : new Error(describeBrokerError(err));
}

/** Recorded sessions, newest first (GET /v1/sessions). Throws NotAuditorError for a caller without an auditor role. */
export async function listRecordedSessions(api: BrokerApi): Promise<RecordedSession[]> {
  try {
    return await api.sessions();
  } catch (err) {
    throw refusal(err);
  }
}

/** A quick pick row for a session: target and user, when and how it ended, the reason. */
export function sessionRow(s: RecordedSession): { label: string; description: string; detail: string } {
  const state = s.state === 'ended' ? `ended${s.endReason ? ` (${s.endReason})` : ''}` : s.state;
  return {
    label: `${s.target} · ${s.user?.name || s.user?.sub || '?'}`,
    description: `${s.startedAt} · ${s.mode}${s.evaluation === 'v8' ? ' · V8 eval' : ''} · ${state}`,
    detail: `${s.reason}${s.ticket ? ` · ticket ${s.ticket}` : ''} · session ${s.sessionId}`,
  };
}

export interface TranscriptCheck {
  readonly ok: boolean;
  readonly sessionId: string;
  readonly records: number;
  readonly chunks: number;
  /** The manifest is there and sealed: the session ended and nothing is missing at its end. */
  readonly sealedEnd: boolean;
  /** Key ids that signed the seals. */
  readonly kids: readonly string[];
  /** The first problem names the record (chunk, line, seq). */
  readonly problems: readonly string[];
}

export interface SavedTranscript {
  readonly dir: string;
  readonly transcriptFile: string;
  readonly keysFile: string;
  /** Absent when the broker would not render the report (a transcript over its bound): `reportRefused` says why. */
  readonly reportFile?: string;
  readonly reportRefused?: string;
  readonly check: TranscriptCheck;
}

/**
 * Saves a session into `<parentDir>/loupe-session-<id>/`: transcript.ndjson and keys.json (the broker's published
 * audit keys), and report.html (the broker's report, itself verified by the broker). The transcript is then checked
 * here against keys.json. Throws NotAuditorError for a caller without an auditor role, before writing anything.
 */
export async function saveTranscript(api: BrokerApi, sessionId: string, parentDir: string): Promise<SavedTranscript> {
  const dir = join(resolve(parentDir), `loupe-session-${sessionId}`);
  const files = { transcriptFile: join(dir, 'transcript.ndjson'), keysFile: join(dir, 'keys.json'), reportFile: join(dir, 'report.html') };
  let report: string | undefined;
  let reportRefused: string | undefined;
  let keys: { keys: Record<string, unknown>[] };
  try {
    // Written as it arrives, a transcript of any size; a refusal comes before the folder is made.
    await api.downloadTranscript(sessionId, files.transcriptFile);
    // A transcript too large for the broker to render is still saved and checked here; only its report is missing.
    report = await api.report(sessionId).catch((err: unknown) => {
      if (!(err instanceof BrokerApiError && err.code === 'report_too_large')) throw err;
      reportRefused = err.message;
      return undefined;
    });
    keys = await api.auditKeys();
  } catch (err) {
    throw refusal(err);
  }
  writeFileSync(files.keysFile, JSON.stringify(keys, null, 2) + '\n');
  if (report !== undefined) writeFileSync(files.reportFile, report);
  const transcript = parseTranscriptLines(ndjsonLines(readFileSync(files.transcriptFile)), sessionId);
  const { reportFile, ...rest } = files;
  return { dir, ...rest, ...(report !== undefined ? { reportFile } : { reportRefused: reportRefused! }), check: await checkParsed(transcript, keys) };
}

/** One line for the user: verified with what, or the first problem. */
export function describeCheck(check: TranscriptCheck): string {
  if (check.ok) {
    return `verified: ${check.records} records in ${check.chunks} sealed chunk${check.chunks === 1 ? '' : 's'}, hash chain intact, ${check.sealedEnd ? 'manifest sealed' : 'no manifest yet'} (audit key ${check.kids.join(', ')})`;
  }
  return `verification FAILED: ${check.problems[0]}${check.problems.length > 1 ? ` (and ${check.problems.length - 1} more)` : ''}`;
}

/** Opens a seal (a compact JWS, EdDSA over Ed25519) against the broker's published key set, with node:crypto only. */
function sealOpener(keys: { keys: Record<string, unknown>[] }): SealOpener {
  return async (jws, typ) => {
    const [h, p, s, ...rest] = jws.split('.');
    if (!h || !p || !s || rest.length) throw new Error('not a compact JWS');
    const header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8')) as { alg?: string; kid?: string; typ?: string };
    if (header.alg !== 'EdDSA') throw new Error(`algorithm ${header.alg}, expected EdDSA`);
    if (header.typ !== typ) throw new Error(`seal has type ${header.typ}, expected ${typ}`);
    const jwk = keys.keys.find((k) => k.kid === header.kid && k.kty === 'OKP' && k.crv === 'Ed25519');
    if (!jwk) throw new Error(`sealed with audit key ${header.kid}, which no broker published (published: ${keys.keys.map((k) => k.kid).join(', ') || 'none'})`);
    const { kty, crv, x } = jwk as { kty: string; crv: string; x: string };
    const key = createPublicKey({ key: { kty, crv, x } as JsonWebKey, format: 'jwk' });
    if (!verifySignature(null, Buffer.from(`${h}.${p}`), key, Buffer.from(s, 'base64url'))) throw new Error('signature verification failed');
    return JSON.parse(Buffer.from(p, 'base64url').toString('utf8')) as Record<string, unknown>;
  };
}

/**
 * Checks a downloaded transcript (records, a seal line after each chunk, the manifest last) against an audit key set
 * with the same checks as `loupe audit verify` (common/transcript.ts): every record's hash and `prev` link from the
 * stream's genesis, no missing or reordered sequence number, each seal's signature, range, content hash and head, and
 * the manifest's signature, chunk list, last seq and head.
 */
export async function checkTranscript(text: string, keys: { keys: Record<string, unknown>[] }, expectedSession?: string): Promise<TranscriptCheck> {
  return checkParsed(parseTranscriptText(text, expectedSession), keys);
}

async function checkParsed(transcript: Transcript, keys: { keys: Record<string, unknown>[] }): Promise<TranscriptCheck> {
  const result = await verifyTranscriptWith(transcript, sealOpener(keys));
  return { ok: result.ok, sessionId: transcript.stream, records: result.events.length, chunks: transcript.chunks.length, sealedEnd: result.sealedEnd, kids: result.kids, problems: result.problems };
}
