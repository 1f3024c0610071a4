/**
 * Requests debuggers send on their own at attach, which Loupe refuses: VS Code's JavaScript debugger (js-debug),
 * Chrome DevTools and `node inspect` enable workers, the profiler and the network domain, inject NODE_OPTIONS for child processes, probe
 * `require('module').builtinModules`, and describe objects with `Runtime.callFunctionOn`. Nobody typed them, so they
 * are answered quietly ("not available through Loupe") and do not count toward the `refusals` alert. A routine
 * request is refused all the same, never forwarded, and recorded (`cdp.refused` with `routine`); only the alert
 * accounting and the wording differ.
 *
 * Each entry matches a method and the exact shape the client sends, not the method alone, and most may occur only a
 * few times per session: a request that merely resembles one, or repeats beyond what a client does at attach,
 * counts as a refusal like any other.
 */

export interface ClientRoutine {
  /** Stable name, recorded with the refusal. */
  readonly name: string;
  /** The client seen sending it. */
  readonly client: string;
  readonly method: string;
  /** The params exactly as that client sends them. */
  matches(params: Readonly<Record<string, unknown>>): boolean;
  /** Times per session it is quiet; beyond that it counts as a refusal. Unbounded only for what runs nothing of the caller's choosing. */
  readonly perSession: number;
  /** Why Loupe does not offer it, for the client's error. */
  readonly why: string;
  /**
   * Answered with an empty result instead of an error, still never forwarded: for a domain switch a client cannot
   * start without (`node inspect` exits when Profiler.enable fails), where every command that would act on the
   * domain stays refused, so the answer grants nothing.
   */
  readonly answerEmpty?: true;
}

const keysWithin = (params: Readonly<Record<string, unknown>>, allowed: readonly string[]) => Object.keys(params).every((key) => allowed.includes(key));
const only = (params: Readonly<Record<string, unknown>>, shape: Readonly<Record<string, 'boolean' | 'number' | 'string'>>) =>
  keysWithin(params, Object.keys(shape)) && Object.entries(params).every(([key, value]) => typeof value === shape[key]);

/** js-debug names each evaluation it makes itself: "\n//# sourceURL=eval-<8 hex>.cdp\n". */
const jsDebugSource = String.raw`(?:\n//# sourceURL=eval-[0-9a-f]{8}\.cdp\n?)?`;
const exactly = (body: string) => new RegExp(`^${body}${jsDebugSource}$`);
const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

const telemetryProbe = exactly(
  escape("typeof process === 'undefined' || process.pid === undefined ? 'process not defined' : ({ processId: process.pid, nodeVersion: process.version, architecture: process.arch })"),
);
const builtinModulesProbe = exactly(escape("require('module').builtinModules"));
// `process.env["NAME"]=(process.env["NAME"]||'')+"…"` or `process.env["NAME"]="…"`, one per variable js-debug sets.
const envAssignment = String.raw`process\.env\["[A-Z_]{1,40}"\]=(?:\(process\.env\["[A-Z_]{1,40}"\]\|\|''\)\+)?"(?:[^"\\]|\\.){0,2000}"`;
const childEnvironment = exactly(
  escape("typeof Deno==='object'?'deno':typeof process==='undefined'||process.pid===undefined?'process not defined':(()=>{") + `${envAssignment}(?:;${envAssignment}){0,7}` + escape('})()'),
);
const wasmInstrumentation = exactly(
  escape(
    '(()=>{let r=["instantiate","instantiateStreaming","compile","compileStreaming"];for(let e of r){let t=WebAssembly[e];WebAssembly[e]=function(...n){return t.apply(this,n).then(i=>{if(!(n[0]instanceof WebAssembly.Module))debugger;return i})}}})();\n',
  ),
);
// js-debug's helpers run on an object: the symbols it asks objects to describe themselves with, its descriptions of
// properties (they call the object's own description methods, app code), and its name completions. js-debug puts
// its sourceURL comment before the closing brace.
const helperMarkers = ['Symbol.for("debug.description")', 'runtimeArgs[0][2]', '"<<default preview>>"', 'isArray:this instanceof Array'];
const jsDebugHelper = (declaration: string) => {
  const text = declaration.replace(/\n\/\/# sourceURL=eval-[0-9a-f]{8}\.cdp\n?/g, '');
  return text.length <= 8000 && /^function\s*\([\w$.,]*\)\s*\{[\s\S]*\}\s*$/.test(text) && helperMarkers.some((marker) => text.includes(marker));
};

const evaluation = (params: Readonly<Record<string, unknown>>, expression: RegExp) =>
  keysWithin(params, ['expression', 'contextId', 'returnByValue', 'includeCommandLineAPI', 'silent', 'awaitPromise', 'objectGroup']) &&
  typeof params.expression === 'string' &&
  expression.test(params.expression);

/** The list. Kept short: only what a client was seen sending at attach (js-debug 1.117 in code-server 1.139; Chrome DevTools' js_app of Chromium 156). */
export const clientRoutines: readonly ClientRoutine[] = [
  {
    name: 'workers',
    client: 'js-debug, Chrome DevTools',
    method: 'NodeWorker.enable',
    matches: (p) => only(p, { waitForDebuggerOnStart: 'boolean' }),
    perSession: 2,
    why: 'worker sessions carry nested CDP that would bypass the gate',
  },
  {
    name: 'profiler',
    client: 'js-debug, Chrome DevTools, node inspect',
    method: 'Profiler.enable',
    matches: (p) => only(p, {}),
    perSession: 2,
    why: 'profiling is not part of a debugging grant (Profiler.start and every other Profiler command are refused)',
    answerEmpty: true,
  },
  {
    name: 'profiler-interval',
    client: 'node inspect',
    method: 'Profiler.setSamplingInterval',
    matches: (p) => only(p, { interval: 'number' }),
    perSession: 2,
    why: 'profiling is not part of a debugging grant (Profiler.start and every other Profiler command are refused)',
    answerEmpty: true,
  },
  {
    name: 'network',
    client: 'js-debug, Chrome DevTools',
    method: 'Network.enable',
    matches: (p) => only(p, { maxTotalBufferSize: 'number', maxResourceBufferSize: 'number', maxPostDataSize: 'number', reportDirectSocketTraffic: 'boolean' }),
    perSession: 2,
    why: 'network inspection exposes request data outside the grant',
  },
  // Chrome DevTools (js_app.html of Chromium 156) sets its network panel to its defaults right after Network.enable.
  {
    name: 'network-settings',
    client: 'Chrome DevTools',
    method: 'Network.setAttachDebugStack',
    matches: (p) => only(p, { enabled: 'boolean' }),
    perSession: 2,
    why: 'network inspection exposes request data outside the grant',
  },
  {
    name: 'network-blocking',
    client: 'Chrome DevTools',
    method: 'Network.setBlockedURLs',
    matches: (p) => keysWithin(p, ['urlPatterns']) && Array.isArray(p.urlPatterns) && p.urlPatterns.length === 0,
    perSession: 2,
    why: 'network inspection exposes request data outside the grant',
  },
  {
    name: 'network-conditions',
    client: 'Chrome DevTools',
    method: 'Network.emulateNetworkConditionsByRule',
    matches: (p) => keysWithin(p, ['offline', 'matchedNetworkConditions']) && p.offline === false && Array.isArray(p.matchedNetworkConditions) && p.matchedNetworkConditions.length === 0,
    perSession: 2,
    why: 'network inspection exposes request data outside the grant',
  },
  {
    name: 'network-state',
    client: 'Chrome DevTools',
    method: 'Network.overrideNetworkState',
    matches: (p) =>
      keysWithin(p, ['offline', 'latency', 'downloadThroughput', 'uploadThroughput', 'connectionType']) &&
      p.offline === false &&
      p.latency === 0 &&
      p.downloadThroughput === -1 &&
      p.uploadThroughput === -1 &&
      (p.connectionType === undefined || p.connectionType === 'none'),
    perSession: 2,
    why: 'network inspection exposes request data outside the grant',
  },
  {
    name: 'network-encodings',
    client: 'Chrome DevTools',
    method: 'Network.clearAcceptedEncodingsOverride',
    matches: (p) => only(p, {}),
    perSession: 2,
    why: 'network inspection exposes request data outside the grant',
  },
  {
    name: 'process-info',
    client: 'js-debug',
    method: 'Runtime.evaluate',
    matches: (p) => evaluation(p, telemetryProbe),
    // js-debug retries up to 8 times while it reads no process.
    perSession: 8,
    why: "the target's process id is withheld: a debugger could act on the process outside Loupe",
  },
  {
    name: 'child-environment',
    client: 'js-debug',
    method: 'Runtime.evaluate',
    matches: (p) => evaluation(p, childEnvironment),
    perSession: 2,
    why: 'it would change the environment (NODE_OPTIONS) of processes the target starts',
  },
  { name: 'builtin-modules', client: 'js-debug', method: 'Runtime.evaluate', matches: (p) => evaluation(p, builtinModulesProbe), perSession: 2, why: 'require is not available to evaluations' },
  {
    name: 'wasm-instrumentation',
    client: 'js-debug',
    method: 'Runtime.evaluate',
    matches: (p) => evaluation(p, wasmInstrumentation),
    perSession: 4,
    why: 'it would replace WebAssembly functions in the target',
  },
  {
    name: 'object-descriptions',
    client: 'js-debug',
    method: 'Runtime.callFunctionOn',
    matches: (p) =>
      keysWithin(p, ['functionDeclaration', 'objectId', 'arguments', 'returnByValue', 'throwOnSideEffect', 'silent', 'generatePreview']) &&
      typeof p.objectId === 'string' &&
      typeof p.functionDeclaration === 'string' &&
      jsDebugHelper(p.functionDeclaration),
    // Never runs, whatever its count: Loupe describes objects as V8 does.
    perSession: Infinity,
    why: "js-debug's helpers run functions in the target, and describing objects would run the app's own description methods",
  },
];

/**
 * js-debug's name completion: as a person types `a.b.` in the Debug Console it evaluates `(a.b)` silently to list
 * its properties. Allowed like any evaluation; only when it is refused (a denied or withheld name) is the refusal
 * quiet, since the person has not asked for it yet. What they then submit counts as usual.
 */
export const completionProbe: ClientRoutine = {
  name: 'completion',
  client: 'js-debug',
  method: 'Runtime.evaluate, Debugger.evaluateOnCallFrame',
  matches: (p) =>
    p.silent === true && typeof p.expression === 'string' && /^\((?:this|[A-Za-z_$][\w$]{0,80})(?:\.[A-Za-z_$][\w$]{0,80}){0,8}\)\n\/\/# sourceURL=eval-[0-9a-f]{8}\.cdp\n?$/.test(p.expression),
  perSession: 200,
  why: 'a name completion of a refused expression',
};

/** The routine a request is, if any (before the per-session allowance). */
export function routineOf(method: string, params: unknown): ClientRoutine | undefined {
  const given = params ?? {};
  if (typeof given !== 'object' || Array.isArray(given)) return undefined;
  return clientRoutines.find((routine) => routine.method === method && routine.matches(given as Record<string, unknown>));
}

/** The per-session allowance: a routine is quiet only as often as a client sends it at attach. */
export class RoutineAllowance {
  private readonly seen = new Map<string, number>();

  /** Counts one occurrence; true while it is within the allowance. */
  take(routine: ClientRoutine): boolean {
    const count = (this.seen.get(routine.name) ?? 0) + 1;
    this.seen.set(routine.name, count);
    return count <= routine.perSession;
  }
}

/** The client's error for a routine request: an ordinary CDP error, no alarm in the wording. */
export const routineMessage = (routine: ClientRoutine) => `${routine.method} is not available through Loupe: ${routine.why}`;
