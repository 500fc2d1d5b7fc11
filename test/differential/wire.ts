/**
 * Reading what a proxy forwarded: the bytes one upstream connection received are split into requests
 * by a parser of the harness's own (independent of zproxy's), which delimits each request the way an
 * HTTP/1.1 origin would (RFC 9112 §6.3) and notes everything an origin could read in more than one way
 * (framing conflicts, bare LF, obs-fold, ...). Also: the status codes a client received.
 */

export type ForwardedFraming = 'none' | 'length' | 'chunked' | 'conflict';

export interface ForwardedRequest {
  method: string;
  /** The request-target as forwarded. */
  target: string;
  version: string;
  /** [name as sent, value trimmed], in order. */
  fields: [string, string][];
  /** The field lines as sent (without their line ending). */
  rawFields: string[];
  framing: ForwardedFraming;
  /** The content after de-framing (latin1). */
  body: string;
  /** Trailer fields of a chunked body. */
  trailers: [string, string][];
  /** The whole request arrived (head and body). */
  complete: boolean;
  /** What an origin could read in more than one way (empty for a clean request). */
  problems: string[];
}

export interface ForwardedParse {
  requests: ForwardedRequest[];
  /** Bytes after the last request that could be delimited (latin1). */
  rest: string;
  /** Why parsing stopped before the end: '' (all consumed), 'incomplete', or a malformation. */
  stop: string;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

function fieldValues(fields: [string, string][], lowerName: string): string[] {
  return fields.filter(([n]) => n.toLowerCase() === lowerName).map(([, v]) => v);
}

/** Decodes a chunked body from `p`; null when incomplete. */
function decodeChunked(
  s: string,
  p: number,
  problems: string[],
): { body: string; trailers: [string, string][]; end: number } | null {
  let body = '';
  for (;;) {
    const lf = s.indexOf('\n', p);
    if (lf === -1) return null;
    let line = s.slice(p, lf);
    if (line.endsWith('\r')) line = line.slice(0, -1);
    else problems.push('bare LF in a chunk size line');
    const sizeText = /^[0-9A-Fa-f]*/.exec(line)![0];
    const after = line.slice(sizeText.length);
    if (sizeText === '' || (after !== '' && !/^[ \t]*;/.test(after))) {
      problems.push(`invalid chunk size line ${JSON.stringify(line)}`);
      return { body, trailers: [], end: -1 };
    }
    if (sizeText.length > 15) {
      problems.push('chunk size with more than 15 digits');
      return { body, trailers: [], end: -1 };
    }
    const size = Number.parseInt(sizeText, 16);
    p = lf + 1;
    if (size === 0) {
      const trailers: [string, string][] = [];
      for (;;) {
        const tlf = s.indexOf('\n', p);
        if (tlf === -1) return null;
        let tline = s.slice(p, tlf);
        if (tline.endsWith('\r')) tline = tline.slice(0, -1);
        else problems.push('bare LF in the trailer section');
        p = tlf + 1;
        if (tline === '') return { body, trailers, end: p };
        const colon = tline.indexOf(':');
        if (colon <= 0) {
          problems.push(`invalid trailer line ${JSON.stringify(tline)}`);
          return { body, trailers, end: -1 };
        }
        trailers.push([tline.slice(0, colon), tline.slice(colon + 1).trim()]);
      }
    }
    if (s.length < p + size + 2) return null;
    body += s.slice(p, p + size);
    p += size;
    if (s.slice(p, p + 2) !== '\r\n') {
      problems.push('chunk data not followed by CRLF');
      return { body, trailers: [], end: -1 };
    }
    p += 2;
  }
}

/** Splits the bytes one upstream connection received (latin1) into requests. */
export function parseForwarded(s: string): ForwardedParse {
  const requests: ForwardedRequest[] = [];
  let p = 0;
  for (;;) {
    if (p >= s.length) return { requests, rest: '', stop: '' };
    const problems: string[] = [];
    if (s.startsWith('\r\n', p)) problems.push('empty line before the request-line');
    while (s.startsWith('\r\n', p)) p += 2;
    const crlfcrlf = s.indexOf('\r\n\r\n', p);
    const lflf = s.indexOf('\n\n', p);
    let headEnd: number;
    if (crlfcrlf !== -1 && (lflf === -1 || crlfcrlf + 2 < lflf + 1)) headEnd = crlfcrlf + 4;
    else if (lflf !== -1) {
      problems.push('bare LF ends the head');
      headEnd = lflf + 2;
    } else return { requests, rest: s.slice(p), stop: 'incomplete' };
    const lines = s.slice(p, headEnd).split('\n');
    lines.pop();
    lines.pop();
    const clean = lines.map((l) => {
      if (l.endsWith('\r')) return l.slice(0, -1);
      problems.push('bare LF line ending');
      return l;
    });
    const m = /^([^ ]+) ([^ ]+) HTTP\/(\d\.\d)$/.exec(clean[0] ?? '');
    if (m === null) {
      return { requests, rest: s.slice(p), stop: `malformed request line ${JSON.stringify(clean[0])}` };
    }
    const fields: [string, string][] = [];
    for (const line of clean.slice(1)) {
      if (line.startsWith(' ') || line.startsWith('\t')) {
        problems.push('obs-fold');
        const last = fields.at(-1);
        if (last !== undefined) last[1] = `${last[1]} ${line.trim()}`;
        continue;
      }
      const colon = line.indexOf(':');
      const name = colon < 0 ? line : line.slice(0, colon);
      if (colon <= 0 || !TOKEN.test(name)) problems.push(`invalid field line ${JSON.stringify(line)}`);
      if (/[\x00-\x08\x0a-\x1f\x7f]/.test(line)) problems.push('control character in a field line');
      fields.push([name, colon < 0 ? '' : line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '')]);
    }
    const te = fieldValues(fields, 'transfer-encoding');
    const cl = fieldValues(fields, 'content-length');
    let framing: ForwardedFraming = 'none';
    let length = 0;
    if (te.length > 0) {
      const codings = te
        .join(',')
        .split(',')
        .map((c) => c.trim().toLowerCase())
        .filter((c) => c !== '');
      if (cl.length > 0) problems.push('Content-Length and Transfer-Encoding');
      if (codings.at(-1) !== 'chunked' || codings.length !== 1) problems.push(`Transfer-Encoding ${te}`);
      framing = cl.length > 0 || codings.at(-1) !== 'chunked' ? 'conflict' : 'chunked';
    } else if (cl.length > 0) {
      const values = new Set(
        cl
          .join(',')
          .split(',')
          .map((v) => v.trim()),
      );
      if (cl.length > 1) problems.push('several Content-Length fields');
      const v = [...values][0]!;
      if (values.size !== 1 || !/^\d+$/.test(v) || !Number.isSafeInteger(Number(v))) {
        problems.push(`Content-Length ${cl}`);
        framing = 'conflict';
      } else {
        framing = 'length';
        length = Number(v);
      }
    }
    const request: ForwardedRequest = {
      method: m[1]!,
      target: m[2]!,
      version: m[3]!,
      fields,
      rawFields: clean.slice(1),
      framing,
      body: '',
      trailers: [],
      complete: false,
      problems,
    };
    requests.push(request);
    if (framing === 'conflict') return { requests, rest: s.slice(headEnd), stop: 'ambiguous framing' };
    if (framing === 'none') {
      request.complete = true;
      p = headEnd;
    } else if (framing === 'length') {
      request.body = s.slice(headEnd, headEnd + length);
      if (s.length < headEnd + length) return { requests, rest: '', stop: 'incomplete' };
      request.complete = true;
      p = headEnd + length;
    } else {
      const d = decodeChunked(s, headEnd, problems);
      if (d === null) return { requests, rest: '', stop: 'incomplete' };
      request.body = d.body;
      request.trailers = d.trailers;
      if (d.end < 0) return { requests, rest: s.slice(headEnd), stop: 'invalid chunked body' };
      request.complete = true;
      p = d.end;
    }
  }
}

/**
 * Status codes of every response head in what a client received (interim ones included), in order. A
 * plain scan: the bodies the three proxies and the recording upstream send never contain a status line.
 */
export function responseStatuses(received: string): number[] {
  return [...received.matchAll(/HTTP\/1\.[01] (\d{3})[ \r]/g)].map((m) => Number(m[1]));
}
