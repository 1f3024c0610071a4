/**
 * Exception pauses: an exception's message is text the program built, often from the very value that failed
 * (`new Error('login failed for ' + password)`), and the redactor can scrub a value out of free text only once it
 * knows it. So before an exception pause is redacted and shown, the broker reads what the paused frames hold:
 * each scope object (Runtime.getProperties, own properties: no getter runs) and what their bindings reach (the
 * side-effect-free reachable-values probe), and learns every value held there under a sensitive name. The pause's
 * data, and every later read of the error (its message and stack, Runtime.getExceptionDetails, the record), are
 * then scrubbed of it. Bounded in frames, scopes, roots and time: the target waits, paused, while it runs.
 */
import { isRecord, type PausedFrameInput } from '../gate/targetFrame';
import { reachableValuesProbe } from '../gate/evaluationCheck';
import type { SessionContext } from './context';

export const exceptionLearningLimits = {
  /** The frames read, from the top: where the message was built, and its callers (a secret passed in). */
  frames: 4,
  /** Scope objects read in all (the global scope is never read: it is the whole process). */
  scopes: 16,
  /** Bindings per frame whose objects the probe walks. */
  roots: 64,
  /** Time the target is held for it, at most (each command is bounded by its own timeout too). */
  ms: 1500,
};

/** Whether a Debugger.paused is a pause on an exception or a promise rejection. */
export function isExceptionPause(params: Record<string, unknown> | undefined): boolean {
  return params?.reason === 'exception' || params?.reason === 'promiseRejection';
}

/**
 * Learns the values held under sensitive names in the scopes of an exception pause's top frames and on the thrown
 * value itself. Returns how many reads it made. Never throws: what it could not read is still scrubbed by name,
 * pattern and what was learned before.
 */
export async function learnAtExceptionPause(context: SessionContext, params: Record<string, unknown>, limits = exceptionLearningLimits): Promise<number> {
  const { redactor, channel } = context;
  if (!redactor.active) return 0;
  const deadline = performance.now() + limits.ms;
  const timeoutMs = Math.max(100, Math.min(limits.ms, context.limits.evaluateTimeoutMs));
  const why = 'learn the sensitive values an exception pause holds before it is shown';
  let reads = 0;
  // Quiet: the answer is read by the broker alone and only its size is recorded; it is not redacted on the way in,
  // so the values under sensitive names are here to learn.
  const ownProperties = async (objectId: string): Promise<Record<string, unknown>[]> => {
    reads++;
    try {
      const result = await channel.command('Runtime.getProperties', { objectId, ownProperties: true }, { quiet: true, timeoutMs, why });
      return Array.isArray(result.result) ? (result.result as unknown[]).filter(isRecord) : [];
    } catch {
      return [];
    }
  };
  /** Learns sensitive primitives; returns the names of bindings holding objects (for the probe). */
  const learnFrom = (props: Record<string, unknown>[]): string[] => {
    const objects: string[] = [];
    for (const prop of props) {
      const name = typeof prop.name === 'string' ? prop.name : undefined;
      const value = isRecord(prop.value) ? prop.value : undefined;
      if (name === undefined || !value) continue;
      if (value.type === 'object' && value.subtype !== 'null' && typeof value.objectId === 'string') objects.push(name);
      else if (redactor.isSensitive(name)) {
        redactor.learnValue(value.value);
        if (value.type === 'string' || value.type === 'number' || value.type === 'bigint') redactor.learnValue(value.type === 'bigint' ? value.unserializableValue : value.description);
      }
    }
    return objects;
  };

  // The thrown value's own fields (`err.token = …`).
  const data = isRecord(params.data) ? params.data : undefined;
  if (data && typeof data.objectId === 'string') learnFrom(await ownProperties(data.objectId));

  const frames = (Array.isArray(params.callFrames) ? (params.callFrames as PausedFrameInput[]) : []).slice(0, limits.frames);
  let scopes = 0;
  for (const frame of frames) {
    const roots = new Set<string>();
    for (const scope of frame.scopeChain) {
      if (scope.type === 'global' || typeof scope.object.objectId !== 'string') continue;
      if (scopes >= limits.scopes || performance.now() > deadline || context.isEnding()) break;
      scopes++;
      for (const name of learnFrom(await ownProperties(scope.object.objectId))) if (roots.size < limits.roots && /^[A-Za-z_$][\w$]*$/.test(name)) roots.add(name);
    }
    if (roots.size === 0 || performance.now() > deadline || context.isEnding()) continue;
    // What the bindings' objects hold, nested (config.db.password), read by the probe in the frame itself.
    reads++;
    const expression = reachableValuesProbe([...roots].map((name) => JSON.stringify([name])));
    const pairs = await context.evaluation.reachableValues({
      method: 'Debugger.evaluateOnCallFrame',
      params: { callFrameId: frame.callFrameId, expression, returnByValue: true, silent: true, throwOnSideEffect: true, timeout: timeoutMs },
    });
    if (pairs) redactor.learnPairs(pairs);
  }
  return reads;
}
