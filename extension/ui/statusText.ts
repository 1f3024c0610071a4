/**
 * The status bar item's text and tooltip for the live grant that ends first, without `vscode` (unit-tested):
 * a countdown, and "V8 eval" when the session may run app code in V8.
 */
import type { GrantEventBody } from '../adapter/config';

/** `others`: the other live grants; one of them with V8 evaluation is marked too (the item shows one session). */
export function statusTextFor(grant: GrantEventBody, now: number, others: readonly GrantEventBody[] = []): { text: string; tooltip: string; secondsLeft: number } {
  const left = Math.max(0, Math.round((Date.parse(grant.expiresAt) - now) / 1000));
  const clock = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, '0')}`;
  const v8 = grant.evaluation === 'v8';
  const otherV8 = others.filter((g) => g !== grant && g.evaluation === 'v8').map((g) => g.target);
  const mark = v8 ? ' · V8 eval' : otherV8.length > 0 ? ' · V8 eval (other session)' : '';
  return {
    text: `$(shield) Loupe ${grant.target} ${clock}${mark}`,
    tooltip: `Loupe: ${grant.mode} session on ${grant.target}, recorded; the grant ends at ${new Date(grant.expiresAt).toLocaleTimeString()}.${v8 ? ' V8 evaluation (privileged): expressions may run app code, and redaction is best-effort; every evaluation raises an alert.' : ''}${otherV8.length > 0 ? ` Also live with V8 evaluation (privileged): ${otherV8.join(', ')}.` : ''} Click to end the session now.`,
    secondsLeft: left,
  };
}
