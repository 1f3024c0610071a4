/**
 * Facts about the target's process that a client could act on outside the broker are withheld: its process id
 * (js-debug read `process.pid` and, on stopDebugging, sent SIGKILL to that pid on the developer's own machine), its
 * parent's, and the inspector port. Loupe expressions are refused them (eval/remote.ts); answers and events that
 * show the process object (property lists, previews) carry a withheld marker in their place; V8 evaluations (a
 * grant's privilege) are refused expressions that name them (gate/evaluationCheck.ts).
 */
/** Fields of `process` that are withheld, and what each is. */
export const withheldProcessFields: Readonly<Record<string, string>> = Object.freeze({
  pid: "the target's process id",
  ppid: "the target's parent process id",
  debugPort: "the target's inspector port",
});

/** The same, as the expressions that read them (always denied, whatever the policy says). */
export const withheldProcessPaths: readonly string[] = Object.keys(withheldProcessFields).map((field) => `process.${field}`);

const why = 'a debugger could act on the process outside Loupe';

/** The refusal's reason for one field. */
export const withheldReason = (field: string) => `${withheldProcessFields[field] ?? field} (process.${field}) is withheld: ${why}`;

/** What a client sees in place of the value. */
export const withheldMarker = (field: string) => `[withheld by Loupe: ${withheldProcessFields[field] ?? field}]`;

export const isWithheldField = (name: string) => Object.hasOwn(withheldProcessFields, name);

/** Node's `process` object as V8 describes it. */
export const isProcessObject = (object: { readonly type?: unknown; readonly className?: unknown } | undefined) => object?.type === 'object' && object.className === 'process';

// A property list is the process object's when it has these own fields (V8 does not say whose list it is).
const processSignature = ['pid', 'ppid', 'execPath', 'versions', 'release', 'platform'];

type Descriptor = { name?: unknown; value?: unknown; isOwn?: unknown };
const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

function markValue(descriptor: Record<string, unknown>, field: string): void {
  const text = withheldMarker(field);
  descriptor.value = { type: 'string', value: text, description: text };
}

/** Replaces withheld fields in a preview of the process object. Returns how many it replaced. */
function withholdInPreview(object: Record<string, unknown>): number {
  const preview = object.preview;
  if (!isRecord(preview) || !Array.isArray(preview.properties)) return 0;
  let count = 0;
  for (const property of preview.properties as unknown[]) {
    if (!isRecord(property) || typeof property.name !== 'string' || !isWithheldField(property.name)) continue;
    property.type = 'string';
    property.value = withheldMarker(property.name);
    delete property.subtype;
    delete property.valuePreview;
    count++;
  }
  return count;
}

/** A RemoteObject anywhere in an answer: the process object's preview is scrubbed, and its value when sent by value. */
function withholdInObject(value: unknown): number {
  if (!isRecord(value)) return 0;
  let count = 0;
  const byValue = value.value;
  if (isRecord(byValue) && processSignature.every((name) => Object.hasOwn(byValue, name))) {
    for (const field of Object.keys(withheldProcessFields)) {
      if (!Object.hasOwn(byValue, field)) continue;
      byValue[field] = withheldMarker(field);
      count++;
    }
  }
  if (isProcessObject(value)) count += withholdInPreview(value);
  return count;
}

/**
 * Withholds the process facts in an answer or event a client is about to receive (modified in place): a property
 * list of the process object, and previews of it in property lists, evaluation results and console arguments.
 * Returns how many values it replaced.
 */
export function withholdProcessFacts(method: string, payload: Record<string, unknown> | undefined): number {
  if (!payload) return 0;
  let count = 0;
  if (method === 'Runtime.getProperties' && Array.isArray(payload.result)) {
    const list = payload.result as Descriptor[];
    const names = new Set(list.map((d) => (isRecord(d) ? d.name : undefined)));
    const isProcess = processSignature.every((name) => names.has(name));
    for (const d of list) {
      if (!isRecord(d)) continue;
      if (isProcess && typeof d.name === 'string' && isWithheldField(d.name) && 'value' in d) {
        markValue(d, d.name);
        count++;
      } else count += withholdInObject(d.value);
    }
  } else if (isRecord(payload.result)) count += withholdInObject(payload.result);
  if (method === 'Runtime.consoleAPICalled' && Array.isArray(payload.args)) for (const arg of payload.args as unknown[]) count += withholdInObject(arg);
  if (isRecord(payload.exceptionDetails)) count += withholdInObject(payload.exceptionDetails.exception);
  return count;
}
