/**
 * A deadline on an answer from a socket or the disk. Timers run before the poll phase that reads sockets and
 * delivers finished disk work, so after the broker's own loop was held up (CPU starvation, a long GC) a plain timer
 * fires although the answer is already waiting: this one lets the poll phase run once more first.
 */
export interface IoTimer {
  cancel(): void;
}

export function ioTimeout(fire: () => void, ms: number): IoTimer {
  let immediate: NodeJS.Immediate | undefined;
  const timer = setTimeout(() => (immediate = setImmediate(fire)), ms);
  return {
    cancel: () => {
      clearTimeout(timer);
      if (immediate) clearImmediate(immediate);
    },
  };
}
