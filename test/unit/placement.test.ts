import { describe, expect, it } from 'vitest';
import { locationHintFor } from '../../worker/agents/placement';

describe('locationHintFor', () => {
  it('uses the agent\'s explicit region, whatever the caller\'s location', () => {
    expect(locationHintFor('apac', { continent: 'EU', longitude: '2.35' })).toBe('apac');
    expect(locationHintFor('me', { continent: 'NA', longitude: '-122.4' })).toBe('me');
    expect(locationHintFor('weur', undefined)).toBe('weur');
  });

  it('falls back to the caller\'s continent when the region is null or undefined', () => {
    expect(locationHintFor(null, { continent: 'EU', longitude: '2.35' })).toBe('weur');
    expect(locationHintFor(undefined, { continent: 'EU', longitude: '2.35' })).toBe('weur');
  });

  describe('North America splits west/east by longitude', () => {
    it.each([
      ['-122.42', 'wnam'], // San Francisco
      ['-157.86', 'wnam'], // Honolulu
      ['-104.99', 'wnam'], // Denver
      ['-74.01', 'enam'], // New York
      ['-87.63', 'enam'], // Chicago
      ['-100', 'enam'], // the boundary itself is east
    ])('longitude %s → %s', (longitude, hint) => {
      expect(locationHintFor(null, { continent: 'NA', longitude })).toBe(hint);
    });

    it('is east when the longitude is unknown', () => {
      expect(locationHintFor(null, { continent: 'NA' })).toBe('enam');
    });
  });

  describe('Europe splits west/east by longitude', () => {
    it.each([
      ['-0.13', 'weur'], // London
      ['2.35', 'weur'], // Paris
      ['13.40', 'weur'], // Berlin
      ['20', 'weur'], // the boundary itself is west
      ['21.01', 'eeur'], // Warsaw
      ['37.62', 'eeur'], // Moscow
    ])('longitude %s → %s', (longitude, hint) => {
      expect(locationHintFor(null, { continent: 'EU', longitude })).toBe(hint);
    });

    it('is west when the longitude is unknown', () => {
      expect(locationHintFor(null, { continent: 'EU' })).toBe('weur');
    });
  });

  it.each([
    ['SA', 'sam'],
    ['AS', 'apac'],
    ['OC', 'oc'],
    ['AF', 'afr'],
  ])('continent %s → %s', (continent, hint) => {
    expect(locationHintFor(null, { continent, longitude: '10' })).toBe(hint);
    expect(locationHintFor(undefined, { continent })).toBe(hint);
  });

  it('gives no hint for an unknown or missing continent', () => {
    expect(locationHintFor(null, { continent: 'AN' })).toBeNull(); // Antarctica has no region
    expect(locationHintFor(null, { continent: 'XX', longitude: '0' })).toBeNull();
    expect(locationHintFor(null, {})).toBeNull();
    expect(locationHintFor(null, undefined)).toBeNull();
    expect(locationHintFor(undefined, undefined)).toBeNull();
  });
});
