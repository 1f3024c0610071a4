import type { JSONWebKeySet } from 'jose';
import type { LoupeConfig } from '../config/types';
import { LoupeError } from '../errors';
import type { Grant } from '../grants/grantStore';
import type { Identity } from '../identity/verifyIdentity';
import { rolesOf } from '../policy/access';
import { reportParts, type ReportOptions } from './report';
import { listSecuritySegments, type SecuritySegmentSummary } from './securityStream';
import { SessionIndex, type SessionFilter, type SessionSummary } from './sessionIndex';
import type { AuditStore } from './stores/auditStore';
import { readTranscriptFromStore, transcriptTextParts, verifyTranscript } from './verify';

export interface AuditReaderOptions {
  /** The policy in force, taken fresh each time (a reload replaces it): who the auditors are. */
  config(): LoupeConfig;
  readonly store: AuditStore;
  /** The sessions still live: their transcripts are still being written. */
  liveSessions(): Set<string>;
  /** The security segment and the grant stream this broker is writing now. */
  openStreams(): Set<string>;
  /** The audit public keys of every broker sharing the store, which the reports are verified against. */
  keys(): Promise<JSONWebKeySet>;
  grant(grantId: string): Promise<Grant | undefined>;
}

/** What auditors read from the store: recorded sessions, the security stream's segments, grant streams, and their reports. */
export class AuditReader {
  private index: SessionIndex | undefined;

  constructor(private readonly options: AuditReaderOptions) {}

  private get sessionIndex(): SessionIndex {
    this.index ??= new SessionIndex(this.options.store, () => this.options.liveSessions());
    return this.index;
  }

  private requireAuditor(identity: Identity): void {
    const config = this.options.config();
    const roles = rolesOf(config, identity);
    if (!config.auditors.some((r) => roles.has(r))) {
      throw new LoupeError('forbidden', `session transcripts are for auditors (roles: ${config.auditors.join(', ') || 'none configured'})`);
    }
  }

  /** The report being made: the next waits for it (see inTurn). */
  private reportTurn: Promise<void> = Promise.resolve();

  /**
   * Reports are made one at a time, each after the one before has been sent (or its client left): each holds its
   * transcript whole (up to audit.maxReportBytes, about three times that in heap), so several at once would hold
   * several. A refusal (a caller who is not an auditor, an unknown id) is answered before, without waiting.
   */
  private async *inTurn(make: () => AsyncGenerator<string>): AsyncGenerator<string> {
    const before = this.reportTurn;
    let done!: () => void;
    this.reportTurn = new Promise<void>((resolve) => (done = resolve));
    try {
      await before;
      yield* make();
    } finally {
      done();
    }
  }

  private get storeName(): string {
    return this.options.store.description.startsWith('s3:') ? 'S3 (Object Lock) store' : 'local audit store';
  }

  async listSessions(identity: Identity, filter: SessionFilter): Promise<SessionSummary[]> {
    this.requireAuditor(identity);
    return this.sessionIndex.list(filter);
  }

  private async findSession(identity: Identity, sessionId: string): Promise<SessionSummary> {
    this.requireAuditor(identity);
    const summary = await this.sessionIndex.find(sessionId);
    if (!summary) throw new LoupeError('not_found', `no recorded session ${sessionId}`);
    return summary;
  }

  /** The security stream's segments, or the grant streams, in the store (auditors), newest first. */
  async listSecuritySegments(identity: Identity, kind: 'security' | 'grants' = 'security'): Promise<SecuritySegmentSummary[]> {
    this.requireAuditor(identity);
    return listSecuritySegments(this.options.store, this.options.openStreams(), kind);
  }

  private async findSegment(identity: Identity, segmentId: string): Promise<SecuritySegmentSummary> {
    const kind = segmentId.startsWith('grants-') ? 'grants' : 'security';
    const segment = (await this.listSecuritySegments(identity, kind)).find((s) => s.stream === segmentId);
    if (!segment) throw new LoupeError('not_found', `no stored ${kind === 'grants' ? 'grant stream' : 'security segment'} ${segmentId}`);
    return segment;
  }

  /** A security segment (or grant stream) as NDJSON, like a session transcript, one stored object at a time. */
  async *securitySegmentText(identity: Identity, segmentId: string): AsyncGenerator<string> {
    yield* transcriptTextParts(this.options.store, (await this.findSegment(identity, segmentId)).prefix);
  }

  /** A security segment's (or grant stream's) readable report, verified against the published audit keys, in parts. */
  async *securitySegmentReport(identity: Identity, segmentId: string): AsyncGenerator<string> {
    const segment = await this.findSegment(identity, segmentId);
    const kind = segment.stream.startsWith('grants-') ? 'grant stream' : 'security segment';
    yield* this.inTurn(() =>
      this.rendered(segment.prefix, `${kind} ${segment.stream}`, async () => ({
        source: `${kind} recorded by the broker's ${this.storeName}${segment.state === 'ended' ? '' : `, ${segment.state}`}`,
      })),
    );
  }

  /**
   * A stream's report (made in its turn: see inTurn): its transcript read whole to be verified and rendered in the broker,
   * refused past audit.maxReportBytes, which would hold the broker's memory (about 3 bytes of heap per byte of
   * transcript) and its event loop for every session. `options`: asked once the transcript is verified.
   */
  private async *rendered(prefix: string, what: string, options: () => Promise<ReportOptions>): AsyncGenerator<string> {
    const maxReportBytes = this.options.config().audit.maxReportBytes;
    const transcript = await readTranscriptFromStore(this.options.store, prefix, false, {
      maxBytes: maxReportBytes,
      tooLarge: (bytes) =>
        new LoupeError(
          'report_too_large',
          `the report of ${what} is not rendered by the broker: its transcript is over ${mib(maxReportBytes)} MiB (audit.maxReportBytes; ${mib(bytes)} MiB read so far), which the broker would hold whole in memory; download the transcript (loupe audit download) and render it on your own machine (loupe audit render <dir> -o report.html)`,
        ),
    });
    const result = await verifyTranscript(transcript, await this.options.keys());
    yield* loopFree(reportParts(result, await options()));
  }

  /** The stored transcript as NDJSON (events, a seal line after each chunk, the manifest last), one stored object at a time. */
  async *transcript(identity: Identity, sessionId: string): AsyncGenerator<string> {
    yield* transcriptTextParts(this.options.store, (await this.findSession(identity, sessionId)).prefix);
  }

  /** The readable report, with the result of verifying the stored transcript against this broker's keys. */
  async *report(identity: Identity, sessionId: string): AsyncGenerator<string> {
    const summary = await this.findSession(identity, sessionId);
    yield* this.inTurn(() =>
      this.rendered(summary.prefix, `session ${summary.sessionId}`, async () => {
        const grant = await this.options.grant(summary.grantId).catch(() => undefined);
        return {
          ...(grant?.approvedBy ? { approval: { requestId: grant.requestId, approvedBy: grant.approvedBy } } : {}),
          source: `recorded by the broker's ${this.storeName}${summary.state === 'ended' ? '' : `, session ${summary.state}`}`,
        };
      }),
    );
  }
}

const mib = (bytes: number) => Math.round((bytes / 1048576) * 10) / 10;

/** A report's parts, the event loop turning between them: a long timeline never holds the broker's sessions. */
async function* loopFree(parts: Iterable<string>): AsyncGenerator<string> {
  for (const part of parts) {
    if (part !== '') yield part;
    await new Promise((resolve) => setImmediate(resolve));
  }
}
