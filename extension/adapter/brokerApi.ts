/** The broker's HTTP API as the extension and the adapter use it (fetch only: no broker code is bundled). */
import { createWriteStream, mkdirSync, openSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream } from 'node:stream/web';
import type { AccessRequestInfo, AlertInfo, GrantAnswer, GrantRequest, HttpErrorBody, HttpErrorCode, RecordedSession, TargetInfo } from '../../common/http';

export type { AccessRequestInfo, AlertInfo, GrantAnswer, GrantRequest, RecordedSession, TargetInfo } from '../../common/http';

/** The broker's error codes, and the client's own: unreachable (status 0), an answer of an unexpected shape, an approval this caller cannot wait for. */
export type BrokerApiErrorCode = HttpErrorCode | 'unreachable' | 'unexpected' | 'approval_required' | 'download_cut' | `http_${number}`;

/** How long an answer may stay silent (and a whole JSON answer may take) before the request is given up. */
const answerTimeoutMs = 15_000;

export class BrokerApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: BrokerApiErrorCode,
    message: string,
    readonly rule?: string,
  ) {
    super(message);
  }
}

/** The error an answer carries: the broker's code and words, or the status and the start of the body. */
function errorAnswer(res: Response, text: string, parsed: unknown): BrokerApiError {
  const error: Partial<HttpErrorBody['error']> = (parsed as Partial<HttpErrorBody> | undefined)?.error ?? {};
  return new BrokerApiError(res.status, error.code ?? `http_${res.status}`, error.message ?? (text.slice(0, 300) || res.statusText), error.rule);
}

export class BrokerApi {
  constructor(
    readonly baseUrl: string,
    private readonly identityToken: string,
  ) {}

  private async request(method: string, path: string, body: unknown, signal: AbortSignal): Promise<Response> {
    const url = new URL(path, this.baseUrl.endsWith('/') ? this.baseUrl : `${this.baseUrl}/`).href;
    try {
      return await fetch(url, {
        method,
        headers: { authorization: `Bearer ${this.identityToken}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
      });
    } catch (err) {
      // fetch says only "fetch failed"; the reason (ECONNREFUSED, ENOTFOUND, a timeout) is in its cause.
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      throw new BrokerApiError(0, 'unreachable', `cannot reach the Loupe broker at ${this.baseUrl}: ${(err as Error).message}${cause ? ` (${cause.code ?? cause.message})` : ''}`);
    }
  }

  async call<T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T; text: string }> {
    const res = await this.request(method, path, body, AbortSignal.timeout(answerTimeoutMs));
    const text = await res.text();
    let parsed: any;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    if (!res.ok) throw errorAnswer(res, text, parsed);
    return { status: res.status, body: parsed as T, text };
  }

  /**
   * GETs `path` into `file` as it arrives, however large (a transcript is never held whole), with no bound on the
   * whole but on silence. An error answer is thrown before the file (or its folder) is made; a body cut short fails,
   * and the part received is removed.
   */
  async download(path: string, file: string): Promise<void> {
    const controller = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const quiet = () => {
      clearTimeout(timer);
      timer = setTimeout(() => controller.abort(new Error(`the broker sent nothing for ${answerTimeoutMs / 1000} s`)), answerTimeoutMs);
    };
    quiet();
    try {
      const res = await this.request('GET', path, undefined, controller.signal);
      if (!res.ok || !res.body) {
        const text = await res.text();
        let parsed: unknown;
        try {
          parsed = JSON.parse(text);
        } catch {
          parsed = undefined;
        }
        throw errorAnswer(res, text, parsed);
      }
      mkdirSync(dirname(file), { recursive: true });
      const heard = new Transform({
        transform(chunk, _encoding, done) {
          quiet();
          done(null, chunk);
        },
      });
      await pipeline(Readable.fromWeb(res.body as ReadableStream), heard, createWriteStream(file, { fd: openSync(file, 'w') })).catch((err: Error) => {
        // A part cut at a chunk's end would pass for a live session's transcript: it is not kept (the file was opened
        // at once, so the removal never races the stream's own open).
        rmSync(file, { force: true });
        throw new BrokerApiError(0, 'download_cut', `the download from the Loupe broker was cut short, and nothing was kept: ${err.message}`);
      });
    } finally {
      clearTimeout(timer);
    }
  }

  async targets(): Promise<TargetInfo[]> {
    return (await this.call<{ targets: TargetInfo[] }>('GET', '/v1/targets')).body.targets;
  }

  async requestGrant(request: GrantRequest): Promise<GrantAnswer> {
    const answer = await this.requestAccess(request);
    if ('pending' in answer) {
      // This caller cannot wait for approvers: take the request back rather than leave it for them to decide.
      const p = answer.pending;
      const withdrawn = await this.withdrawRequest(p.requestId).then(
        () => 'it was withdrawn',
        () => 'it is still pending',
      );
      throw new BrokerApiError(
        202,
        'approval_required',
        `approval required: ${p.message}. This attach cannot wait for approvers, so request ${p.requestId} was not kept (${withdrawn}); use "Loupe: Attach to Production…", which waits for the approvals and then attaches`,
      );
    }
    return answer.grant;
  }

  /** A grant (201), or an access request that waits for approvals (202). */
  async requestAccess(request: GrantRequest): Promise<{ grant: GrantAnswer } | { pending: AccessRequestInfo }> {
    const { status, body } = await this.call<GrantAnswer & AccessRequestInfo>('POST', '/v1/grants', request);
    if (status === 202 && body?.requestId) return { pending: body };
    if (status !== 201 || !body?.token) throw new BrokerApiError(status, 'unexpected', `unexpected answer to a grant request (${status}): ${JSON.stringify(body).slice(0, 300)}`);
    return { grant: body };
  }

  async accessRequest(requestId: string): Promise<AccessRequestInfo> {
    return (await this.call<AccessRequestInfo>('GET', `/v1/requests/${encodeURIComponent(requestId)}`)).body;
  }

  /** Pending requests the caller may approve or deny. */
  async pendingRequests(): Promise<AccessRequestInfo[]> {
    return (await this.call<{ requests: AccessRequestInfo[] }>('GET', '/v1/requests')).body.requests;
  }

  async approveRequest(requestId: string, comment?: string): Promise<AccessRequestInfo> {
    return (await this.call<AccessRequestInfo>('POST', `/v1/requests/${encodeURIComponent(requestId)}/approve`, comment ? { comment } : {})).body;
  }

  async denyRequest(requestId: string, comment: string): Promise<AccessRequestInfo> {
    return (await this.call<AccessRequestInfo>('POST', `/v1/requests/${encodeURIComponent(requestId)}/deny`, { comment })).body;
  }

  async withdrawRequest(requestId: string): Promise<AccessRequestInfo> {
    return (await this.call<AccessRequestInfo>('POST', `/v1/requests/${encodeURIComponent(requestId)}/withdraw`)).body;
  }

  /** The requester collects the grant of an approved request. */
  async collectGrant(requestId: string): Promise<GrantAnswer> {
    return (await this.call<GrantAnswer>('POST', `/v1/requests/${encodeURIComponent(requestId)}/grant`)).body;
  }

  /** Revokes a grant; the broker's message when its session has not ended yet (202: another replica holds it). */
  async revokeGrant(grantId: string): Promise<string | undefined> {
    const { status, body } = await this.call<{ message?: string }>('DELETE', `/v1/grants/${encodeURIComponent(grantId)}`);
    return status === 202 ? body?.message : undefined;
  }

  async sessions(): Promise<RecordedSession[]> {
    const body = (await this.call<any>('GET', '/v1/sessions')).body;
    return Array.isArray(body) ? body : (body?.sessions ?? []);
  }

  /** Alerts of the targets the caller owns (all for admins), newest first; 403 for everyone else. */
  async alerts(): Promise<AlertInfo[]> {
    return (await this.call<{ alerts: AlertInfo[] }>('GET', '/v1/alerts')).body.alerts;
  }

  /** The broker's published audit keys (a JWKS), to verify transcripts against. */
  async auditKeys(): Promise<{ keys: Record<string, unknown>[] }> {
    return (await this.call<{ keys: Record<string, unknown>[] }>('GET', '/v1/audit/keys')).body;
  }

  async transcript(sessionId: string): Promise<string> {
    return (await this.call('GET', `/v1/sessions/${encodeURIComponent(sessionId)}/transcript`)).text;
  }

  /** A session's transcript written to `file` as it arrives (see download). */
  downloadTranscript(sessionId: string, file: string): Promise<void> {
    return this.download(`/v1/sessions/${encodeURIComponent(sessionId)}/transcript`, file);
  }

  async report(sessionId: string): Promise<string> {
    return (await this.call('GET', `/v1/sessions/${encodeURIComponent(sessionId)}/report`)).text;
  }
}

/** A refusal as one line a person can act on, with the policy rule when the broker names one. */
export function describeBrokerError(err: unknown): string {
  if (err instanceof BrokerApiError) return `${err.message}${err.rule ? ` (rule: ${err.rule})` : ''}`;
  return (err as Error)?.message ?? String(err);
}
