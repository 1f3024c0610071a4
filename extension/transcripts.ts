/**
 * "Loupe: Download Transcript…" without `vscode`: list the recorded sessions (auditors), save a session's transcript
 * with the broker's published audit keys and its report into a folder (the layout `loupe audit download` writes, so
 * `loupe audit verify <folder>` checks it offline), and verify the saved transcript here, against those keys, with
 * node:crypto only (no broker code in the extension bundle): every record's hash and link, the sequence, every
 * chunk's seal and the manifest's. The extension shows what this returns; tests drive it against a real broker.
 */
import { createHash, createPublicKey, verify as verifySignature, type JsonWebKey } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import canonicalize from 'canonicalize';
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
    description: `${s.startedAt} · ${s.mode} · ${state}`,
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
  readonly reportFile: string;
  readonly check: TranscriptCheck;
}

/**
 * Saves a session into `<parentDir>/loupe-session-<id>/`: transcript.ndjson and keys.json (the broker's published
 * audit keys), and report.html (the broker's report, itself verified by the broker). The transcript is then checked
 * here against keys.json. Throws NotAuditorError for a caller without an auditor role, before writing anything.
 */
export async function saveTranscript(api: BrokerApi, sessionId: string, parentDir: string): Promise<SavedTranscript> {
  let transcript: string;
  let report: string;
  let keys: { keys: Record<string, unknown>[] };
  try {
    transcript = await api.transcript(sessionId);
    report = await api.report(sessionId);
    keys = await api.auditKeys();
  } catch (err) {
    throw refusal(err);
  }
  const dir = join(resolve(parentDir), `loupe-session-${sessionId}`);
  mkdirSync(dir, { recursive: true });
  const files = { transcriptFile: join(dir, 'transcript.ndjson'), keysFile: join(dir, 'keys.json'), reportFile: join(dir, 'report.html') };
  writeFileSync(files.transcriptFile, transcript);
  writeFileSync(files.keysFile, JSON.stringify(keys, null, 2) + '\n');
  writeFileSync(files.reportFile, report);
  return { dir, ...files, check: checkTranscript(transcript, keys, sessionId) };
}

/** One line for the user: verified with what, or the first problem. */
export function describeCheck(check: TranscriptCheck): string {
  if (check.ok) {
    return `verified: ${check.records} records in ${check.chunks} sealed chunk${check.chunks === 1 ? '' : 's'}, hash chain intact, ${check.sealedEnd ? 'manifest sealed' : 'no manifest yet'} (audit key ${check.kids.join(', ')})`;
  }
  return `verification FAILED: ${check.problems[0]}${check.problems.length > 1 ? ` (and ${check.problems.length - 1} more)` : ''}`;
}

const sha256 = (data: string) => createHash('sha256').update(data).digest('hex');

/** Verifies a compact JWS (EdDSA, Ed25519) against a JWKS; returns the payload, or throws saying why. */
function openSeal(jws: unknown, keys: { keys: Record<string, unknown>[] }, typ: string): Record<string, any> {
  if (typeof jws !== 'string') throw new Error('no JWS');
  const [h, p, s, ...rest] = jws.split('.');
  if (!h || !p || !s || rest.length) throw new Error('not a compact JWS');
  const header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8')) as { alg?: string; kid?: string; typ?: string };
  if (header.alg !== 'EdDSA') throw new Error(`algorithm ${header.alg}, expected EdDSA`);
  if (header.typ !== typ) throw new Error(`seal has type ${header.typ}, expected ${typ}`);
  const jwk = keys.keys.find((k) => k.kid === header.kid && k.kty === 'OKP' && k.crv === 'Ed25519');
  if (!jwk) throw new Error(`no audit key ${header.kid} in the key set`);
  const { kty, crv, x } = jwk as { kty: string; crv: string; x: string };
  const key = createPublicKey({ key: { kty, crv, x } as JsonWebKey, format: 'jwk' });
  if (!verifySignature(null, Buffer.from(`${h}.${p}`), key, Buffer.from(s, 'base64url'))) throw new Error('signature verification failed');
  return { ...JSON.parse(Buffer.from(p, 'base64url').toString('utf8')), kid: header.kid };
}

/**
 * Checks a downloaded transcript (records, a seal line after each chunk, the manifest last) against an audit key set:
 * the same checks as `loupe audit verify` on a folder: hash of every record over its canonical JSON, the `prev` links
 * from the stream's genesis, no missing or reordered sequence number, each seal's signature, range, content hash and
 * head, and the manifest's signature, chunk list, last seq and head.
 */
export function checkTranscript(text: string, keys: { keys: Record<string, unknown>[] }, expectedSession?: string): TranscriptCheck {
  const problems: string[] = [];
  const kids = new Set<string>();
  const chunks: { name: string; lines: string[]; seal?: string }[] = [];
  let lines: string[] = [];
  let manifestLine: string | undefined;
  for (const line of text.split('\n')) {
    if (line === '') continue;
    let type: unknown;
    try {
      type = (JSON.parse(line) as { type?: unknown }).type;
    } catch {
      type = undefined;
    }
    if (type === 'seal') {
      const name = (JSON.parse(line) as { chunk?: unknown }).chunk;
      chunks.push({ name: typeof name === 'string' ? name : `chunk ${chunks.length + 1}`, lines, seal: line });
      lines = [];
    } else if (type === 'manifest') manifestLine = line;
    else lines.push(line);
  }
  if (lines.length > 0) chunks.push({ name: `unsealed lines after chunk ${chunks.length}`, lines });

  let stream = expectedSession ?? '';
  if (!stream && manifestLine) stream = String(JSON.parse(manifestLine).session ?? '');
  if (!stream) {
    try {
      stream = String(JSON.parse(chunks[0]?.lines[0] ?? '{}').stream ?? '');
    } catch {
      // named below
    }
  }
  let expectedSeq = 0;
  let prev = sha256(`loupe-audit-genesis:${stream}`);
  let records = 0;
  let last: { seq: number; hash: string } | undefined;
  const sealed: { name: string; sha256: string; headHash: string }[] = [];
  if (chunks.length === 0) problems.push('the transcript holds no chunk');
  for (const chunk of chunks) {
    let first: { seq: number } | undefined;
    let chunkLast: { seq: number; hash: string } | undefined;
    for (const [index, line] of chunk.lines.entries()) {
      const where = `${chunk.name}, line ${index + 1}`;
      let record: Record<string, any>;
      try {
        record = JSON.parse(line);
      } catch {
        problems.push(`${where}: not valid JSON (the record was changed)`);
        continue;
      }
      const label = `${where} (seq ${record.seq})`;
      if (record.stream !== stream) problems.push(`${label}: belongs to stream ${record.stream}, not ${stream}`);
      if (record.seq !== expectedSeq) {
        problems.push(record.seq > expectedSeq ? `${label}: records ${expectedSeq}..${record.seq - 1} are missing (deleted)` : `${label}: out of order, expected seq ${expectedSeq} (records reordered or repeated)`);
      }
      const { hash, ...body } = record;
      if (sha256(canonicalize(body)!) !== hash) problems.push(`${label}: hash does not match the record (the record was changed)`);
      else if (record.prev !== prev) problems.push(`${label}: prev does not link to the record before it (records removed, reordered or inserted)`);
      prev = hash;
      expectedSeq = record.seq + 1;
      records++;
      first ??= record as { seq: number };
      chunkLast = last = record as { seq: number; hash: string };
    }
    if (!chunk.seal) {
      problems.push(`${chunk.name}: has no seal (truncated)`);
      continue;
    }
    try {
      const payload = openSeal(JSON.parse(chunk.seal).jws, keys, 'loupe-chunk+jws');
      kids.add(payload.kid);
      const content = sha256(chunk.lines.map((l) => l + '\n').join(''));
      if (payload.session !== stream) problems.push(`${chunk.name}: seal is for stream ${payload.session}`);
      if (payload.chunkSha256 !== content) problems.push(`${chunk.name}: content does not match its seal`);
      if (!first || payload.firstSeq !== first.seq || payload.lastSeq !== chunkLast!.seq) problems.push(`${chunk.name}: seal covers seq ${payload.firstSeq}..${payload.lastSeq}, the chunk holds ${first?.seq ?? '-'}..${chunkLast?.seq ?? '-'}`);
      if (chunkLast && payload.headHash !== chunkLast.hash) problems.push(`${chunk.name}: seal's head hash differs from the chunk's last record`);
      sealed.push({ name: chunk.name, sha256: String(payload.chunkSha256), headHash: String(payload.headHash) });
    } catch (err) {
      problems.push(`${chunk.name}: seal does not verify against the audit keys (${(err as Error).message})`);
    }
  }
  let sealedEnd = false;
  if (!manifestLine) problems.push('no manifest: the session is still live, or the transcript was truncated');
  else {
    try {
      const manifest = JSON.parse(manifestLine);
      const payload = openSeal(manifest.jws, keys, 'loupe-manifest+jws');
      kids.add(payload.kid);
      for (const field of ['session', 'kind', 'lastSeq', 'headHash', 'closedAt', 'endReason']) {
        if (JSON.stringify(payload[field]) !== JSON.stringify(manifest[field])) problems.push(`manifest: field ${field} differs from what its seal signed`);
      }
      const listed = (payload.chunks ?? []) as { name: string; firstSeq: number; lastSeq: number; sha256: string; headHash: string }[];
      for (const [i, c] of listed.entries()) {
        const found = sealed.findIndex((s) => s.name === c.name);
        if (found < 0) problems.push(`manifest: chunk ${c.name} (seq ${c.firstSeq}..${c.lastSeq}) is missing`);
        else if (sealed[found]!.sha256 !== c.sha256 || sealed[found]!.headHash !== c.headHash) problems.push(`manifest: chunk ${c.name} differs from the one sealed in the manifest`);
        else if (found !== i) problems.push(`manifest: chunk ${c.name} is out of order`);
      }
      if (payload.lastSeq !== (last?.seq ?? -1)) problems.push(`manifest: the session ends at seq ${payload.lastSeq}, the transcript at ${last?.seq ?? '-'} (truncated)`);
      if (last && payload.headHash !== last.hash) problems.push('manifest: head hash differs from the last record');
      sealedEnd = true;
    } catch (err) {
      problems.push(`manifest: seal does not verify against the audit keys (${(err as Error).message})`);
    }
  }
  return { ok: problems.length === 0, sessionId: stream, records, chunks: chunks.length, sealedEnd, kids: [...kids], problems };
}
