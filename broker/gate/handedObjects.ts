/**
 * The object ids a session's client has been given. V8 numbers the objects of one inspector connection in sequence,
 * and the broker's own reads (the learning at a pause, the interpreter's) share the session's connection: a client
 * that made ids up (`<prefix>.1.1` to `.1.400`) would read objects it was never shown, such as the contents of a
 * redacted container, whose property names alone say nothing sensitive. So a request naming an object is forwarded
 * only for an id that was in a message the broker sent to this client.
 */

/**
 * Ids remembered per session, at most. Kept in two generations of half this: an id sent or named joins the newer, and
 * when the newer is full the older is forgotten whole, so the ids of at least the last `maxHandedObjects / 2` sent or
 * named are known (a request naming a forgotten one is refused as unknown). A set bounded by deleting its oldest entry
 * one at a time cost a client's answer of 100 fields over a millisecond once full.
 */
export const maxHandedObjects = 50_000;

const needle = '"objectId"';

/**
 * Fields of a remote object that never hold an object given: `value`, its by-value payload (data the client may have
 * shaped: a Loupe expression's `({ objectId: '<any id>' })` comes back as `"value":{"objectId":…}`), and previews,
 * which V8 fills with text alone. Skipping one can only leave an id unknown, which refuses it.
 */
const notGiven = new Set(['value', 'preview', 'customPreview', 'valuePreview']);

/** The object ids of a client-bound message: each `objectId` of a remote object in it, never one in data sent by value. */
export function objectIdsOf(message: unknown): string[] {
  const ids: string[] = [];
  const stack: unknown[] = [message];
  while (stack.length > 0) {
    const node = stack.pop();
    if (node === null || typeof node !== 'object') continue;
    if (Array.isArray(node)) {
      for (const item of node) if (item !== null && typeof item === 'object') stack.push(item);
      continue;
    }
    const fields = node as Record<string, unknown>;
    const remote = typeof fields.type === 'string';
    if (typeof fields.objectId === 'string') ids.push(fields.objectId);
    // Own fields only, as JSON.stringify writes them: the ids are those of the text that leaves.
    for (const key of Object.keys(fields)) {
      const child = fields[key];
      if (child === null || typeof child !== 'object' || (remote && notGiven.has(key))) continue;
      stack.push(child);
    }
  }
  return ids;
}

export class HandedObjects {
  private newer = new Set<string>();
  private older = new Set<string>();

  /** Notes the object ids of a client-bound message (JSON text, as sent): see objectIdsOf. */
  note(text: string): void {
    if (!text.includes(needle)) return;
    let message: unknown;
    try {
      message = JSON.parse(text);
    } catch {
      return; // nothing noted: every id in it is refused
    }
    this.noteIds(objectIdsOf(message));
  }

  /** Notes ids taken (by objectIdsOf) from the very value a message sent was serialized from. */
  noteIds(ids: readonly string[]): void {
    for (const id of ids) this.add(id);
  }

  private add(id: string): void {
    if (this.newer.has(id)) return;
    this.older.delete(id);
    this.newer.add(id);
    if (this.newer.size >= maxHandedObjects / 2) {
      this.older = this.newer;
      this.newer = new Set();
    }
  }

  has(id: string): boolean {
    return this.newer.has(id) || this.older.has(id);
  }

  /**
   * Whether the client was given this id; if so it counts as just given, so an object a client keeps expanding (each
   * read hands out new ids for what it holds) stays its.
   */
  use(id: string): boolean {
    if (!this.has(id)) return false;
    this.add(id);
    return true;
  }
}

/** Request parameters that name an object by its id. */
const objectParams = ['objectId', 'errorObjectId'] as const;

/** The first object id in a request's parameters that the client was not given, if any. */
export function unknownObject(params: Record<string, unknown>, handed: HandedObjects): { param: string; id: string } | undefined {
  for (const param of objectParams) {
    const id = params[param];
    if (typeof id === 'string' && !handed.use(id)) return { param, id };
  }
  return undefined;
}

/**
 * Object groups a client may not release: `backtrace` holds a pause's scopes and what they hold, which the broker
 * reads before the client sees the pause (learning the values to redact; a release landing first emptied those reads
 * and left the secrets unknown), and V8 releases it at the resume anyway; `loupe…` groups are the broker's own reads.
 */
export function reservedGroup(method: string | undefined, params: Record<string, unknown>): string | undefined {
  if (method !== 'Runtime.releaseObjectGroup' || typeof params.objectGroup !== 'string') return undefined;
  const group = params.objectGroup;
  return group === 'backtrace' || group.toLowerCase().startsWith('loupe') ? group : undefined;
}
