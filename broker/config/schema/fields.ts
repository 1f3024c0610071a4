import { z } from 'zod';
import { parseDuration } from '../duration';

/**
 * The building blocks of the policy schema. Each one words its own problem the way `loupe policy check` has always
 * worded it, whatever part of the value zod found wrong, so a problem reads the same from every field of a kind.
 */

/** What a field holds, in words, for the config reference (`listConfigFields`); never part of the JSON Schema. */
export const fieldKinds = z.registry<{ kind: string }>();

export const kind = <S extends z.ZodType>(schema: S, text: string): S => {
  fieldKinds.add(schema, { kind: text });
  return schema;
};

export const listProblem = 'expected a list of non-empty strings';

/** A non-empty string; `required` says what goes there when it is missing. */
export function text(required = 'required', wrong = 'expected a non-empty string') {
  const error = (iss: { input?: unknown }) => (iss.input === undefined ? required : wrong);
  return kind(
    z
      .string({ error })
      .min(1, { error: wrong, abort: true })
      .refine((v) => v.trim() !== '', { error: wrong }),
    'string',
  );
}

/** A list of non-empty strings; a bad item is reported on the list, as it always was. */
export function textList() {
  return kind(z.array(z.string({ error: listProblem }).min(1, { error: listProblem }), { error: listProblem }), 'list of strings');
}

/** An integer in a range; digit strings count, since numbers that come through `${VAR}` arrive as strings. */
export function int(min: number, max: number) {
  const error = `expected an integer from ${min} to ${max}`;
  const bounded = () => z.int({ error }).min(min, { error }).max(max, { error });
  return kind(z.union([bounded(), z.string({ error }).regex(/^\d+$/, { error }).transform(Number).pipe(bounded())], { error }), `integer ${min}..${max}`);
}

export function positiveInt() {
  const error = 'expected a positive integer';
  return kind(z.int({ error }).min(1, { error }), 'integer ≥ 1');
}

export function bool() {
  return kind(z.boolean({ error: 'expected true or false' }), 'true or false');
}

/** The longest duration any field takes: times computed from it stay dates (a grant of 10^9 days was a 500, issued unrecorded). */
export const maxDurationSeconds = 366 * 86400;

/** A duration like "90s", "30m", "1h30m", "7d", as seconds; at most 366d. */
export function duration(required = 'required: a duration like "30m"') {
  const wrong = 'expected a duration like "30m"';
  return kind(
    z.string({ error: (iss) => (iss.input === undefined ? required : wrong) }).transform((value, ctx) => {
      const seconds = parseDuration(value);
      if (seconds === undefined) {
        ctx.issues.push({ code: 'custom', message: wrong, input: value });
        return z.NEVER;
      }
      if (seconds > maxDurationSeconds) {
        ctx.issues.push({ code: 'custom', message: `${wrong}, at most 366d`, input: value });
        return z.NEVER;
      }
      return seconds;
    }),
    'duration ("30m", "1h30m", "7d")',
  );
}

/** A value checked by a function that throws what is wrong with it (hours, regular expressions). */
export function parsed<T>(kindText: string, parse: (value: string) => T, wrong = 'expected a non-empty string') {
  return kind(
    z
      .string({ error: wrong })
      .min(1, { error: wrong, abort: true })
      .refine((v) => v.trim() !== '', { error: wrong, abort: true })
      .transform((value, ctx) => {
        try {
          return parse(value);
        } catch (err) {
          ctx.issues.push({ code: 'custom', message: (err as Error).message, input: value });
          return z.NEVER;
        }
      }),
    kindText,
  );
}

export function oneOf<const T extends readonly [string, ...string[]]>(values: T, message = `expected one of: ${values.join(', ')}`) {
  return kind(z.enum(values, { error: message }), `one of: ${values.join(', ')}`);
}

const unknownKeys = (keys: readonly string[], what = 'unknown key') => `${what} (expected one of: ${keys.join(', ')})`;

/**
 * A mapping with known keys only: a misspelt key is an error, not a setting silently ignored.
 * `notMapping` is what is said when the value is not a mapping at all.
 */
export function mapping<Shape extends z.ZodRawShape>(shape: Shape, notMapping = 'expected a mapping', unknown?: (keys: readonly string[]) => string) {
  const known = Object.keys(shape);
  return z.strictObject(shape, {
    error: (iss) => (iss.code === 'unrecognized_keys' ? (unknown ? unknown(known) : unknownKeys(known)) : iss.code === 'invalid_type' ? notMapping : undefined),
  });
}

export const unknownRule = (keys: readonly string[]) => unknownKeys(keys, 'unknown alert rule');

/** A section that may be left out or left empty (`server:` with nothing under it): it then takes its defaults. */
export function section<S extends z.ZodType<unknown, object>>(schema: S) {
  return schema.nullish().transform((value) => value ?? schema.parse({}));
}

/** The schema under wrappers (optional, defaults, pipes), where the shape, the element or the values are. */
export function unwrap(schema: z.ZodType): z.ZodType {
  let current = schema as z.ZodType & { def: Record<string, unknown> };
  for (;;) {
    const def = current.def;
    if (def.innerType) current = def.innerType as typeof current;
    else if (def.type === 'pipe') current = ((def.in as typeof current).def.type === 'transform' ? def.out : def.in) as typeof current;
    else if (def.type === 'union') {
      const options = def.options as (typeof current)[];
      const structured = options.map((o) => unwrap(o)).find((o) => ['object', 'record', 'array'].includes(o.def.type));
      if (!structured) return current;
      current = structured as typeof current;
    } else return current;
  }
}
