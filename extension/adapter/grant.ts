/**
 * The grant an attach uses: the one the extension already obtained (token and attach URL in the configuration),
 * or one the adapter requests itself with the signed-in identity (a launch.json attach, or a test).
 */
import { BrokerApi, describeBrokerError } from './brokerApi';
import type { GrantEventBody, LoupeAttachArguments } from './config';

export interface AttachGrant {
  readonly grantToken: string;
  readonly attachUrl: string;
  /** For the `loupe.grant` event (the status bar's countdown). */
  readonly grant: GrantEventBody;
  /** Set when the policy shortened the requested duration. */
  readonly cappedToSeconds?: number;
}

/** Throws with a message the user can act on (what is missing, or the broker's refusal). */
export async function obtainGrant(a: LoupeAttachArguments): Promise<AttachGrant> {
  if (!a.target) throw new Error('the configuration names no "target"');
  const mode = a.mode ?? 'pause';
  if (a.evaluation !== undefined && a.evaluation !== 'loupe' && a.evaluation !== 'v8') throw new Error(`"evaluation" must be "loupe" or "v8", not ${JSON.stringify(a.evaluation)}`);
  const v8 = { ...(a.evaluation === 'v8' ? { evaluation: 'v8' as const } : {}) };
  if (a.grantToken && a.attachUrl) {
    return { grantToken: a.grantToken, attachUrl: a.attachUrl, grant: { grantId: a.grantId ?? '', target: a.target, mode, expiresAt: a.expiresAt ?? '', ...v8 } };
  }
  if (!a.brokerUrl) throw new Error('no broker URL: set "brokerUrl" in the configuration or the loupe.brokerUrl setting');
  if (!a.identityToken) throw new Error('not signed in: run "Loupe: Sign In…" first (no identity token)');
  if (!a.reason?.trim()) throw new Error('a reason is required to attach to production ("reason" in the configuration)');
  const api = new BrokerApi(a.brokerUrl, a.identityToken);
  let answer;
  try {
    answer = await api.requestGrant({ target: a.target, mode, ...v8, durationSeconds: a.durationSeconds ?? 900, reason: a.reason, ...(a.ticket ? { ticket: a.ticket } : {}) });
  } catch (err) {
    throw new Error(`grant refused: ${describeBrokerError(err)}`);
  }
  return {
    grantToken: answer.token,
    attachUrl: answer.attachUrl,
    // What the broker granted, not what was asked.
    grant: { grantId: answer.grantId, target: a.target, mode, expiresAt: answer.expiresAt, ...(answer.evaluation === 'v8' ? { evaluation: 'v8' as const } : {}) },
    ...(answer.capped ? { cappedToSeconds: answer.durationSeconds } : {}),
  };
}
