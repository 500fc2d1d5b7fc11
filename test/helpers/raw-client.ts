/**
 * A raw TCP client for exact HTTP/1.1 bytes: what a conformance or attack suite would send.
 */
import net from 'node:net';

export interface RawExchange {
  /** Everything received until the server closed the connection or the timeout passed. */
  readonly data: Buffer;
  readonly text: string;
  /** True when the server closed the connection (false: the timeout ended the wait). */
  readonly closedByServer: boolean;
}

/** Sends `payload` (string as latin1, or chunks written one after another) and collects the answer. */
export function rawRequest(
  port: number,
  payload: string | Buffer | (string | Buffer)[],
  options: { timeoutMs?: number; endAfterWrite?: boolean } = {},
): Promise<RawExchange> {
  const timeoutMs = options.timeoutMs ?? 3000;
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const chunks: Buffer[] = [];
    let settled = false;
    const finish = (closedByServer: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      const data = Buffer.concat(chunks);
      resolve({ data, text: data.toString('latin1'), closedByServer });
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('close', () => finish(true));
    socket.on('error', (err) => {
      if (chunks.length > 0) finish(true);
      else if (!settled) {
        settled = true;
        clearTimeout(timer);
        reject(err);
      }
    });
    socket.on('connect', () => {
      const parts = Array.isArray(payload) ? payload : [payload];
      for (const p of parts) socket.write(typeof p === 'string' ? Buffer.from(p, 'latin1') : p);
      if (options.endAfterWrite) socket.end();
    });
  });
}

/** Status codes of every response head found in a raw answer, in order. */
export function statusCodes(text: string): number[] {
  return [...text.matchAll(/HTTP\/1\.[01] (\d{3})/g)].map((m) => Number(m[1]));
}
