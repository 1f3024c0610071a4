/**
 * A value as one line of text, the way VS Code's JavaScript debugger (js-debug) writes it: `{n: 173, label: 'tick-173',
 * nested: {…}}`, `(3) [1, 2, 3]`, `Map(2) {'a' => 1, 'b' => 2}`, `Point {x: 1, y: 2}`, `ƒ name(a, b)`, strings quoted,
 * cut with `…` to a budget per place. Built only from the RemoteObject and the ObjectPreview V8 (or the broker's own
 * interpreter, in the same shape) already returned: nothing runs in the target, nothing is read twice.
 *
 * Redaction is the broker's: a redacted field arrives as the marker string and is shown as any string would be. The
 * input is the broker's answer, so every field is treated as untrusted shape: a missing or odd field degrades the
 * text, never throws.
 */
import type { Protocol } from 'devtools-protocol';

type RemoteObject = Protocol.Runtime.RemoteObject;
type ObjectPreview = Protocol.Runtime.ObjectPreview;
type PropertyPreview = Protocol.Runtime.PropertyPreview;

/** Where the text is shown; each place has js-debug's budget, and the one-line places escape line breaks. */
export type PreviewPlace = 'repl' | 'hover' | 'watch' | 'variables' | 'clipboard';

const places: Record<PreviewPlace, { budget: number; oneLine: boolean }> = {
  repl: { budget: 100_000, oneLine: false },
  hover: { budget: 1000, oneLine: true },
  watch: { budget: 1000, oneLine: true },
  variables: { budget: 1000, oneLine: true },
  clipboard: { budget: Infinity, oneLine: false },
};

/** The DAP evaluate context as a place; an unknown one is the Debug Console's. */
export function placeOf(context: string | undefined): PreviewPlace {
  return context === 'hover' || context === 'watch' || context === 'clipboard' ? context : context === 'variables' ? 'variables' : 'repl';
}

const maxArrowLength = 30;
const maxPropertyLength = 100;
const maxEntryLength = 20;
const ellipsis = '…';
/** Objects shown by their description alone (V8's preview of them holds nothing more). */
const describedSubtypes = new Set(['null', 'regexp', 'date']);

/** Appends tokens while they fit, then one `…`; the budget keeps room for that ellipsis. */
class Budgeted {
  private readonly tokens: string[] = [];
  private left: number;

  constructor(
    budget: number,
    private readonly separator = '',
  ) {
    this.left = budget - 1 - separator.length;
  }

  room(): number {
    return this.left - (this.tokens.length ? this.separator.length : 0);
  }

  append(text: string): void {
    if (text.length > this.room()) this.ellipsis();
    else this.push(text);
  }

  ellipsis(): void {
    if (this.tokens[this.tokens.length - 1] !== ellipsis) this.push(ellipsis);
  }

  /** Whether more fits; when not, the `…` that says so is appended. */
  fits(): boolean {
    if (this.left <= 0) this.ellipsis();
    return this.left > 0;
  }

  get empty(): boolean {
    return this.tokens.length === 0;
  }

  toString(): string {
    return this.tokens.join(this.separator);
  }

  private push(text: string): void {
    if (this.tokens.length) this.left -= this.separator.length;
    this.tokens.push(text);
    this.left -= text.length;
  }
}

function trimEnd(text: string, max: number): string {
  return text.length <= max ? text : text.slice(0, Math.max(0, max - 1)) + ellipsis;
}

/** Keeps both ends; never splits a surrogate pair. */
function trimMiddle(text: string, max: number): string {
  if (text.length <= max) return text;
  if (max <= 1) return ellipsis;
  let left = max >> 1;
  let right = max - left - 1;
  if (isLowSurrogate(text.charCodeAt(text.length - right))) right--;
  if (left > 0 && isHighSurrogate(text.charCodeAt(left - 1))) left--;
  return text.slice(0, left) + ellipsis + (right > 0 ? text.slice(text.length - right) : '');
}

const isHighSurrogate = (c: number) => c >= 0xd800 && c <= 0xdbff;
const isLowSurrogate = (c: number) => c >= 0xdc00 && c <= 0xdfff;

/** Single quotes unless the text holds one; then a quote it does not hold, escaping as a last resort. */
export function quote(text: string): string {
  const q = !text.includes("'") ? "'" : !text.includes('"') ? '"' : !text.includes('`') ? '`' : "'";
  return q + text.replace(q === "'" ? /['\\]/g : q === '"' ? /["\\]/g : /[`\\]/g, '\\$&') + q;
}

/** Terminal escapes from the target are shown, never acted on. */
const escapeAnsi = (text: string) => text.replaceAll('\x1b', '\\x1b');
const oneLine = (text: string) => text.replace(/\n/g, '\\n').replace(/\r/g, '\\r').replace(/\t/g, '\\t');
const str = (x: unknown): string | undefined => (typeof x === 'string' ? x : undefined);
/** Any field as text; an object where a primitive belongs (even one without a prototype) never throws. */
const text = (x: unknown): string => (typeof x === 'object' && x !== null ? (Array.isArray(x) ? 'Array' : 'Object') : typeof x === 'symbol' ? 'Symbol()' : String(x));

/** A value as js-debug shows it in `place`. */
export function previewValue(value: RemoteObject, place: PreviewPlace = 'repl'): string {
  const { budget, oneLine: single } = places[place];
  if (typeof value !== 'object' || value === null) return 'undefined';
  const shown = render(value, budget);
  return single ? oneLine(shown) : shown;
}

function render(value: RemoteObject, budget: number): string {
  if (value.type === 'function') return str(value.description) !== undefined ? functionText(value.description!, budget) : 'ƒ';
  if (value.type === 'object' && value.subtype === 'error') return trimEnd(errorTitle(value), budget);
  if (value.type === 'object' && value.subtype !== 'null' && isPreview(value.preview) && !describedSubtypes.has(value.subtype ?? '')) return renderPreview(value.preview, budget);
  return renderPlain(value, budget);
}

/** The first line(s) of an error's description, before its stack: `Error: token rejected`. */
function errorTitle(value: RemoteObject): string {
  const description = str(value.description) ?? str(value.className) ?? 'Error';
  const stack = /^\s+at\s/m.exec(description);
  if (stack) return description.slice(0, Math.max(0, stack.index - 1));
  return description;
}

function isPreview(p: unknown): p is ObjectPreview {
  return typeof p === 'object' && p !== null && typeof (p as ObjectPreview).type === 'string';
}

function renderPlain(value: RemoteObject, budget: number): string {
  if (value.unserializableValue !== undefined) return text(value.unserializableValue);
  switch (value.type) {
    case 'string': {
      const text = str(value.value) ?? str(value.description) ?? '';
      return escapeAnsi(quote(trimMiddle(text, Math.max(1, budget - 2))));
    }
    case 'undefined':
      return 'undefined';
    case 'number':
    case 'boolean':
      return text(value.value ?? value.description);
    case 'bigint':
      return str(value.description) ?? `${text(value.value)}n`;
    case 'symbol':
      return str(value.description) ?? 'Symbol()';
    case 'object':
      if (value.subtype === 'null') return 'null';
      return trimEnd(str(value.description) ?? str(value.className) ?? 'Object', Math.max(budget, 100_000));
    default:
      return trimEnd(str(value.description) ?? text(value.value), budget);
  }
}

function renderPreview(preview: ObjectPreview, budget: number): string {
  if (preview.subtype === 'array' || preview.subtype === 'typedarray') return arrayPreview(preview, budget);
  if (preview.type === 'function') return functionText(str(preview.description) ?? '', budget);
  if (preview.type === 'object' && preview.subtype === 'error') return trimEnd(errorTitle(preview as RemoteObject), budget);
  if (preview.type === 'object' && !describedSubtypes.has(preview.subtype ?? '')) return objectPreview(preview, budget);
  return primitivePreview(preview, budget);
}

const fields = (preview: ObjectPreview): PropertyPreview[] => (Array.isArray(preview.properties) ? preview.properties.filter((p) => typeof p === 'object' && p !== null) : []);

/** `(3) [1, 2, 3]`; holes and a cut-off tail as `…`, named fields after the indexed ones. */
function arrayPreview(preview: ObjectPreview, budget: number): string {
  let description = str(preview.description) ?? '';
  const length = /[^(]*\((\d+)\)/.exec(description);
  if (!length) return trimEnd(description || 'Array', budget);
  if (description.startsWith('Array(')) description = description.slice('Array'.length);
  const out = new Budgeted(budget);
  out.append(trimEnd(description, out.room()));
  out.append(' ');
  const items = new Budgeted(out.room() - 2, ', ');
  const properties = fields(preview);
  const isIndex = (name: unknown) => typeof name === 'string' && /^\d+$/.test(name);
  let last = -1;
  for (const p of properties) {
    if (!items.fits()) break;
    if (!isIndex(p.name)) continue;
    const index = Number(p.name);
    if (index > last + 1) items.ellipsis();
    last = index;
    items.append(propertyText(p, items.room()));
  }
  if (Number(length[1]) > last + 1) items.ellipsis();
  for (const p of properties) {
    if (!items.fits()) break;
    if (isIndex(p.name)) continue;
    items.append(propertyText(p, items.room(), text(p.name)));
  }
  if (preview.overflow) items.ellipsis();
  out.append(`[${items}]`);
  return out.toString();
}

/** `{a: 1, b: 'x'}`, `Point {x: 1}`, `Map(2) {'a' => 1}`, `Number {5}`, `Promise {<pending>}`. */
function objectPreview(preview: ObjectPreview, budget: number): string {
  const out = new Budgeted(budget, ' ');
  const description = str(preview.description);
  if (description !== undefined && description !== 'Object') out.append(trimEnd(description, out.room()));
  const properties = fields(preview);
  const byName = new Map(properties.map((p) => [p.name, p]));
  const primitive = byName.get('[[PrimitiveValue]]');
  if (primitive) {
    out.append(`{${propertyText(primitive, out.room() - 2)}}`);
    return out.toString();
  }
  const promiseState = byName.get('[[PromiseState]]') ?? byName.get('[[PromiseStatus]]');
  const promiseResult = byName.get('[[PromiseResult]]') ?? byName.get('[[PromiseValue]]');
  if (promiseState && promiseResult) {
    out.append(promiseState.value === 'pending' ? '{<pending>}' : `{${propertyText(promiseResult, out.room() - 2, `<${text(promiseState.value)}>`)}}`);
    return out.toString();
  }
  const generator = byName.get('[[GeneratorState]]') ?? byName.get('[[GeneratorStatus]]');
  if (generator) {
    out.append(`{<${text(generator.value)}>}`);
    return out.toString();
  }
  const items = new Budgeted(out.room() - 2, ', ');
  for (const p of properties) {
    if (!items.fits()) break;
    items.append(propertyText(p, items.room(), text(p.name)));
  }
  for (const entry of Array.isArray(preview.entries) ? preview.entries : []) {
    if (!items.fits()) break;
    if (typeof entry !== 'object' || entry === null || !isPreview(entry.value)) continue;
    if (isPreview(entry.key)) {
      const key = renderPreview(entry.key, Math.min(maxEntryLength, items.room()));
      const value = renderPreview(entry.value, Math.min(maxEntryLength, items.room() - key.length - 4));
      items.append(keyValue(key, ' => ', value, items.room()));
    } else items.append(renderPreview(entry.value, Math.min(maxEntryLength, items.room())));
  }
  if (preview.overflow) items.ellipsis();
  const body = items.toString();
  if (body) out.append(`{${body}}`);
  else if (out.empty) out.append('{}');
  return out.toString();
}

/** A Map key or Set element: strings quoted, numbers as numbers, anything else by its description. */
function primitivePreview(preview: ObjectPreview, budget: number): string {
  const fit = (text: string) => (text.length <= budget ? text : ellipsis);
  if (preview.type === 'object' && preview.subtype === 'null') return fit('null');
  if (preview.type === 'undefined') return fit('undefined');
  if (preview.type === 'string') return quote(trimMiddle(str(preview.description) ?? '', Math.max(1, budget - 2)));
  return trimEnd(str(preview.description) ?? '', budget);
}

function keyValue(key: string | undefined, separator: string, value: string, budget: number): string {
  if (key === undefined) return trimMiddle(value, budget);
  if (key.length + separator.length > budget) return trimEnd(key, budget);
  return escapeAnsi(`${key}${separator}${trimMiddle(value, budget - key.length - separator.length)}`);
}

/** One field of a preview: `n: 173`, `label: 'tick-173'`, `nested: {…}`, `fn: ƒ`, `items: Array(3)`. */
function propertyText(p: PropertyPreview, budget: number, name?: string): string {
  budget = Math.min(budget, maxPropertyLength);
  if (p.type === 'function') return keyValue(name, ': ', 'ƒ', budget);
  if (p.type === 'object' && p.value === 'Object') return keyValue(name, ': ', `{${ellipsis}}`, budget);
  if (typeof p.value !== 'string') return keyValue(name, ': ', `<${text(p.type)}>`, budget);
  if (p.type === 'string') return keyValue(name, ': ', quote(p.value), budget);
  return keyValue(name, ': ', p.value, budget);
}

/** `ƒ name(a, b)`, `async ƒ load(id)`, `ƒ* gen()`, `class Point`, `(x) => x + 1` (long arrows cut after `=>`). */
function functionText(description: string, budget: number): string {
  const text = description
    .replace(/^function [gs]et /, 'function ')
    .replace(/^function [gs]et\(/, 'function(')
    .replace(/^[gs]et /, '');
  const asyncFn = /^(async\s+function)/.exec(text);
  const generator = text.startsWith('function*');
  const generatorMethod = text.startsWith('*');
  const plain = !generator && text.startsWith('function');
  const isClass = text.startsWith('class ') || text.startsWith('class{');
  const arrow = text.indexOf('=>');
  let shown: string;
  if (isClass) shown = `class ${/^[^{\s]+/.exec(text.slice('class'.length).trim())?.[0] ?? ''}`.trimEnd();
  else if (asyncFn) shown = `async ƒ ${signature(text.slice(asyncFn[1]!.length))}`;
  else if (generator) shown = `ƒ* ${signature(text.slice('function*'.length))}`;
  else if (generatorMethod) shown = `ƒ* ${signature(text.slice(1))}`;
  else if (plain) shown = `ƒ ${signature(text.slice('function'.length))}`;
  else if (arrow > 0) shown = text.length > maxArrowLength ? `${text.slice(0, arrow + 2)} {${ellipsis}}` : text;
  else shown = `ƒ ${signature(text)}`;
  return trimEnd(shown.replace(/\s*\n\s*/g, ' '), budget);
}

/**
 * The name and parameter list of a function's source text, without its body: a body can hold anything, literals
 * included, and the one-line places have no room for it. `[native code]` functions keep their name.
 */
function signature(rest: string): string {
  const body = rest.trim().replace(/ \{ \[native code\] \}$/, '');
  const open = body.indexOf('(');
  const close = /\)\s*\{/.exec(body);
  if (open !== -1 && close && close.index > open) return body.slice(0, open).trim() + body.slice(open, close.index + 1);
  if (open !== -1 && body.endsWith(')')) return body;
  return body.includes('(') ? '()' : `${body}`.trim() || '()';
}
