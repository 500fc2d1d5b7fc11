/**
 * `zproxy reload [CONFIG]`: asks the zproxy that runs CONFIG to read it again, through the admin listener
 * its `admin` block names (`POST /reload`, with the bearer token when there is one), and reports what the
 * instance answers: exit 0 when the new config serves, 1 with its errors (JSON paths) when it was refused
 * and the running config keeps serving, or when no instance answers. The file is only read here for its
 * admin block: checking it is the instance's job (it checks it completely before changing anything).
 */
import http from 'node:http';
import { type AdminAddress, connectHost, instanceAddresses } from './admin-client.ts';
import type { Output } from './commands.ts';

/** How long the instance may take to answer (it waits for every worker to prepare the new config). */
const RELOAD_TIMEOUT_MS = 60_000;

function postReload(admin: AdminAddress): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: connectHost(admin.host),
      port: admin.port,
      method: 'POST',
      path: '/reload',
      headers: admin.token === null ? {} : { authorization: `Bearer ${admin.token}` },
      timeout: RELOAD_TIMEOUT_MS,
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${RELOAD_TIMEOUT_MS / 1000} s`)));
    req.on('error', reject);
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.end();
  });
}

export async function reloadCommand(path: string, json: boolean, output: Output): Promise<number> {
  const addresses = instanceAddresses(path);
  if (typeof addresses === 'string') {
    output.err(`zproxy: ${addresses}\n`);
    return 1;
  }
  const admin = addresses.admin;
  if (admin === null) {
    output.err(
      `zproxy: ${path} has no admin listener (an "admin" block with a port): zproxy reload reaches the running instance through it; without one, send SIGHUP to zproxy's process instead (kill -HUP <pid>, systemctl reload zproxy)\n`,
    );
    return 1;
  }
  const where = `${admin.host}:${admin.port}`;
  let answer: { status: number; body: string };
  try {
    answer = await postReload(admin);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    output.err(
      code === 'ECONNREFUSED'
        ? `zproxy: no zproxy admin listener answers at ${where} (is zproxy running with ${path}?)\n`
        : `zproxy: the admin listener at ${where} did not answer: ${(error as Error).message}\n`,
    );
    return 1;
  }
  let outcome: {
    ok?: unknown;
    config_hash?: unknown;
    workers?: unknown;
    errors?: unknown;
    error?: { message?: unknown };
  };
  try {
    outcome = JSON.parse(answer.body) as typeof outcome;
  } catch {
    output.err(
      `zproxy: the admin listener at ${where} answered ${answer.status}: ${answer.body.slice(0, 200)}\n`,
    );
    return 1;
  }
  if (json) output.out(`${JSON.stringify(outcome, null, 2)}\n`);
  if (answer.status === 200 && outcome.ok === true) {
    if (!json)
      output.out(
        `reloaded ${path} (config ${String(outcome.config_hash)}, ${String(outcome.workers)} worker(s))\n`,
      );
    return 0;
  }
  if (answer.status === 401) {
    output.err(`zproxy: the admin listener at ${where} refused the token (admin.token in ${path})\n`);
    return 1;
  }
  const errors = Array.isArray(outcome.errors)
    ? outcome.errors.map(String)
    : [String(outcome.error?.message ?? answer.body)];
  if (!json) {
    output.err(
      `zproxy: reload refused; the running config keeps serving (${errors.length} problem${errors.length === 1 ? '' : 's'})\n`,
    );
    for (const line of errors) output.err(`  ${line}\n`);
  }
  return 1;
}
