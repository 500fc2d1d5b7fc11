/**
 * A set for objects that come and go all the time (connections, sessions, exchanges): an array in which
 * each member records its own position under a symbol of the set, so that add and delete are O(1) and
 * nothing is ever rebuilt.
 *
 * Why not a Set: a V8 Set (or Map) under constant add/delete churn is rebuilt every few insertions, and
 * each replaced table keeps a link to its successor. Once a table has been promoted to the old generation
 * and replaced, that link keeps every later table, and every member they held, alive through young
 * collections until a full collection: the members' whole object graphs get promoted instead of dying
 * young. docs/performance.md ("Collections that keep garbage alive") has the measurements. An array is
 * not rebuilt on delete, and a slot that is cleared holds nothing.
 */
export class SlotSet<T extends object> {
  private readonly items: T[] = [];
  /** Each member's index in `items`, stored on the member itself. */
  private readonly slot = Symbol('slot');

  get size(): number {
    return this.items.length;
  }

  has(member: T): boolean {
    const i = (member as Record<symbol, number | undefined>)[this.slot];
    return i !== undefined && this.items[i] === member;
  }

  add(member: T): this {
    if (this.has(member)) return this;
    (member as Record<symbol, number | undefined>)[this.slot] = this.items.length;
    this.items.push(member);
    return this;
  }

  delete(member: T): boolean {
    if (!this.has(member)) return false;
    const slots = member as Record<symbol, number | undefined>;
    const i = slots[this.slot]!;
    const last = this.items.pop()!;
    if (last !== member) {
      this.items[i] = last;
      (last as Record<symbol, number | undefined>)[this.slot] = i;
    }
    slots[this.slot] = undefined;
    return true;
  }

  /**
   * Visits every member, last to first, without allocating. `visit` may delete the member it is given
   * (or others: a member moved into a visited slot may then be visited twice).
   */
  forEachMember(visit: (member: T) => void): void {
    const items = this.items;
    for (let i = items.length - 1; i >= 0; i--) {
      const member = items[i];
      if (member !== undefined) visit(member);
    }
  }

  /** Over a copy of the members: the loop body may add or delete freely. */
  [Symbol.iterator](): IterableIterator<T> {
    return this.items.slice().values();
  }

  /** Same signature as Set.prototype.forEach, over a copy (node:http2 calls it as a Set's). */
  forEach(callback: (member: T, again: T, set: this) => void): void {
    for (const member of this.items.slice()) callback(member, member, this);
  }
}
