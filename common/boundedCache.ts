/**
 * A small least-recently-used map with a bound on its entries, for work repeated with the same input (the same
 * expression parsed on every watch refresh or console line). Only short keys are kept, so its memory stays bounded too.
 */
export class BoundedCache<V> {
  private readonly entries = new Map<string, V>();

  constructor(
    private readonly maxEntries: number,
    private readonly maxKeyLength: number,
  ) {}

  /** The value for `key`, computed by `make` unless kept from before. What `make` throws is not kept. */
  get(key: string, make: () => V): V {
    const kept = this.entries.get(key);
    if (kept !== undefined) {
      // Most recently used last: the first entry is the one evicted.
      this.entries.delete(key);
      this.entries.set(key, kept);
      return kept;
    }
    const value = make();
    if (key.length <= this.maxKeyLength) {
      this.entries.set(key, value);
      if (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
    }
    return value;
  }
}
