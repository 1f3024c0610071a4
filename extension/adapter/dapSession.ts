/**
 * The DAP half of the Loupe session: messages to the client, errors as DAP answers, and logging only when asked for.
 *
 * LoggingDebugSession writes every message into its log text before it knows whether anything logs: a second
 * JSON.stringify of every request, response and event, even at log level Stop (a variables answer of a hundred
 * previews is serialized twice). With `trace` off this class sends straight through DebugSession instead.
 */
import { DebugSession, LoggingDebugSession, OutputEvent } from '@vscode/debugadapter';
import type { DebugProtocol } from '@vscode/debugprotocol';
import { dapFormat, DapErrorId } from './errors';

export type OutputCategory = 'console' | 'stdout' | 'stderr' | 'important';

export abstract class DapSession extends LoggingDebugSession {
  /** The launch configuration's `trace`: log every DAP message. */
  protected tracing = false;

  override sendEvent(event: DebugProtocol.Event): void {
    if (this.tracing) super.sendEvent(event);
    else DebugSession.prototype.sendEvent.call(this, event);
  }

  override sendResponse(response: DebugProtocol.Response): void {
    if (this.tracing) super.sendResponse(response);
    else DebugSession.prototype.sendResponse.call(this, response);
  }

  protected override dispatchRequest(request: DebugProtocol.Request): void {
    if (this.tracing) super.dispatchRequest(request);
    else DebugSession.prototype['dispatchRequest'].call(this, request);
  }

  /** A line in the Debug Console (or the client's output), optionally at a source location. */
  protected output(text: string, category: OutputCategory, extra?: Partial<DebugProtocol.OutputEvent['body']>): void {
    const e = new OutputEvent(text, category) as DebugProtocol.OutputEvent;
    if (extra) Object.assign(e.body, extra);
    this.sendEvent(e);
  }

  /** A failed request, with the broker's or the adapter's reason as the message. */
  protected fail(response: DebugProtocol.Response, err: unknown, showUser = false): void {
    const message = (err as Error)?.message ?? String(err);
    this.sendErrorResponse(response, { id: DapErrorId.RequestFailed, format: dapFormat(message), showUser });
  }
}
