/**
 * Which process of an instance this is: with `thread_count` above 1 the supervisor (src/server/
 * supervisor.ts) starts each worker with its id in WORKER_ENV. Per-instance services read it (the rate
 * limiter's memory store is the supervisor's, reached over IPC, in a worker) without depending on the
 * server.
 */

/** The environment variable that carries a worker's id (1 to thread_count). */
export const WORKER_ENV = 'ZPROXY_WORKER_ID';

/** True in a worker process started by the supervisor. */
export function isWorkerProcess(): boolean {
  return process.env[WORKER_ENV] !== undefined;
}

/** True in a worker process that can talk to its supervisor over IPC. */
export function hasSupervisor(): boolean {
  return isWorkerProcess() && process.send !== undefined;
}
