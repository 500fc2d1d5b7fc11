/**
 * Comparing meaning, not bytes. What each proxy forwarded for one input is reduced to a list of
 * requests as an origin would read them (method, normalised target, effective host, content after
 * de-framing, whether the framing could be read two ways), plus what the client saw (status codes,
 * whether the connection was closed). Then zproxy is judged against nginx and HAProxy:
 *
 * - fine: everyone refused; zproxy forwarded the same as at least one of them; zproxy forwarded a
 *   prefix of what one of them forwarded (it stopped earlier: stricter, counted as `zproxy-stricter`);
 * - finding `zproxy-differs`: zproxy forwarded something whose meaning neither of the others forwarded
 *   (another body, method, target or host, or another number of requests not explained by a prefix);
 * - finding `zproxy-only-forwards`: zproxy forwarded a request and both others forwarded nothing;
 * - finding `zproxy-forwards-more`: zproxy forwarded what the others did and more requests after it;
 * - finding `zproxy-forwards-ambiguous`: what zproxy sent upstream can be read more than one way.
 *
 * Every finding must be either fixed in zproxy or listed in ACCEPTED (with its reason), see the test.
 */
import type { ClientOutcome, InputRun } from './harness.ts';
import type { FuzzInput } from './inputs.ts';
import { PROXIES, type ProxyName } from './proxies.ts';
import { type ForwardedRequest, parseForwarded } from './wire.ts';

export interface RequestMeaning {
  method: string;
  /** Path after RFC 3986 normalisation (see normalisePath), or the target itself when it has no path. */
  path: string;
  query: string;
  /** The effective host, lowercased, without port or trailing dot; '' when none. */
  host: string;
  /** The content (latin1); null while the request is incomplete at the upstream. */
  body: string | null;
  /** What an origin could read in more than one way ([] for a clean request). */
  problems: string[];
}

export interface ProxySummary {
  requests: RequestMeaning[];
  /** Requests as forwarded (raw request-line), for the report. */
  forwardedLines: string[];
  /** Bytes a request could not be delimited in, or that followed a request the upstream answered. */
  undelimited: string[];
  /** Upstream connections the proxy kept open after the client was done (closed by the harness). */
  keptOpen: number;
  client: ClientOutcome;
}

export type Verdict =
  | 'all-refuse'
  | 'agree'
  | 'agree-with-one'
  | 'zproxy-stricter'
  | 'zproxy-differs'
  | 'zproxy-only-forwards'
  | 'zproxy-forwards-more'
  | 'zproxy-forwards-ambiguous';

export const FINDING_VERDICTS: readonly Verdict[] = [
  'zproxy-differs',
  'zproxy-only-forwards',
  'zproxy-forwards-more',
  'zproxy-forwards-ambiguous',
];

export interface Judgement {
  verdict: Verdict;
  /** nginx and HAProxy forwarded different things (for the figures). */
  othersDisagree: boolean;
  summaries: Record<ProxyName, ProxySummary>;
}

const UNRESERVED = /[A-Za-z0-9\-._~]/;

/** RFC 3986 §6.2.2: unreserved escapes decoded, other escapes' hex uppercased; dot segments removed
 * (§5.2.4, clamped at the root); repeated slashes merged (zproxy does it on purpose, see docs/routing.md). */
export function normalisePath(path: string): string {
  const decoded = path.replace(/%([0-9A-Fa-f]{2})/g, (m, hex: string) => {
    const c = String.fromCharCode(Number.parseInt(hex, 16));
    return UNRESERVED.test(c) ? c : m.toUpperCase();
  });
  const segments = decoded.split('/').slice(1);
  const out: string[] = [];
  for (let i = 0; i < segments.length; i++) {
    const s = segments[i]!;
    const last = i === segments.length - 1;
    if (s === '..') {
      out.pop();
      if (last) out.push('');
    } else if (s === '.') {
      if (last) out.push('');
    } else if (s !== '' || last) out.push(s);
  }
  return `/${out.join('/')}`;
}

/** Lowercased, without a port or a trailing dot. */
export function normaliseHost(host: string): string {
  let h = host.trim().toLowerCase();
  const port = /:\d*$/.exec(h);
  if (port !== null && (!h.startsWith('[') || h.lastIndexOf(']') < port.index)) h = h.slice(0, port.index);
  if (h.endsWith('.')) h = h.slice(0, -1);
  return h;
}

/** Hosts a proxy sends when the client sent none: treated as "no host". */
const NO_HOST = new Set(['', '127.0.0.1']);

export function meaningOf(r: ForwardedRequest): RequestMeaning {
  let target = r.target;
  let authority: string | null = null;
  const abs = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/([^/?#]*)(.*)$/.exec(target);
  if (abs !== null) {
    authority = abs[1]!;
    // An empty path is "/" (RFC 3986 §6.2.3), also before a query.
    target = abs[2]!.startsWith('/') ? abs[2]! : `/${abs[2]}`;
  }
  const q = target.indexOf('?');
  const rawPath = q === -1 ? target : target.slice(0, q);
  const query = q === -1 ? '' : target.slice(q);
  const hosts = r.fields.filter(([n]) => n.toLowerCase() === 'host').map(([, v]) => v);
  let host = normaliseHost(authority ?? hosts.join(','));
  if (NO_HOST.has(host)) host = '';
  return {
    method: r.method,
    path: rawPath.startsWith('/') ? normalisePath(rawPath) : rawPath,
    query,
    host,
    body: r.complete ? r.body : null,
    problems: r.problems,
  };
}

export function meaningKey(m: RequestMeaning): string {
  return JSON.stringify([m.method, m.path, m.query, m.host, m.body, m.problems.length > 0]);
}

export function summarise(run: InputRun[ProxyName]): ProxySummary {
  const requests: RequestMeaning[] = [];
  const forwardedLines: string[] = [];
  const undelimited: string[] = [];
  let keptOpen = 0;
  for (const c of run.upstream) {
    if (c.forcedClose) keptOpen++;
    const parsed = parseForwarded(c.bytes);
    for (const r of parsed.requests) {
      requests.push(meaningOf(r));
      forwardedLines.push(`${r.method} ${r.target} HTTP/${r.version}${r.complete ? '' : ' (incomplete)'}`);
    }
    if (parsed.stop !== '' && parsed.stop !== 'incomplete')
      undelimited.push(`${parsed.stop}: ${JSON.stringify(parsed.rest)}`);
  }
  return { requests, forwardedLines, undelimited, keptOpen, client: run.client };
}

function isPrefix(a: readonly string[], b: readonly string[]): boolean {
  if (a.length > b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Keys of the requests a proxy forwarded whole (an origin received all of them). */
function completeKeys(s: ProxySummary): string[] {
  const out: string[] = [];
  for (const r of s.requests) if (r.body !== null) out.push(meaningKey(r));
  return out;
}

/**
 * zproxy began forwarding a request it had not received whole (its head, part of its body) and neither
 * other proxy went as far: none forwarded as many requests, and none is still waiting for the rest of
 * the input (nginx buffers a body before it forwards anything).
 */
function partialBeyondOthers(summaries: Record<ProxyName, ProxySummary>): boolean {
  const z = summaries.zproxy.requests;
  if (z.length === 0 || z.at(-1)!.body !== null) return false;
  return (['nginx', 'haproxy'] as const).every((p) => {
    const s = summaries[p];
    const waiting = s.client.end === 'idle' || s.client.end === 'timeout';
    return s.requests.length < z.length && !waiting;
  });
}

export function judge(run: InputRun): Judgement {
  const summaries = {} as Record<ProxyName, ProxySummary>;
  for (const p of PROXIES) summaries[p] = summarise(run[p]);
  const z = completeKeys(summaries.zproxy);
  const others = [completeKeys(summaries.nginx), completeKeys(summaries.haproxy)];
  const othersDisagree = JSON.stringify(others[0]) !== JSON.stringify(others[1]);
  const verdict = ((): Verdict => {
    const zs = summaries.zproxy;
    if (zs.requests.some((r) => r.problems.length > 0) || zs.undelimited.length > 0) {
      return 'zproxy-forwards-ambiguous';
    }
    const forwarding = others.filter((o) => o.length > 0);
    const partial = partialBeyondOthers(summaries);
    if (z.length === 0 && !partial) return forwarding.length === 0 ? 'all-refuse' : 'zproxy-stricter';
    if (forwarding.length === 0) return 'zproxy-only-forwards';
    if (!partial && forwarding.some((o) => isPrefix(z, o))) {
      const same = forwarding.filter((o) => o.length === z.length && isPrefix(z, o)).length;
      if (same === 2) return 'agree';
      return same === 1 ? 'agree-with-one' : 'zproxy-stricter';
    }
    if (forwarding.every((o) => isPrefix(o, z))) return 'zproxy-forwards-more';
    return 'zproxy-differs';
  })();
  return { verdict, othersDisagree, summaries };
}

// ------------------------------------------------------------------ accepted differences

export interface FindingContext {
  readonly input: FuzzInput;
  readonly judgement: Judgement;
}

/** Where a proxy's whole requests stop matching zproxy's: the index of the first that differs or lacks. */
function firstDifference(c: FindingContext, proxy: ProxyName): number {
  const z = completeKeys(c.judgement.summaries.zproxy);
  const o = completeKeys(c.judgement.summaries[proxy]);
  let i = 0;
  while (i < z.length && i < o.length && z[i] === o[i]) i++;
  return i;
}

/**
 * The request of the input where a proxy departs from zproxy (the one it refused or read differently),
 * as the harness's own parser delimits the input (wire.ts). Null when the input cannot be split that far
 * (then no accepted difference applies: the finding stays unexplained).
 */
export function differingRequest(c: FindingContext, proxy: ProxyName): ForwardedRequest | null {
  return parseForwarded(c.input.bytes).requests[firstDifference(c, proxy)] ?? null;
}

/** What zproxy and `proxy` forwarded at the index where they part (null: nothing there). */
function differingMeanings(
  c: FindingContext,
  proxy: ProxyName,
): { zproxy: RequestMeaning | null; other: RequestMeaning | null } {
  const i = firstDifference(c, proxy);
  const whole = (p: ProxyName) => c.judgement.summaries[p].requests.filter((r) => r.body !== null);
  return { zproxy: whole('zproxy')[i] ?? null, other: whole(proxy)[i] ?? null };
}

/** [name, value as sent after the colon] of the field lines named `lowerName`. */
function rawValues(r: ForwardedRequest, lowerName: string): string[] {
  const out: string[] = [];
  for (const line of r.rawFields) {
    const colon = line.indexOf(':');
    if (colon > 0 && line.slice(0, colon).toLowerCase() === lowerName) out.push(line.slice(colon + 1));
  }
  return out;
}

/** The authority of an absolute-form target, or null. */
function authorityOf(target: string): string | null {
  const m = /^[A-Za-z]+:\/\/([^/?]*)/.exec(target);
  return m === null ? null : m[1]!;
}

/** What a client sees when a proxy refuses: a final status >= 400 (or nothing) and no forwarded request. */
function refusedWith(c: FindingContext, proxy: ProxyName, statuses: readonly number[]): boolean {
  const finals = c.judgement.summaries[proxy].client.statuses.filter((x) => x >= 200);
  return finals.length > 0 && statuses.includes(finals.at(-1)!);
}

/**
 * A deliberate difference: why nginx or HAProxy did not forward what zproxy forwarded, when zproxy is
 * right (RFC 9110/9112) and the other proxy departs from it or applies a policy of its own.
 */
export interface AcceptedDifference {
  readonly id: string;
  /** The proxy whose behaviour it explains. */
  readonly proxy: 'nginx' | 'haproxy';
  /** One line: what that proxy does and why zproxy's behaviour is right (copied into docs/security.md). */
  readonly reason: string;
  /** True when this explains that proxy's outcome for the input. */
  applies(c: FindingContext): boolean;
  /**
   * Proof that the difference is real, checked by the test against the running proxies: zproxy forwards
   * `example`, this proxy refuses it or forwards another meaning, and this entry applies to it;
   * `control`, the same request without what triggers the difference, is forwarded by both alike.
   */
  readonly example: string;
  readonly control: string;
}

/**
 * The documented differences. A finding is accepted when, for nginx and for HAProxy alike, the proxy
 * either forwarded what zproxy forwarded (its requests start with zproxy's) or an entry here explains
 * why it did not. Findings zproxy forwards ambiguously are never accepted.
 */
export const ACCEPTED: readonly AcceptedDifference[] = [
  {
    id: 'nginx-htab-ows',
    proxy: 'nginx',
    reason:
      'nginx skips only SP around a field value, so an HTAB before or after the value of Host, ' +
      'Content-Length or Transfer-Encoding makes it 400 or 501; RFC 9110 §5.6.3 makes HTAB optional ' +
      'whitespace like SP, and zproxy strips both (the value is unambiguous).',
    applies: (c) => {
      const r = differingRequest(c, 'nginx');
      if (r === null || !refusedWith(c, 'nginx', [400, 501])) return false;
      return ['host', 'content-length', 'transfer-encoding'].some((name) =>
        rawValues(r, name).some((v) => /^[ \t]*\t|\t[ \t]*$/.test(v)),
      );
    },
    example: 'POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length:\t3\r\n\r\nabc',
    control: 'POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\n\r\nabc',
  },
  {
    id: 'nginx-reg-name-characters',
    proxy: 'nginx',
    reason:
      "nginx takes only letters, digits, '-' and '.' in the host of an absolute-form target and answers " +
      "400 to the other reg-name characters of RFC 3986 §3.2.2 (sub-delims, '_', '~', pct-encoding); " +
      'zproxy accepts the RFC grammar and forwards that host as Host.',
    applies: (c) => {
      const r = differingRequest(c, 'nginx');
      const authority = r === null ? null : authorityOf(r.target);
      if (authority === null || authority.startsWith('[') || !refusedWith(c, 'nginx', [400])) return false;
      return /[^A-Za-z0-9.-]/.test(authority.replace(/:\d*$/, ''));
    },
    example: 'GET http://a_b.test/ HTTP/1.1\r\nHost: a_b.test\r\n\r\n',
    control: 'GET http://ab.test/ HTTP/1.1\r\nHost: ab.test\r\n\r\n',
  },
  {
    id: 'nginx-empty-host',
    proxy: 'nginx',
    reason:
      'nginx answers 400 to an empty Host field; RFC 9110 §7.2 allows it (a target without authority), ' +
      'and for an absolute-form target RFC 9112 §3.2.2 has the authority replace it, which zproxy does.',
    applies: (c) => {
      const r = differingRequest(c, 'nginx');
      return (
        r !== null && refusedWith(c, 'nginx', [400]) && rawValues(r, 'host').some((v) => v.trim() === '')
      );
    },
    example: 'GET http://a.test/ HTTP/1.1\r\nHost:\r\n\r\n',
    control: 'GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n',
  },
  {
    id: 'nginx-host-dots',
    proxy: 'nginx',
    reason:
      'nginx answers 400 to a host of "." or with ".." (in Host or an absolute-form target; it may use the ' +
      'host in file paths); both are valid reg-names (RFC 3986 §3.2.2) and zproxy routes on exact host ' +
      'names, forwarding the value as is.',
    applies: (c) => {
      const r = differingRequest(c, 'nginx');
      if (r === null || !refusedWith(c, 'nginx', [400])) return false;
      const authority = authorityOf(r.target);
      const hosts = [...rawValues(r, 'host'), ...(authority === null ? [] : [authority])];
      return hosts.some((v) => {
        const host = v.trim().replace(/:\d*$/, '');
        return host === '.' || host.includes('..');
      });
    },
    example: 'GET / HTTP/1.1\r\nHost: a..test\r\n\r\n',
    control: 'GET / HTTP/1.1\r\nHost: a.test\r\n\r\n',
  },
  {
    id: 'nginx-method-digits',
    proxy: 'nginx',
    reason:
      'nginx answers 400 to a method with a digit; a method is a token (RFC 9110 §9.1), zproxy takes ' +
      '[A-Z0-9_-] and forwards it (the origin answers 501 to a method it does not know).',
    applies: (c) => {
      const r = differingRequest(c, 'nginx');
      return r !== null && refusedWith(c, 'nginx', [400]) && /^[A-Z0-9_-]*[0-9][A-Z0-9_-]*$/.test(r.method);
    },
    example: 'M3 / HTTP/1.1\r\nHost: a.test\r\n\r\n',
    control: 'MX / HTTP/1.1\r\nHost: a.test\r\n\r\n',
  },
  {
    id: 'nginx-duplicate-content-length',
    proxy: 'nginx',
    reason:
      'nginx answers 400 to a repeated Content-Length line even with the same value; RFC 9110 §8.6 lets ' +
      'a recipient take identical values as one, which zproxy does (different values are a 400), and it ' +
      'forwards a single Content-Length.',
    applies: (c) => {
      const r = differingRequest(c, 'nginx');
      if (r === null || !refusedWith(c, 'nginx', [400])) return false;
      const values = rawValues(r, 'content-length').map((v) => v.trim());
      return (
        values.length > 1 && values.every((v) => /^\d{1,15}$/.test(v) && Number(v) === Number(values[0]))
      );
    },
    example: 'POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc',
    control: 'POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\n\r\nabc',
  },
  {
    id: 'nginx-trace',
    proxy: 'nginx',
    reason:
      'nginx answers 405 to TRACE by policy; TRACE is a standard method (RFC 9110 §9.3.8) and zproxy ' +
      'forwards methods without judging them (RFC 9110 §9.1), leaving it to the origin to refuse.',
    applies: (c) => differingRequest(c, 'nginx')?.method === 'TRACE' && refusedWith(c, 'nginx', [405]),
    example: 'TRACE / HTTP/1.1\r\nHost: a.test\r\n\r\n',
    control: 'GET / HTTP/1.1\r\nHost: a.test\r\n\r\n',
  },
  {
    id: 'nginx-empty-query',
    proxy: 'nginx',
    reason:
      'nginx drops the "?" that ends an absolute-form target without a path ("http://a?" goes out as ' +
      '"/"); zproxy forwards "/?": an empty query is not the same as none (RFC 3986 §6.2.3).',
    applies: (c) => {
      const { zproxy, other } = differingMeanings(c, 'nginx');
      const r = differingRequest(c, 'nginx');
      if (zproxy === null || other === null || r === null || !/^[A-Za-z]+:\/\/[^/?]*\?$/.test(r.target))
        return false;
      return zproxy.query === '?' && meaningKey({ ...other, query: '?' }) === meaningKey(zproxy);
    },
    example: 'GET http://a.test? HTTP/1.1\r\nHost: a.test\r\n\r\n',
    control: 'GET http://a.test/? HTTP/1.1\r\nHost: a.test\r\n\r\n',
  },
  {
    id: 'haproxy-query-without-path',
    proxy: 'haproxy',
    reason:
      'HAProxy answers 400 to an absolute-form target whose query follows the authority with no path ' +
      '("http://a?x"); the path may be empty there (RFC 3986 §3, path-abempty), and zproxy forwards ' +
      '"/?x" like nginx.',
    applies: (c) => {
      const r = differingRequest(c, 'haproxy');
      return r !== null && refusedWith(c, 'haproxy', [400]) && /^[A-Za-z]+:\/\/[^/?]*\?/.test(r.target);
    },
    example: 'GET http://a.test?x HTTP/1.1\r\nHost: a.test\r\n\r\n',
    control: 'GET http://a.test/?x HTTP/1.1\r\nHost: a.test\r\n\r\n',
  },
  {
    id: 'haproxy-absolute-form-host',
    proxy: 'haproxy',
    reason:
      'HAProxy answers 400 when an absolute-form target and the Host field name different hosts; RFC 9112 ' +
      '§3.2.2 has a server ignore Host and a proxy send the authority as Host, which zproxy does (like ' +
      'nginx), so the upstream sees one host, the one zproxy routed on.',
    applies: (c) => {
      const r = differingRequest(c, 'haproxy');
      const authority = r === null ? null : authorityOf(r.target);
      if (r === null || authority === null || !refusedWith(c, 'haproxy', [400])) return false;
      const scheme = r.target.slice(0, r.target.indexOf(':')).toLowerCase();
      const norm = (h: string) => {
        const lower = h.trim().toLowerCase();
        const def = scheme === 'https' ? ':443' : ':80';
        if (lower.endsWith(def)) return lower.slice(0, -def.length);
        return lower.endsWith(':') ? lower.slice(0, -1) : lower;
      };
      return rawValues(r, 'host').some((v) => norm(v) !== norm(authority));
    },
    example: 'GET http://a.test/ HTTP/1.1\r\nHost: b.test\r\n\r\n',
    control: 'GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n',
  },
  {
    id: 'haproxy-http10-body',
    proxy: 'haproxy',
    reason:
      'HAProxy answers 413 to an HTTP/1.0 GET, HEAD or DELETE with a body; Content-Length frames it ' +
      'unambiguously (RFC 9112 §6.2), so zproxy forwards it like nginx (a body there has no defined ' +
      'semantics, RFC 9110 §9.3, but it is not a framing problem).',
    applies: (c) => {
      const r = differingRequest(c, 'haproxy');
      return (
        r !== null &&
        refusedWith(c, 'haproxy', [413]) &&
        r.version === '1.0' &&
        ['GET', 'HEAD', 'DELETE'].includes(r.method) &&
        rawValues(r, 'content-length').some((v) => /^[ \t]*0*[1-9]/.test(v))
      );
    },
    example: 'GET / HTTP/1.0\r\nHost: a.test\r\nContent-Length: 3\r\n\r\nabc',
    control: 'GET / HTTP/1.0\r\nHost: a.test\r\n\r\n',
  },
];

/** The ids of the entries that explain a finding (one per proxy that differs), or null when none do. */
export function acceptedFor(c: FindingContext): string[] | null {
  const j = c.judgement;
  if (j.verdict === 'zproxy-forwards-ambiguous') return null;
  const z = completeKeys(j.summaries.zproxy);
  const ids: string[] = [];
  for (const p of ['nginx', 'haproxy'] as const) {
    const o = completeKeys(j.summaries[p]);
    if (z.length > 0 && isPrefix(z, o) && !partialBeyondOthers(j.summaries)) continue;
    const rule = ACCEPTED.find((a) => a.proxy === p && a.applies(c));
    if (rule === undefined) return null;
    ids.push(rule.id);
  }
  return ids;
}
