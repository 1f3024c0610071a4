/**
 * Waiting for an access request's approvals (the two-person rule). No `vscode` here: the extension shows the
 * progress and the outcome, the tests drive the same code against a real broker.
 */
import { BrokerApiError, type AccessRequestInfo, type BrokerApi } from './brokerApi';

export interface WaitOptions {
  /** How often to ask the broker; default 2 s. */
  readonly intervalMs?: number;
  /** Cancels the wait (the request itself stays until withdrawn or expired). */
  readonly signal?: AbortSignal;
  /** Called with the request whenever its status or its approvals change (and once at the start). */
  readonly onUpdate?: (request: AccessRequestInfo) => void;
}

/**
 * Polls the request until it is no longer pending and returns it (approved, denied, expired, withdrawn or
 * collected). A broker that cannot be reached is asked again; any other error ends the wait.
 */
export async function waitForDecision(api: BrokerApi, requestId: string, options: WaitOptions = {}): Promise<AccessRequestInfo> {
  const intervalMs = options.intervalMs ?? 2000;
  let seen: string | undefined;
  for (;;) {
    options.signal?.throwIfAborted();
    let request: AccessRequestInfo | undefined;
    try {
      request = await api.accessRequest(requestId);
    } catch (err) {
      if (!(err instanceof BrokerApiError) || err.status !== 0) throw err;
    }
    if (request) {
      const state = `${request.status}:${request.approvals.length}`;
      if (state !== seen) {
        seen = state;
        options.onUpdate?.(request);
      }
      if (request.status !== 'pending') return request;
    }
    await sleep(intervalMs, options.signal);
  }
}

/** One line for the progress notification: who must approve, how many so far, until when. */
export function pendingText(request: AccessRequestInfo): string {
  const until = new Date(request.expiresAt).toLocaleTimeString();
  const cause = request.cause ? ` after the alert "${request.cause.rule}"` : '';
  return `waiting for approval by ${request.approvers.join(' or ')}${cause}: ${request.approvals.length} of ${request.minApprovals}, until ${until}`;
}

/** The outcome in words, for the notification that ends the wait. */
export function outcomeText(request: AccessRequestInfo): string {
  const by = (d: { sub: string; name: string }) => d.name || d.sub;
  switch (request.status) {
    case 'approved':
      return `access to ${request.target} approved by ${request.approvals.map(by).join(', ')}`;
    case 'denied':
      return `access to ${request.target} denied by ${request.denial ? by(request.denial) : 'an approver'}: ${request.denial?.comment ?? ''}`;
    case 'expired':
      return `the request for ${request.target} expired without enough approvals (${request.approvals.length} of ${request.minApprovals})`;
    default:
      return `the request for ${request.target} is ${request.status}`;
  }
}

/** Waits `ms`, or rejects with the signal's reason as soon as it aborts. */
export function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
