const unitSeconds: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

/** Parses durations like "90s", "30m", "1h30m", "7d" into seconds; undefined when malformed. */
export function parseDuration(text: string): number | undefined {
  const match = /^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/.exec(text.trim());
  if (!match || text.trim() === '') return undefined;
  const [, d, h, m, s] = match;
  const seconds = Number(d ?? 0) * unitSeconds.d + Number(h ?? 0) * unitSeconds.h + Number(m ?? 0) * unitSeconds.m + Number(s ?? 0);
  return seconds > 0 ? seconds : undefined;
}

export function formatDuration(seconds: number): string {
  if (seconds % 3600 === 0) return `${seconds / 3600}h`;
  if (seconds % 60 === 0) return `${seconds / 60}m`;
  return `${seconds}s`;
}
