/**
 * Differential tests: the same inputs go to zproxy's HTTP/1.1 parser (head parser + chunked decoder, used
 * the way the connections use them) and to Node's own llhttp in strict mode. The accept/reject decision
 * must match, and when both accept, so must the method, target, version, fields, body and where the
 * message ends. Every known difference is listed below with its reason; zproxy may only be stricter
 * (reject what llhttp accepts), except for the few listed cases where llhttp departs from RFC 9110/9112,
 * and even then the input, rewritten to what llhttp accepts, must parse the same in both.
 */
import assert from 'node:assert/strict';
import { describe, type TestContext, test } from 'node:test';
import fc from 'fast-check';
import {
  FIELD_CONTENT_LENGTH,
  FIELD_DUPLICATE_CONTENT_LENGTH,
  FIELD_TRANSFER_ENCODING,
} from '../../src/http/fields.ts';
import {
  F_LINE_END,
  F_NAME_START,
  F_VALUE_END,
  F_VALUE_START,
  FIELD_STRIDE,
  parseRequestHead,
  parseResponseHead,
  RequestHead,
  ResponseHead,
} from '../../src/http1/parse-head.ts';
import { chunkedCases, requestCases, responseCases } from '../fixtures/http1-cases.ts';
import {
  applyMutations,
  BIG_LIMITS,
  decodeChunked,
  latin1,
  mutation,
  validRequest,
  validResponse,
} from '../fixtures/http1-gen.ts';
import {
  LLHTTP_VERSION,
  type LlhttpMessage,
  llhttpMethods,
  llhttpRequest,
  llhttpResponse,
} from '../fixtures/llhttp.ts';

/** Fixed seed and run counts; ZP_FUZZ_SEED / ZP_FUZZ_SCALE explore further (not for CI). */
const SEED = Number(process.env.ZP_FUZZ_SEED ?? 0xd1ff);
const SCALE = Number(process.env.ZP_FUZZ_SCALE ?? 1);
const params = (numRuns: number) => ({ seed: SEED, numRuns: Math.ceil(numRuns * SCALE) });

type Stage = 'head-reject' | 'incomplete-head' | 'body-reject' | 'incomplete-body' | 'complete';

/** What zproxy makes of a whole input: the first message only. */
interface ZOutcome {
  stage: Stage;
  error: string;
  status: number;
  method: string;
  target: string;
  version: string;
  headers: string[];
  body: string;
  /** Offset just past the head (accepted heads) and just past the message (complete messages). */
  headEnd: number;
  end: number;
  /** Field lines (start, end) of the Content-Length fields after the first one. */
  extraContentLength: [number, number][];
  chunked: boolean;
  /** Transfer-Encoding field lines: [line start, value start, value end, line end]. */
  transferEncoding: [number, number, number, number][];
  /** Offset of the method (requests). */
  methodStart: number;
  /** The status code (responses). */
  statusCode: number;
}

interface LOutcome {
  stage: Stage;
  msg: LlhttpMessage | null;
  error: string;
}

function zproxyOutcome(input: Buffer, kind: 'request' | 'response'): ZOutcome {
  const head = kind === 'request' ? new RequestHead() : new ResponseHead();
  const r =
    kind === 'request'
      ? parseRequestHead(input, 0, input.length, BIG_LIMITS, head as RequestHead)
      : parseResponseHead(input, 0, input.length, BIG_LIMITS, head as ResponseHead);
  const out: ZOutcome = {
    stage: 'incomplete-head',
    error: head.error,
    status: r,
    method: '',
    target: '',
    version: '',
    headers: [],
    body: '',
    headEnd: -1,
    end: -1,
    extraContentLength: [],
    transferEncoding: [],
    chunked: false,
    methodStart: head.start,
    statusCode: 0,
  };
  if (r < 0) out.stage = 'head-reject';
  if (r <= 0) return out;
  out.headEnd = r;
  out.chunked = head.chunked;
  out.version = `1.${head.versionMinor}`;
  out.headers = head.entries().flat();
  if (head instanceof RequestHead) {
    out.method = head.method;
    out.target = head.target;
  } else {
    out.statusCode = (head as ResponseHead).status;
  }
  let seenCl = false;
  for (let i = 0; i < head.fieldCount; i++) {
    const o = i * FIELD_STRIDE;
    const f = head.fields;
    if (head.fieldKind(i) === FIELD_TRANSFER_ENCODING)
      out.transferEncoding.push([
        f[o + F_NAME_START]!,
        f[o + F_VALUE_START]!,
        f[o + F_VALUE_END]!,
        f[o + F_LINE_END]!,
      ]);
    // The parser marks every repeated Content-Length line (same value) as a duplicate to forward once.
    const k = head.fieldKind(i);
    if (k === FIELD_DUPLICATE_CONTENT_LENGTH) {
      assert.ok(seenCl, 'a duplicate Content-Length line follows a first one');
      out.extraContentLength.push([head.fields[o + F_NAME_START]!, head.fields[o + F_LINE_END]!]);
    }
    if (k === FIELD_CONTENT_LENGTH) seenCl = true;
  }
  const noBody =
    kind === 'response' && (out.statusCode < 200 || out.statusCode === 204 || out.statusCode === 304);
  if (noBody) {
    out.stage = 'complete';
    out.end = r;
  } else if (head.chunked) {
    const d = decodeChunked(input, r);
    out.stage = d.state === 'done' ? 'complete' : d.state === 'error' ? 'body-reject' : 'incomplete-body';
    out.error = d.error;
    out.body = d.data;
    out.end = d.end;
  } else if (head.contentLength >= 0) {
    const available = input.length - r;
    out.stage = available >= head.contentLength ? 'complete' : 'incomplete-body';
    out.body = input.latin1Slice(r, r + Math.min(available, head.contentLength));
    out.end = r + head.contentLength;
  } else if (kind === 'request') {
    out.stage = 'complete';
    out.end = r;
  } else {
    // A response delimited by the end of the connection.
    out.stage = 'incomplete-body';
    out.body = input.latin1Slice(r, input.length);
  }
  return out;
}

function llhttpOutcome(input: Buffer, kind: 'request' | 'response'): LOutcome {
  const res = kind === 'request' ? llhttpRequest(input) : llhttpResponse(input);
  const msg = res.messages[0] ?? null;
  const error = res.error === null ? '' : `${res.error.code}: ${res.error.reason}`;
  let stage: Stage;
  if (msg === null || !msg.headersComplete) stage = res.error ? 'head-reject' : 'incomplete-head';
  else if (msg.complete) stage = 'complete';
  else stage = res.error ? 'body-reject' : 'incomplete-body';
  return { stage, msg, error };
}

const accepted = (s: Stage) => s === 'complete' || s === 'incomplete-body';
const rejected = (s: Stage) => s === 'head-reject' || s === 'body-reject';

/** The request-line (or status line) as sent, without leading empty lines. */
function startLine(input: string): string {
  const s = input.replace(/^(\r\n)+/, '');
  const lf = s.indexOf('\n');
  return lf === -1 ? s : s.slice(0, lf);
}

interface Context {
  kind: 'request' | 'response';
  input: string;
  z: ZOutcome;
  l: LOutcome;
}

// ============================================================== documented differences

interface Stricter {
  id: string;
  reason: string;
  /** True when this explains why zproxy rejected an input that llhttp accepted. */
  explains(c: Context): boolean;
}

const headerNames = (m: LlhttpMessage) => m.headers.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
const zerr = (c: Context, ...errors: string[]) => c.z.stage === 'head-reject' && errors.includes(c.z.error);

/** Inputs zproxy rejects although llhttp accepts them. Each is deliberate. */
export const STRICTER: readonly Stricter[] = [
  {
    id: 'missing-host',
    reason:
      'RFC 9112 §3.2: a server MUST answer 400 to an HTTP/1.1 request without Host. llhttp leaves this to ' +
      "the application (node:http checks it itself, 'requireHostHeader').",
    explains: (c) => zerr(c, 'missing Host') && !headerNames(c.l.msg!).includes('host'),
  },
  {
    id: 'several-host',
    reason: 'RFC 9112 §3.2: 400 for more than one Host field line; llhttp does not look at Host.',
    explains: (c) =>
      zerr(c, 'several Host fields') && headerNames(c.l.msg!).filter((n) => n === 'host').length > 1,
  },
  {
    id: 'host-syntax',
    reason:
      'RFC 9110 §7.2 / RFC 3986 §3.2.2: Host is uri-host [":" port]; zproxy routes on it, so anything else ' +
      '(userinfo, "/", quotes, braces, obs-text...) is a 400. llhttp does not validate Host.',
    explains: (c) => zerr(c, 'invalid Host'),
  },
  {
    id: 'http-version',
    reason:
      'zproxy speaks HTTP/1.0 and HTTP/1.1 only (RFC 9112 §2.3); other well-formed versions get 505 ' +
      '(HTTP/0.9, HTTP/2.0), which llhttp parses as 1.x-like messages; llhttp also takes a request-line ' +
      'without any version as HTTP/0.9 (with fields after it!), zproxy answers 400.',
    explains: (c) =>
      c.z.stage === 'head-reject' &&
      !['1.0', '1.1'].includes(`${c.l.msg!.versionMajor}.${c.l.msg!.versionMinor}`),
  },
  {
    id: 'request-line-whitespace',
    reason:
      'RFC 9112 §3: method SP request-target SP HTTP-version, one SP each. llhttp skips extra spaces ' +
      '("GET  /  HTTP/1.1"); parsers that split on whitespace differently would see another target.',
    explains: (c) => c.kind === 'request' && c.z.stage === 'head-reject' && / {2}/.test(startLine(c.input)),
  },
  {
    id: 'target-backslash',
    reason:
      'A backslash is not a URI character (RFC 3986 §2); some upstreams read it as "/", which allows path ' +
      'confusion. llhttp accepts it.',
    explains: (c) => zerr(c, 'invalid request-target') && c.l.msg!.url.includes('\\'),
  },
  {
    id: 'target-fragment',
    reason:
      'RFC 9112 §3.2: a request-target has no fragment. Components that strip "#..." and components that ' +
      'do not would see different paths ("/public#/../admin"). llhttp accepts fragments.',
    explains: (c) => zerr(c, 'invalid request-target') && c.l.msg!.url.includes('#'),
  },
  {
    id: 'target-form',
    reason:
      'RFC 9112 §3.2.1-3.2.4: asterisk-form only for OPTIONS and only "*", authority-form only for CONNECT ' +
      'and only host:port; RFC 9110 §4.2.4: userinfo in an http(s) URI is an error. llhttp accepts ' +
      '"GET *", "OPTIONS *x", "CONNECT /", "CONNECT host", "http://user@host/" and "http://".',
    explains: (c) => zerr(c, 'request-target not in origin, absolute, authority or asterisk form'),
  },
  {
    id: 'transfer-encoding-http10',
    reason:
      'RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message means faulty framing; llhttp decodes it ' +
      'as chunked.',
    explains: (c) => zerr(c, 'Transfer-Encoding in an HTTP/1.0 message'),
  },
  {
    id: 'transfer-codings',
    reason:
      'zproxy implements no transfer coding but chunked: "gzip, chunked" is a 501 (RFC 9112 §6.1, a server ' +
      'SHOULD answer 501 to a coding it does not understand); llhttp passes the coded body on. In a ' +
      'response, such a body would have to be forwarded coded: 502.',
    explains: (c) =>
      zerr(c, 'transfer codings other than chunked are not supported') &&
      headerNames(c.l.msg!).includes('transfer-encoding'),
  },
  {
    id: 'transfer-encoding-lists',
    reason:
      'zproxy accepts exactly one Transfer-Encoding field whose value is "chunked" (or codings then ' +
      'chunked, see transfer-codings). Several fields, empty list elements (",chunked") and a final coding ' +
      'that is not chunked in a response (RFC 9112 §6.3: read until close) are rejected as ambiguous; ' +
      'llhttp combines and accepts them.',
    explains: (c) =>
      zerr(c, 'several Transfer-Encoding fields', 'Transfer-Encoding other than one final chunked') &&
      headerNames(c.l.msg!).includes('transfer-encoding'),
  },
  {
    id: 'expect',
    reason:
      'RFC 9110 §10.1.1: a server MAY answer 417 to an expectation it does not support; zproxy supports ' +
      'only 100-continue. llhttp does not look at Expect.',
    explains: (c) => zerr(c, 'unsupported expectation'),
  },
  {
    id: 'chunk-size-digits',
    reason:
      'Chunk sizes are limited to 15 hex digits (leading zeros included) and to 2^53 - 1 so that byte ' +
      'counts stay exact; llhttp accepts up to 2^64 - 1 and any number of leading zeros.',
    explains: (c) => c.z.stage === 'body-reject' && c.z.error === 'chunk size too large',
  },
  {
    id: 'content-length-digits',
    reason:
      'zproxy takes Content-Length values of at most 15 digits (leading zeros included), so that lengths ' +
      'stay exact in a double; llhttp accepts up to 2^64 - 1.',
    explains: (c) =>
      zerr(c, 'malformed Content-Length') &&
      c.l.msg!.headers.some(
        (v, i) => i % 2 === 1 && /^\d{16,}$/.test(v) && /^content-length$/i.test(c.l.msg!.headers[i - 1]!),
      ),
  },
  {
    id: 'chunk-extension-length',
    reason: 'zproxy bounds the extensions of one chunk size line to 4096 bytes; llhttp does not bound them.',
    explains: (c) => c.z.stage === 'body-reject' && c.z.error === 'chunk extension too long',
  },
  {
    id: 'request-leading-bare-cr-lf',
    reason:
      'RFC 9112 §2.2 allows empty lines (CRLF) before a request-line; llhttp also skips a lone CR or LF ' +
      'there. zproxy skips only CRLF pairs (a bare CR or LF is never a line ending, RFC 9112 §2.2).',
    explains: (c) => {
      const lead = /^[\r\n]+/.exec(c.input);
      return (
        c.kind === 'request' && c.z.stage === 'head-reject' && lead !== null && !/^(\r\n)*$/.test(lead[0])
      );
    },
  },
  {
    id: 'upgrade-body',
    reason:
      'llhttp stops at the head of an upgrade request (CONNECT, or Upgrade with Connection: upgrade) and ' +
      'hands the rest to the application unparsed; zproxy still decodes a body announced by ' +
      'Content-Length or Transfer-Encoding (content in a CONNECT request has no defined semantics, RFC ' +
      '9110 §9.3.6), so it can reject bytes llhttp never looked at.',
    explains: (c) => c.z.stage === 'body-reject' && c.l.msg!.upgrade,
  },
  {
    id: 'framing-trailer-fields',
    reason:
      'RFC 9110 §6.5.1: framing fields cannot be trailers; zproxy rejects Content-Length and ' +
      'Transfer-Encoding in a trailer section. llhttp rejects the same, except a Transfer-Encoding ' +
      'trailer in a response.',
    explains: (c) => c.z.stage === 'body-reject' && c.z.error === 'framing field in the trailer section',
  },
  {
    id: 'chunk-extension-syntax',
    reason:
      'RFC 9112 §7.1.1: a chunk extension is ";" token [ "=" ( token / quoted-string ) ]. llhttp accepts ' +
      'empty names and values (";=x", ";;a", ";a="); zproxy rejects them.',
    explains: (c) => c.z.stage === 'body-reject' && c.z.error === 'invalid chunk extension',
  },
  {
    id: 'status-code-range',
    reason:
      'RFC 9110 §15: status codes outside 100..599 are invalid (a client treats them as a server error); ' +
      'zproxy answers 502. llhttp accepts any three digits.',
    explains: (c) =>
      zerr(c, 'invalid status code') && (c.l.msg!.statusCode < 100 || c.l.msg!.statusCode > 599),
  },
  {
    id: 'reason-phrase-controls',
    reason:
      'RFC 9112 §4: reason-phrase = *( HTAB / SP / VCHAR / obs-text ); llhttp accepts other control ' +
      'characters in it.',
    explains: (c) =>
      zerr(c, 'invalid status line') &&
      /[\x00-\x08\x0a-\x1f\x7f]/.test(c.l.msg!.statusMessage + startLine(c.input).replace(/\r$/, '')),
  },
  {
    id: 'response-leading-crlf',
    reason:
      'RFC 9112 §2.2 lets a server skip empty lines before a request-line; nothing allows it before a ' +
      'status line. llhttp skips them in responses too; zproxy answers 502.',
    explains: (c) => c.kind === 'response' && zerr(c, 'invalid status line') && /^\r?\n/.test(c.input),
  },
];

interface Lenient {
  id: string;
  reason: string;
  /** When this applies to an input zproxy accepts and llhttp rejects: the input in the form llhttp accepts. */
  normalize(c: Context): string | null;
}

/** Inputs zproxy accepts although llhttp rejects them, where llhttp departs from RFC 9110/9112. */
export const MORE_LENIENT: readonly Lenient[] = [
  {
    id: 'extension-method',
    reason:
      'RFC 9110 §9.1 / §16.1: methods are an open set of tokens, and a proxy forwards methods it does not ' +
      'know (the origin answers 501 if it must). llhttp accepts only its fixed list. zproxy takes ' +
      '[A-Z0-9_-]{1,32}. The method does not change framing; with a method llhttp knows, both must agree.',
    normalize: (c) => {
      if (c.kind !== 'request' || !accepted(c.z.stage) || llhttpMethods().includes(c.z.method)) return null;
      const s = c.z.methodStart;
      return `${c.input.slice(0, s)}POST${c.input.slice(s + c.z.method.length)}`;
    },
  },
  {
    id: 'duplicate-content-length',
    reason:
      'RFC 9110 §8.6: a recipient MAY accept several Content-Length field lines with the same value as ' +
      'that value (zproxy already rejects different values). llhttp rejects any duplicate. The length is ' +
      'unambiguous; without the duplicates both must agree.',
    normalize: (c) => {
      if (!accepted(c.z.stage) || c.z.extraContentLength.length === 0) return null;
      let s = c.input;
      for (const [from, to] of [...c.z.extraContentLength].reverse()) s = s.slice(0, from) + s.slice(to);
      return s;
    },
  },
  {
    id: 'transfer-encoding-htab',
    reason:
      'RFC 9110 §5.5: OWS (SP / HTAB) around a field value is not part of it, so "chunked<HTAB>" is ' +
      'chunked. llhttp does not recognise chunked when an HTAB follows it: it rejects such a request and ' +
      'reads such a response until the connection closes. zproxy decodes chunked and re-frames the body ' +
      'itself, never forwarding the Transfer-Encoding it received; with the whitespace removed both agree.',
    normalize: (c) => {
      if (c.z.headEnd < 0) return null;
      let s = c.input;
      let changed = false;
      for (const [lineStart, valueStart, valueEnd, lineEnd] of [...c.z.transferEncoding].reverse()) {
        const line = s.slice(lineStart, lineEnd);
        if (!line.includes('\t')) continue;
        const name = s.slice(lineStart, s.indexOf(':', lineStart));
        s = `${s.slice(0, lineStart)}${name}: ${s.slice(valueStart, valueEnd)}\r\n${s.slice(lineEnd)}`;
        changed = true;
      }
      return changed ? s : null;
    },
  },
  {
    id: 'chunk-extension-bws',
    reason:
      'RFC 9112 §7.1.1: chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS value ] ), and RFC 9110 §5.6.3: a ' +
      'recipient MUST accept BWS. llhttp rejects whitespace in a chunk size line. Where the whitespace goes ' +
      'is fixed by the grammar (the size ends at the first non-hex byte); without it both must agree.',
    normalize: (c) => {
      if (!accepted(c.z.stage) || !c.z.chunked) return null;
      const body = c.input.slice(c.z.headEnd);
      const stripped = stripChunkLineWhitespace(body);
      return stripped === body ? null : c.input.slice(0, c.z.headEnd) + stripped;
    },
  },
];

/** Removes SP / HTAB outside quoted strings from the size lines of a chunked body (other bytes as they are). */
function stripChunkLineWhitespace(body: string): string {
  let out = '';
  let i = 0;
  for (;;) {
    const lineEnd = body.indexOf('\r\n', i);
    const line = lineEnd === -1 ? body.slice(i) : body.slice(i, lineEnd);
    let clean = '';
    let quoted = false;
    let escaped = false;
    for (const ch of line) {
      if (quoted) {
        clean += ch;
        if (escaped) escaped = false;
        else if (ch === '\\') escaped = true;
        else if (ch === '"') quoted = false;
      } else if (ch !== ' ' && ch !== '\t') {
        if (ch === '"') quoted = true;
        clean += ch;
      }
    }
    if (lineEnd === -1) return out + clean;
    out += `${clean}\r\n`;
    i = lineEnd + 2;
    const size = Number.parseInt(/^[0-9a-fA-F]*/.exec(clean)![0] || 'x', 16);
    if (!(size > 0)) return out + body.slice(i);
    out += body.slice(i, i + size + 2);
    i += size + 2;
    if (i >= body.length) return out;
  }
}

// ============================================================== the comparison

interface Tally {
  agreeAccept: number;
  agreeReject: number;
  agreeIncomplete: number;
  zproxyWaits: number;
  byRule: Map<string, number>;
}

const newTally = (): Tally => ({
  agreeAccept: 0,
  agreeReject: 0,
  agreeIncomplete: 0,
  zproxyWaits: 0,
  byRule: new Map(),
});

function describeOutcomes(c: Context): string {
  const l = c.l.msg;
  return [
    `input: ${JSON.stringify(c.input)}`,
    `zproxy: ${c.z.stage} ${c.z.error} ${JSON.stringify({ method: c.z.method, target: c.z.target, version: c.z.version, headers: c.z.headers, body: c.z.body, end: c.z.end })}`,
    `llhttp: ${c.l.stage} ${c.l.error} ${
      l === null
        ? ''
        : JSON.stringify({
            method: l.method,
            url: l.url,
            version: `${l.versionMajor}.${l.versionMinor}`,
            status: l.statusCode,
            headers: l.headers,
            body: Buffer.concat(l.body).toString('latin1'),
            upgrade: l.upgrade,
          })
    }`,
  ].join('\n');
}

/** Where llhttp ends the first message: the shortest prefix after which it is complete. */
function llhttpEnd(input: Buffer, kind: 'request' | 'response', from: number): number {
  let lo = from;
  let hi = input.length;
  const complete = (n: number) => llhttpOutcome(input.subarray(0, n), kind).stage === 'complete';
  if (!complete(hi)) return -1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (complete(mid)) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

interface FramingDifference {
  id: string;
  reason: string;
  applies(c: Context): boolean;
}

/** Messages both accept where llhttp departs from RFC 9110/9112 on where the message ends. */
export const FRAMING: readonly FramingDifference[] = [
  {
    id: 'interim-response-content',
    reason:
      'RFC 9110 §15.2: a 1xx response ends with its header section and has no content. llhttp reads a ' +
      'body (Content-Length or chunked) for 1xx codes other than 100-103; zproxy never does.',
    applies: (c) => c.kind === 'response' && c.z.statusCode >= 104 && c.z.statusCode < 200,
  },
];

/** Both accepted the head: everything they report must be the same. Returns the mismatches. */
function compareAccepted(c: Context): string[] {
  const { z } = c;
  const l = c.l.msg!;
  const out: string[] = [];
  const eq = (what: string, a: unknown, b: unknown) => {
    if (JSON.stringify(a) !== JSON.stringify(b))
      out.push(`${what}: zproxy ${JSON.stringify(a)}, llhttp ${JSON.stringify(b)}`);
  };
  if (c.kind === 'request') {
    eq('method', z.method, l.method);
    eq('target', z.target, l.url);
  } else {
    eq('status', z.statusCode, l.statusCode);
  }
  eq('version', z.version, `${l.versionMajor}.${l.versionMinor}`);
  eq('fields', z.headers, l.headers);
  if (l.upgrade) return out; // llhttp hands the rest of the connection over; no body to compare
  if (FRAMING.some((d) => d.applies(c))) return out;
  eq('stage', z.stage, c.l.stage);
  const lBody = Buffer.concat(l.body).toString('latin1');
  if (z.stage === 'complete' && c.l.stage === 'complete') {
    eq('body', z.body, lBody);
    eq('end of message', z.end, llhttpEnd(latin1(c.input), c.kind, z.headEnd));
  } else if (z.stage === 'incomplete-body' && c.l.stage === 'incomplete-body') {
    eq('body so far', z.body, lBody);
  }
  return out;
}

/**
 * Rewrites an input with every documented llhttp departure (MORE_LENIENT) that applies, into the form
 * llhttp parses per the RFC; null when none applies. zproxy must parse the rewritten input the same way.
 */
function normaliseLenient(c: Context): { input: string; applied: string[] } | null {
  let normalised = c.input;
  const applied: string[] = [];
  for (const rule of MORE_LENIENT) {
    const z = zproxyOutcome(latin1(normalised), c.kind);
    const n = rule.normalize({ ...c, input: normalised, z });
    if (n !== null) {
      normalised = n;
      applied.push(rule.id);
    }
  }
  if (applied.length === 0) return null;
  const before = c.z;
  const after = zproxyOutcome(latin1(normalised), c.kind);
  if (after.stage !== before.stage || after.body !== before.body || after.target !== before.target) {
    assert.fail(
      `normalising (${applied}) changed zproxy's parse: ${JSON.stringify(after)}\n${describeOutcomes(c)}`,
    );
  }
  return { input: normalised, applied };
}

/**
 * Compares one input. Throws (with both outcomes) on an undocumented difference; counts the documented
 * ones by id in `tally`.
 */
function compare(input: string, kind: 'request' | 'response', tally: Tally, depth = 0): void {
  const buf = latin1(input);
  const c: Context = { kind, input, z: zproxyOutcome(buf, kind), l: llhttpOutcome(buf, kind) };
  const zs = c.z.stage;
  const ls = c.l.stage;
  const fail = (why: string): never => assert.fail(`${why}\n${describeOutcomes(c)}`);

  // llhttp accepted the head and the message (or is still reading its body), zproxy did not.
  if (rejected(zs) && accepted(ls)) {
    const rule = STRICTER.find((r) => r.explains(c));
    if (rule !== undefined) {
      tally.byRule.set(rule.id, (tally.byRule.get(rule.id) ?? 0) + 1);
      return;
    }
    // llhttp may have accepted only because of one of its documented departures (it reads a response
    // with "chunked<HTAB>" until close, so it never sees the invalid chunked body zproxy rejects).
    const n = depth > 2 ? null : normaliseLenient(c);
    if (n === null) fail('zproxy rejects what llhttp accepts, and no documented difference explains it');
    compare(n!.input, kind, tally, depth + 1);
    for (const id of n!.applied) tally.byRule.set(id, (tally.byRule.get(id) ?? 0) + 1);
    return;
  }
  if (rejected(zs)) {
    tally.agreeReject++;
    return;
  }
  if (zs === 'incomplete-head') {
    if (c.l.msg?.headersComplete) fail('llhttp has a complete head where zproxy is still waiting');
    if (ls === 'incomplete-head') tally.agreeIncomplete++;
    else tally.zproxyWaits++; // zproxy waits for more bytes (then its limits), llhttp already refused
    return;
  }
  // zproxy accepted the head.
  if (ls === 'incomplete-head') fail('zproxy accepted a head that llhttp still reads');
  const framing = FRAMING.find((d) => d.applies(c));
  if (framing !== undefined && c.l.msg!.headersComplete) {
    const mismatches = compareAccepted(c);
    if (mismatches.length > 0) fail(`both accept the head but disagree:\n  ${mismatches.join('\n  ')}`);
    tally.byRule.set(framing.id, (tally.byRule.get(framing.id) ?? 0) + 1);
    tally.agreeAccept++;
    return;
  }
  // The smuggling direction: zproxy accepts what llhttp rejects, or both accept and parse it differently.
  // Only documented RFC departures of llhttp may explain it, and the input rewritten to what llhttp
  // accepts must then agree in both parsers.
  const mismatches = rejected(ls) ? [] : compareAccepted(c);
  if (rejected(ls) || mismatches.length > 0) {
    const what = rejected(ls)
      ? 'zproxy accepts what llhttp rejects'
      : `both accept but disagree:\n  ${mismatches.join('\n  ')}\n`;
    if (depth > 2) fail(`${what} (even after normalisation)`);
    const n = normaliseLenient(c);
    if (n === null) fail(`${what} (smuggling risk)`);
    compare(n!.input, kind, tally, depth + 1);
    for (const id of n!.applied) tally.byRule.set(id, (tally.byRule.get(id) ?? 0) + 1);
    return;
  }
  tally.agreeAccept++;
}

function report(t: TestContext, name: string, tally: Tally): void {
  const rules = [...tally.byRule].map(([id, n]) => `${id}=${n}`).join(' ');
  t.diagnostic(
    `${name}: agree accept=${tally.agreeAccept} reject=${tally.agreeReject} incomplete=${tally.agreeIncomplete}, ` +
      `zproxy waits=${tally.zproxyWaits}; documented differences: ${rules || 'none'}`,
  );
}

// ============================================================== tests

describe(`differential: zproxy vs llhttp ${LLHTTP_VERSION} (strict)`, () => {
  test('every documented difference has an id and a reason', () => {
    for (const d of [...STRICTER, ...MORE_LENIENT, ...FRAMING]) {
      assert.match(d.id, /^[a-z0-9-]+$/);
      assert.ok(d.reason.length > 40, d.id);
    }
    const all = [...STRICTER, ...MORE_LENIENT, ...FRAMING];
    assert.equal(new Set(all.map((d) => d.id)).size, all.length);
  });

  test('each difference is real: one example per rule', () => {
    // zproxy rejects these; llhttp accepts them (if llhttp changes, revisit the list).
    const stricter: Record<string, [kind: 'request' | 'response', raw: string]> = {
      'missing-host': ['request', 'GET / HTTP/1.1\r\n\r\n'],
      'several-host': ['request', 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n'],
      'host-syntax': ['request', 'GET / HTTP/1.1\r\nHost: a{b}\r\n\r\n'],
      'http-version': ['request', 'GET / HTTP/2.0\r\nHost: a\r\n\r\n'],
      'request-line-whitespace': ['request', 'GET  / HTTP/1.1\r\nHost: a\r\n\r\n'],
      'target-backslash': ['request', 'GET /a\\b HTTP/1.1\r\nHost: a\r\n\r\n'],
      'target-fragment': ['request', 'GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n'],
      'target-form': ['request', 'GET * HTTP/1.1\r\nHost: a\r\n\r\n'],
      'transfer-encoding-http10': [
        'request',
        'POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
      ],
      'transfer-codings': [
        'request',
        'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n',
      ],
      'transfer-encoding-lists': [
        'request',
        'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ,chunked\r\n\r\n0\r\n\r\n',
      ],
      expect: ['request', 'GET / HTTP/1.1\r\nHost: a\r\nExpect: x\r\n\r\n'],
      'content-length-digits': [
        'request',
        'GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0000000000000000\r\n\r\n',
      ],
      'chunk-extension-length': [
        'request',
        `POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1;a=${'b'.repeat(5000)}\r\nx\r\n0\r\n\r\n`,
      ],
      'request-leading-bare-cr-lf': ['request', '\r\n\rGET / HTTP/1.1\r\nHost: a\r\n\r\n'],
      'upgrade-body': [
        'request',
        'CONNECT a:1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n',
      ],
      'chunk-size-digits': [
        'request',
        'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000001\r\nx\r\n0\r\n\r\n',
      ],
      'chunk-extension-syntax': [
        'request',
        'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1;=x\r\nx\r\n0\r\n\r\n',
      ],
      'framing-trailer-fields': [
        'response',
        'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n',
      ],
      'status-code-range': ['response', 'HTTP/1.1 600 X\r\nContent-Length: 0\r\n\r\n'],
      'reason-phrase-controls': ['response', 'HTTP/1.1 200 \x01\r\nContent-Length: 0\r\n\r\n'],
      'response-leading-crlf': ['response', '\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'],
    };
    assert.deepEqual(Object.keys(stricter).sort(), STRICTER.map((d) => d.id).sort());
    for (const [id, [kind, raw]] of Object.entries(stricter)) {
      const tally = newTally();
      compare(raw, kind, tally);
      assert.deepEqual([...tally.byRule.keys()], [id], `${id}: ${JSON.stringify(raw)}`);
    }
    const lenient: Record<string, string> = {
      'extension-method': 'FOO / HTTP/1.1\r\nHost: a\r\n\r\n',
      'duplicate-content-length':
        'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx',
      'transfer-encoding-htab':
        'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\t\r\n\r\n1\r\nx\r\n0\r\n\r\n',
      'chunk-extension-bws':
        'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1 ; a = b\r\nx\r\n0\r\n\r\n',
    };
    assert.deepEqual(Object.keys(lenient).sort(), MORE_LENIENT.map((d) => d.id).sort());
    for (const [id, raw] of Object.entries(lenient)) {
      const tally = newTally();
      compare(raw, 'request', tally);
      assert.deepEqual([...tally.byRule.keys()], [id], `${id}: ${JSON.stringify(raw)}`);
      assert.equal(tally.agreeAccept, 1);
    }
    const tally = newTally();
    compare('HTTP/1.1 150 X\r\nContent-Length: 1\r\n\r\nz', 'response', tally);
    assert.deepEqual([...tally.byRule.keys()], ['interim-response-content']);
    // A response with "chunked<HTAB>": llhttp reads it until the connection closes, zproxy decodes it.
    const htab = newTally();
    compare('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\t\r\n\r\n1\r\nx\r\n0\r\n\r\n', 'response', htab);
    assert.deepEqual([...htab.byRule.keys()], ['transfer-encoding-htab']);
    assert.equal(htab.agreeAccept, 1);
    // ... and when its chunked body is invalid, zproxy rejects it where llhttp still reads.
    const htabBad = newTally();
    compare('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\t\r\n\r\nzz\r\n', 'response', htabBad);
    assert.deepEqual([...htabBad.byRule.keys()], ['transfer-encoding-htab']);
    assert.equal(htabBad.agreeReject, 1);
  });

  test('the shared request case table', (t) => {
    const tally = newTally();
    for (const c of requestCases) compare(c.raw, 'request', tally);
    report(t, 'request cases', tally);
  });

  test('the shared response case table', (t) => {
    const tally = newTally();
    for (const c of responseCases) compare(c.raw, 'response', tally);
    report(t, 'response cases', tally);
  });

  test('the shared chunked case table, as request bodies', (t) => {
    const tally = newTally();
    for (const c of chunkedCases) {
      if (c.maxTrailerBytes !== undefined) continue;
      compare(`POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n${c.raw}`, 'request', tally);
    }
    report(t, 'chunked cases', tally);
  });

  test('generated valid requests', (t) => {
    const tally = newTally();
    fc.assert(
      fc.property(validRequest({ duplicateContentLength: true }), fc.string({ maxLength: 8 }), (g, after) => {
        compare(g.raw + after, 'request', tally);
      }),
      params(1500),
    );
    report(t, 'valid requests', tally);
    assert.ok(tally.agreeAccept > 1000, `only ${tally.agreeAccept} accepted by both`);
  });

  test('mutated requests', (t) => {
    const tally = newTally();
    fc.assert(
      fc.property(validRequest(), fc.array(mutation, { minLength: 1, maxLength: 4 }), (g, muts) => {
        compare(applyMutations(g.raw, muts), 'request', tally);
      }),
      params(5000),
    );
    report(t, 'mutated requests', tally);
    assert.ok(
      tally.agreeReject > 500 && tally.agreeAccept > 500,
      'both accepted and rejected inputs were compared',
    );
  });

  test('framing field variants (request smuggling classes)', (t) => {
    const tally = newTally();
    /** Mostly the valid spellings, sometimes a twisted one. */
    const pick = (usual: string[], odd: string[]) =>
      fc.oneof(
        { weight: 3, arbitrary: fc.constantFrom(...usual) },
        { weight: 1, arbitrary: fc.constantFrom(...odd) },
      );
    const names = pick(
      ['Transfer-Encoding', 'transfer-encoding', 'Content-Length', 'content-length'],
      [
        'TRANSFER-ENCODING',
        'Transfer-Encoding ',
        'Transfer_Encoding',
        'Content-Length ',
        ' Content-Length',
        'Content-Length\t',
      ],
    );
    const separators = pick([':', ': ', ':\t'], [': \t ', ':\x0b', ':\x00']);
    const values = pick(
      ['chunked', 'Chunked', '0', '5', '05'],
      [
        'chunked ',
        'chunked\t',
        '"chunked"',
        'chunked, identity',
        'identity, chunked',
        'gzip, chunked',
        'chunked;q=1',
        'chunk',
        'chunked\x00',
        'xchunked',
        ', chunked',
        'chunked,',
        '\xa0chunked',
        '+5',
        '-5',
        '5,5',
        '5, 6',
        '0x5',
        '1e1',
        '5\x0b',
        '99999999999999999999',
        '',
      ],
    );
    const endings = pick(['\r\n'], ['\n', '\r', '\r\n ', '\r\n\t']);
    const line = fc.tuple(names, separators, values, endings).map((p) => p.join(''));
    const bodies = [
      '',
      'hello',
      '5\r\nhello\r\n0\r\n\r\n',
      '5;a=b\r\nhello\r\n0\r\n\r\n',
      '5 \r\nhello\r\n0\r\n\r\n',
      '5\nhello\n0\n\n',
      '0\r\n\r\n',
      '05\r\nhello\r\n0\r\nX: y\r\n\r\n',
      'ffffffffffffffff1\r\n',
    ];
    const next = 'GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n';
    fc.assert(
      fc.property(
        fc.constantFrom('POST / HTTP/1.1', 'POST / HTTP/1.0', 'GET / HTTP/1.1'),
        fc.array(line, { minLength: 1, maxLength: 3 }),
        fc.nat(3),
        fc.constantFrom(...bodies),
        (requestLine, lines, hostAt, body) => {
          const fields = [...lines];
          fields.splice(hostAt % (fields.length + 1), 0, 'Host: a\r\n');
          compare(`${requestLine}\r\n${fields.join('')}\r\n${body}${next}`, 'request', tally);
        },
      ),
      params(4000),
    );
    report(t, 'framing variants', tally);
  });

  test('random request-shaped bytes', (t) => {
    const tally = newTally();
    const alphabet = [...'GETPOST /?#\\:*@HTTP/1.01\r\n\t Host:aContent-Length:3Transfer-Encoding:chunked,'];
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom(...alphabet, '\x00', '\x7f', '\x80'), { maxLength: 100 }),
        (chars) => {
          compare(chars.join(''), 'request', tally);
        },
      ),
      params(3000),
    );
    report(t, 'random requests', tally);
  });

  test('generated valid responses', (t) => {
    const tally = newTally();
    fc.assert(
      fc.property(validResponse(), (g) => {
        compare(g.raw, 'response', tally);
      }),
      params(1000),
    );
    report(t, 'valid responses', tally);
    assert.ok(tally.agreeAccept > 800);
  });

  test('mutated responses', (t) => {
    const tally = newTally();
    fc.assert(
      fc.property(validResponse(), fc.array(mutation, { minLength: 1, maxLength: 4 }), (g, muts) => {
        compare(applyMutations(g.raw, muts), 'response', tally);
      }),
      params(3000),
    );
    report(t, 'mutated responses', tally);
  });
});
