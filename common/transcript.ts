/**
 * The audit transcript format and its verification, shared by the broker (`loupe audit verify`, the report) and the
 * VS Code extension (Download Transcript…), so both check a transcript the same way. No broker code and no jose here:
 * each side passes in how it opens a seal (the broker with jose, the extension with node:crypto).
 */
import * as crypto from 'node:crypto';
import { canonicalJson } from './canonicalJson';

/** crypto.hash (Node 20.12+) hashes in one call, without a Hash object per record; older runtimes (an editor's) fall back. */
const oneShot = typeof crypto.hash === 'function' ? crypto.hash : undefined;

export function sha256(data: string | Buffer): string {
  return oneShot ? oneShot('sha256', data, 'hex') : crypto.createHash('sha256').update(data).digest('hex');
}

/** The first `prev` of a stream binds the chain to its stream id, so records cannot move between streams. */
export const genesisHash = (stream: string) => sha256(`loupe-audit-genesis:${stream}`);

/** SHA-256 over the RFC 8785 canonical JSON of the event without its own hash (prev is inside). */
export const hashRecord = (record: object): string => sha256(canonicalJson(record));

export const chunkName = (firstSeq: number, lastSeq: number) => `chunk-${String(firstSeq).padStart(9, '0')}-${String(lastSeq).padStart(9, '0')}.ndjson`;
export const manifestName = 'manifest.json';

export interface TranscriptRetention {
  readonly mode?: string;
  readonly retainUntil?: Date;
}

/** A transcript as stored: sealed chunks in order, then the manifest. */
export interface Transcript {
  readonly stream: string;
  readonly chunks: { readonly name: string; readonly lines: readonly string[]; readonly sealLine?: string; readonly retention?: TranscriptRetention }[];
  readonly manifestLine?: string;
  readonly manifestRetention?: TranscriptRetention;
  /** What reading it from the store found wrong (an object overwritten or deleted there), reported first. */
  readonly problems?: readonly string[];
}

/** A record of the chain, as far as verification reads it. */
export interface ChainRecord {
  readonly seq: number;
  readonly stream: string;
  readonly prev: string;
  readonly hash: string;
}

export interface VerifyResult<R extends ChainRecord = ChainRecord> {
  readonly ok: boolean;
  /** The first problem found, naming the record; later problems follow. */
  readonly problems: string[];
  readonly notes: string[];
  readonly events: R[];
  readonly manifest?: Record<string, unknown>;
  /** Key ids that signed the seals that verified. */
  readonly kids: string[];
  /** The manifest is there and its seal verified: the session ended and nothing is missing at its end. */
  readonly sealedEnd: boolean;
}

/** Verifies a compact JWS seal of type `typ` and returns its signed payload, or throws saying why. */
export type SealOpener = (jws: string, typ: string) => Promise<Record<string, unknown>>;

const sealKid = (jws: string): string | undefined => {
  try {
    const kid = (JSON.parse(Buffer.from(jws.split('.')[0] ?? '', 'base64url').toString('utf8')) as { kid?: unknown }).kid;
    return typeof kid === 'string' ? kid : undefined;
  } catch {
    return undefined;
  }
};

/** Splits a downloaded NDJSON transcript (events, a seal line after each chunk, the manifest last). */
export function parseTranscriptText(text: string, stream?: string): Transcript {
  return parseTranscriptLines(text.split('\n'), stream);
}

/** The lines of NDJSON bytes, each decoded alone: a file of any size, never one string. */
export function* ndjsonLines(bytes: Uint8Array): Generator<string> {
  const decoder = new TextDecoder();
  let start = 0;
  while (start < bytes.length) {
    let end = bytes.indexOf(10, start);
    if (end < 0) end = bytes.length;
    yield decoder.decode(bytes.subarray(start, end));
    start = end + 1;
  }
}

/** As parseTranscriptText, from its lines. */
export function parseTranscriptLines(allLines: Iterable<string>, stream?: string): Transcript {
  const chunks: { name: string; lines: string[]; sealLine?: string }[] = [];
  let lines: string[] = [];
  let manifestLine: string | undefined;
  const problems: string[] = [];
  let afterManifest = 0;
  for (const line of allLines) {
    if (line === '') continue;
    if (manifestLine !== undefined) afterManifest++;
    let type: unknown;
    try {
      type = (JSON.parse(line) as { type?: unknown }).type;
    } catch {
      type = undefined;
    }
    if (type === 'seal') {
      const name = (JSON.parse(line) as { chunk?: unknown }).chunk;
      chunks.push({ name: typeof name === 'string' ? name : `chunk ${chunks.length + 1}`, lines, sealLine: line });
      lines = [];
    } else if (type === 'manifest') {
      manifestLine ??= line;
    } else lines.push(line);
  }
  if (lines.length > 0) chunks.push({ name: `unsealed lines after chunk ${chunks.length}`, lines });
  if (afterManifest > 0) problems.push(`${afterManifest} line(s) after the manifest: a transcript ends with its manifest (the transcript was changed)`);
  let id = stream;
  if (!id && manifestLine) id = String((JSON.parse(manifestLine) as { session?: unknown }).session ?? '');
  // The first record that names a stream (a changed or inserted line before it does not hide the stream's id).
  for (const line of id ? [] : chunks.flatMap((c) => c.lines)) {
    try {
      const named = (JSON.parse(line) as { stream?: unknown } | null)?.stream;
      if (typeof named === 'string' && named !== '') id = named;
    } catch {
      /* the checks below name the bad line */
    }
    if (id) break;
  }
  return { stream: id ?? '', chunks, ...(manifestLine ? { manifestLine } : {}), ...(problems.length ? { problems } : {}) };
}

/**
 * Checks every hash link, every seal against the published keys, that no sequence number is missing,
 * that the manifest matches the chunks, and (when asked) COMPLIANCE retention on every object.
 */
export async function checkTranscript<R extends ChainRecord = ChainRecord>(
  transcript: Transcript,
  openSeal: SealOpener,
  options: { requireRetention?: boolean; now?: Date } = {},
): Promise<VerifyResult<R>> {
  const problems: string[] = [...(transcript.problems ?? [])];
  const notes: string[] = [];
  const events: R[] = [];
  const kids = new Set<string>();
  let sealedEnd = false;
  const now = options.now ?? new Date();
  let expectedSeq = 0;
  let prev = genesisHash(transcript.stream);
  const seen: { name: string; firstSeq: number; lastSeq: number; sha256: string; headHash: string }[] = [];

  const checkRetention = (what: string, retention: TranscriptRetention | undefined) => {
    if (!options.requireRetention) return;
    if (!retention || retention.mode !== 'COMPLIANCE') problems.push(`${what}: not under COMPLIANCE retention (mode ${retention?.mode ?? 'unknown'})`);
    else if (!retention.retainUntil || retention.retainUntil <= now) problems.push(`${what}: retention ended ${retention.retainUntil?.toISOString() ?? '(no date)'}`);
  };

  if (transcript.chunks.length === 0) problems.push('the transcript holds no chunk');
  for (const chunk of transcript.chunks) {
    const text = chunk.lines.map((l) => l + '\n').join('');
    let chunkEvents: R[] = [];
    for (const [index, line] of chunk.lines.entries()) {
      const where = `${chunk.name}, line ${index + 1}`;
      let event: R;
      try {
        event = JSON.parse(line) as R;
      } catch {
        problems.push(`${where}: not valid JSON (the record was changed)`);
        continue;
      }
      if (typeof event !== 'object' || event === null || Array.isArray(event)) {
        problems.push(`${where}: not an audit record (a JSON object) (the record was changed)`);
        continue;
      }
      const label = `${where} (seq ${event.seq})`;
      if (event.stream !== transcript.stream) problems.push(`${label}: belongs to stream ${event.stream}, not ${transcript.stream}`);
      if (event.seq !== expectedSeq) {
        problems.push(
          event.seq > expectedSeq ? `${label}: records ${expectedSeq}..${event.seq - 1} are missing (deleted)` : `${label}: out of order, expected seq ${expectedSeq} (records reordered or repeated)`,
        );
      }
      const { hash, ...body } = event;
      if (hashRecord(body) !== hash) problems.push(`${label}: hash does not match the record (the record was changed)`);
      else if (event.prev !== prev) problems.push(`${label}: prev does not link to the record before it (records removed, reordered or inserted)`);
      prev = hash;
      // A seq that is not a number is named above; the records after it are checked against the count.
      expectedSeq = Number.isSafeInteger(event.seq) ? event.seq + 1 : expectedSeq + 1;
      chunkEvents.push(event);
    }
    events.push(...chunkEvents);
    if (!chunk.sealLine) {
      problems.push(`${chunk.name}: has no seal (truncated)`);
      continue;
    }
    try {
      const sealRecord = JSON.parse(chunk.sealLine) as { jws?: unknown };
      const payload = await openSeal(String(sealRecord.jws), 'loupe-chunk+jws');
      const kid = sealKid(String(sealRecord.jws));
      if (kid) kids.add(kid);
      const first = chunkEvents[0];
      const last = chunkEvents.at(-1);
      const actualSha = sha256(text);
      if (last && typeof payload.lastSeq === 'number' && payload.lastSeq > last.seq && payload.firstSeq === first!.seq) {
        problems.push(`${chunk.name}: records ${last.seq + 1}..${payload.lastSeq} are missing from the end of the chunk (deleted)`);
      }
      if (payload.session !== transcript.stream) problems.push(`${chunk.name}: seal is for stream ${String(payload.session)}`);
      if (payload.chunkSha256 !== actualSha) problems.push(`${chunk.name}: content does not match its seal (sha256 ${actualSha.slice(0, 12)}…, sealed ${String(payload.chunkSha256).slice(0, 12)}…)`);
      if (!first || payload.firstSeq !== first.seq || payload.lastSeq !== last!.seq)
        problems.push(`${chunk.name}: seal covers seq ${String(payload.firstSeq)}..${String(payload.lastSeq)}, the chunk holds ${first?.seq ?? '-'}..${last?.seq ?? '-'}`);
      if (last && payload.headHash !== last.hash) problems.push(`${chunk.name}: seal's head hash differs from the chunk's last record`);
      if (first && chunk.name !== chunkName(first.seq, last!.seq)) notes.push(`${chunk.name}: object name does not match its range`);
      seen.push({ name: chunk.name, firstSeq: Number(payload.firstSeq), lastSeq: Number(payload.lastSeq), sha256: String(payload.chunkSha256), headHash: String(payload.headHash) });
    } catch (err) {
      problems.push(`${chunk.name}: seal does not verify against the audit keys (${(err as Error).message})`);
    }
    checkRetention(chunk.name, chunk.retention);
    chunkEvents = [];
  }

  let manifest: Record<string, unknown> | undefined;
  if (!transcript.manifestLine) problems.push('no manifest: the session is still live, or the transcript was truncated');
  else {
    try {
      manifest = JSON.parse(transcript.manifestLine) as Record<string, unknown>;
      const payload = await openSeal(String(manifest.jws), 'loupe-manifest+jws');
      const kid = sealKid(String(manifest.jws));
      if (kid) kids.add(kid);
      // Every field of the manifest is what its seal signed (its copy of the chunk list too), and nothing is added.
      for (const field of new Set([...Object.keys(manifest), ...Object.keys(payload)])) {
        if (field === 'type' || field === 'jws' || (field === 'context' && !('context' in payload))) continue;
        if (canonicalJson(payload[field]) !== canonicalJson(manifest[field])) {
          problems.push(field in payload ? `manifest: field ${field} differs from what its seal signed` : `manifest: field ${field} is not in what its seal signed (added)`);
        }
      }
      // A manifest sealed before its context was signed: the context must say what the chain's first record says.
      if (!('context' in payload) && manifest.context !== undefined) {
        notes.push(
          "manifest: sealed by a broker that did not sign its context; the context's who, target, mode, reason and ticket were checked against the first record, its startedAt and retentionDays are not covered by the seal",
        );
        const context = (manifest.context ?? {}) as Record<string, unknown>;
        const first = (events[0] ?? {}) as Record<string, unknown>;
        for (const field of ['stream', 'kind', 'grant', 'actor', 'target', 'mode', 'reason', 'ticket']) {
          if (canonicalJson(context[field]) !== canonicalJson(first[field])) problems.push(`manifest: context field ${field} differs from the chain's first record (the manifest was changed)`);
        }
      }
      const listed = payload.chunks as { name: string; firstSeq: number; lastSeq: number; sha256: string; headHash: string }[];
      for (const [i, chunk] of listed.entries()) {
        const found = seen.find((c) => c.name === chunk.name);
        if (!found) problems.push(`manifest: chunk ${chunk.name} (seq ${chunk.firstSeq}..${chunk.lastSeq}) is missing`);
        else if (found.sha256 !== chunk.sha256 || found.headHash !== chunk.headHash) problems.push(`manifest: chunk ${chunk.name} differs from the one sealed in the manifest`);
        else if (seen.indexOf(found) !== i) problems.push(`manifest: chunk ${chunk.name} is out of order`);
      }
      for (const chunk of seen) if (!listed.some((c) => c.name === chunk.name)) notes.push(`${chunk.name}: not listed in the manifest (an upload repeated after a crash)`);
      const last = events.at(-1);
      if (payload.lastSeq !== (last?.seq ?? -1)) problems.push(`manifest: the session ends at seq ${String(payload.lastSeq)}, the transcript at ${last?.seq ?? '-'} (truncated)`);
      if (last && payload.headHash !== last.hash) problems.push(`manifest: head hash differs from the last record`);
      checkRetention(manifestName, transcript.manifestRetention);
      sealedEnd = true;
    } catch (err) {
      problems.push(`manifest: seal does not verify against the audit keys (${(err as Error).message})`);
    }
  }
  notes.push(...v8Evaluation(events));
  notes.push(...unansweredRequests(events));
  return { ok: problems.length === 0, problems, notes, events, ...(manifest ? { manifest } : {}), kids: [...kids], sealedEnd };
}

/** What a V8-privileged session's transcript cannot show: whether app code ran, and what redaction missed. */
export const v8EvaluationBanner = 'V8 evaluation: app code could run; redaction best-effort';

/** Whether a session's records say its grant had V8 evaluation (its session.started record). */
export function sessionHadV8Evaluation(events: readonly ChainRecord[]): boolean {
  type Loose = ChainRecord & { type?: string; data?: Record<string, unknown> };
  return (events as readonly Loose[]).some((e) => e.type === 'session.started' && e.data?.evaluation === 'v8');
}

function v8Evaluation(events: readonly ChainRecord[]): string[] {
  if (!sessionHadV8Evaluation(events)) return [];
  return [
    `${v8EvaluationBanner}: this session's grant allowed evaluating expressions in V8, which may call the app's functions and getters; the values recorded were redacted after the fact, which is best-effort`,
  ];
}

/**
 * Requests forwarded to the target with no response and no `cdp.response.missing` recorded: only a broker
 * that stopped abruptly leaves these. A request is durable before it is forwarded, but its response is made
 * durable with the group commit after the client may already have it, so the answer may have been delivered.
 */
function unansweredRequests(events: readonly ChainRecord[]): string[] {
  type Loose = ChainRecord & { type?: string; data?: Record<string, unknown> };
  if (!(events as readonly Loose[]).some((e) => e.data?.endReason === 'broker_crashed')) return [];
  const answered = new Set<unknown>();
  for (const e of events as readonly Loose[]) if (e.type === 'cdp.response' || e.type === 'cdp.response.missing') answered.add(e.data?.requestSeq);
  const notes: string[] = [];
  for (const e of events as readonly Loose[]) {
    const d = e.data ?? {};
    const forwarded = typeof d.targetId === 'number' && (d.decision === 'allow' || d.decision === 'rewrite') && typeof e.type === 'string' && e.type.startsWith('cdp.');
    if (!forwarded || answered.has(e.seq)) continue;
    notes.push(
      `seq ${e.seq} (${String(d.method)}, client id ${String(d.id)}): forwarded to the target, but no response was recorded before the broker stopped; its answer may have been delivered to the client`,
    );
  }
  return notes;
}
