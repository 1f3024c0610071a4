/**
 * `loupe connect`: identity, grant (following an access request until approvers decide, as the extension does), then
 * the local endpoint until the grant ends, the broker ends the session for good, or the user stops it.
 */
import WebSocket from 'ws';
import { closeCodes, type EndReason } from '../../common/session';
import { BrokerApi, BrokerApiError, describeBrokerError, type AccessRequestInfo, type GrantAnswer } from '../../extension/adapter/brokerApi';
import { outcomeText, pendingText, waitForDecision } from '../../extension/adapter/accessRequests';
import { closeMessage } from '../../extension/adapter/closeCodes';
import { signInWithDeviceCode } from './deviceSignIn';
import { AttachRefusal, LocalEndpoint, type SessionClosed } from './endpoint';
import type { ConnectSettings } from './options';
import { countdownMarks } from './countdown';

export interface ConnectIo {
  /** The machine-readable line (LOUPE_CONNECT_URL=…). */
  readonly stdout: (line: string) => void;
  /** Everything a person reads. */
  readonly stderr: (line: string) => void;
  /** Fires once on SIGINT/SIGTERM. */
  readonly stopSignal: AbortSignal;
  /** Poll interval of an access request (default 2 s). */
  readonly approvalIntervalMs?: number;
}

/** Close codes after which the grant gives no further session: connect ends with them. */
const final: readonly EndReason[] = ['expired', 'revoked', 'shutdown', 'target_gone', 'audit_failure', 'alert', 'policy'];
const finalCodes = new Map(final.map((reason) => [closeCodes[reason], reason]));

/** Attach refusals that mean the grant is done for. */
const finalRefusals = new Set(['grant_revoked', 'grant_expired', 'token_invalid', 'token_expired', 'forbidden', 'policy_refused', 'audit_unavailable']);

/** Runs to the end; resolves with the exit status. */
export async function runConnect(settings: ConnectSettings, io: ConnectIo): Promise<number> {
  const say = (line: string) => io.stderr(`loupe connect: ${line}`);
  let grant: GrantAnswer | undefined;
  let settleEnd!: (outcome: { status: number; why: string }) => void;
  const ended = new Promise<{ status: number; why: string }>((resolve) => (settleEnd = resolve));
  let ending = false;
  const end = (status: number, why: string) => {
    ending = true;
    settleEnd({ status, why });
  };

  let endpoint: LocalEndpoint;
  try {
    // Bound first: a taken port is known before anyone is asked to approve anything.
    endpoint = await LocalEndpoint.listen({
      port: settings.port,
      target: settings.target,
      mode: settings.mode,
      openBroker: (client) => openBroker(grant!, client.userAgent),
      onSessionStart: () => say(`debugger attached: session started on ${settings.target} (${settings.mode})`),
      onSessionClosed: (closed) => onClosed(closed),
      onRefused: (refusal) => {
        say(refusal.message);
        if (refusal.code && finalRefusals.has(refusal.code)) end(1, `the broker refused the attach: ${refusal.message}`);
      },
    });
  } catch (err) {
    say((err as Error).message);
    return 1;
  }

  const onClosed = (closed: SessionClosed) => {
    if (closed.by === 'connect') return;
    const reason = finalCodes.get(closed.code);
    const why = closeMessage(closed.code, closed.reason);
    const words = closed.code === 1000 ? 'the session ended' : `the session has ended: ${why}${why.includes(`(code ${closed.code})`) ? '' : ` (close ${closed.code})`}`;
    if (reason) return end(reason === 'expired' ? 0 : 1, words);
    if (ending) return; // the last line says how it ended
    if (closed.by === 'local-client')
      say(`debugger disconnected${closed.note ? ` (${closed.note})` : ''}; the broker ended its session (target resumed, breakpoints removed). Another may attach at ${endpoint.url} ${left()}`);
    else say(`${words}; another debugger may attach at ${endpoint.url} ${left()}`);
  };
  let deadline: number | undefined;
  const left = () => (deadline ? `until the grant ends at ${new Date(deadline).toLocaleTimeString()}` : '');

  const onStop = () => end(0, 'stopped (Ctrl-C)');
  io.stopSignal.addEventListener('abort', onStop, { once: true });
  try {
    const token = await identityToken(settings, io, say);
    if (token === undefined) {
      await endpoint.close('loupe connect stopped');
      return 0; // stopped while signing in
    }
    const api = new BrokerApi(settings.broker, token);
    grant = await obtainGrant(api, settings, io, say);
    if (!grant) {
      await endpoint.close('no grant');
      return io.stopSignal.aborted ? 0 : 1;
    }
  } catch (err) {
    say(err instanceof BrokerApiError ? brokerRefusal(err, settings) : (err as Error).message);
    await endpoint.close('loupe connect could not start');
    return io.stopSignal.aborted ? 0 : 1;
  }
  if (io.stopSignal.aborted) {
    await endpoint.close('loupe connect stopped');
    return 0;
  }

  // The grant was issued just before this answer (also one collected after approvals), so this clock's deadline is
  // now + its duration: right even when this machine's clock is off from the broker's. The broker enforces the real one.
  const expiresAt = grant.durationSeconds > 0 ? Date.now() + grant.durationSeconds * 1000 : new Date(grant.expiresAt).getTime();
  deadline = expiresAt;
  endpoint.open();
  say(
    `grant ${grant.grantId}: ${settings.mode} on ${settings.target} until ${new Date(expiresAt).toLocaleTimeString()} (${length(grant.durationSeconds)}${grant.capped ? ', shortened by the policy' : ''})${grant.evaluation === 'v8' ? ', with V8 evaluation' : ''}`,
  );
  say(`attach a debugger to 127.0.0.1:${endpoint.port} (WebSocket ${endpoint.webSocketUrl}); Ctrl-C ends the session`);
  io.stdout(`LOUPE_CONNECT_URL=${endpoint.url}`);

  // The countdown: a line at each mark, and the end at expiry (the broker closes a live session with 4001 then).
  // Timers longer than 2^31-1 ms would fire at once; no grant is that long, but a clock can be that wrong.
  const timers: NodeJS.Timeout[] = [];
  const at = (ms: number, fire: () => void) => timers.push(setTimeout(fire, Math.min(Math.max(0, ms - Date.now()), 2 ** 31 - 1)));
  for (const mark of countdownMarks(expiresAt - Date.now())) at(expiresAt - mark.ms, () => say(`${mark.words} left on the grant (until ${new Date(expiresAt).toLocaleTimeString()})`));
  at(expiresAt, () => {
    // A live session is ended by the broker (close 4001) and reported from there; give it a moment.
    if (!endpoint.attached) end(0, `the grant expired: ${closeMessage(closeCodes.expired, '')}`);
    else setTimeout(() => end(0, `the grant expired: ${closeMessage(closeCodes.expired, '')}`), 3000).unref();
  });

  const outcome = await ended;
  for (const timer of timers) clearTimeout(timer);
  io.stopSignal.removeEventListener('abort', onStop);
  const wasAttached = endpoint.attached;
  await endpoint.close(outcome.status === 0 && outcome.why.startsWith('stopped') ? 'loupe connect stopped' : outcome.why);
  say(`${outcome.why}${wasAttached ? '; the broker ended the session (target resumed, breakpoints removed)' : ''}. Closed ${endpoint.url}.`);
  return outcome.status;

  /** The broker's attach socket for a new local client, with the grant token; refusals keep the broker's words. */
  async function openBroker(current: GrantAnswer, userAgent: string | undefined): Promise<WebSocket> {
    // The previous session may still be ending on the broker (one live session per grant): wait a little for it.
    for (let attempt = 0; ; attempt++) {
      try {
        return await connectBroker(current, userAgent);
      } catch (err) {
        if (!(err instanceof AttachRefusal) || err.code !== 'session_busy' || attempt >= 10) throw err;
        await new Promise((resolve) => setTimeout(resolve, 300));
      }
    }
  }
}

/** The broker's attach socket with the grant token; the User-Agent names the local debugger for the broker's records. */
function connectBroker(grant: GrantAnswer, localUserAgent: string | undefined): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const userAgent = `loupe-connect (local client: ${localUserAgent?.replace(/[^\x20-\x7e]/g, '?').slice(0, 200) ?? 'no user agent'})`;
    const socket = new WebSocket(grant.attachUrl, {
      headers: { authorization: `Bearer ${grant.token}`, 'user-agent': userAgent },
      perMessageDeflate: false,
      handshakeTimeout: 20_000,
      maxPayload: 128 << 20,
    });
    socket.once('open', () => resolve(socket));
    socket.once('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
      res.on('end', () => {
        let error: { code?: string; message?: string } = {};
        try {
          error = JSON.parse(body).error ?? {};
        } catch {
          /* not JSON */
        }
        reject(
          new AttachRefusal(
            res.statusCode === 409 ? 409 : res.statusCode && res.statusCode < 500 ? 403 : 502,
            `the broker refused the attach (${res.statusCode} ${error.code ?? ''}): ${error.message ?? body.slice(0, 300)}`,
            error.code,
          ),
        );
      });
    });
    socket.once('error', (err) => reject(new AttachRefusal(502, `cannot reach the broker's attach endpoint ${grant.attachUrl}: ${err.message}`)));
  });
}

/** The identity token: as given, or from a device sign-in (undefined when stopped meanwhile). */
async function identityToken(settings: ConnectSettings, io: ConnectIo, say: (line: string) => void): Promise<string | undefined> {
  if (settings.identity.kind === 'token') return settings.identity.token;
  const oidc = settings.identity.oidc;
  say(`signing in at ${oidc.issuer} (client ${oidc.clientId})`);
  try {
    const tokens = await signInWithDeviceCode(oidc, {
      signal: io.stopSignal,
      onPrompt: (p) => {
        say(`to sign in, open ${p.verificationUri} and enter the code ${p.userCode} (valid ${Math.round(p.expiresIn / 60)} min)`);
        if (p.verificationUriComplete) say(`or open ${p.verificationUriComplete}`);
        say('waiting for the sign-in to complete…');
      },
    });
    say('signed in');
    return tokens.brokerToken;
  } catch (err) {
    if (io.stopSignal.aborted) return undefined;
    throw new Error(`sign-in failed: ${(err as Error).message}`);
  }
}

/** A grant at once, or one collected after its access request is approved; undefined when there is none to use. */
async function obtainGrant(api: BrokerApi, settings: ConnectSettings, io: ConnectIo, say: (line: string) => void): Promise<GrantAnswer | undefined> {
  const request = {
    target: settings.target,
    mode: settings.mode,
    ...(settings.evaluation === 'v8' ? { evaluation: 'v8' as const } : {}),
    durationSeconds: settings.durationSeconds,
    reason: settings.reason,
    ...(settings.ticket ? { ticket: settings.ticket } : {}),
  };
  say(`asking ${settings.broker} for ${settings.mode} on ${settings.target} for ${length(settings.durationSeconds)}`);
  const answer = await api.requestAccess(request);
  if ('grant' in answer) return answer.grant;
  const pending: AccessRequestInfo = answer.pending;
  say(`access request ${pending.requestId}: ${pending.message}`);
  let final: AccessRequestInfo;
  try {
    final = await waitForDecision(api, pending.requestId, {
      signal: io.stopSignal,
      ...(io.approvalIntervalMs ? { intervalMs: io.approvalIntervalMs } : {}),
      onUpdate: (r) => say(r.status === 'pending' ? pendingText(r) : `access request ${r.requestId}: ${r.message}`),
    });
  } catch (err) {
    if (!io.stopSignal.aborted) throw err;
    const withdrawn = await api.withdrawRequest(pending.requestId).then(
      () => 'withdrawn',
      (e: unknown) => `not withdrawn: ${describeBrokerError(e)}`,
    );
    say(`stopped waiting; access request ${pending.requestId} ${withdrawn}`);
    return undefined;
  }
  say(outcomeText(final));
  if (final.status !== 'approved') return undefined;
  return api.collectGrant(final.requestId);
}

/** A grant's length in words: seconds under 2 minutes, else minutes. */
function length(seconds: number): string {
  return seconds < 120 ? `${seconds} s` : `${Math.round(seconds / 60)} min`;
}

/** A refusal of the broker's HTTP API in words a person acts on. */
function brokerRefusal(err: BrokerApiError, settings: ConnectSettings): string {
  if (err.code === 'unreachable') return `${err.message} (is --broker right and the broker running?)`;
  if (err.status === 401) return `the broker refused your identity token (${err.status} ${err.code}): ${describeBrokerError(err)}; get a new token or sign in again`;
  if (err.status === 403) return `the broker refused ${settings.mode} on ${settings.target} (${err.status} ${err.code}): ${describeBrokerError(err)}`;
  if (err.status === 404) return `the broker refused (${err.status} ${err.code}): ${describeBrokerError(err)}`;
  return `the broker refused the grant request (${err.status} ${err.code}): ${describeBrokerError(err)}`;
}
