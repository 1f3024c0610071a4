/**
 * When `loupe connect` says how long the grant has left: every 5 minutes while more than 5 remain (every 30 in a
 * grant of hours), each minute of the last 5, and 10 seconds before the end. Marks at or after `remainingMs` are left
 * out, and those due within 250 ms (the start line says the full length).
 */
export function countdownMarks(remainingMs: number): { ms: number; words: string }[] {
  const minute = 60_000;
  const marks: { ms: number; words: string }[] = [{ ms: 10_000, words: '10 s' }];
  for (let m = 1; m <= 5; m++) marks.push({ ms: m * minute, words: `${m} min` });
  const step = remainingMs > 2 * 60 * minute ? 30 : 5;
  for (let m = step === 30 ? 30 : 10; m * minute < remainingMs; m += step) marks.push({ ms: m * minute, words: m < 60 ? `${m} min` : `${Math.floor(m / 60)} h${m % 60 ? ` ${m % 60} min` : ''}` });
  return marks.filter((mark) => mark.ms < remainingMs - 250).sort((a, b) => b.ms - a.ms);
}
