/**
 * The shape of what a session records of the CDP traffic: which audit event a client request is, and what the record
 * keeps of an answer (enough to answer "what did they see", without whole script sources).
 */
import type { Protocol } from 'devtools-protocol';
import type { EventType } from '../audit/events';
import { safeText, truncate } from '../gate/cdpGate';
import { isRecord } from '../gate/targetFrame';

/** The audit event a client request is recorded as. */
export function requestEventType(method: string): EventType {
  if (/^Debugger\.setBreakpoint/.test(method)) return 'cdp.breakpoint.set';
  if (method === 'Debugger.removeBreakpoint') return 'cdp.breakpoint.removed';
  if (method === 'Runtime.evaluate' || method === 'Debugger.evaluateOnCallFrame') return 'cdp.evaluate';
  if (method === 'Runtime.getProperties') return 'cdp.properties.read';
  if (/^Debugger\.(step|continueToLocation|pause$)/.test(method)) return 'cdp.step';
  if (method === 'Debugger.resume') return 'cdp.resume';
  return 'cdp.request';
}

/** What the record keeps of a result: enough to answer "what did they see", without whole script sources. */
export function summarizeResult(method: string, result: Record<string, unknown> | undefined): unknown {
  if (!result) return {};
  if (method === 'Debugger.getScriptSource') return { bytes: safeText(result.scriptSource ?? '').length };
  if (method === 'Runtime.getProperties') {
    const props = Array.isArray(result.result) ? (result.result as unknown[]) : [];
    // Keys in canonical order, so the record's canonical JSON is JSON.stringify's (see common/canonicalJson.ts).
    return {
      count: props.length,
      properties: props
        .slice(0, 200)
        .map((p) => (isRecord(p) ? { name: safeText(p.name), preview: preview(isRecord(p.value) ? (p.value as unknown as Protocol.Runtime.RemoteObject) : undefined) } : { name: '(malformed)' })),
    };
  }
  if (method === 'Runtime.evaluate' || method === 'Debugger.evaluateOnCallFrame') {
    const details = result.exceptionDetails as { exception?: { description?: unknown }; text?: unknown } | undefined;
    return details
      ? { error: truncate(safeText(details.exception?.description ?? details.text ?? 'exception'), 300) }
      : { preview: preview(isRecord(result.result) ? (result.result as unknown as Protocol.Runtime.RemoteObject) : undefined) };
  }
  const text = JSON.stringify(result);
  return text.length <= 2000 ? result : { bytes: text.length };
}

function preview(value: Protocol.Runtime.RemoteObject | undefined): string | undefined {
  if (!value) return undefined;
  if (value.description !== undefined) return truncate(safeText(value.description), 200);
  if (value.type === 'undefined') return 'undefined';
  return truncate(JSON.stringify(value.value) ?? safeText(value.value), 200);
}
