/**
 * What the parts of one session (breakpoints, pauses, logpoints, snapshot mode) share: the session's grant, policy
 * and limits, the injected clock, its record, its way to the client, and each other. DebugSession builds it.
 */
import type { BrokerLimits, TargetConfig } from '../config/types';
import type { EventType } from '../audit/events';
import type { Grant } from '../grants/grantStore';
import type { Redactor } from '../policy/redact';
import type { LoupeEvent, LoupeEventParams } from '../../common/session';
import type { Breakpoints } from './breakpoints';
import type { FrameEvaluation } from './evaluation';
import type { RecordLabels } from './labels';
import type { Pauses } from './pauses';
import type { TargetChannel } from './targetChannel';

export interface SessionContext {
  readonly sessionId: string;
  readonly grant: Grant;
  readonly limits: BrokerLimits;
  readonly redactor: Redactor;
  /** The target's policy now (a policy reload can make it stricter during the session). */
  target(): TargetConfig;
  /** The injected clock (ms since the epoch): every rate, throttle, budget window and deadline reads it. */
  now(): number;
  isEnding(): boolean;
  /** False once the audit trail has failed closed. */
  auditAccepting(): boolean;
  record(type: EventType, data: Record<string, unknown>): Promise<unknown>;
  /** A record whose failure means the audit trail is gone: the session ends. */
  recordOrEnd(type: EventType, data: Record<string, unknown>): Promise<unknown>;
  /** Queues a client-bound message, sent in order once `after` has settled (dropped if it failed). */
  send(text: string, isEvent: boolean, after?: Promise<unknown>): void;
  /** Ends the session on a fault in handling `frame` (recorded, logged). */
  fault(where: string, err: unknown, frame?: Buffer): void;
  /** Queues a `Loupe.*` event for the client. */
  notify<M extends LoupeEvent>(method: M, params: LoupeEventParams[M], isEvent: boolean, after?: Promise<unknown>): void;

  readonly channel: TargetChannel;
  readonly breakpoints: Breakpoints;
  readonly pauses: Pauses;
  readonly labels: RecordLabels;
  readonly evaluation: FrameEvaluation;
}
