/** The broker's HTTP API as the extension and the adapter use it (fetch only: no broker code is bundled). */

export class BrokerApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly rule?: string,
  ) {
    super(message);
  }
}

export interface TargetInfo {
  name: string;
  modes: string[];
  maxDurationSeconds: number;
  ticketRequired: boolean;
  ticketPattern?: string;
}

export interface GrantAnswer {
  grantId: string;
  token: string;
  expiresAt: string;
  attachUrl: string;
  durationSeconds: number;
  capped: boolean;
}

export interface GrantRequest {
  target: string;
  mode: string;
  durationSeconds: number;
  reason: string;
  ticket?: string;
}

export class BrokerApi {
  constructor(
    readonly baseUrl: string,
    private readonly identityToken: string,
  ) {}

  async call<T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T; text: string }> {
    let res: Response;
    const url = new URL(path, this.baseUrl.endsWith('/') ? this.baseUrl : `${this.baseUrl}/`).href;
    try {
      res = await fetch(url, {
        method,
        headers: { authorization: `Bearer ${this.identityToken}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(15_000),
      });
    } catch (err) {
      throw new BrokerApiError(0, 'unreachable', `cannot reach the Loupe broker at ${this.baseUrl}: ${(err as Error).message}`);
    }
    const text = await res.text();
    let parsed: any;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    if (!res.ok) {
      const error = parsed?.error ?? {};
      throw new BrokerApiError(res.status, error.code ?? `http_${res.status}`, error.message ?? (text.slice(0, 300) || res.statusText), error.rule);
    }
    return { status: res.status, body: parsed as T, text };
  }

  async targets(): Promise<TargetInfo[]> {
    return (await this.call<{ targets: TargetInfo[] }>('GET', '/v1/targets')).body.targets;
  }

  async requestGrant(request: GrantRequest): Promise<GrantAnswer> {
    const { status, body } = await this.call<GrantAnswer & { status?: string }>('POST', '/v1/grants', request);
    if (status !== 201 || !body?.token) throw new BrokerApiError(status, 'pending', `the grant is not issued yet (${status}): ${JSON.stringify(body)}`);
    return body;
  }

  async revokeGrant(grantId: string): Promise<void> {
    await this.call('DELETE', `/v1/grants/${encodeURIComponent(grantId)}`);
  }

  async sessions(): Promise<any[]> {
    const body = (await this.call<any>('GET', '/v1/sessions')).body;
    return Array.isArray(body) ? body : (body?.sessions ?? []);
  }

  async transcript(sessionId: string): Promise<string> {
    return (await this.call('GET', `/v1/sessions/${encodeURIComponent(sessionId)}/transcript`)).text;
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
