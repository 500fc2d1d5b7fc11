/**
 * Replaces the two collections in which node:http2 tracks a session's streams (a Map from stream id to
 * stream, and a Set of streams not yet given an id) with array-backed ones, to keep per-stream garbage
 * young. docs/performance.md ("Collections that keep garbage alive") has the
 * measurements.
 *
 * Why: a session adds and deletes an entry for every stream, and a V8 Map or Set under that churn keeps
 * finished streams alive through young collections (src/util/slot-set.ts explains how). With several
 * streams in flight per session nearly all of each stream's objects were promoted this way, and only full
 * collections freed them. The stream-id table here is an array searched linearly (a session has at most
 * `http2.max_concurrent_streams` streams); the pending set is a SlotSet.
 *
 * This reaches into node:http2's private session state (`session[kState].streams` and `.pendingStreams`,
 * used only through get/set/delete/size/forEach and add/delete/size/forEach). The replacement is made
 * only when that state has the expected shape and is still empty; otherwise nothing changes (node:http2
 * works as before, with the original collections). `test/unit/stream-table.test.ts` fails if the pinned
 * Node no longer has that shape, so that an upgrade cannot drop the replacement unnoticed.
 */

import { SlotSet } from '../util/slot-set.ts';

/** The stream-id-to-stream map, as node:http2 uses it. Few streams per session: a linear search. */
export class StreamIdTable<V> {
  private readonly ids: number[] = [];
  private readonly streams: V[] = [];

  get size(): number {
    return this.ids.length;
  }

  get(id: number): V | undefined {
    const i = this.ids.indexOf(id);
    return i === -1 ? undefined : this.streams[i];
  }

  has(id: number): boolean {
    return this.ids.indexOf(id) !== -1;
  }

  set(id: number, stream: V): this {
    const i = this.ids.indexOf(id);
    if (i === -1) {
      this.ids.push(id);
      this.streams.push(stream);
    } else this.streams[i] = stream;
    return this;
  }

  delete(id: number): boolean {
    const i = this.ids.indexOf(id);
    if (i === -1) return false;
    const last = this.ids.length - 1;
    this.ids[i] = this.ids[last]!;
    this.streams[i] = this.streams[last]!;
    this.ids.pop();
    this.streams.pop();
    return true;
  }

  /** Over a copy: node:http2 destroys streams from inside forEach, which deletes them from here. */
  forEach(callback: (stream: V, id: number, table: this) => void): void {
    const ids = this.ids.slice();
    const streams = this.streams.slice();
    for (let i = 0; i < ids.length; i++) callback(streams[i]!, ids[i]!, this);
  }

  values(): IterableIterator<V> {
    return this.streams.slice().values();
  }

  [Symbol.iterator](): IterableIterator<[number, V]> {
    return this.ids.map((id, i): [number, V] => [id, this.streams[i]!]).values();
  }
}

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
