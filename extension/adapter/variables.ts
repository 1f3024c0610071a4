/**
 * Scopes and variables: of a live pause, read with Runtime.getProperties (getters are never invoked;
 * Runtime.callFunctionOn is refused by the broker), or of a capture, read from the capture alone. Every
 * variable is read-only. References are valid for one stop: `reset()` on each.
 */
import { Handles, Scope } from '@vscode/debugadapter';
import type { DebugProtocol } from '@vscode/debugprotocol';
import type { Protocol } from 'devtools-protocol';
import type { LoupeRuntime } from './runtime';
import { capturedType, formatCaptured, hasChildren, truncationText, type CapturedFrame, type CapturedProperty, type CapturedValue } from './snapshots';
import { formatValue, valueType } from './valueFormat';

/** What a variables reference expands: a live object (pause mode) or captured properties (snapshot mode). */
type VariableContainer = { objectId: string } | { captured: readonly CapturedProperty[]; truncated?: string };

const readOnly: DebugProtocol.VariablePresentationHint = { attributes: ['readOnly'] };

export class VariableStore {
  private handles = new Handles<VariableContainer>();

  /** A new stop: the references of the last one no longer answer. */
  reset(): void {
    this.handles = new Handles<VariableContainer>();
  }

  /** A live object's reference, 0 for values without children. */
  reference(value: Protocol.Runtime.RemoteObject): number {
    return value.objectId && value.type !== 'function' ? this.handles.create({ objectId: value.objectId }) : 0;
  }

  /** The scopes of a paused frame. */
  liveScopes(frame: Protocol.Debugger.CallFrame | undefined): DebugProtocol.Scope[] {
    const scopes: DebugProtocol.Scope[] = [];
    for (const s of frame?.scopeChain ?? []) {
      if (!s.object.objectId) continue;
      const label = s.type === 'local' ? 'Local' : s.type === 'global' ? 'Global' : s.type[0]!.toUpperCase() + s.type.slice(1);
      const scope = new Scope(s.name && s.type !== 'local' ? `${label}: ${s.name}` : label, this.handles.create({ objectId: s.object.objectId }), s.type === 'global') as DebugProtocol.Scope;
      if (s.type === 'local') scope.presentationHint = 'locals';
      scopes.push(scope);
    }
    return scopes;
  }

  /** A captured frame's scopes; `this` is shown among the locals. */
  capturedScopes(frame: CapturedFrame | undefined): DebugProtocol.Scope[] {
    if (!frame) return [];
    if (!frame.scopes) return [new Scope('Not captured: the broker reads the variables of the top frames only', 0, false)];
    const scopes: DebugProtocol.Scope[] = [];
    const self = frame.this ? [{ name: 'this', value: frame.this }] : [];
    for (const s of frame.scopes) {
      const label = s.type === 'local' ? 'Local' : s.type[0]!.toUpperCase() + s.type.slice(1);
      const properties = s.type === 'local' ? [...self, ...(s.properties ?? [])] : (s.properties ?? []);
      const scope = new Scope(label, this.handles.create({ captured: properties, ...(s.truncated ? { truncated: s.truncated } : {}) }), false) as DebugProtocol.Scope;
      if (s.type === 'local') scope.presentationHint = 'locals';
      scopes.push(scope);
    }
    if (self.length > 0 && !frame.scopes.some((s) => s.type === 'local')) scopes.unshift(new Scope('This', this.handles.create({ captured: self }), false));
    return scopes;
  }

  /** The children of a reference; a live one is read through the broker (which may refuse: that rejects). */
  async variables(reference: number, runtime: LoupeRuntime | undefined): Promise<DebugProtocol.Variable[]> {
    const container = this.handles.get(reference);
    if (container && 'captured' in container) {
      // Snapshot mode: from the capture alone; the target has run on since.
      const variables = container.captured.map((p) => this.captured(p.name, p.value));
      if (container.truncated) variables.push({ name: '…', value: `(${truncationText(container.truncated)})`, variablesReference: 0, presentationHint: { kind: 'virtual', attributes: ['readOnly'] } });
      return variables;
    }
    if (!container || !runtime) return [];
    const r = await runtime.properties(container.objectId);
    const variables: DebugProtocol.Variable[] = [];
    for (const p of r.result ?? []) {
      if (p.value) variables.push(this.live(p.name, p.value));
      else if (p.get || p.set) {
        variables.push({
          name: p.name,
          value: p.get && p.get.type !== 'undefined' ? '(getter: not invoked by Loupe)' : '(setter only)',
          variablesReference: 0,
          presentationHint: { kind: 'property', attributes: ['readOnly'] },
        });
      }
    }
    for (const p of r.internalProperties ?? []) {
      if (p.value && p.name !== '[[Scopes]]' && p.name !== '[[FunctionLocation]]') variables.push(this.live(p.name, p.value));
    }
    return variables;
  }

  /** A live value as a variable. */
  live(name: string, value: Protocol.Runtime.RemoteObject): DebugProtocol.Variable {
    const v: DebugProtocol.Variable = { name, value: formatValue(value, 'variables'), variablesReference: this.reference(value) };
    const type = valueType(value);
    if (type) v.type = type;
    return v;
  }

  /** A captured value as a variable. */
  captured(name: string, value: CapturedValue): DebugProtocol.Variable {
    const type = capturedType(value);
    return {
      name,
      value: formatCaptured(value),
      ...(type ? { type } : {}),
      variablesReference: hasChildren(value) ? this.handles.create({ captured: value.properties!, ...(value.truncated ? { truncated: value.truncated } : {}) }) : 0,
      presentationHint: { kind: value.type === 'accessor' ? 'property' : 'data', attributes: ['readOnly'] },
    };
  }
}

/** An evaluation answer that is text only: a refusal, or a name a capture does not hold. */
export function textResult(text: string): DebugProtocol.EvaluateResponse['body'] {
  return { result: text, variablesReference: 0, presentationHint: readOnly };
}
