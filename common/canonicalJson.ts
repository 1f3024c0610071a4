/**
 * RFC 8785 canonical JSON, as the `canonicalize` package writes it, at close to JSON.stringify's speed: every audit
 * record is hashed over its canonical form, so this runs once per record on the broker's hot path. A value whose
 * object keys are already in sorted order (and that holds nothing JSON.stringify writes differently) is written by
 * JSON.stringify itself; other objects are written key by key. Anything unusual goes to `canonicalize` as a whole.
 */
import canonicalize from 'canonicalize';

/** Whether JSON.stringify(value) is already its canonical form: keys sorted at every level, finite numbers, plain values. */
function stringifiesCanonically(value: unknown, depth: number): boolean {
  if (value === null) return true;
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return true;
    case 'number':
      return Number.isFinite(value);
    case 'object':
      break;
    default:
      return false;
  }
  if (depth > 64) return false;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) if (!(i in value) || !stringifiesCanonically(value[i], depth + 1)) return false;
    return true;
  }
  if (typeof (value as { toJSON?: unknown }).toJSON === 'function') return false;
  let previous: string | undefined;
  for (const key in value) {
    if (!Object.prototype.hasOwnProperty.call(value, key)) return false;
    if (previous !== undefined && !(previous < key)) return false;
    previous = key;
    if (!stringifiesCanonically((value as Record<string, unknown>)[key], depth + 1)) return false;
  }
  return true;
}

function write(value: unknown, depth: number): string {
  if (stringifiesCanonically(value, depth)) return JSON.stringify(value);
  if (value === null || typeof value !== 'object' || depth > 64 || typeof (value as { toJSON?: unknown }).toJSON === 'function') return canonicalize(value)!;
  if (Array.isArray(value)) {
    let out = '[';
    for (let i = 0; i < value.length; i++) {
      if (!(i in value)) return canonicalize(value)!;
      const item = value[i] as unknown;
      out += (i === 0 ? '' : ',') + (item === undefined || typeof item === 'symbol' ? 'null' : write(item, depth + 1));
    }
    return out + ']';
  }
  let out = '';
  for (const key of Object.keys(value).sort()) {
    const item = (value as Record<string, unknown>)[key];
    if (item === undefined || typeof item === 'symbol') continue;
    out += (out.length === 0 ? '' : ',') + JSON.stringify(key) + ':' + write(item, depth + 1);
  }
  return '{' + out + '}';
}

/** The canonical JSON of `value`: the same text as `canonicalize(value)`, throwing where it throws. */
export function canonicalJson(value: unknown): string {
  return write(value, 0);
}
