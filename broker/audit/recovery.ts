import type { SigningKey } from '../identity/keys';
import { linesText } from './auditStream';
import { genesisHash, hashEvent, sha256, streamPrefix, type AuditEvent } from './events';
import { openSeal } from './seal';
import { maxAuditObjectBytes, type AuditStore } from './stores/auditStore';
import { eventLinePrefix, type ChunkInfo, type RecoveredStream, type WriteAheadLog } from './wal';

/** A range of records the WAL had lost and the store still held, taken back at recovery. */
export interface Reconciled {
  readonly stream: string;
  readonly fromSeq: number;
  readonly toSeq: number;
  readonly chunk: string;
}

/** What recovery needs of the trail (AuditTrail), and where it notes what it reconciled. */
export interface RecoveryContext {
  readonly store: AuditStore;
  readonly wal: WriteAheadLog;
  readonly key: SigningKey;
  readonly log?: ((line: string) => void) | undefined;
  readonly reconciled: Reconciled[];
}

/**
 * Chunks a crashed run uploaded but had not yet noted in the WAL: adopted when their bytes match the
 * events the WAL holds, so the restart does not upload the same records again under another name.
 */
export async function adoptUploaded(stream: RecoveredStream, trail: RecoveryContext): Promise<void> {
  let keys: string[];
  try {
    keys = await trail.store.list(streamPrefix(stream.context));
  } catch {
    return; // store down: a chunk begun before the crash is retried with the same boundaries (see nextChunk)
  }
  const known = new Set(stream.chunks.map((c) => c.name));
  for (const key of keys) {
    const match = /chunk-(\d{9})-(\d{9})\.ndjson$/.exec(key);
    if (!match || known.has(key.slice(key.lastIndexOf('/') + 1))) continue;
    const [firstSeq, lastSeq] = [Number(match[1]), Number(match[2])];
    const uploadedThrough = Math.max(-1, ...stream.chunks.map((c) => c.lastSeq));
    if (firstSeq !== uploadedThrough + 1) continue;
    const held = [...stream.events.keys()].filter((i) => stream.events[i]!.seq >= firstSeq && stream.events[i]!.seq <= lastSeq);
    const have = held.map((i) => stream.events[i]!);
    const haveLines = held.map((i) => stream.lines[i]!);
    const body = await trail.store.get(key, maxAuditObjectBytes).catch(() => undefined);
    if (!body || !body.toString('utf8').startsWith(linesText(haveLines))) continue;
    // The WAL may end inside this chunk (cut by a crash or a full disk after the upload): the rest is
    // taken from the store, if its seal is ours and its records continue the chain the WAL holds.
    const continuation = have.length < lastSeq - firstSeq + 1 ? await storedContinuation(body, have, firstSeq, lastSeq, trail.key) : { events: [], lines: [] };
    if (continuation === undefined) continue;
    const { events: missing, lines: missingLines } = continuation;
    for (const [i, event] of missing.entries()) await trail.wal.append({ t: 'event', event }, false, `${eventLinePrefix}${missingLines[i]}}`);
    const events = [...have, ...missing];
    stream.events.push(...missing);
    stream.lines.push(...missingLines);
    if (missing.length > 0) {
      trail.log?.(`audit: ${stream.context.stream}: the write-ahead log ended at seq ${firstSeq + have.length - 1}; seq ${missing[0]!.seq}-${lastSeq} reconciled from the store (${key})`);
      trail.reconciled.push({ stream: stream.context.stream, fromSeq: missing[0]!.seq, toSeq: lastSeq, chunk: key });
    }
    const chunk: ChunkInfo = { name: key.slice(key.lastIndexOf('/') + 1), firstSeq, lastSeq, sha256: sha256(linesText([...haveLines, ...missingLines])), headHash: events.at(-1)!.hash };
    await trail.wal.append({ t: 'uploaded', stream: stream.context.stream, chunk });
    stream.chunks.push(chunk);
  }
}

/** The records of a stored chunk after those the WAL has (and their lines), when its seal verifies and they chain on; else undefined. */
async function storedContinuation(body: Buffer, have: readonly AuditEvent[], firstSeq: number, lastSeq: number, key: SigningKey): Promise<{ events: AuditEvent[]; lines: string[] } | undefined> {
  const lines = body
    .toString('utf8')
    .split('\n')
    .filter((l) => l !== '');
  try {
    const sealLine = JSON.parse(lines.at(-1)!) as { type?: string; jws?: string };
    const events = lines.slice(0, -1).map((l) => JSON.parse(l) as AuditEvent);
    if (sealLine.type !== 'seal' || !sealLine.jws || events.length !== lastSeq - firstSeq + 1) return undefined;
    const sealed = await openSeal(sealLine.jws, { keys: [key.publicJwk] }, 'loupe-chunk+jws');
    if (sealed.chunkSha256 !== sha256(linesText(lines.slice(0, -1))) || sealed.firstSeq !== firstSeq || sealed.lastSeq !== lastSeq) return undefined;
    let prev = have.at(-1)?.hash ?? (firstSeq === 0 ? genesisHash(events[0]!.stream) : undefined);
    const rest = events.slice(have.length);
    for (const [i, event] of rest.entries()) {
      const { hash, ...body } = event;
      if (event.seq !== firstSeq + have.length + i || event.prev !== prev || hashEvent(body) !== hash) return undefined;
      prev = hash;
    }
    return { events: rest, lines: lines.slice(have.length, -1) };
  } catch {
    return undefined;
  }
}
