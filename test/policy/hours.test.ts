import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { msLeftWithin, parseHours, withinHours } from '../../broker/policy/hours';

describe('working hours with time zones (frozen instants)', () => {
  const berlin = parseHours('Mon-Fri 08:00-19:00 Europe/Berlin');

  it('reads the hours in the named zone, across the UTC day boundary and DST', () => {
    // Monday 2026-11-30: Berlin is UTC+1 in winter.
    assert.equal(withinHours(berlin, new Date('2026-11-30T06:59:00Z')), false); // 07:59 Berlin
    assert.equal(withinHours(berlin, new Date('2026-11-30T07:00:00Z')), true); // 08:00 Berlin
    assert.equal(withinHours(berlin, new Date('2026-11-30T17:59:00Z')), true); // 18:59 Berlin
    assert.equal(withinHours(berlin, new Date('2026-11-30T18:00:00Z')), false); // 19:00 Berlin
    // Summer: UTC+2.
    assert.equal(withinHours(berlin, new Date('2026-07-06T06:00:00Z')), true); // Monday 08:00 Berlin
    // Friday 23:30 UTC is Saturday 00:30 in Berlin: outside, though Friday in UTC.
    assert.equal(withinHours(parseHours('Fri 00:00-24:00 Europe/Berlin'), new Date('2026-12-04T23:30:00Z')), false);
    assert.equal(withinHours(parseHours('Sat 00:00-01:00 Europe/Berlin'), new Date('2026-12-04T23:30:00Z')), true);
  });

  it('handles ranges past midnight and day lists', () => {
    const night = parseHours('Mon,Wed 22:00-06:00 UTC');
    assert.equal(withinHours(night, new Date('2026-11-30T23:00:00Z')), true); // Monday night
    assert.equal(withinHours(night, new Date('2026-12-01T05:59:00Z')), true); // Tuesday morning, Monday's shift
    assert.equal(withinHours(night, new Date('2026-12-01T23:00:00Z')), false); // Tuesday night
    assert.equal(withinHours(parseHours('Sat-Mon 10:00-11:00 UTC'), new Date('2026-11-29T10:30:00Z')), true); // Sunday
  });

  it('says what is wrong with a bad expression', () => {
    assert.throws(() => parseHours('Mon-Fri 08:00-19:00'), /expected hours like "Mon-Fri 08:00-19:00 Europe\/Berlin"/);
    assert.throws(() => parseHours('Mon-Fry 08:00-19:00 UTC'), /unknown day "Fry"/);
    assert.throws(() => parseHours('Mon-Fri 8-19 UTC'), /"8" is not a time like 08:00/);
    assert.throws(() => parseHours('Mon-Fri 08:00-19:00 Mars/Olympus'), /unknown time zone "Mars\/Olympus"/);
    assert.throws(() => parseHours('Mon 10:00-10:00 UTC'), /empty time range/);
  });
});

describe('how long the hours still allow (frozen instants)', () => {
  const hour = 3_600_000;
  it('to the end of the window, bounded by the limit; 0 outside', () => {
    const berlin = parseHours('Mon-Fri 08:00-19:00 Europe/Berlin');
    assert.equal(msLeftWithin(berlin, new Date('2026-11-30T17:50:00Z'), hour), 600_000); // 18:50 Berlin
    assert.equal(msLeftWithin(berlin, new Date('2026-11-30T17:59:59.500Z'), hour), 500);
    assert.equal(msLeftWithin(berlin, new Date('2026-11-30T10:00:00Z'), hour), hour);
    assert.equal(msLeftWithin(berlin, new Date('2026-11-30T18:00:00Z'), hour), 0);
  });
  it('windows that meet are one; ranges past midnight end in the morning', () => {
    assert.equal(msLeftWithin(parseHours('Mon-Sun 00:00-24:00 UTC'), new Date('2026-11-30T23:30:00Z'), 3 * 86_400_000), 3 * 86_400_000);
    assert.equal(msLeftWithin(parseHours('Mon 00:00-24:00 UTC'), new Date('2026-11-30T23:30:00Z'), 86_400_000), 30 * 60_000);
    assert.equal(msLeftWithin(parseHours('Mon 22:00-06:00 UTC'), new Date('2026-11-30T23:00:00Z'), 86_400_000), 7 * hour);
    assert.equal(msLeftWithin(parseHours('Mon,Tue 22:00-06:00 UTC'), new Date('2026-12-01T05:00:00Z'), 86_400_000), hour); // Tuesday morning: Monday's shift
  });
  it('across a change of the clocks, in real time', () => {
    // 2026-03-29 02:00 CET became 03:00 CEST: from 01:00 to 04:00 on the wall is 2 hours.
    assert.equal(msLeftWithin(parseHours('Sun 00:00-04:00 Europe/Berlin'), new Date('2026-03-29T00:00:00Z'), 86_400_000), 2 * hour);
    // 2026-10-25 03:00 CEST became 02:00 CET: from 01:00 to 04:00 on the wall is 4 hours.
    assert.equal(msLeftWithin(parseHours('Sun 00:00-04:00 Europe/Berlin'), new Date('2026-10-24T23:00:00Z'), 86_400_000), 4 * hour);
  });
});
