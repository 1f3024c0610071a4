/**
 * The bounds of one Loupe evaluation. Each bound, when exceeded, ends the evaluation with a refusal that names
 * it and its value; none can stall the broker or the target. The defaults are one object so configuration can
 * expose them.
 */
export interface EvalBudget {
  /** AST nodes evaluated plus built-in iterations (a callback per element counts one each). */
  readonly maxSteps: number;
  /** Runtime.getProperties calls to the target. */
  readonly maxReads: number;
  /** Characters of any one string the interpreter builds (repeat, padStart, join, templates, JSON). */
  readonly maxStringLength: number;
  /** Characters of all the strings one evaluation builds together (a string per element adds up). */
  readonly maxBuiltCharacters: number;
  /** Elements of any one collection the interpreter reads or builds. */
  readonly maxElements: number;
  /** Bytes of the serialized result handed back. */
  readonly maxResultBytes: number;
  /** Wall time of the whole evaluation, reads included. */
  readonly maxMs: number;
  /** Characters of the expression's source. */
  readonly maxSourceLength: number;
  /** Nesting depth of the expression's syntax tree. */
  readonly maxDepth: number;
  /** Prototype links followed looking for a property. */
  readonly maxPrototypeHops: number;
}

export const defaultEvalBudget: EvalBudget = Object.freeze({
  maxSteps: 100_000,
  maxReads: 2_000,
  maxStringLength: 1 << 20,
  maxBuiltCharacters: 16 << 20,
  maxElements: 10_000,
  maxResultBytes: 256 * 1024,
  maxMs: 2_000,
  maxSourceLength: 10_000,
  maxDepth: 200,
  maxPrototypeHops: 8,
});

/** An expression that is not a Loupe expression, or a construct it refuses. Nothing was read, or nothing more. */
export class LoupeRefusal extends Error {
  override readonly name = 'LoupeRefusal';
  constructor(
    readonly rule: 'syntax' | 'construct' | 'call' | 'budget' | 'target' | 'deny',
    message: string,
  ) {
    super(message);
  }
}

/** A JavaScript exception the expression raised (TypeError, ReferenceError, …), as V8 would have. */
export class LoupeThrow extends Error {
  constructor(
    readonly className: string,
    message: string,
  ) {
    super(message);
  }
}

/** Optional chaining met a nullish value: the whole chain is undefined. */
export class ChainShort {}

/**
 * The longest stretch an evaluation computes without letting the broker's event loop run: everything else the broker
 * does (other sessions, the pause watchdog, heartbeats) waits while the interpreter works between two reads.
 */
export const evaluationSliceMs = 5;

/** Counts what one evaluation spends and refuses past a bound. */
export class Spend {
  steps = 0;
  reads = 0;
  characters = 0;
  readonly started: number;
  /** When the present stretch of work without a pause began. */
  private sliceStarted: number;
  /**
   * The stretch has run evaluationSliceMs: pace() lets the event loop run. It stays set until the loop has run, so
   * every branch of a walk started together (Promise.all over a list's items) waits at its next check, not only one.
   */
  due = false;
  private yielding: Promise<void> | undefined;

  constructor(
    readonly budget: EvalBudget,
    readonly clock: () => number,
  ) {
    this.started = clock();
    this.sliceStarted = this.started;
  }

  /** Lets the event loop run once the stretch of work is due (check `due` first: most calls need not wait). */
  pace(): Promise<void> {
    if (!this.due) return Promise.resolve();
    this.yielding ??= new Promise((resolve) =>
      setImmediate(() => {
        this.yielding = undefined;
        this.due = false;
        this.sliceStarted = this.clock();
        resolve();
      }),
    );
    return this.yielding;
  }

  step(n = 1): void {
    const before = this.steps;
    this.steps += n;
    if (this.steps > this.budget.maxSteps) throw this.spent(`more than ${this.budget.maxSteps} steps`);
    // Every 256 steps, however they come: a step of many (a built-in's whole walk) can jump over a multiple of 256.
    if (before >>> 8 !== this.steps >>> 8) this.checkTime();
  }

  read(): void {
    this.reads++;
    if (this.reads > this.budget.maxReads) throw this.spent(`more than ${this.budget.maxReads} reads of the target`);
    this.checkTime();
  }

  checkTime(): void {
    const now = this.clock();
    if (now - this.started > this.budget.maxMs) throw this.spent(`more than ${this.budget.maxMs} ms`);
    if (now - this.sliceStarted >= evaluationSliceMs) this.due = true;
  }

  /** Milliseconds left before the time bound. */
  remaining(): number {
    return Math.max(0, this.budget.maxMs - this.elapsed());
  }

  elapsed(): number {
    return this.clock() - this.started;
  }

  string(length: number): void {
    if (length > this.budget.maxStringLength) throw budgetRefusal(`a string longer than ${this.budget.maxStringLength} characters`);
    this.characters += length;
    if (this.characters > this.budget.maxBuiltCharacters) throw this.spent(`strings of more than ${this.budget.maxBuiltCharacters} characters in all`);
  }

  /**
   * The refusal of a bound that, once passed, stays passed (steps, reads, time, characters in all): made once and
   * thrown again by every later check. A walk fanned out over many branches (Promise.all over a list's items) meets it
   * in each, and a new Error per branch (its stack captured) cost more than the walk.
   */
  private spent(what: string): LoupeRefusal {
    return (this.exhausted ??= budgetRefusal(what));
  }
  private exhausted: LoupeRefusal | undefined;

  elements(count: number): void {
    if (count > this.budget.maxElements) throw budgetRefusal(`a collection of more than ${this.budget.maxElements} elements`);
    // A collection is built between steps (Array.from, concat, split, a string's characters): the clock is read
    // here too, so built-ins called over and over cannot hold the broker past the time bound between two steps.
    this.checkTime();
  }
}

export const budgetRefusal = (what: string) => new LoupeRefusal('budget', `the expression needed ${what} (Loupe's budget per evaluation)`);
