/** A recorded client session through the broker, and the tally of attempts. */
import { lstatSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CdpClient, CdpMessage } from '../../support/cdpClient';
import { comparableText, judge, withoutNoise, type Needle, type Observation, type Outcome, type Verdict } from './judge';

export interface AttemptRecord {
  readonly kind: string;
  readonly label: string;
  readonly verdict: Verdict;
}

export class Tally {
  readonly records: AttemptRecord[] = [];
  constructor(readonly needles: readonly Needle[]) {}

  add(kind: string, label: string, observations: readonly Observation[]): Verdict {
    const verdict = judge(observations, this.needles);
    this.records.push({ kind, label, verdict });
    return verdict;
  }

  /** An attempt judged elsewhere (a whole channel of the audit trail). */
  addVerdict(kind: string, label: string, verdict: Verdict): void {
    this.records.push({ kind, label, verdict });
  }

  counts(): Record<Outcome, number> {
    const c: Record<Outcome, number> = { refused: 0, redacted: 0, clean: 0, leak: 0 };
    for (const r of this.records) c[r.verdict.outcome]++;
    return c;
  }

  /** One line per kind: `kind  refused n  redacted n  clean n  leak n`. */
  table(): string {
    const kinds = [...new Set(this.records.map((r) => r.kind))];
    const pad = Math.max(...kinds.map((k) => k.length), 8);
    const lines = [`${'kind'.padEnd(pad)}  attempts  refused  redacted  clean  leak`];
    for (const kind of kinds) {
      const rs = this.records.filter((r) => r.kind === kind);
      const n = (o: Outcome) => String(rs.filter((r) => r.verdict.outcome === o).length).padStart(o.length);
      lines.push(`${kind.padEnd(pad)}  ${String(rs.length).padStart(8)}  ${n('refused')}  ${n('redacted')}  ${n('clean')}  ${n('leak')}`);
    }
    const c = this.counts();
    lines.push(`adversarial: ${this.records.length} attempts: refused ${c.refused}, redacted ${c.redacted}, clean ${c.clean}, leak ${c.leak}`);
    return lines.join('\n');
  }
}

/** A client with every received frame kept, and every method it called noted. */
export class Recorded {
  readonly frames: string[] = [];
  readonly methods = new Set<string>();
  constructor(readonly client: CdpClient) {
    client.socket.on('message', (data) => this.frames.push(data.toString()));
  }

  send(method: string, params: Record<string, unknown> = {}): Promise<CdpMessage> {
    this.methods.add(method);
    return this.client.send(method, params);
  }

  /** The reply and, for an object answer, its properties two levels down (that is what a debugger UI shows). */
  async sendExpanded(method: string, params: Record<string, unknown>, depth = 2): Promise<unknown[]> {
    const reply = await this.send(method, params);
    const out: unknown[] = [reply];
    const root = reply.result?.result?.objectId ?? reply.result?.exceptionDetails?.exception?.objectId;
    if (typeof root === 'string') out.push(...(await this.expand(root, depth)));
    return out;
  }

  /** Own properties, internal properties and private fields, `depth` levels down (bounded). */
  async expand(objectId: string, depth: number, budget = { left: 40 }): Promise<unknown[]> {
    if (depth <= 0 || budget.left-- <= 0) return [];
    const reply = await this.send('Runtime.getProperties', { objectId, ownProperties: true, generatePreview: true });
    const out: unknown[] = [reply];
    const r = reply.result ?? {};
    const children = [...(r.result ?? []), ...(r.internalProperties ?? []), ...(r.privateProperties ?? [])]
      .map((p: any) => p.value?.objectId)
      .filter((id: unknown): id is string => typeof id === 'string');
    for (const id of children.slice(0, 12)) out.push(...(await this.expand(id, depth - 1, budget)));
    return out;
  }
}

/** An observation of replies; `replace` are the guess literals and expressions echoed back. */
export function observe(values: readonly unknown[], extra: { refused?: boolean; value?: unknown; truth?: unknown; truthTells?: boolean; replace?: readonly string[] } = {}): Observation {
  const first = values[0] as CdpMessage | undefined;
  return {
    text: JSON.stringify(values.map(withoutNoise)),
    comparable: comparableText(values, extra.replace ?? []),
    refused: extra.refused ?? first?.error !== undefined,
    ...(extra.value !== undefined ? { value: extra.value } : {}),
    ...(extra.truth !== undefined ? { truth: extra.truth, truthTells: extra.truthTells ?? true } : {}),
  };
}

/** Runs `fn` over `items`, `n` at a time. */
export async function pool<T>(items: readonly T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

/** A file's text with ids, sequence numbers and digests taken out of each JSON line it holds (WAL frames, chunks). */
export function withoutNoiseText(text: string): string {
  return text
    .split('\n')
    .map((line) => {
      const at = line.indexOf('{');
      if (at < 0) return line;
      try {
        return line.slice(0, at) + JSON.stringify(withoutNoise(JSON.parse(line.slice(at))));
      } catch {
        return line;
      }
    })
    .join('\n');
}

/** Every file under `dir`, as text (the WAL, the local store's chunks and manifests, alert state). */
export function filesUnder(dir: string): { path: string; text: string }[] {
  const out: { path: string; text: string }[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const path = join(d, name);
      const st = lstatSync(path); // the broker's lock is a symlink, maybe dangling
      if (st.isDirectory()) walk(path);
      else if (st.isFile()) out.push({ path, text: readFileSync(path).toString('latin1') });
    }
  };
  walk(dir);
  return out;
}
