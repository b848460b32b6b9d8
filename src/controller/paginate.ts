import { aborted, invalidArgument } from '../errors.ts';
import { byId } from '../state/types.ts';

/**
 * Token = the last id of the previous page. Items are sorted by id, so a page boundary
 * survives deletions between calls; a token that is not an id we could have issued is ABORTED.
 */
export function paginate<T extends { id: string }>(items: T[], maxEntries: number, startingToken: string, isId: (t: string) => boolean): { page: T[]; next: string } {
  if (!Number.isInteger(maxEntries) || maxEntries < 0) throw invalidArgument(`max_entries must not be negative, got ${maxEntries}`);
  if (startingToken && !isId(startingToken)) throw aborted(`starting_token "${startingToken.slice(0, 80)}" is not valid`);
  const sorted = [...items].sort(byId);
  const from = startingToken ? sorted.findIndex((t) => t.id > startingToken) : 0;
  const rest = from < 0 ? [] : sorted.slice(from);
  const page = maxEntries > 0 ? rest.slice(0, maxEntries) : rest;
  const next = maxEntries > 0 && rest.length > maxEntries ? page[page.length - 1]!.id : '';
  return { page, next };
}
