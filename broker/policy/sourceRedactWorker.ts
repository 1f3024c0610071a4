import { parentPort } from 'node:worker_threads';
import { compileOwnerRegExp } from './linearRegExp';
import { defaultPatterns, Redactor, type RedactPattern } from './redact';
import { redactSource } from './sourceRedact';

/** The job a session hands to the source redaction thread (RegExps cross as source and flags). */
export interface SourceJob {
  readonly id: number;
  readonly source: string;
  readonly names: readonly string[];
  readonly patterns: readonly { readonly name: string; readonly source: string; readonly flags: string }[];
  readonly learned: readonly string[];
}

export type SourceAnswer = { readonly id: number; readonly source: string; readonly replaced: number; readonly hits: readonly string[] } | { readonly id: number; readonly error: string };

// A built-in pattern is used as itself: the redactor recognises some of them by identity.
const pattern = (p: SourceJob['patterns'][number]): RedactPattern =>
  defaultPatterns.find((d) => d.name === p.name && d.regex.source === p.source && d.regex.flags === p.flags) ?? { name: p.name, regex: compileOwnerRegExp(p.source, p.flags) };

parentPort?.on('message', (job: SourceJob) => {
  try {
    const redactor = new Redactor({ names: new Set(job.names), patterns: job.patterns.map(pattern) }, job.learned);
    const { source, replaced } = redactSource(job.source, redactor);
    parentPort!.postMessage({ id: job.id, source, replaced, hits: redactor.hits } satisfies SourceAnswer);
  } catch (err) {
    parentPort!.postMessage({ id: job.id, error: err instanceof Error ? err.message : String(err) } satisfies SourceAnswer);
  }
});
