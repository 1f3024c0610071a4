import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { Protocol } from 'devtools-protocol';
import { CdpClient } from '../support/cdpClient';
import { fixtures, startTarget, type TargetProcess } from '../support/target';
import { compileRedaction, defaultPatterns, defaultSensitiveNames, Redactor } from '../../broker/policy/redact';
import { evaluateLoupe, redactionContextOf, TargetReader, type LoupeEvalOptions, type LoupeOutcome } from '../../broker/eval';

export const evalApp = join(fixtures, 'eval-app.js');
export const envSecret = 'S3CR3T-env-secret-x';

/** Every secret text the fixture holds (each contains "S3CR3T", but the parts that do not are listed too). */
export const secretTexts = ['S3CR3T', 'S3CR3T-param-password', '4111 1111 1111 1111', '4111111111111111', 'eyJhbGciOiJIUzI1NiJ9', 'abcdefghijklmnop', envSecret];

/** The fixture paused in login(), with a direct CDP connection and what the interpreter needs. */
export interface PausedApp {
  readonly target: TargetProcess;
  readonly client: CdpClient;
  readonly frame: Protocol.Debugger.CallFrame;
  readonly redactor: Redactor;
  /** A fresh reader per call would also do; one per pause is what the session keeps. */
  readonly reader: TargetReader;
  options(extra?: Partial<LoupeEvalOptions>): LoupeEvalOptions;
  evaluate(expression: string, extra?: Partial<LoupeEvalOptions>): Promise<LoupeOutcome>;
  /** V8's own answer for the same expression in the same frame, by value. */
  v8(expression: string, sideEffectCheck?: boolean): Promise<{ result: Protocol.Runtime.RemoteObject; exceptionDetails?: Protocol.Runtime.ExceptionDetails }>;
  /** How many times the fixture's getters and Proxy trap ran (read without running anything). */
  getterRuns(): Promise<number>;
  stop(): Promise<void>;
}

export async function pausedApp(secretSuffix = ''): Promise<PausedApp> {
  const target = await startTarget(evalApp, { SECRET_X: envSecret + secretSuffix, EVAL_SECRET_SUFFIX: secretSuffix });
  const client = await CdpClient.connect(target.wsUrl);
  await client.call('Runtime.enable');
  await client.call('Debugger.enable');
  await client.call('Runtime.evaluate', { expression: 'setTimeout(run, 0), 1' });
  const paused = await client.waitEvent('Debugger.paused');
  const frame = paused.params.callFrames[0] as Protocol.Debugger.CallFrame;
  const redactor = new Redactor(compileRedaction(defaultSensitiveNames, defaultPatterns));
  const send = (method: string, params: Record<string, unknown>) => client.call(method, params);
  const reader = new TargetReader(send);
  const options = (extra: Partial<LoupeEvalOptions> = {}): LoupeEvalOptions => ({ reader, frame, redaction: redactionContextOf(redactor), ...extra });
  return {
    target,
    client,
    frame,
    redactor,
    reader,
    options,
    evaluate: (expression, extra) => evaluateLoupe(expression, options(extra)),
    // Without the side-effect check by default: V8 refuses pure string methods under it (CDP-FACTS.md), and
    // the table's expressions are the test's own, pure ones.
    v8: (expression, sideEffectCheck = false) =>
      client.call('Debugger.evaluateOnCallFrame', { callFrameId: frame.callFrameId, expression, returnByValue: true, throwOnSideEffect: sideEffectCheck, timeout: 1000, silent: true }),
    async getterRuns() {
      const global = await client.call('Runtime.getProperties', { objectId: frame.scopeChain.at(-1)!.object.objectId, ownProperties: true });
      const probe = global.result.find((d: Protocol.Runtime.PropertyDescriptor) => d.name === 'probe');
      const fields = await client.call('Runtime.getProperties', { objectId: probe.value.objectId, ownProperties: true });
      return fields.result.find((d: Protocol.Runtime.PropertyDescriptor) => d.name === 'getterRuns').value.value as number;
    },
    async stop() {
      await client.close();
      await target.stop();
    },
  };
}

/** The value a result stands for, comparable with V8's returnByValue answer. */
export function valueOf(outcome: LoupeOutcome): unknown {
  if (outcome.kind !== 'value') return { [outcome.kind]: outcome.kind === 'refused' ? outcome.refusal.message : outcome.result.description };
  const r = outcome.result;
  if (r.type === 'undefined') return undefined;
  if (r.unserializableValue !== undefined) return r.unserializableValue;
  return r.value;
}

/** Fails when the text holds any of the fixture's secrets or a recognisable part of one, in any case. */
export function assertNoSecret(text: string, context: string): void {
  const lower = text.toLowerCase();
  for (const secret of [...secretTexts, 'Zq7-other']) assert.ok(!lower.includes(secret.toLowerCase()), `${context} leaked ${secret}: ${text}`);
}
