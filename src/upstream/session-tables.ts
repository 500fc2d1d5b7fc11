/**
 * Replaces the two collections in which node:http2 tracks a session's streams (a Map from stream id to
 * stream, and a Set of streams not yet given an id) with array-backed ones, to keep per-stream garbage
 * young. docs/performance.md ("Collections that keep garbage alive") has the
 * measurements.
 *
 * Why: a session adds and deletes an entry for every stream, and a V8 Map or Set under that churn keeps
 * finished streams alive through young collections (src/util/slot-set.ts explains how). With several
 * streams in flight per session nearly all of each stream's objects were promoted this way, and only full
 * collections freed them. The stream-id table here is a hash table over arrays; the pending set is a
 * SlotSet.
 *
 * This reaches into node:http2's private session state (`session[kState].streams` and `.pendingStreams`,
 * used only through get/set/delete/size/forEach and add/delete/size/forEach, all that the replacements
 * offer besides iteration). The replacement is made
 * only when that state has the expected shape and is still empty; otherwise nothing changes (node:http2
 * works as before, with the original collections). `test/unit/stream-table.test.ts` fails if the pinned
 * Node no longer has that shape, so that an upgrade cannot drop the replacement unnoticed.
 *
 * zproxy's own frame layer keeps its streams in a StreamIdTable too (src/util/stream-id-table.ts); the
 * replacement here serves the node:http2 client sessions of the upstream pool (http2-pool.ts).
 */

import { SlotSet } from '../util/slot-set.ts';
import { StreamIdTable } from '../util/stream-id-table.ts';

interface SessionState {
  streams: unknown;
  pendingStreams: unknown;
}

/** node:http2's private state symbol, found on the first session (its description is 'state'). */
let stateSymbol: symbol | null | undefined;

function sessionState(session: object): SessionState | null {
  if (stateSymbol === undefined) {
    stateSymbol =
      Object.getOwnPropertySymbols(session).find((s) => {
        if (s.description !== 'state') return false;
        const state = (session as Record<symbol, unknown>)[s];
        return typeof state === 'object' && state !== null && 'streams' in state && 'pendingStreams' in state;
      }) ?? null;
  }
  if (stateSymbol === null) return null;
  const state = (session as Record<symbol, unknown>)[stateSymbol];
  return typeof state === 'object' && state !== null ? (state as SessionState) : null;
}

function isEmptyCollection(value: unknown, method: string): boolean {
  if (typeof value !== 'object' || value === null) return false;
  const collection = value as Record<string, unknown>;
  return (
    collection.size === 0 &&
    typeof collection[method] === 'function' &&
    typeof collection.delete === 'function' &&
    typeof collection.forEach === 'function'
  );
}

/**
 * Gives a new node:http2 session (server or client, before any stream) the array-backed collections (a
 * session that has them already keeps them). Returns false, changing nothing, when the session's private
 * state is not the expected empty Map and Set.
 */
export function installStreamTables(session: object): boolean {
  const state = sessionState(session);
  if (state === null) return false;
  const { streams, pendingStreams } = state;
  if (streams instanceof StreamIdTable && pendingStreams instanceof SlotSet) return true;
  // node:http2's SafeMap and SafeSet are not instances of the global Map and Set: checked by their methods.
  if (!isEmptyCollection(streams, 'get') || !isEmptyCollection(pendingStreams, 'add')) return false;
  state.streams = new StreamIdTable();
  state.pendingStreams = new SlotSet();
  return true;
}
