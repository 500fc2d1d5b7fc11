/**
 * A map from HTTP/2 stream id to stream for collections that churn (a stream added and deleted per
 * request): array-backed, so that a deleted stream is referenced by nothing and its objects stay young
 * (docs/performance.md, "Collections that keep garbage alive"). zproxy's own frame layer
 * (src/http2/server-connection.ts) keeps its streams in one; the node:http2 client sessions of the
 * upstream pool get one in place of node's own Map (src/upstream/session-tables.ts).
 */

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
