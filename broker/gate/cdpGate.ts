/**
 * The CDP gate: the one place where a client→target message is allowed, rewritten or refused.
 * It parses each frame once and returns its own rebuilt message; the raw frame is never forwarded.
 * Unknown methods and unknown parameters are dropped or refused: an allowlist, never a denylist.
 * Names from a frame are only ever looked up as own properties: a method or key such as "toString" or
 * "__proto__" must find nothing, never a member of Object.prototype.
 */
import type { Mode } from '../config/types';
import { checkCondition } from './conditionCheck';
import { compileSearch } from '../session/sourceSearch';
import { parseLogTemplate, type LogTemplate } from '../../common/logpoint';
import { routineMessage, routineOf, type ClientRoutine } from './clientRoutine';
import { urlPatternProblem } from './urlPattern';

type Spec = 'string' | 'integer' | 'number' | 'boolean' | { object: Record<string, Spec> } | { arrayOf: Spec };

const location: Spec = { object: { scriptId: 'string', lineNumber: 'integer', columnNumber: 'integer' } };
const positions: Spec = { arrayOf: { object: { lineNumber: 'integer', columnNumber: 'integer' } } };

type Handling = 'plain' | 'evaluate' | 'breakpoint' | 'step' | 'logpoint' | 'search' | 'source';

/** The logpoint template is parsed by the one parser the debug adapter uses too. */
export type { LogTemplate } from '../../common/logpoint';

interface MethodRule {
  readonly modes: readonly Mode[];
  readonly params: Record<string, Spec>;
  readonly required?: readonly string[];
  readonly handling?: Handling;
}

const both: readonly Mode[] = ['pause', 'snapshot'];
const pauseOnly: readonly Mode[] = ['pause'];

/** The allowlist. A method absent here is refused; a parameter absent from its entry is dropped. */
const allowlist: Record<string, MethodRule> = {
  'Schema.getDomains': { modes: both, params: {} },
  'Runtime.enable': { modes: both, params: {} },
  'Runtime.disable': { modes: both, params: {} },
  'Runtime.runIfWaitingForDebugger': { modes: both, params: {} },
  'Runtime.getIsolateId': { modes: both, params: {} },
  'Runtime.getHeapUsage': { modes: both, params: {} },
  'Runtime.discardConsoleEntries': { modes: both, params: {} },
  'Runtime.releaseObject': { modes: both, params: { objectId: 'string' }, required: ['objectId'] },
  'Runtime.releaseObjectGroup': { modes: both, params: { objectGroup: 'string' }, required: ['objectGroup'] },
  'Runtime.globalLexicalScopeNames': { modes: both, params: { executionContextId: 'integer' } },
  'Runtime.getExceptionDetails': { modes: both, params: { errorObjectId: 'string' }, required: ['errorObjectId'] },
  // Reads properties without running user code: getters, Proxy traps and toString are not invoked.
  'Runtime.getProperties': {
    modes: both,
    params: { objectId: 'string', ownProperties: 'boolean', accessorPropertiesOnly: 'boolean', generatePreview: 'boolean', nonIndexedPropertiesOnly: 'boolean' },
    required: ['objectId'],
  },
  'Runtime.evaluate': {
    modes: both,
    params: { expression: 'string', objectGroup: 'string', silent: 'boolean', contextId: 'integer', returnByValue: 'boolean', generatePreview: 'boolean', uniqueContextId: 'string' },
    required: ['expression'],
    handling: 'evaluate',
  },
  'Debugger.enable': { modes: both, params: { maxScriptsCacheSize: 'number' } },
  'Debugger.disable': { modes: both, params: {} },
  'Debugger.getScriptSource': { modes: both, params: { scriptId: 'string' }, required: ['scriptId'], handling: 'source' },
  // Answered by the broker (session/sourceSearch.ts): V8 runs the pattern with no timeout.
  'Debugger.searchInContent': { modes: both, params: { scriptId: 'string', query: 'string', caseSensitive: 'boolean', isRegex: 'boolean' }, required: ['scriptId', 'query'], handling: 'search' },
  'Debugger.getPossibleBreakpoints': { modes: both, params: { start: location, end: location, restrictToFunction: 'boolean' }, required: ['start'] },
  'Debugger.setAsyncCallStackDepth': { modes: both, params: { maxDepth: 'integer' }, required: ['maxDepth'] },
  'Debugger.setBlackboxPatterns': { modes: both, params: { patterns: { arrayOf: 'string' } }, required: ['patterns'] },
  'Debugger.setBlackboxedRanges': { modes: both, params: { scriptId: 'string', positions }, required: ['scriptId', 'positions'] },
  'Debugger.getStackTrace': { modes: both, params: { stackTraceId: { object: { id: 'string', debuggerId: 'string' } } }, required: ['stackTraceId'] },
  // In snapshot mode these become non-pausing captures (see session/snapshot.ts).
  'Debugger.setBreakpointByUrl': {
    modes: both,
    params: { lineNumber: 'integer', url: 'string', urlRegex: 'string', scriptHash: 'string', columnNumber: 'integer', condition: 'string' },
    required: ['lineNumber'],
    handling: 'breakpoint',
  },
  // A Loupe extension: a logpoint the broker evaluates on each hit (side-effect free, bounded, rate limited)
  // and reports as a Loupe.logpoint event, resuming at once. It never pauses the target longer than that.
  'Loupe.setLogpoint': {
    modes: both,
    params: { lineNumber: 'integer', url: 'string', urlRegex: 'string', scriptHash: 'string', columnNumber: 'integer', condition: 'string', logMessage: 'string' },
    required: ['lineNumber', 'logMessage'],
    handling: 'logpoint',
  },
  'Debugger.setBreakpoint': { modes: both, params: { location, condition: 'string' }, required: ['location'], handling: 'breakpoint' },
  'Debugger.setBreakpointOnFunctionCall': { modes: pauseOnly, params: { objectId: 'string', condition: 'string' }, required: ['objectId'], handling: 'breakpoint' },
  'Debugger.removeBreakpoint': { modes: both, params: { breakpointId: 'string' }, required: ['breakpointId'] },
  'Debugger.setBreakpointsActive': { modes: both, params: { active: 'boolean' }, required: ['active'] },
  'Debugger.setSkipAllPauses': { modes: both, params: { skip: 'boolean' }, required: ['skip'] },
  'Debugger.setPauseOnExceptions': { modes: pauseOnly, params: { state: 'string' }, required: ['state'] },
  'Debugger.evaluateOnCallFrame': {
    modes: pauseOnly,
    params: { callFrameId: 'string', expression: 'string', objectGroup: 'string', silent: 'boolean', returnByValue: 'boolean', generatePreview: 'boolean' },
    required: ['callFrameId', 'expression'],
    handling: 'evaluate',
  },
  'Debugger.pause': { modes: pauseOnly, params: {}, handling: 'step' },
  // terminateOnResume is deliberately absent: it throws a termination into running application code.
  'Debugger.resume': { modes: both, params: {} },
  'Debugger.stepOver': { modes: pauseOnly, params: { skipList: { arrayOf: { object: { scriptId: 'string', start: location, end: location } } } }, handling: 'step' },
  'Debugger.stepInto': { modes: pauseOnly, params: { breakOnAsyncCall: 'boolean', skipList: { arrayOf: { object: { scriptId: 'string', start: location, end: location } } } }, handling: 'step' },
  'Debugger.stepOut': { modes: pauseOnly, params: {}, handling: 'step' },
  'Debugger.continueToLocation': { modes: pauseOnly, params: { location, targetCallFrames: 'string' }, required: ['location'], handling: 'step' },
};

/** Why well-known dangerous methods are refused; anything else unknown gets the generic allowlist reason. */
const refusalReasons: [RegExp, string][] = [
  [/^Debugger\.(setScriptSource|restartFrame)$/, 'it would change the code running in production'],
  [/^Debugger\.(setVariableValue|setReturnValue)$/, 'it would change program state in production'],
  [/^Debugger\.setInstrumentationBreakpoint$/, 'it would pause the target on every script load'],
  [/^Runtime\.(compileScript|runScript)$/, 'it runs arbitrary code without the side-effect check'],
  [/^Runtime\.callFunctionOn$/, 'V8 has no timeout for it, so a looping function would wedge the target; use Runtime.evaluate or Debugger.evaluateOnCallFrame'],
  [/^Runtime\.addBinding$|^Runtime\.removeBinding$/, 'it installs functions in the target'],
  [/^Runtime\.queryObjects$/, 'it walks the whole heap, pausing the target and exposing every instance'],
  [/^Runtime\.terminateExecution$/, 'terminating execution inside application code can crash Node'],
  [/^Runtime\.(setCustomObjectFormatterEnabled|setMaxCallStackSizeToCapture)$/, 'it changes how the target runs'],
  [/^HeapProfiler\./, 'heap snapshots and sampling expose every value in memory and pause the target'],
  [/^Profiler\./, 'profiling is not part of a debugging grant (CPU cost, data exposure)'],
  [/^NodeWorker\./, 'worker sessions carry nested CDP that would bypass the gate'],
  [/^NodeTracing\./, 'tracing is not part of a debugging grant'],
  [/^NodeRuntime\./, 'it changes how the Node process runs or exits'],
  [/^Network\./, 'network inspection exposes request data outside the grant'],
];

/** Blackbox patterns one Debugger.setBlackboxPatterns may set. */
export const maxBlackboxPatterns = 64;

/** Expressions one logpoint message may hold: all of them run, one after another, on every hit. */
export const maxLogpointExpressions = 10;

export const cdpErrorCodes = { invalidRequest: -32600, methodNotFound: -32601, invalidParams: -32602, refused: -32000 } as const;

export interface GateLimits {
  readonly maxFrameBytes: number;
  readonly evaluateTimeoutMs: number;
}

export type GateDecision =
  | {
      readonly action: 'forward';
      readonly id: number;
      readonly method: string;
      readonly params: Record<string, unknown>;
      /** What the gate changed, for the record and the client: e.g. "throwOnSideEffect forced". */
      readonly rewrites: readonly string[];
      /** A breakpoint condition the broker evaluates itself on pause; stripped from the forwarded message. */
      readonly condition?: string;
      /** A logpoint's message, parsed; the broker evaluates its expressions on each hit. */
      readonly logpoint?: LogTemplate;
      readonly handling: Handling;
    }
  | {
      readonly action: 'refuse';
      readonly id: number | null;
      readonly method?: string;
      readonly code: number;
      readonly message: string;
      readonly rule: string;
      /** A request a client makes on its own at attach (clientRoutine.ts): refused quietly, outside the refusals alert. */
      readonly routine?: ClientRoutine;
    };

/** `table[key]` only if `key` is the table's own: input never reaches Object.prototype. */
function own<T>(table: Readonly<Record<string, T>>, key: string): T | undefined {
  return Object.hasOwn(table, key) ? table[key] : undefined;
}

const refuse = (id: number | null, method: string | undefined, code: number, rule: string, message: string): GateDecision => ({ action: 'refuse', id, method, code, rule, message });

function sanitize(value: unknown, spec: Spec, path: string, dropped: string[]): { ok: true; value: unknown } | { ok: false; error: string } {
  if (spec === 'string') return typeof value === 'string' ? { ok: true, value } : { ok: false, error: `${path} must be a string` };
  if (spec === 'boolean') return typeof value === 'boolean' ? { ok: true, value } : { ok: false, error: `${path} must be a boolean` };
  if (spec === 'integer') return Number.isSafeInteger(value) ? { ok: true, value } : { ok: false, error: `${path} must be an integer` };
  if (spec === 'number') return typeof value === 'number' && Number.isFinite(value) ? { ok: true, value } : { ok: false, error: `${path} must be a number` };
  if ('arrayOf' in spec) {
    if (!Array.isArray(value)) return { ok: false, error: `${path} must be an array` };
    const out: unknown[] = [];
    for (const [i, item] of value.entries()) {
      const r = sanitize(item, spec.arrayOf, `${path}[${i}]`, dropped);
      if (!r.ok) return r;
      out.push(r.value);
    }
    return { ok: true, value: out };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { ok: false, error: `${path} must be an object` };
  const out: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value)) {
    const itemSpec = own(spec.object, key);
    if (itemSpec === undefined) {
      dropped.push(`${path}.${truncate(key, 60)}`);
      continue;
    }
    const r = sanitize(item, itemSpec, `${path}.${key}`, dropped);
    if (!r.ok) return r;
    // Only keys of the spec are written, so the output can never gain a prototype from input.
    out[key] = r.value;
  }
  return { ok: true, value: out };
}

/** Reads a leading numeric id without parsing the frame, so a refused oversized frame still gets a routed answer. */
function sniffId(text: string): number | null {
  const match = /^\s*\{\s*"id"\s*:\s*(\d{1,15})\s*[,}]/.exec(text.slice(0, 64));
  return match ? Number(match[1]) : null;
}

/** A routine request to an allowlisted method (an evaluation) is refused like a refused evaluation; any other like an unknown method. */
const routineCode = (method: string) => (own(allowlist, method) ? cdpErrorCodes.refused : cdpErrorCodes.methodNotFound);

export function methodAllowed(method: string, mode: Mode): boolean {
  return own(allowlist, method)?.modes.includes(mode) ?? false;
}

/** Decides one client frame. */
export function gateClientFrame(frame: string | Buffer, isBinary: boolean, mode: Mode, limits: GateLimits): GateDecision {
  const size = typeof frame === 'string' ? Buffer.byteLength(frame) : frame.length;
  const text = typeof frame === 'string' ? frame : isBinary ? '' : frame.toString('utf8');
  if (size > limits.maxFrameBytes) {
    return refuse(sniffId(text), undefined, cdpErrorCodes.invalidRequest, 'frame.size', `frame of ${size} bytes refused: the limit is ${limits.maxFrameBytes} bytes`);
  }
  if (isBinary) return refuse(null, undefined, cdpErrorCodes.invalidRequest, 'frame.binary', 'binary frames refused: CDP messages are JSON text');
  let message: unknown;
  try {
    message = JSON.parse(text);
  } catch (err) {
    return refuse(sniffId(text), undefined, cdpErrorCodes.invalidRequest, 'frame.json', `invalid JSON refused: ${(err as Error).message}`);
  }
  if (Array.isArray(message)) return refuse(null, undefined, cdpErrorCodes.invalidRequest, 'frame.batch', 'batches refused: send one CDP message per frame');
  if (typeof message !== 'object' || message === null)
    return refuse(null, undefined, cdpErrorCodes.invalidRequest, 'frame.shape', 'refused: a CDP message is a JSON object with id, method and params');
  const fields = message as Record<string, unknown>;
  const field = (key: string) => own(fields, key);
  const id = field('id');
  const method = field('method');
  const params = field('params');
  if (!Number.isSafeInteger(id) || (id as number) < 0) {
    return refuse(null, typeof method === 'string' ? method : undefined, cdpErrorCodes.invalidRequest, 'frame.id', 'refused: a CDP message needs a non-negative integer "id"');
  }
  const messageId = id as number;
  if (typeof method !== 'string') return refuse(messageId, undefined, cdpErrorCodes.invalidRequest, 'frame.method', 'refused: a CDP message needs a string "method"');
  const extraKeys = Object.keys(fields).filter((key) => key !== 'id' && key !== 'method' && key !== 'params');
  if (extraKeys.length > 0) {
    return refuse(
      messageId,
      method,
      cdpErrorCodes.invalidRequest,
      'frame.fields',
      `${truncate(method)} refused: unknown top-level field${extraKeys.length > 1 ? 's' : ''} ${extraKeys
        .slice(0, 5)
        .map((k) => `"${truncate(k, 60)}"`)
        .join(', ')}${extraKeys.length > 5 ? ` and ${extraKeys.length - 5} more` : ''} (sessions and flat-mode routing are not supported)`,
    );
  }
  // What a client asks on its own at attach is refused in its own words, allowlisted method or not.
  const routine = routineOf(method, params);
  if (routine) return { action: 'refuse', id: messageId, method, code: routineCode(method), rule: `routine:${routine.name}`, message: routineMessage(routine), routine };
  const rule = own(allowlist, method);
  if (!rule || !rule.modes.includes(mode)) {
    const known = refusalReasons.find(([pattern]) => pattern.test(method));
    const why = known ? known[1] : rule ? `it is not allowed in ${mode} mode` : `it is not on the allowlist for ${mode} sessions`;
    return refuse(messageId, method, cdpErrorCodes.methodNotFound, known ? `refused:${method}` : 'allowlist', `${truncate(method)} refused by Loupe: ${why}`);
  }
  if (params !== undefined && (typeof params !== 'object' || params === null || Array.isArray(params))) {
    return refuse(messageId, method, cdpErrorCodes.invalidParams, 'params.shape', `${method} refused: params must be an object`);
  }
  const dropped: string[] = [];
  const checked = sanitize(params ?? {}, { object: rule.params }, 'params', dropped);
  if (!checked.ok) return refuse(messageId, method, cdpErrorCodes.invalidParams, 'params.type', `${method} refused: ${checked.error}`);
  const clean = checked.value as Record<string, unknown>;
  const missing = (rule.required ?? []).filter((key) => clean[key] === undefined);
  if (missing.length > 0) return refuse(messageId, method, cdpErrorCodes.invalidParams, 'params.required', `${method} refused: missing ${missing.join(', ')}`);
  const rewrites = dropped.map((path) => `${path} dropped`);
  // V8 runs these patterns over script URLs on the target's main thread with no time limit (urlPattern.ts), the
  // blackbox patterns joined into one: each is bounded, and so is their number.
  if (Array.isArray(clean.patterns) && clean.patterns.length > maxBlackboxPatterns) {
    return refuse(
      messageId,
      method,
      cdpErrorCodes.refused,
      'pattern.count',
      `${method} refused: ${clean.patterns.length} patterns, at most ${maxBlackboxPatterns} (V8 matches them all, as one expression, against each frame's script URL on every step and pause)`,
    );
  }
  const patterns: [string, string][] =
    typeof clean.urlRegex === 'string'
      ? [['urlRegex', clean.urlRegex]]
      : Array.isArray(clean.patterns) && clean.patterns.length > 0
        ? (clean.patterns as string[]).map((p, i): [string, string] => [`patterns[${i}]`, p])
        : [];
  for (const [name, pattern] of patterns) {
    const problem = urlPatternProblem(pattern);
    if (problem) {
      return refuse(
        messageId,
        method,
        cdpErrorCodes.refused,
        'pattern.backtracking',
        `${method} refused: ${name} "${truncate(pattern, 80)}": ${problem}. V8 matches it against script URLs on the target's main thread with no time limit, so a pattern that backtracks would hold the target; use url, or a simpler pattern`,
      );
    }
  }

  let handling = rule.handling ?? 'plain';
  let condition: string | undefined;
  let logpoint: LogTemplate | undefined;
  let forwardMethod = method;
  if (handling === 'logpoint') {
    const parsed = parseLogTemplate(String(clean.logMessage));
    if (!parsed.ok) return refuse(messageId, method, cdpErrorCodes.invalidParams, 'logpoint.template', `${method} refused: ${parsed.error}`);
    logpoint = parsed.template;
    if (logpoint.expressions.length > maxLogpointExpressions) {
      return refuse(
        messageId,
        method,
        cdpErrorCodes.refused,
        'logpoint.parts',
        `${method} refused: the message has ${logpoint.expressions.length} {expressions}; a logpoint may have at most ${maxLogpointExpressions}, each hit holds the target while they run`,
      );
    }
    for (const expression of logpoint.expressions) {
      const verdict = checkCondition(expression);
      if (!verdict.ok) return refuse(messageId, method, cdpErrorCodes.refused, 'logpoint.static', `${method} refused: logpoint expression "${truncate(expression)}" ${verdict.reason}`);
    }
    delete clean.logMessage;
    forwardMethod = 'Debugger.setBreakpointByUrl';
    rewrites.push('logpoint kept by the broker: a plain breakpoint is set, the message is evaluated on each hit');
    handling = 'breakpoint';
  }
  if (handling === 'evaluate') {
    clean.throwOnSideEffect = true;
    clean.timeout = limits.evaluateTimeoutMs;
    if (method === 'Runtime.evaluate') clean.disableBreaks = true;
    rewrites.push('throwOnSideEffect forced', `timeout ${limits.evaluateTimeoutMs}ms forced`);
  } else if (handling === 'breakpoint' && typeof clean.condition === 'string' && clean.condition.trim() !== '') {
    const verdict = checkCondition(clean.condition);
    if (!verdict.ok) {
      return refuse(messageId, method, cdpErrorCodes.refused, 'condition.static', `${method} refused: condition "${truncate(clean.condition)}" ${verdict.reason}`);
    }
    condition = clean.condition;
    delete clean.condition;
    rewrites.push('condition moved to the broker (checked side-effect free on each pause)');
  } else if (handling === 'breakpoint') {
    delete clean.condition;
  }
  if (handling === 'search') {
    if (clean.isRegex === true) {
      try {
        compileSearch(String(clean.query), clean.caseSensitive === true);
      } catch (err) {
        return refuse(
          messageId,
          method,
          cdpErrorCodes.invalidParams,
          'search.regex',
          `${method} refused: the pattern has no linear-time form (${(err as Error).message}); backreferences and lookaround are not supported`,
        );
      }
    }
    rewrites.push('answered by the broker: the source is searched in Loupe (RE2 for patterns), never by the target');
  }
  if (handling === 'source') rewrites.push('answered by the broker: the source with its secret literals redacted');
  if (method === 'Debugger.setAsyncCallStackDepth' && mode === 'snapshot' && (clean.maxDepth as number) !== 0) {
    // Tracking async stacks hooks every async operation of the target (measured: half the throughput of an
    // HTTP service, idle session), and a capture never carries one.
    clean.maxDepth = 0;
    rewrites.push('maxDepth 0 in snapshot mode: captures have no async stacks, and tracking them slows every request of the target');
  } else if (method === 'Debugger.setAsyncCallStackDepth' && (clean.maxDepth as number) > 32) {
    clean.maxDepth = 32;
    rewrites.push('maxDepth capped at 32');
  }
  if (method === 'Debugger.setPauseOnExceptions' && !['none', 'caught', 'uncaught', 'all'].includes(clean.state as string)) {
    return refuse(messageId, method, cdpErrorCodes.invalidParams, 'params.value', `${method} refused: state must be none, caught, uncaught or all`);
  }
  return {
    action: 'forward',
    id: messageId,
    method: forwardMethod,
    params: sortedKeys(clean),
    rewrites,
    handling,
    ...(condition !== undefined ? { condition } : {}),
    ...(logpoint ? { logpoint } : {}),
  };
}

/**
 * The params with their keys in canonical (sorted) order: the request's audit record holds them, and a record whose
 * keys are already sorted is serialized by JSON.stringify alone (common/canonicalJson.ts). Keys are the allowlist's own.
 */
function sortedKeys(params: Record<string, unknown>): Record<string, unknown> {
  const keys = Object.keys(params);
  let sorted = true;
  for (let i = 1; i < keys.length && sorted; i++) sorted = keys[i - 1]! < keys[i]!;
  if (sorted) return params;
  const out: Record<string, unknown> = {};
  for (const key of keys.sort()) out[key] = params[key];
  return out;
}

/**
 * Text of any value parsed from a frame, without running anything of it: String() of a JSON object with an own
 * "toString" key throws, JSON.stringify never calls a non-function.
 */
export function safeText(value: unknown): string {
  if (typeof value === 'string') return value;
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    // Circular, a BigInt, a throwing toJSON or toString: named by its kind alone.
    return Object.prototype.toString.call(value);
  }
}

export const truncate = (text: string, max = 120) => {
  const t = safeText(text);
  return t.length > max ? `${t.slice(0, max)}…` : t;
};

/** The allowlist as documentation: method and the modes it is open in. */
export function describeAllowlist(): { method: string; modes: readonly Mode[] }[] {
  return Object.entries(allowlist).map(([method, rule]) => ({ method, modes: rule.modes }));
}
