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
 * zproxy's own frame layer (server-connection.ts) keeps its streams in a StreamIdTable too; the
 * replacement itself now serves the node:http2 client sessions of the upstream pool.
 */

import { SlotSet } from '../util/slot-set.ts';

/**
 * The stream-id-to-stream map, as node:http2 uses it: an open-addressing hash table over two arrays
 * (linear probing, deletion by shifting back, so no tombstones). Client stream ids are odd and increase,
 * so `id >>> 1` spreads them over consecutive slots. The arrays grow when half full and never shrink or
 * get rebuilt on delete, so a deleted stream is referenced by nothing.
 */
export class StreamIdTable<V> {
  /** Stream ids by slot; 0 marks an empty slot (stream ids start at 1). */
  private ids = new Int32Array(16);
  private streams: (V | undefined)[] = new Array<V | undefined>(16).fill(undefined);
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** The slot holding `id`, or the empty slot where it would go. */
  private slotOf(id: number): number {
    const mask = this.ids.length - 1;
    let i = (id >>> 1) & mask;
    for (;;) {
      const at = this.ids[i]!;
      if (at === id || at === 0) return i;
      i = (i + 1) & mask;
    }
  }

  get(id: number): V | undefined {
    const i = this.slotOf(id);
    return this.ids[i] === id ? this.streams[i] : undefined;
  }

  set(id: number, stream: V): this {
    let i = this.slotOf(id);
    if (this.ids[i] !== id) {
      if ((this.count + 1) * 2 > this.ids.length) {
        this.grow();
        i = this.slotOf(id);
      }
      this.ids[i] = id;
      this.count++;
    }
    this.streams[i] = stream;
    return this;
  }

  delete(id: number): boolean {
    let i = this.slotOf(id);
    if (this.ids[i] !== id) return false;
    const ids = this.ids;
    const streams = this.streams;
    const mask = ids.length - 1;
    // Shift later members of the probe run back into the hole, so that every member stays reachable
    // from its home slot without crossing an empty slot.
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      const at = ids[j]!;
      if (at === 0) break;
      const home = (at >>> 1) & mask;
      // Move `at` into the hole when its home is not in the cyclic range (i, j].
      if (i <= j ? home <= i || home > j : home <= i && home > j) {
        ids[i] = at;
        streams[i] = streams[j];
        i = j;
      }
    }
    ids[i] = 0;
    streams[i] = undefined;
    this.count--;
    return true;
  }

  private grow(): void {
    const oldIds = this.ids;
    const oldStreams = this.streams;
    this.ids = new Int32Array(oldIds.length * 2);
    this.streams = new Array<V | undefined>(oldIds.length * 2).fill(undefined);
    this.count = 0;
    for (let i = 0; i < oldIds.length; i++) if (oldIds[i] !== 0) this.set(oldIds[i]!, oldStreams[i] as V);
  }

  /** Over a copy: node:http2 destroys streams from inside forEach, which deletes them from here. */
  forEach(callback: (stream: V, id: number, table: this) => void): void {
    for (const [id, stream] of this) callback(stream, id, this);
  }

  /** Over a copy (in slot order, not insertion order). */
  [Symbol.iterator](): IterableIterator<[number, V]> {
    const entries: [number, V][] = [];
    for (let i = 0; i < this.ids.length; i++)
      if (this.ids[i] !== 0) entries.push([this.ids[i]!, this.streams[i] as V]);
    return entries.values();
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
