/**
 * The object ids a session's client has been given. V8 numbers the objects of one inspector connection in sequence,
 * and the broker's own reads (the learning at a pause, the interpreter's) share the session's connection: a client
 * that made ids up (`<prefix>.1.1` to `.1.400`) would read objects it was never shown, such as the contents of a
 * redacted container, whose property names alone say nothing sensitive. So a request naming an object is forwarded
 * only for an id that was in a message the broker sent to this client.
 */

/** Ids remembered per session; past this the least recently sent or named are forgotten (a request naming one is refused as unknown). */
export const maxHandedObjects = 50_000;

const needle = '"objectId"';

export class HandedObjects {
  private readonly ids = new Set<string>();

  /**
   * Notes the object ids of a client-bound message (JSON text, as sent): each `objectId` of a remote object in it,
   * never one inside a value sent by value. A by-value value is data the client shaped (a Loupe expression's
   * `({ objectId: '<any id>' })` comes back as `"value":{"objectId":…}`), so an id there was never given.
   */
  note(text: string): void {
    if (!text.includes(needle)) return;
    let message: unknown;
    try {
      message = JSON.parse(text);
    } catch {
      return; // nothing noted: every id in it is refused
    }
    const stack: unknown[] = [message];
    while (stack.length > 0) {
      const node = stack.pop();
      if (node === null || typeof node !== 'object') continue;
      if (Array.isArray(node)) {
        for (const item of node) stack.push(item);
        continue;
      }
      const fields = node as Record<string, unknown>;
      const remote = typeof fields.type === 'string';
      if (typeof fields.objectId === 'string') this.add(fields.objectId);
      for (const key in fields) {
        // A remote object's `value` is its by-value payload: what is in it is data, not an object given.
        if (key === 'value' && remote) continue;
        const child = fields[key];
        if (child !== null && typeof child === 'object') stack.push(child);
      }
    }
  }

  private add(id: string): void {
    this.ids.delete(id);
    this.ids.add(id);
    if (this.ids.size > maxHandedObjects) this.ids.delete(this.ids.values().next().value!);
  }

  has(id: string): boolean {
    return this.ids.has(id);
  }

  /**
   * Whether the client was given this id; if so it counts as just given: the bound forgets the ids least recently
   * sent or named, so an object a client keeps expanding (each read hands out new ids for what it holds) stays its.
   */
  use(id: string): boolean {
    if (!this.ids.delete(id)) return false;
    this.ids.add(id);
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
