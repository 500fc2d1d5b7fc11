/**
 * The memory store across worker processes. With thread_count > 1 the workers are separate processes, so
 * a worker-local bucket would let a client make thread_count times its limit. The supervisor holds the
 * one MemoryRateLimitStore of the instance and answers the workers' decisions over the IPC channel that
 * node:child_process sets up for them (one message each way per decision); the decisions are exact
 * whichever worker a connection lands on, and the counters survive a worker's restart. A worker that gets
 * no answer within IPC_TIMEOUT_MS treats it as a store error (on_store_error).
 */
import type { ChildProcess } from 'node:child_process';
import { type Decision, type RateLimitPolicy, ratePolicy } from './gcra.ts';
import type { RateLimitStore } from './store.ts';
import { MemoryRateLimitStore } from './store-memory.ts';

const IPC_TIMEOUT_MS = 1000;
const SWEEP_MS = 100;

/** A worker's question. */
export interface RateLimitRequestMessage {
  readonly zpRateLimit: number;
  /** requests_per_minute */
  readonly m: number;
  /** burst */
  readonly b: number;
  readonly k: string;
}

/** The supervisor's answer. */
export interface RateLimitReplyMessage {
  readonly zpRateLimit: number;
  readonly a: 0 | 1;
  readonly r: number;
  readonly s: number;
  readonly w: number;
}

// --- supervisor side -------------------------------------------------------------------------------

let supervisorStore: MemoryRateLimitStore | null = null;
const policies = new Map<string, RateLimitPolicy>();

/**
 * Answers a worker's rate-limit message; returns false for any other message. The supervisor calls it
 * for each message of each worker.
 */
export function answerRateLimitMessage(child: ChildProcess, message: unknown): boolean {
  const m = message as RateLimitRequestMessage | null;
  if (m === null || typeof m !== 'object' || typeof m.zpRateLimit !== 'number') return false;
  const id = `${m.m}:${m.b}`;
  let policy = policies.get(id);
  if (policy === undefined) {
    policy = ratePolicy(m.m, m.b);
    policies.set(id, policy);
  }
  supervisorStore ??= new MemoryRateLimitStore();
  const d = supervisorStore.take(policy, m.k);
  if (child.connected) {
    const reply: RateLimitReplyMessage = {
      zpRateLimit: m.zpRateLimit,
      a: d.allowed ? 1 : 0,
      r: d.remaining,
      s: d.resetMs,
      w: d.retryAfterMs,
    };
    child.send(reply, ignoreError);
  }
  return true;
}

function ignoreError(): void {}

// --- worker side -----------------------------------------------------------------------------------

interface Pending {
  resolve(decision: Decision): void;
  reject(error: Error): void;
  readonly deadline: number;
}

export class IpcRateLimitStore implements RateLimitStore {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private timer: NodeJS.Timeout | null = null;
  private listening = false;

  take(policy: RateLimitPolicy, key: string): Promise<Decision> {
    if (!this.listening) {
      this.listening = true;
      process.on('message', (message: unknown) => this.onMessage(message));
    }
    const id = this.nextId++;
    const message: RateLimitRequestMessage = {
      zpRateLimit: id,
      m: policy.requestsPerMinute,
      b: policy.capacity - 1,
      k: key,
    };
    const { promise, resolve, reject } = Promise.withResolvers<Decision>();
    if (process.send === undefined || !process.connected) {
      reject(new Error('no supervisor to hold the rate-limit counters'));
      return promise;
    }
    this.pending.set(id, { resolve, reject, deadline: Date.now() + IPC_TIMEOUT_MS });
    if (this.timer === null) this.timer = setInterval(expire, SWEEP_MS, this).unref();
    process.send(message);
    return promise;
  }

  private onMessage(message: unknown): void {
    const m = message as RateLimitReplyMessage | null;
    if (m === null || typeof m !== 'object' || typeof m.zpRateLimit !== 'number') return;
    const waiting = this.pending.get(m.zpRateLimit);
    if (waiting === undefined) return;
    this.pending.delete(m.zpRateLimit);
    waiting.resolve({ allowed: m.a === 1, remaining: m.r, resetMs: m.s, retryAfterMs: m.w });
  }

  /** Fails the questions older than IPC_TIMEOUT_MS (insertion order is age order). */
  expire(): void {
    const now = Date.now();
    for (const [id, waiting] of this.pending) {
      if (waiting.deadline > now) break;
      this.pending.delete(id);
      waiting.reject(new Error('the supervisor did not answer the rate-limit decision in time'));
    }
    if (this.pending.size === 0 && this.timer !== null) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }
}

function expire(store: IpcRateLimitStore): void {
  store.expire();
}
