import type { Region } from '../schemas/agent';

/** The part of `request.cf` that placement reads (tests pass it explicitly). */
export interface GeoHints {
  continent?: string;
  longitude?: string;
}

/**
 * Location hint for a new agent's Durable Object: the agent's own `region` if it names one,
 * otherwise the caller's continent. Honoured only when the object is first created.
 */
export function locationHintFor(region: Region | null | undefined, geo: GeoHints | undefined): Region | null {
  if (region) return region;
  switch (geo?.continent) {
    case 'NA':
      return Number(geo.longitude) < -100 ? 'wnam' : 'enam';
    case 'SA':
      return 'sam';
    case 'EU':
      return Number(geo.longitude) > 20 ? 'eeur' : 'weur';
    case 'AS':
      return 'apac';
    case 'OC':
      return 'oc';
    case 'AF':
      return 'afr';
    default:
      return null;
  }
}

const CONTINENT_OF: Record<Region, string> = { wnam: 'NA', enam: 'NA', sam: 'SA', weur: 'EU', eeur: 'EU', apac: 'AS', oc: 'OC', afr: 'AF', me: 'AS' };

/** Region tags a pool target's `region` may match: the location hint and its continent. */
export function regionTags(hint: Region | null | undefined): string[] {
  return hint ? [hint, CONTINENT_OF[hint]] : [];
}

/** Region tags of a caller, from `request.cf`: its location hint, continent and colo. */
export function callerRegionTags(geo: (GeoHints & { colo?: string }) | undefined): string[] {
  const tags = regionTags(locationHintFor(null, geo));
  if (geo?.continent && !tags.includes(geo.continent)) tags.push(geo.continent);
  if (geo?.colo) tags.push(geo.colo);
  return tags;
}
