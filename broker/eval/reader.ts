/**
 * The interpreter's only way into the target: Runtime.getProperties (own properties, accessors described but
 * never invoked), plus two fixed, argument-free reads of the global scope when no frame is paused. No user
 * text ever reaches the target through this module.
 */
import type { Protocol } from 'devtools-protocol';
import { LoupeRefusal, type Spend } from './budget';

/** Sends one CDP command to the target and resolves with its result (rejects on a CDP error). */
export type CdpSend = (method: string, params: Record<string, unknown>) => Promise<any>;

export type PropertiesRead = Pick<Protocol.Runtime.GetPropertiesResponse, 'result' | 'internalProperties' | 'privateProperties'>;

const identifier = /^[\p{L}_$][\p{L}\p{N}_$]*$/u;

/**
 * Reads of one target with a cache. objectIds stay valid, and a paused target cannot change, for as long as
 * the pause lasts: the session keeps one reader per pause (and one per evaluation while running).
 */
export class TargetReader {
  private readonly cache = new Map<string, Promise<PropertiesRead>>();
  private global: Promise<Protocol.Runtime.RemoteObject> | undefined;
  private lexicalNames: Promise<Set<string>> | undefined;
  private readonly lexicalValues = new Map<string, Promise<Protocol.Runtime.RemoteObject | undefined>>();

  constructor(
    private readonly send: CdpSend,
    /** Object group of what the global-scope reads create, so the session can release them. */
    readonly objectGroup = 'loupe-eval',
  ) {}

  /** Own properties, internal properties (`[[Prototype]]`, `[[Entries]]`, …) and private fields of one object. */
  getProperties(objectId: string, spend: Spend, preview = false): Promise<PropertiesRead> {
    const key = preview ? `${objectId} preview` : objectId;
    let read = this.cache.get(key);
    if (!read) {
      spend.read();
      // With previews, each object-valued property arrives with its primitive fields: one read fewer per hop.
      read = this.timed(
        this.send('Runtime.getProperties', { objectId, ownProperties: true, accessorPropertiesOnly: false, generatePreview: preview }).then((r) => ({
          result: Array.isArray(r?.result) ? r.result : [],
          internalProperties: Array.isArray(r?.internalProperties) ? r.internalProperties : undefined,
          privateProperties: Array.isArray(r?.privateProperties) ? r.privateProperties : undefined,
        })),
        spend,
      );
      this.cache.set(key, read);
      read.catch(() => this.cache.delete(key));
    }
    return read;
  }

  /**
   * Reads a paused frame's scopes ahead of any evaluation (the session calls it as the pause arrives, while
   * the client is still rendering it), so the first expression starts with its names at hand. A fixed read
   * of a bounded list: it counts against no expression's budget.
   */
  prefetchScopes(frame: { scopeChain: readonly { type: string; object: { objectId?: string } }[] }): void {
    for (const scope of frame.scopeChain) {
      const objectId = scope.object.objectId;
      const key = `${objectId} preview`;
      if (!objectId || scope.type === 'global' || this.cache.has(key)) continue;
      const read = this.send('Runtime.getProperties', { objectId, ownProperties: true, accessorPropertiesOnly: false, generatePreview: true }).then((r) => ({
        result: Array.isArray(r?.result) ? r.result : [],
        internalProperties: Array.isArray(r?.internalProperties) ? r.internalProperties : undefined,
        privateProperties: Array.isArray(r?.privateProperties) ? r.privateProperties : undefined,
      }));
      this.cache.set(key, read);
      read.catch(() => this.cache.delete(key));
    }
  }

  /** The global object, when no frame is paused: the broker's own fixed expression, no user text. */
  globalObject(spend: Spend): Promise<Protocol.Runtime.RemoteObject> {
    if (!this.global) {
      spend.read();
      this.global = this.timed(
        this.send('Runtime.evaluate', { expression: 'globalThis', objectGroup: this.objectGroup, silent: true, throwOnSideEffect: true, timeout: 100 }).then((r) => {
          if (!r?.result?.objectId) throw new LoupeRefusal('target', 'the target did not hand out its global object');
          return r.result as Protocol.Runtime.RemoteObject;
        }),
        spend,
      );
    }
    return this.global;
  }

  /**
   * A top-level `let`/`const`/`class` binding of the global scope, when no frame is paused. Its value is read by
   * evaluating the bare name (a name from the target's own list, checked to be an identifier): reading a
   * binding runs no code.
   */
  async globalLexical(name: string, spend: Spend): Promise<Protocol.Runtime.RemoteObject | undefined> {
    if (!this.lexicalNames) {
      spend.read();
      this.lexicalNames = this.timed(
        this.send('Runtime.globalLexicalScopeNames', {}).then((r) => new Set<string>(Array.isArray(r?.names) ? r.names : [])),
        spend,
      );
    }
    if (!(await this.lexicalNames).has(name) || !identifier.test(name)) return undefined;
    let value = this.lexicalValues.get(name);
    if (!value) {
      spend.read();
      value = this.timed(
        this.send('Runtime.evaluate', { expression: name, objectGroup: this.objectGroup, silent: true, throwOnSideEffect: true, timeout: 100 }).then((r) =>
          r?.exceptionDetails ? undefined : (r?.result as Protocol.Runtime.RemoteObject | undefined),
        ),
        spend,
      );
      this.lexicalValues.set(name, value);
    }
    return value;
  }

  /** A read that answers within the evaluation's time bound, or a refusal: a silent target never stalls us. */
  private timed<T>(read: Promise<T>, spend: Spend): Promise<T> {
    const left = spend.remaining();
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new LoupeRefusal('budget', `the target did not answer a read within the ${spend.budget.maxMs} ms left to the expression (Loupe's budget per evaluation)`)), left);
    });
    return Promise.race([
      read.catch((error: unknown) => {
        if (error instanceof LoupeRefusal) throw error;
        throw new LoupeRefusal('target', `a read of the target failed: ${(error as Error)?.message ?? String(error)}`);
      }),
      late,
    ]).finally(() => clearTimeout(timer));
  }
}
