/**
 * Binary operators on values: on primitives with JavaScript's own semantics, on containers the interpreter
 * built through their ToPrimitive, never on an object of the target (that would run its valueOf/toString).
 * Any operand with secret content makes the result fully tainted; presence against null/undefined is shape.
 */
import { LoupeRefusal, LoupeThrow, type Spend } from './budget';
import { isFull, isNullish, poison, prim, secretLabel, toPrimitive, type Prim, type Val } from './values';

export function binaryOperation(spend: Spend, op: string, left: Val, right: Val): Val {
  if (op === '===' || op === '!==' || op === '==' || op === '!=') {
    // Presence against null/undefined is shape: only a fully tainted side hides it.
    const presence = (a: Val, b: Val) => isNullish(b) && !b.taint && !isFull(a);
    if (presence(left, right) || presence(right, left)) return prim(equals(op, left, right));
  }
  const label = secretLabel(left, right);
  if (label) return poison(label);
  if (op === '===' || op === '!==' || op === '==' || op === '!=') return prim(equals(op, left, right));
  if (op === 'in') throw new LoupeRefusal('construct', 'internal: `in` is evaluated asynchronously');
  const a = toPrimitive(left, 'default');
  const b = toPrimitive(right, 'default');
  try {
    const value = applyBinary(op, a, b);
    if (typeof value === 'string') spend.string(value.length);
    return prim(value);
  } catch (error) {
    if (error instanceof LoupeRefusal) throw error;
    throw new LoupeThrow('TypeError', (error as Error).message);
  }
}

function equals(op: string, left: Val, right: Val): boolean {
  const strict = op === '===' || op === '!==';
  const negate = op === '!==' || op === '!=';
  let same: boolean;
  if (left.kind === 'prim' && right.kind === 'prim') same = strict ? left.value === right.value : left.value == right.value;
  else if (left.kind !== 'prim' && right.kind !== 'prim') {
    if (left.kind === 'remote' && right.kind === 'remote') {
      if (left.object.objectId !== right.object.objectId) {
        throw new LoupeRefusal('construct', 'comparing two objects of the target by identity is not supported (Loupe sees them through separate references); compare a field such as an id');
      }
      same = true;
    } else same = left === right;
  } else if (strict) same = false;
  else {
    const p = left.kind === 'prim' ? left : right;
    const o = left.kind === 'prim' ? right : left;
    same = p.kind === 'prim' && (p.value === null || p.value === undefined) ? false : toPrimitive(o, 'default') == (p as { value: Prim }).value;
  }
  return negate ? !same : same;
}

/** The most bits a BigInt the interpreter computes may have: `(1n << 300000000n) ** 2n` would hold the broker for seconds. */
const maxBigIntBits = 1 << 16;

const bitsOf = (n: bigint): number => (n < 0n ? -n : n).toString(16).length * 4;

/** Refuses a BigInt operation whose result could pass maxBigIntBits, before it is computed. */
function boundBigInt(op: string, x: bigint, y: bigint): void {
  const bx = bitsOf(x);
  const by = bitsOf(y);
  const bits =
    op === '*'
      ? bx + by
      : op === '**'
        ? x === 0n || x === 1n || x === -1n
          ? 1
          : y > BigInt(maxBigIntBits)
            ? Infinity
            : bx * Number(y)
        : op === '<<'
          ? y > BigInt(maxBigIntBits)
            ? Infinity
            : bx + Math.max(0, Number(y))
          : op === '>>'
            ? y < -BigInt(maxBigIntBits)
              ? Infinity
              : bx - Math.min(0, Number(y))
            : Math.max(bx, by) + 1;
  if (bits > maxBigIntBits) throw new LoupeRefusal('budget', `a BigInt of more than ${maxBigIntBits} bits (the operator ${op})`);
}

function applyBinary(op: string, a: Prim, b: Prim): Prim {
  const x = a as any;
  const y = b as any;
  if (typeof x === 'bigint' && typeof y === 'bigint') boundBigInt(op, x, y);
  switch (op) {
    case '+':
      return x + y;
    case '-':
      return x - y;
    case '*':
      return x * y;
    case '/':
      return x / y;
    case '%':
      return x % y;
    case '**':
      return x ** y;
    case '<':
      return x < y;
    case '>':
      return x > y;
    case '<=':
      return x <= y;
    case '>=':
      return x >= y;
    case '<<':
      return x << y;
    case '>>':
      return x >> y;
    case '>>>':
      return x >>> y;
    case '&':
      return x & y;
    case '|':
      return x | y;
    case '^':
      return x ^ y;
  }
  throw new LoupeRefusal('construct', `the operator ${op} is not a Loupe expression`);
}
