import { closeSync, createWriteStream, mkdirSync, openSync, readFileSync, rmSync, writeFileSync, writeSync, existsSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream } from 'node:stream/web';
import type { JSONWebKeySet } from 'jose';
import { readKeyObject } from './publishedKeys';
import { reportParts } from './report';
import { ndjsonLines, parseTranscriptLines } from '../../common/transcript';
import { readTranscriptFromStore, verifyTranscript, type Transcript, type VerifyResult } from './verify';

export interface BrokerClientOptions {
  readonly broker: string;
  readonly token: string;
}

/** How long the CLI waits for an HTTP answer to begin (LOUPE_HTTP_TIMEOUT_SECONDS, default 30), so a server that never answers does not hold it. */
const answerTimeoutMs = () => (Number(process.env.LOUPE_HTTP_TIMEOUT_SECONDS) > 0 ? Number(process.env.LOUPE_HTTP_TIMEOUT_SECONDS) * 1000 : 30_000);

/** fetch, refused with a clear error when no answer begins within answerTimeoutMs. */
async function fetchAnswer(url: string, init: RequestInit = {}): Promise<Response> {
  const ms = answerTimeoutMs();
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(new Error(`no answer within ${ms / 1000} s`)), ms);
  try {
    return await fetch(url, { ...init, signal: abort.signal });
  } catch (err) {
    throw abort.signal.aborted ? (abort.signal.reason as Error) : err;
  } finally {
    clearTimeout(timer);
  }
}

async function brokerGet(options: BrokerClientOptions, path: string): Promise<Response> {
  let res: Response;
  try {
    res = await fetchAnswer(`${options.broker.replace(/\/$/, '')}${path}`, { headers: { authorization: `Bearer ${options.token}` } });
  } catch (err) {
    throw new Error(`cannot reach the broker at ${options.broker}: ${(err as Error).message}`);
  }
  if (!res.ok) {
    const body = (await res.json().catch(() => undefined)) as { error?: { message?: string } } | undefined;
    throw new Error(`${path}: HTTP ${res.status}: ${body?.error?.message ?? res.statusText}`);
  }
  return res;
}

export async function listSessions(options: BrokerClientOptions, filter: Record<string, string | undefined>): Promise<string> {
  const query = new URLSearchParams(Object.entries(filter).filter((e): e is [string, string] => e[1] !== undefined));
  const { sessions } = (await (await brokerGet(options, `/v1/sessions${query.size ? `?${query}` : ''}`)).json()) as { sessions: Record<string, any>[] };
  if (sessions.length === 0) return 'no sessions match\n';
  const rows = sessions.map((s) => [
    s.sessionId,
    s.startedAt,
    s.target,
    s.user.sub,
    s.evaluation === 'v8' ? `${s.mode} + V8 eval` : s.mode,
    s.state === 'ended' ? `ended: ${s.endReason}` : s.state === 'damaged' ? `damaged: ${s.problem}` : s.state,
    s.reason,
  ]);
  const header = ['SESSION', 'STARTED', 'TARGET', 'USER', 'MODE', 'STATE', 'REASON'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  return [header, ...rows].map((r) => r.map((c, i) => (i === r.length - 1 ? String(c) : String(c).padEnd(widths[i]!))).join('  ')).join('\n') + '\n';
}

/** The segments of the broker's security stream, or its grant streams. */
export async function listSecurity(options: BrokerClientOptions, kind: 'security' | 'grants' = 'security'): Promise<string> {
  const { segments } = (await (await brokerGet(options, `/v1/audit/${kind}`)).json()) as { segments: Record<string, any>[] };
  if (segments.length === 0) return `no ${kind === 'grants' ? 'grant streams' : 'security segments'} stored yet\n`;
  const rows = segments.map((s) => [s.stream, s.startedAt, s.state === 'ended' ? `ended: ${s.endReason}` : s.state === 'damaged' ? `damaged: ${s.problem}` : s.state, s.records ?? '']);
  const header = [kind === 'grants' ? 'STREAM' : 'SEGMENT', 'STARTED', 'STATE', 'RECORDS'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  return [header, ...rows].map((r) => r.map((c, i) => (i === r.length - 1 ? String(c) : String(c).padEnd(widths[i]!))).join('  ')).join('\n') + '\n';
}

/** Saves a session's (or a security segment's) transcript and the broker's published audit keys into a folder. */
export async function downloadSession(options: BrokerClientOptions, sessionId: string, outDir: string): Promise<{ dir: string; transcript: string; keys: string }> {
  const path = /^(security|grants)-/.test(sessionId) ? `/v1/audit/${sessionId.split('-')[0]}/${encodeURIComponent(sessionId)}/transcript` : `/v1/sessions/${encodeURIComponent(sessionId)}/transcript`;
  const answer = await brokerGet(options, path);
  const keys = await (await brokerGet(options, '/v1/audit/keys')).text();
  const dir = resolve(outDir);
  mkdirSync(dir, { recursive: true });
  // Written as it arrives: a transcript of any size, never held whole. A part cut at a chunk's end would pass for a
  // live session's transcript, so a download cut short keeps nothing (the file is opened at once, so its removal never
  // races the stream's own open).
  const file = join(dir, 'transcript.ndjson');
  await pipeline(Readable.fromWeb(answer.body as ReadableStream), createWriteStream(file, { fd: openSync(file, 'w') })).catch((err: Error) => {
    rmSync(file, { force: true });
    throw new Error(`the transcript download was cut short, and nothing was kept: ${err.message}`);
  });
  writeFileSync(join(dir, 'keys.json'), keys);
  return { dir, transcript: join(dir, 'transcript.ndjson'), keys: join(dir, 'keys.json') };
}

async function loadKeys(spec: string): Promise<JSONWebKeySet> {
  if (/^https?:\/\//.test(spec)) {
    const res = await fetchAnswer(spec).catch((err: Error) => {
      throw new Error(`cannot fetch audit keys from ${spec}: ${err.message}`);
    });
    if (!res.ok) throw new Error(`cannot fetch audit keys from ${spec}: HTTP ${res.status}`);
    return keySet(spec, await res.text());
  }
  let text: string;
  try {
    text = readFileSync(spec, 'utf8');
  } catch (err) {
    throw new Error(`cannot read the audit keys ${spec}: ${(err as Error).message}`);
  }
  return keySet(spec, text);
}

/** The audit keys as a JWKS ({"keys": [...]}), or an error naming where they came from. */
function keySet(spec: string, text: string): JSONWebKeySet {
  let set: unknown;
  try {
    set = JSON.parse(text);
  } catch {
    throw new Error(`${spec}: not JSON (expected the audit keys as a JWKS, {"keys": [...]}, as GET /v1/audit/keys serves them)`);
  }
  const keys = (set as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys) || !keys.every((k) => k !== null && typeof k === 'object')) throw new Error(`${spec}: not a JWKS (expected {"keys": [...]}, as GET /v1/audit/keys serves them)`);
  return set as JSONWebKeySet;
}

export interface VerifyTarget {
  readonly transcript: Transcript;
  readonly keys: JSONWebKeySet;
  readonly requireRetention: boolean;
  readonly source: string;
}

/** Reads what `verify` and `render` work on: a downloaded folder, or a session prefix in S3. */
export async function openVerifyTarget(location: string, keysSpec: string | undefined): Promise<VerifyTarget> {
  const s3 = /^s3:\/\/([^/]+)\/(.+?)\/?$/.exec(location);
  if (s3) {
    const [, bucket, path] = s3 as unknown as [string, string, string];
    const at = path.search(/(^|\/)(sessions|grants|security)\//);
    if (at < 0) throw new Error(`${location}: expected s3://bucket/[prefix/]sessions/YYYY/MM/DD/<sessionId> (or grants/…, security/…)`);
    const storePrefix = path.slice(0, at === 0 ? 0 : at + 1);
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { S3AuditStore } = require('./stores/s3Store') as typeof import('./stores/s3Store');
    const store = new S3AuditStore({ bucket, prefix: storePrefix, forcePathStyle: true });
    const streamPrefix = `${path.slice(storePrefix.length)}/`;
    const transcript = await readTranscriptFromStore(store, streamPrefix, true);
    let keys: JSONWebKeySet;
    if (keysSpec) keys = await loadKeys(keysSpec);
    else {
      const keyObjects = await store.list('keys/');
      keys = { keys: [] };
      // Every broker sharing the bucket published its key here; an object that is not one public key named by its thumbprint is left out.
      for (const name of keyObjects) {
        const read = await readKeyObject(name, await store.get(name));
        if ('key' in read) keys.keys.push(read.key);
        else process.stderr.write(`loupe: not using ${read.problem}\n`);
      }
    }
    return { transcript, keys, requireRetention: true, source: location };
  }
  const dir = resolve(location);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new Error(`${location}: not a folder (expected the output of "loupe audit download") or an s3:// location`);
  const transcriptFile = join(dir, 'transcript.ndjson');
  if (!existsSync(transcriptFile)) throw new Error(`${location}: no transcript.ndjson`);
  const keys = await loadKeys(keysSpec ?? join(dir, 'keys.json'));
  return { transcript: parseTranscriptLines(ndjsonLines(readFileSync(transcriptFile))), keys, requireRetention: false, source: dir };
}

export async function verifyLocation(location: string, keysSpec?: string): Promise<{ result: VerifyResult; target: VerifyTarget }> {
  const target = await openVerifyTarget(location, keysSpec);
  return { result: await verifyTranscript(target.transcript, target.keys, { requireRetention: target.requireRetention }), target };
}

export function describeVerification(result: VerifyResult, target: VerifyTarget): string {
  const lines: string[] = [];
  // The keys that sealed this transcript, not every key published (several replicas publish one each).
  const kids = result.kids.join(', ');
  if (result.ok) {
    lines.push(
      `OK: ${target.transcript.stream.startsWith('security-') ? 'security segment' : target.transcript.stream.startsWith('grants-') ? 'grant stream' : 'session'} ${target.transcript.stream}: ${result.events.length} records in ${target.transcript.chunks.length} sealed chunk(s), chain intact, manifest sealed (audit key ${kids})`,
    );
    if (target.requireRetention) lines.push('   every object is under COMPLIANCE retention');
  } else {
    lines.push(`FAILED: session ${target.transcript.stream || '(unknown)'}`);
    lines.push(`   first problem: ${result.problems[0]}`);
    for (const p of result.problems.slice(1, 20)) lines.push(`   also: ${p}`);
    if (result.problems.length > 20) lines.push(`   … ${result.problems.length - 20} more`);
  }
  for (const note of result.notes) lines.push(`   note: ${note}`);
  return lines.join('\n') + '\n';
}

export async function renderLocation(location: string, output: string, keysSpec?: string): Promise<{ ok: boolean; output: string }> {
  const { result, target } = await verifyLocation(location, keysSpec);
  // Part by part: a long timeline's page is never one string.
  const fd = openSync(output, 'w');
  try {
    for (const part of reportParts(result, { source: target.source })) writeSync(fd, part);
  } finally {
    closeSync(fd);
  }
  return { ok: result.ok, output: resolve(output) };
}
