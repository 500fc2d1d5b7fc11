/**
 * How a route chooses among its targets (`load_balancing`, docs/upstreams.md). Each balancer picks among
 * the route's primary targets; backup targets are taken only by a retry once every primary was tried
 * (UpstreamGroup.pickOther).
 *
 * - round_robin: nginx's smooth weighted round robin: each pick adds every target's weight to its
 *   running score, takes the highest and subtracts the total from it, so a target of weight 3 among
 *   weights 3, 1, 1 is picked 3 times in 5 but never 3 times in a row. Equal weights take turns.
 * - least_request: two targets drawn at random, the one with fewer requests in flight for its weight
 *   wins (the power of two choices, Envoy's default).
 * - random: drawn in proportion to weight.
 * - hash: consistent hashing on a ring (160 points per unit of weight): the same key goes to the same
 *   target, in every worker and every instance with the same targets, and a target that leaves moves only
 *   the keys it had. A request without the key (no such header or cookie) is balanced round robin.
 *
 * When some targets are out (health.ts: down by active checks, or ejected), the group asks `pickUp`,
 * which picks as the policy would among the targets that are up only: round robin skips them (nginx's
 * way), hash walks the ring on to the next point of a target that is up (so only the keys of the target
 * that is out move).
 */
import type { LoadBalancingConfig } from '../config/schema.ts';
import type { Exchange } from '../exchange.ts';
import type { FieldSource } from '../http/fields.ts';
import { hash32 } from '../util/hash.ts';
import type { UpstreamTarget } from './group.ts';

export interface Balancer {
  /** The target for a new exchange. `fields` are the request's (for a header or cookie key). */
  pick(ex: Exchange, fields: FieldSource | null): UpstreamTarget;
  /** The same, among the targets that are up at `now` (at least one is). */
  pickUp(ex: Exchange, fields: FieldSource | null, now: number): UpstreamTarget;
}

/** True when `t` takes new requests at `now`. */
export function isUp(t: UpstreamTarget, now: number): boolean {
  return t.health === null || t.health.up(now);
}

/** A target that is up, drawn at random in proportion to weight among those that are (one is). */
function randomUp(targets: readonly UpstreamTarget[], now: number): UpstreamTarget {
  let total = 0;
  for (const t of targets) if (isUp(t, now)) total += t.weight;
  let r = Math.random() * total;
  for (const t of targets) {
    if (!isUp(t, now)) continue;
    r -= t.weight;
    if (r < 0) return t;
  }
  for (const t of targets) if (isUp(t, now)) return t;
  return targets[0]!;
}

/** Ring points per unit of weight: enough that each target's share is within a few percent. */
const POINTS_PER_WEIGHT = 160;

function allEqual(targets: readonly UpstreamTarget[]): boolean {
  for (const t of targets) if (t.weight !== targets[0]!.weight) return false;
  return true;
}

/** Equal weights: in turn. */
class RoundRobin implements Balancer {
  private readonly targets: readonly UpstreamTarget[];
  private next = 0;

  constructor(targets: readonly UpstreamTarget[]) {
    this.targets = targets;
  }

  pick(): UpstreamTarget {
    const targets = this.targets;
    const t = targets[this.next]!;
    this.next = this.next + 1 === targets.length ? 0 : this.next + 1;
    return t;
  }

  pickUp(_ex: Exchange, _fields: FieldSource | null, now: number): UpstreamTarget {
    for (let n = 0; n < this.targets.length; n++) {
      const t = this.pick();
      if (isUp(t, now)) return t;
    }
    return this.targets[0]!;
  }
}

/** Weights that differ: nginx's smooth weighted round robin. */
class SmoothWeightedRoundRobin implements Balancer {
  private readonly targets: readonly UpstreamTarget[];
  private readonly current: Float64Array;
  private readonly total: number;

  constructor(targets: readonly UpstreamTarget[]) {
    this.targets = targets;
    this.current = new Float64Array(targets.length);
    this.total = targets.reduce((sum, t) => sum + t.weight, 0);
  }

  pick(): UpstreamTarget {
    const targets = this.targets;
    const current = this.current;
    let best = 0;
    for (let i = 0; i < targets.length; i++) {
      current[i]! += targets[i]!.weight;
      if (current[i]! > current[best]!) best = i;
    }
    current[best]! -= this.total;
    return targets[best]!;
  }

  /** nginx's way: the targets that are out take no part (their scores wait). */
  pickUp(_ex: Exchange, _fields: FieldSource | null, now: number): UpstreamTarget {
    const targets = this.targets;
    const current = this.current;
    let best = -1;
    let total = 0;
    for (let i = 0; i < targets.length; i++) {
      if (!isUp(targets[i]!, now)) continue;
      current[i]! += targets[i]!.weight;
      total += targets[i]!.weight;
      if (best === -1 || current[i]! > current[best]!) best = i;
    }
    if (best === -1) return targets[0]!;
    current[best]! -= total;
    return targets[best]!;
  }
}

class LeastRequest implements Balancer {
  private readonly targets: readonly UpstreamTarget[];

  constructor(targets: readonly UpstreamTarget[]) {
    this.targets = targets;
  }

  pick(): UpstreamTarget {
    const targets = this.targets;
    const n = targets.length;
    const a = targets[Math.floor(Math.random() * n)]!;
    if (n === 1) return a;
    let b = targets[Math.floor(Math.random() * (n - 1))]!;
    if (b === a) b = targets[n - 1]!;
    // Fewer requests in flight for the weight wins: (active + 1) / weight, compared without dividing.
    return (a.active + 1) * b.weight <= (b.active + 1) * a.weight ? a : b;
  }

  pickUp(_ex: Exchange, _fields: FieldSource | null, now: number): UpstreamTarget {
    const a = randomUp(this.targets, now);
    const b = randomUp(this.targets, now);
    return (a.active + 1) * b.weight <= (b.active + 1) * a.weight ? a : b;
  }
}

class WeightedRandom implements Balancer {
  private readonly targets: readonly UpstreamTarget[];
  /** Running totals of the weights. */
  private readonly cumulative: Float64Array;

  constructor(targets: readonly UpstreamTarget[]) {
    this.targets = targets;
    this.cumulative = new Float64Array(targets.length);
    let sum = 0;
    targets.forEach((t, i) => {
      sum += t.weight;
      this.cumulative[i] = sum;
    });
  }

  pick(): UpstreamTarget {
    const cumulative = this.cumulative;
    const r = Math.random() * cumulative[cumulative.length - 1]!;
    let i = 0;
    while (cumulative[i]! <= r) i++;
    return this.targets[i]!;
  }

  pickUp(_ex: Exchange, _fields: FieldSource | null, now: number): UpstreamTarget {
    return randomUp(this.targets, now);
  }
}

/** Where `hash` finds its key in a request. */
const KEY_CLIENT_IP = 0;
const KEY_PATH = 1;
const KEY_HEADER = 2;
const KEY_COOKIE = 3;

/** The value of cookie `name` in a Cookie field value, or null. */
function cookieValue(header: string, name: string): string | null {
  let start = 0;
  while (start < header.length) {
    let end = header.indexOf(';', start);
    if (end === -1) end = header.length;
    const eq = header.indexOf('=', start);
    if (eq !== -1 && eq < end && header.slice(start, eq).trim() === name)
      return header.slice(eq + 1, end).trim();
    start = end + 1;
  }
  return null;
}

class ConsistentHash implements Balancer {
  private readonly targets: readonly UpstreamTarget[];
  /** The ring: points in increasing order, and the target of each. */
  private readonly points: Uint32Array;
  private readonly owners: Uint16Array;
  private readonly keyKind: number;
  /** The header (lowercase) or cookie name of the key. */
  private readonly keyName: string;
  private readonly fallback: RoundRobin;

  constructor(targets: readonly UpstreamTarget[], hashKey: string) {
    this.targets = targets;
    this.fallback = new RoundRobin(targets);
    if (hashKey === 'client_ip') this.keyKind = KEY_CLIENT_IP;
    else if (hashKey === 'path') this.keyKind = KEY_PATH;
    else if (hashKey.startsWith('header:')) this.keyKind = KEY_HEADER;
    else this.keyKind = KEY_COOKIE;
    const colon = hashKey.indexOf(':');
    this.keyName = colon === -1 ? '' : hashKey.slice(colon + 1);
    if (this.keyKind === KEY_HEADER) this.keyName = this.keyName.toLowerCase();
    // Each target's points come from its authority, not its position: the ring of the remaining targets
    // is the same whichever target leaves.
    const entries: [number, number][] = [];
    targets.forEach((t, owner) => {
      for (let i = 0; i < t.weight * POINTS_PER_WEIGHT; i++)
        entries.push([hash32(t.authority, String(i), 0), owner]);
    });
    entries.sort((x, y) => x[0] - y[0]);
    this.points = Uint32Array.from(entries, (e) => e[0]);
    this.owners = Uint16Array.from(entries, (e) => e[1]);
  }

  private key(ex: Exchange, fields: FieldSource | null): string | null {
    switch (this.keyKind) {
      case KEY_CLIENT_IP:
        return ex.clientAddress;
      case KEY_PATH:
        return ex.path;
      case KEY_HEADER: {
        const i = fields === null ? -1 : fields.indexOfField(this.keyName);
        return i === -1 ? null : fields!.fieldValue(i);
      }
      default: {
        if (fields === null) return null;
        for (let i = fields.indexOfField('cookie'); i !== -1; i = fields.indexOfField('cookie', i + 1)) {
          const value = cookieValue(fields.fieldValue(i), this.keyName);
          if (value !== null) return value;
        }
        return null;
      }
    }
  }

  pick(ex: Exchange, fields: FieldSource | null): UpstreamTarget {
    const key = this.key(ex, fields);
    if (key === null) return this.fallback.pick();
    return this.targets[this.owners[this.locate(hash32(key, '', 0))]!]!;
  }

  /** The next point of the ring, from the key's, whose target is up. */
  pickUp(ex: Exchange, fields: FieldSource | null, now: number): UpstreamTarget {
    const key = this.key(ex, fields);
    if (key === null) return this.fallback.pickUp(ex, fields, now);
    const owners = this.owners;
    for (let n = 0, i = this.locate(hash32(key, '', 0)); n < owners.length; n++) {
      const t = this.targets[owners[i]!]!;
      if (isUp(t, now)) return t;
      i = i + 1 === owners.length ? 0 : i + 1;
    }
    return this.targets[0]!;
  }

  /** The index of the first point at or after `h` (the ring wraps). */
  private locate(h: number): number {
    const points = this.points;
    let lo = 0;
    let hi = points.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (points[mid]! < h) lo = mid + 1;
      else hi = mid;
    }
    return lo === points.length ? 0 : lo;
  }
}

/** The balancer of `targets` (the primary ones, at least one) for a route's `load_balancing`. */
export function createBalancer(targets: readonly UpstreamTarget[], config: LoadBalancingConfig): Balancer {
  switch (config.policy) {
    case 'least_request':
      return new LeastRequest(targets);
    case 'random':
      return new WeightedRandom(targets);
    case 'hash':
      return new ConsistentHash(targets, config.hash_key);
    default:
      return allEqual(targets) ? new RoundRobin(targets) : new SmoothWeightedRoundRobin(targets);
  }
}
