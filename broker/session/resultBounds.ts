/**
 * Bounds on what the target sends, applied before anything is redacted, recorded or forwarded: first the frame's
 * size (a larger one is never parsed), then the parsed message's strings and lists, so redaction (linear in its
 * input) does a bounded amount of work per message and no session stalls the broker's event loop for the others.
 */

/**
 * Characters past a cut that redaction still sees: a secret that straddles the cut (a JWT, a learned value of up
 * to 4 KiB, a private key) is matched whole and replaced, so its first part never survives the cut.
 */
export const redactionMargin = 8 * 1024;

export interface MessageBounds {
  /** evaluation.maxResultBytes, which the bounds derive from and the note names. */
  readonly maxResultBytes: number;
  /** Characters a string keeps. */
  readonly keep: number;
  /** Characters all strings of one message keep together; past it strings are emptied and lists end. */
  readonly budget: number;
}

/**
 * The bounds for a target's messages: a string keeps half of evaluation.maxResultBytes (what an evaluation's
 * answer keeps of a string anyway), all strings of a message together that whole size.
 */
export function messageBounds(maxResultBytes: number): MessageBounds {
  return { maxResultBytes, keep: Math.floor(maxResultBytes / 2), budget: maxResultBytes };
}

// The words of capResult (gate/targetFrame.ts), so a client sees one kind of note whichever cut a value.
const notePattern = / \[truncated by Loupe: the result is \d+ bytes, over this target's evaluation\.maxResultBytes of \d+\]$/;
const note = (text: string, maxResultBytes: number) => ` [truncated by Loupe: the result is ${Buffer.byteLength(text)} bytes, over this target's evaluation.maxResultBytes of ${maxResultBytes}]`;

/**
 * Before redaction: bounds a parsed message in place. A string longer than `keep` is cut to `keep` plus the
 * margin (and says so); all strings together keep at most `budget`; lists end once it is spent. Work is linear
 * in the message, which the frame bound already limits. finishCuts, after redaction, cuts to `keep`; `cut` says
 * whether any string was cut (when none was, finishCuts has nothing of Loupe's to finish).
 */
export function boundMessage(message: unknown, bounds: MessageBounds): { readonly cut: boolean } {
  let left = bounds.budget;
  let cut = false;
  const boundString = (text: string): string => {
    const keep = Math.max(0, Math.min(bounds.keep, left));
    if (text.length <= keep) {
      left -= text.length;
      return text;
    }
    left -= keep;
    cut = true;
    return text.slice(0, keep + redactionMargin) + note(text, bounds.maxResultBytes);
  };
  walk(message, boundString, (list) => {
    // Items past the budget are dropped: each costs at least a little, so a list of empty values ends too.
    const fits = Math.max(0, Math.min(list.length, Math.floor(left / 16)));
    if (fits < list.length) list.length = fits;
    left -= fits * 16;
  });
  return { cut };
}

/**
 * Whether boundMessage could cut nothing of a message parsed from `frame`, known from the text alone: its strings
 * together are no longer than the frame, and every list item follows a `[` or a `,` of it, so the frame's length plus
 * 16 per such byte is more than the walk could ever spend. A reply of 100 properties (16 KB) is far inside the default
 * bounds, and skips the walk that would only prove so.
 */
export function frameWithinBounds(frame: Buffer, bounds: MessageBounds): boolean {
  if (frame.length > bounds.keep) return false;
  let items = 0;
  for (let at = frame.indexOf(44); at !== -1; at = frame.indexOf(44, at + 1)) items++;
  for (let at = frame.indexOf(91); at !== -1; at = frame.indexOf(91, at + 1)) items++;
  return frame.length + 16 * items <= bounds.budget;
}

/** After redaction: every string cut by boundMessage now keeps only its bound (redaction has seen the margin). */
export function finishCuts(message: unknown, bounds: MessageBounds): void {
  walk(message, (text) => {
    if (text.length <= bounds.keep) return text;
    const cut = notePattern.exec(text.slice(-160));
    return cut ? text.slice(0, bounds.keep) + cut[0] : text;
  });
}

/** Visits every string of a parsed message (iteratively: a by-value result may nest deeper than the stack). */
function walk(message: unknown, onString: (text: string) => string, onList?: (list: unknown[]) => void): void {
  const stack: unknown[] = [message];
  while (stack.length > 0) {
    const node = stack.pop();
    if (typeof node !== 'object' || node === null) continue;
    if (Array.isArray(node)) {
      onList?.(node);
      for (let i = node.length - 1; i >= 0; i--) {
        const item = node[i];
        if (typeof item === 'string') node[i] = onString(item);
        else stack.push(item);
      }
      continue;
    }
    const record = node as Record<string, unknown>;
    for (const key of Object.keys(record)) {
      const item = record[key];
      if (typeof item === 'string') record[key] = onString(item);
      else if (typeof item === 'object' && item !== null) stack.push(item);
    }
  }
}

/** The id of a response frame, read without parsing it (the inspector writes `{"id":N,` first). */
export function sniffResponseId(frame: Buffer): number | undefined {
  const match = /^\{\s*"id"\s*:\s*(\d{1,15})\s*,/.exec(frame.subarray(0, 64).toString('latin1'));
  return match ? Number(match[1]) : undefined;
}

/** The method of an event frame, read without parsing it (`{"method":"Domain.name",`). */
export function sniffEventMethod(frame: Buffer): string | undefined {
  const match = /^\{\s*"method"\s*:\s*"([A-Za-z.]{1,100})"/.exec(frame.subarray(0, 128).toString('latin1'));
  return match ? match[1] : undefined;
}
