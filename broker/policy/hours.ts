/**
 * Working hours like "Mon-Fri 08:00-19:00 Europe/Berlin" or "Mon,Wed 22:00-06:00 UTC" (a range past
 * midnight belongs to the day it starts on). Times are wall-clock times in the named IANA time zone.
 */
export interface Hours {
  readonly text: string;
  readonly days: ReadonlySet<number>; // 0 = Sunday
  readonly startMinute: number;
  readonly endMinute: number;
  readonly timeZone: string;
}

const dayNames = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];

function dayIndex(name: string): number {
  const index = dayNames.indexOf(name.toLowerCase().slice(0, 3));
  if (index < 0 || name.length < 3) throw new Error(`unknown day "${name}" (use Mon, Tue, Wed, Thu, Fri, Sat, Sun)`);
  return index;
}

function minutes(text: string): number {
  const match = /^([01]\d|2[0-4]):([0-5]\d)$/.exec(text);
  if (!match || (match[1] === '24' && match[2] !== '00')) throw new Error(`"${text}" is not a time like 08:00`);
  return Number(match[1]) * 60 + Number(match[2]);
}

/** Parses an hours expression; throws with a message that says what is wrong. */
export function parseHours(text: string): Hours {
  const parts = text.trim().split(/\s+/);
  if (parts.length !== 3) throw new Error(`expected hours like "Mon-Fri 08:00-19:00 Europe/Berlin", got "${text}"`);
  const [dayPart, timePart, timeZone] = parts as [string, string, string];
  const days = new Set<number>();
  for (const item of dayPart.split(',')) {
    const [from, to] = item.split('-');
    const start = dayIndex(from!);
    const end = to === undefined ? start : dayIndex(to);
    for (let d = start; ; d = (d + 1) % 7) {
      days.add(d);
      if (d === end) break;
    }
  }
  const [from, to] = timePart.split('-');
  if (to === undefined) throw new Error(`"${timePart}" is not a time range like 08:00-19:00`);
  const startMinute = minutes(from!);
  const endMinute = minutes(to);
  if (startMinute === endMinute) throw new Error(`"${timePart}" is an empty time range`);
  try {
    new Intl.DateTimeFormat('en-US', { timeZone }).format(0);
  } catch {
    throw new Error(`unknown time zone "${timeZone}" (use an IANA name like Europe/Berlin or UTC)`);
  }
  return { text, days, startMinute, endMinute, timeZone };
}

/** One formatter per time zone: making one costs far more than using it. */
const formatters = new Map<string, Intl.DateTimeFormat>();

/** The weekday and minute of the day of an instant in a time zone. */
function wallClock(at: Date, timeZone: string): { day: number; minute: number } {
  let format = formatters.get(timeZone);
  if (!format) {
    format = new Intl.DateTimeFormat('en-US', { timeZone, weekday: 'short', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
    formatters.set(timeZone, format);
  }
  const parts = format.formatToParts(at);
  const get = (type: string) => parts.find((p) => p.type === type)!.value;
  return { day: dayIndex(get('weekday')), minute: Number(get('hour')) * 60 + Number(get('minute')) };
}

export function withinHours(hours: Hours, at: Date): boolean {
  const { day, minute } = wallClock(at, hours.timeZone);
  if (hours.startMinute < hours.endMinute) return hours.days.has(day) && minute >= hours.startMinute && minute < hours.endMinute;
  // Past midnight: the evening part on a listed day, the morning part on the day after one.
  return (hours.days.has(day) && minute >= hours.startMinute) || (hours.days.has((day + 6) % 7) && minute < hours.endMinute);
}

/**
 * Milliseconds from `at` until the hours stop allowing, at most `limitMs`; 0 when `at` is outside them. Windows that
 * meet (Mon-Sun 00:00-24:00, a range past midnight into a listed day) count as one.
 */
export function msLeftWithin(hours: Hours, at: Date, limitMs: number): number {
  const start = at.getTime();
  let t = start;
  // Each step reaches the end of a window as the zone's clock reads it: at least a minute, so this ends.
  while (t - start < limitMs && withinHours(hours, new Date(t))) {
    const { day, minute } = wallClock(new Date(t), hours.timeZone);
    const evening = hours.startMinute > hours.endMinute && hours.days.has(day) && minute >= hours.startMinute;
    const wallMinutesLeft = evening ? 1440 - minute + hours.endMinute : hours.endMinute - minute;
    let next = t - (t % 60_000) + wallMinutesLeft * 60_000;
    // The clock skipped ahead on the way (summer time): the end came sooner by as much.
    while (next - 60_000 > t && !withinHours(hours, new Date(next - 60_000))) next -= 60_000;
    t = next;
  }
  return Math.min(limitMs, t - start);
}
