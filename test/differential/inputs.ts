/**
 * What the differential harness sends: request bytes from fast-check arbitraries, in families that aim
 * at the places where HTTP/1.1 implementations have disagreed (request smuggling, host and path
 * confusion), plus a fixed corpus of the classic payloads. Sampling is seeded, so a seed and a count
 * give the same inputs on every run. Builds on the engine's generators (test/fixtures/http1-gen.ts):
 * valid requests and byte-level mutations of them.
 *
 * Inputs are latin1 strings (one char = one byte). Many end with a second, "smuggled" request: a proxy
 * that frames the first request differently from the others forwards a different body or a different
 * number of requests.
 */
import fc from 'fast-check';
import {
  applyMutations,
  chunkedBody,
  fieldName,
  hostValue,
  mutation,
  originForm,
  validRequest,
} from '../fixtures/http1-gen.ts';

export interface FuzzInput {
  /** `<family>` for generated inputs, `corpus:<name>` for the fixed ones. */
  readonly family: string;
  /** The bytes sent on one fresh connection, latin1. */
  readonly bytes: string;
}

/** The request that follows many inputs: forwarded on its own only when the first one was framed right. */
export const SMUGGLED = 'GET /smuggled HTTP/1.1\r\nHost: smuggled.test\r\n\r\n';

const HOST = 'Host: example.test';

interface Parts {
  method: string;
  target: string;
  version: string;
  fields: string[];
  body: string;
}

/** method SP target SP version CRLF, each field line then CRLF, CRLF, body. */
function render(p: Parts): string {
  return `${p.method} ${p.target} ${p.version}\r\n${p.fields.map((f) => `${f}\r\n`).join('')}\r\n${p.body}`;
}

/** Inserts `line` among `fields` at `pos` (modulo the length + 1). */
function insertAt(fields: readonly string[], line: string, pos: number): string[] {
  const out = [...fields];
  out.splice(pos % (out.length + 1), 0, line);
  return out;
}

/** Mostly the usual spellings, sometimes an odd one. */
function usualOrOdd<T>(usual: readonly T[], odd: readonly T[], oddWeight = 1): fc.Arbitrary<T> {
  return fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(...usual) },
    { weight: oddWeight, arbitrary: fc.constantFrom(...odd) },
  );
}

const ordinaryField = fc
  .tuple(fieldName, fc.string({ unit: fc.constantFrom(...'abcXYZ019-_.;=/ '), maxLength: 12 }))
  .map(([n, v]) => `${n}: ${v.trim()}`);
const ordinaryFields = fc.array(ordinaryField, { maxLength: 3 });
const tail = fc.constantFrom(SMUGGLED, SMUGGLED, SMUGGLED, '');

// ------------------------------------------------------------------ framing fields (CL / TE)

const FRAMING_NAMES_USUAL = ['Transfer-Encoding', 'transfer-encoding', 'Content-Length', 'content-length'];
const FRAMING_NAMES_ODD = [
  'TRANSFER-ENCODING',
  'Transfer-Encoding ',
  'Transfer-Encoding\t',
  'Transfer_Encoding',
  ' Transfer-Encoding',
  'Transfer-Encodings',
  'X-Transfer-Encoding',
  'Content-Length ',
  ' Content-Length',
  'Content_Length',
  'CONTENT-LENGTH',
  'Content-Length\x00',
];
const SEPARATORS_USUAL = [':', ': ', ':\t'];
const SEPARATORS_ODD = [': \t ', ':\x0b', ':\x0c', ':\x00', ':\xa0', ':\r', '::'];
const TE_VALUES_USUAL = ['chunked', 'Chunked', 'CHUNKED'];
const TE_VALUES_ODD = [
  'chunked ',
  'chunked\t',
  '"chunked"',
  'chunked, identity',
  'identity, chunked',
  'identity',
  'gzip, chunked',
  'chunked, chunked',
  'chunked;q=1',
  'chunk',
  'xchunked',
  'chunkedx',
  ', chunked',
  'chunked,',
  ',chunked,',
  '\xa0chunked',
  'chunked\x00',
  '\x0bchunked',
  'chunked\r',
  'ch\x00unked',
  'cHuNkEd',
  'chunked, gzip',
  'deflate',
  '',
];
const CL_VALUES_USUAL = ['0', '5', '11'];
const CL_VALUES_ODD = [
  '05',
  '+5',
  '-5',
  '5,5',
  '5, 5',
  '5, 6',
  '0x5',
  '1e1',
  '5 5',
  '5\x0b',
  '5.0',
  ' 5',
  '"5"',
  '99999999999999999999',
  '18446744073709551621',
  '4294967301',
  '000000000000000005',
  '',
];
const LINE_ENDINGS = ['\r\n', '\r\n', '\r\n', '\r\n', '\n', '\r\n ', '\r\n\t'];

const framingLine = fc.oneof(
  fc
    .tuple(
      usualOrOdd(FRAMING_NAMES_USUAL.slice(0, 2), FRAMING_NAMES_ODD.slice(0, 7)),
      usualOrOdd(SEPARATORS_USUAL, SEPARATORS_ODD),
      usualOrOdd(TE_VALUES_USUAL, TE_VALUES_ODD, 2),
    )
    .map(([n, s, v]) => `${n}${s}${v}`),
  fc
    .tuple(
      usualOrOdd(FRAMING_NAMES_USUAL.slice(2), FRAMING_NAMES_ODD.slice(7)),
      usualOrOdd(SEPARATORS_USUAL, SEPARATORS_ODD),
      usualOrOdd(CL_VALUES_USUAL, CL_VALUES_ODD, 2),
    )
    .map(([n, s, v]) => `${n}${s}${v}`),
  // obs-fold inside Transfer-Encoding
  fc.constantFrom(
    'Transfer-Encoding:\r\n chunked',
    'Transfer-Encoding: identity\r\n ,chunked',
    'Transfer-Encoding: chunked\r\n , identity',
    'Transfer-Encoding: x\r\n\tchunked',
  ),
);

const BODIES = [
  '',
  'hello',
  'hello world',
  '5\r\nhello\r\n0\r\n\r\n',
  '0\r\n\r\n',
  '5\r\nhello\r\n0\r\n\r\nX',
  '6\r\nhello\r\n0\r\n\r\n',
  '5;a=b\r\nhello\r\n0\r\n\r\n',
  '5\nhello\n0\n\n',
  '05\r\nhello\r\n0\r\nX-T: y\r\n\r\n',
  'ffffffffffffffff5\r\nhello\r\n0\r\n\r\n',
  '0\r\n\r\nGET /inner HTTP/1.1\r\nHost: inner.test\r\n\r\n',
  '2c\r\nGET /inner HTTP/1.1\r\nHost: inner.test\r\n\r\n\r\n0\r\n\r\n',
];

/** One to three framing field lines (CL / TE in every spelling), a body, often a second request. */
const framingFamily = fc
  .record({
    requestLine: fc.constantFrom<[string, string]>(
      ['POST', 'HTTP/1.1'],
      ['POST', 'HTTP/1.1'],
      ['GET', 'HTTP/1.1'],
      ['PUT', 'HTTP/1.1'],
      ['POST', 'HTTP/1.0'],
    ),
    lines: fc.array(fc.tuple(framingLine, fc.constantFrom(...LINE_ENDINGS)), { minLength: 1, maxLength: 3 }),
    others: ordinaryFields,
    hostAt: fc.nat(),
    body: fc.constantFrom(...BODIES),
    tail,
  })
  .map(({ requestLine: [method, version], lines, others, hostAt, body, tail }) => {
    // Line endings are part of the generated text here: build the head by hand.
    let head = `${method} /framing ${version}\r\n`;
    const fields = insertAt(
      [...lines.map(([l, e]) => `${l}${e}`), ...others.map((o) => `${o}\r\n`)],
      `${HOST}\r\n`,
      hostAt,
    );
    head += fields.join('');
    return `${head}\r\n${body}${tail}`;
  });

// ------------------------------------------------------------------ chunked bodies

const hexDigits = (n: number, upper: boolean) => (upper ? n.toString(16).toUpperCase() : n.toString(16));

const chunkSizeLine = (size: number) =>
  fc.oneof(
    { weight: 6, arbitrary: fc.boolean().map((u) => hexDigits(size, u)) },
    {
      weight: 2,
      arbitrary: fc.integer({ min: 1, max: 20 }).map((z) => '0'.repeat(z) + hexDigits(size, false)),
    },
    {
      weight: 2,
      arbitrary: fc.constantFrom(
        `ffffffffffffffff${hexDigits(size, false)}`,
        `1${'0'.repeat(16)}${hexDigits(size, false)}`,
        `100000000${hexDigits(size, false).padStart(8, '0')}`,
        `-${size}`,
        `+${size}`,
        `0x${size}`,
        ` ${size}`,
        `${size} `,
        `${size}\t`,
        `${size}\x00`,
        `${size}g`,
        `${hexDigits(size, false)};a=b`,
        `${hexDigits(size, false)};a="b;c"`,
        `${hexDigits(size, false)};a`,
        `${hexDigits(size, false)} ;a=b`,
        `${hexDigits(size, false)};`,
        `${hexDigits(size, false)};=x`,
        `${hexDigits(size, false)};a=\x00`,
        `${hexDigits(size, false)};a="\r\n"`,
        `${hexDigits(size, false)};${'e'.repeat(5000)}`,
        `${hexDigits(size, false)}\r`,
      ),
    },
  );
const SIZE_LINE_END = ['\r\n', '\r\n', '\r\n', '\r\n', '\n', '\r', ''];
const AFTER_DATA = ['\r\n', '\r\n', '\r\n', '\r\n', '\n', '', 'X\r\n', '\r'];

const chunk = fc
  .record({
    data: fc.string({ unit: fc.constantFrom(...'abcdefghij0\r\n'), minLength: 1, maxLength: 12 }),
    delta: fc.constantFrom(0, 0, 0, 0, 0, -1, 1, 2),
    end: fc.constantFrom(...SIZE_LINE_END),
    after: fc.constantFrom(...AFTER_DATA),
  })
  .chain(({ data, delta, end, after }) =>
    chunkSizeLine(Math.max(0, data.length + delta)).map((line) => `${line}${end}${data}${after}`),
  );

const TRAILERS = [
  'X-Trailer: 1',
  'Content-Length: 5',
  'Transfer-Encoding: chunked',
  'Host: trailer.test',
  'X-A: 1\r\n 2',
  'X-A : 1',
  'X-A: 1\n',
  'X-A',
  'X-A: \x00',
];

const lastChunk = fc
  .record({
    zero: fc.constantFrom('0', '0', '0', '00', '000', '0;a=b', '0 ', '0\t;x'),
    end: fc.constantFrom('\r\n', '\r\n', '\r\n', '\n'),
    trailers: fc.array(fc.constantFrom(...TRAILERS), { maxLength: 2 }),
    final: fc.constantFrom('\r\n', '\r\n', '\r\n', '\n', ''),
  })
  .map(
    ({ zero, end, trailers, final }) => `${zero}${end}${trailers.map((t) => `${t}\r\n`).join('')}${final}`,
  );

/** A chunked body with one or more odd chunks, or a valid one from the engine's generator. */
const chunkedFamily = fc
  .record({
    te: fc.constantFrom(
      'Transfer-Encoding: chunked',
      'Transfer-Encoding: chunked',
      'transfer-encoding: CHUNKED',
    ),
    body: fc.oneof(
      {
        weight: 3,
        arbitrary: fc.tuple(fc.array(chunk, { maxLength: 3 }), lastChunk).map(([c, l]) => c.join('') + l),
      },
      { weight: 1, arbitrary: chunkedBody({ maxData: 40 }).map((c) => c.raw) },
    ),
    others: ordinaryFields,
    tail,
  })
  .map(
    ({ te, body, others, tail }) =>
      render({
        method: 'POST',
        target: '/chunked',
        version: 'HTTP/1.1',
        fields: [HOST, te, ...others],
        body,
      }) + tail,
  );

// ------------------------------------------------------------------ whitespace

/** A request with one whitespace oddity, in the request line or around a field name or value. */
const whitespaceFamily = fc
  .record({
    kind: fc.constantFrom(
      'space-before-colon',
      'tab-before-colon',
      'leading-space-first-line',
      'leading-tab-first-line',
      'obs-fold',
      'request-line',
      'space-in-name',
      'empty-name',
      'no-colon',
    ),
    field: fc.constantFrom('Host', 'Content-Length', 'Transfer-Encoding', 'X-Other'),
    requestLine: fc.constantFrom(
      'GET  / HTTP/1.1',
      'GET /  HTTP/1.1',
      'GET\t/ HTTP/1.1',
      'GET /\tHTTP/1.1',
      ' GET / HTTP/1.1',
      'GET / HTTP/1.1 ',
      'GET / HTTP/1.1\t',
      'GET /a b HTTP/1.1',
      'GET / HTTP/1.1 x',
    ),
    others: ordinaryFields,
    tail,
  })
  .map(({ kind, field, requestLine, others, tail }) => {
    const value =
      field === 'Host'
        ? 'other.test'
        : field === 'Content-Length'
          ? '5'
          : field === 'Transfer-Encoding'
            ? 'chunked'
            : 'x';
    const body =
      field === 'Content-Length' ? 'hello' : field === 'Transfer-Encoding' ? '5\r\nhello\r\n0\r\n\r\n' : '';
    let line: string;
    switch (kind) {
      case 'space-before-colon':
        line = `${field} : ${value}`;
        break;
      case 'tab-before-colon':
        line = `${field}\t: ${value}`;
        break;
      case 'leading-space-first-line':
        return `POST / HTTP/1.1\r\n ${field}: ${value}\r\n${HOST}\r\n${others.map((o) => `${o}\r\n`).join('')}\r\n${body}${tail}`;
      case 'leading-tab-first-line':
        return `POST / HTTP/1.1\r\n\t${field}: ${value}\r\n${HOST}\r\n\r\n${body}${tail}`;
      case 'obs-fold':
        line = `${field}:\r\n ${value}`;
        break;
      case 'request-line':
        return `${requestLine}\r\n${HOST}\r\n${others.map((o) => `${o}\r\n`).join('')}\r\n${tail}`;
      case 'space-in-name':
        line = `${field.slice(0, 2)} ${field.slice(2)}: ${value}`;
        break;
      case 'empty-name':
        line = `: ${value}`;
        break;
      default:
        line = `${field} ${value}`;
    }
    const fields = field === 'Host' ? [line, ...others] : [HOST, line, ...others];
    return render({ method: 'POST', target: '/ws', version: 'HTTP/1.1', fields, body }) + tail;
  });

// ------------------------------------------------------------------ odd bytes

const ODD_BYTES = ['\x00', '\r', '\n', '\x7f', '\x80', '\xff', '\xe9', '\x0b', '\x0c', '\x1b', '\t', ' '];

/** One odd byte (NUL, lone CR or LF, DEL, obs-text, controls) in the method, target, a name or a value. */
const bytesFamily = fc
  .record({
    where: fc.constantFrom('method', 'target', 'query', 'name', 'value', 'host', 'version', 'cl-value'),
    byte: fc.constantFrom(...ODD_BYTES),
    at: fc.nat(),
    tail,
  })
  .map(({ where, byte, at, tail }) => {
    const put = (s: string) => {
      const i = at % (s.length + 1);
      return s.slice(0, i) + byte + s.slice(i);
    };
    const p: Parts = {
      method: 'POST',
      target: '/path/x',
      version: 'HTTP/1.1',
      fields: [HOST, 'X-Field: value', 'Content-Length: 5'],
      body: 'hello',
    };
    if (where === 'method') p.method = put(p.method);
    else if (where === 'target') p.target = put(p.target);
    else if (where === 'query') p.target = `/q?${put('a=b')}`;
    else if (where === 'name') p.fields[1] = `${put('X-Field')}: value`;
    else if (where === 'value') p.fields[1] = `X-Field: ${put('value')}`;
    else if (where === 'host') p.fields[0] = `Host: ${put('example.test')}`;
    else if (where === 'version') p.version = put(p.version);
    else p.fields[2] = `Content-Length: ${put('5')}`;
    return render(p) + tail;
  });

// ------------------------------------------------------------------ request targets

const ODD_TARGETS = [
  'http://example.test/abs',
  'HTTP://EXAMPLE.TEST:80/abs',
  'http://other.test/abs',
  'https://example.test/abs',
  'http://example.test',
  'http://example.test?q=1',
  'http://user@example.test/',
  'http://user:pw@other.test/',
  'http://example.test:99999/',
  'http://example.test:x/',
  'http://[::1]/',
  'http://',
  'http:///x',
  'ftp://example.test/',
  'ws://example.test/',
  'http:/example.test/',
  'example.test:80',
  'example.test',
  '//example.test/x',
  '*',
  '/a#frag',
  '/a\\b',
  '/%2e%2e/admin',
  '/a/../../admin',
  '/./a/./b',
  '/a//b',
  '/a/%2F/b',
  '/%00',
  '/%',
  '/%zz',
  '/%41%42',
  '/a?b?c',
  '?x',
  '/a;b',
  '/\xe9',
  '/a b',
  '',
];

/** Absolute-form, authority-form, asterisk-form and odd origin-form targets, with or without a Host. */
const targetFamily = fc
  .record({
    method: fc.constantFrom('GET', 'GET', 'GET', 'POST', 'OPTIONS', 'CONNECT', 'HEAD'),
    target: fc.oneof(
      { weight: 4, arbitrary: fc.constantFrom(...ODD_TARGETS) },
      {
        weight: 1,
        arbitrary: fc
          .tuple(
            fc.constantFrom('http', 'HTTP', 'https'),
            hostValue,
            fc.option(originForm, { nil: undefined }),
          )
          .map(([s, h, p]) => `${s}://${h}${p ?? ''}`),
      },
    ),
    host: fc.constantFrom<string | null>(HOST, HOST, 'Host: other.test', 'Host: EXAMPLE.TEST:80', null),
    version: fc.constantFrom('HTTP/1.1', 'HTTP/1.1', 'HTTP/1.0'),
    tail,
  })
  .map(({ method, target, host, version, tail }) => {
    const fields = host === null ? [] : [host];
    if (method === 'POST') fields.push('Content-Length: 5');
    return render({ method, target, version, fields, body: method === 'POST' ? 'hello' : '' }) + tail;
  });

// ------------------------------------------------------------------ versions

const VERSIONS = [
  'HTTP/1.1',
  'HTTP/1.0',
  'HTTP/1.2',
  'HTTP/1.9',
  'HTTP/2.0',
  'HTTP/0.9',
  'HTTP/3',
  'http/1.1',
  'HTTP/1.01',
  'HTTP/01.1',
  'HTTP/1',
  'HTTP/ 1.1',
  'HTTP/1.1.1',
  'HTTPS/1.1',
  'HTTP\\1.1',
];

/** HTTP/1.0 and 1.1 (and not quite), with bodies framed both ways and keep-alive asked for or not. */
const versionFamily = fc
  .record({
    version: fc.constantFrom(...VERSIONS),
    framing: fc.constantFrom('none', 'length', 'chunked', 'both'),
    connection: fc.constantFrom<string | null>(null, 'Connection: keep-alive', 'Connection: close'),
    host: fc.boolean(),
    tail: fc.constantFrom(SMUGGLED, 'GET /second HTTP/1.0\r\n\r\n', ''),
  })
  .map(({ version, framing, connection, host, tail }) => {
    const fields: string[] = host ? [HOST] : [];
    if (connection !== null) fields.push(connection);
    let body = '';
    if (framing === 'length' || framing === 'both') {
      fields.push(framing === 'both' ? 'Content-Length: 3' : 'Content-Length: 5');
      body = 'hello';
    }
    if (framing === 'chunked' || framing === 'both') {
      fields.push('Transfer-Encoding: chunked');
      body = '5\r\nhello\r\n0\r\n\r\n';
    }
    return render({ method: 'POST', target: '/version', version, fields, body }) + tail;
  });

// ------------------------------------------------------------------ Expect

const expectFamily = fc
  .record({
    expect: fc.constantFrom(
      'Expect: 100-continue',
      'Expect: 100-Continue',
      'expect: 100-continue',
      'Expect: 100-continue, foo',
      'Expect: foo',
      'Expect:',
      'Expect: 100-continue\r\nExpect: 100-continue',
      'Expect: 200-ok',
    ),
    framing: fc.constantFrom('none', 'length', 'chunked'),
    version: fc.constantFrom('HTTP/1.1', 'HTTP/1.1', 'HTTP/1.0'),
    tail,
  })
  .map(({ expect, framing, version, tail }) => {
    const fields = [HOST, expect];
    let body = '';
    if (framing === 'length') {
      fields.push('Content-Length: 5');
      body = 'hello';
    } else if (framing === 'chunked') {
      fields.push('Transfer-Encoding: chunked');
      body = '5\r\nhello\r\n0\r\n\r\n';
    }
    return render({ method: 'POST', target: '/expect', version, fields, body }) + tail;
  });

// ------------------------------------------------------------------ Connection

const connectionFamily = fc
  .record({
    value: fc.constantFrom(
      'close',
      'keep-alive',
      'Keep-Alive',
      'X-Hop',
      'close, X-Hop',
      'Content-Length',
      'Transfer-Encoding',
      'Host',
      'close, Content-Length',
      'keep-alive, Transfer-Encoding',
      'Upgrade',
      'upgrade, keep-alive',
      'X-Hop, , ,',
      'clos',
      'close\x00',
    ),
    extra: fc.subarray([
      'X-Hop: secret',
      'Upgrade: websocket',
      'Keep-Alive: timeout=5',
      'Proxy-Connection: keep-alive',
      'TE: trailers',
      'Trailer: X-T',
      'Connection: keep-alive',
    ]),
    framing: fc.constantFrom('none', 'length', 'chunked'),
    tail,
  })
  .map(({ value, extra, framing, tail }) => {
    const fields = [HOST, `Connection: ${value}`, ...extra];
    let body = '';
    if (framing === 'length') {
      fields.push('Content-Length: 5');
      body = 'hello';
    } else if (framing === 'chunked') {
      fields.push('Transfer-Encoding: chunked');
      body = '5\r\nhello\r\n0\r\n\r\n';
    }
    return render({ method: 'POST', target: '/connection', version: 'HTTP/1.1', fields, body }) + tail;
  });

// ------------------------------------------------------------------ Host

const HOSTS = [
  [],
  ['Host: example.test', 'Host: example.test'],
  ['Host: example.test', 'Host: other.test'],
  ['Host:'],
  ['Host: '],
  ['Host: example.test, other.test'],
  ['Host: example.test other.test'],
  ['Host: example.test:80'],
  ['Host: EXAMPLE.TEST'],
  ['Host: example.test.'],
  ['Host: user@example.test'],
  ['Host: example.test/x'],
  ['Host: example.test:99999'],
  ['Host: example.test:'],
  ['Host: example.test:x'],
  ['Host: [::1]'],
  ['Host: [::1'],
  ['Host: 127.0.0.1'],
  ['Host: example.test\t'],
  ['Host: exa mple.test'],
  ['Host: example.test', 'X-Forwarded-Host: other.test'],
  ['host: example.test'],
  ['HOST: example.test'],
  ['Host: example.test?x'],
  ['Host: example.test#x'],
  ['Host: \xe9xample.test'],
  ['Host: %65xample.test'],
  ['Host: example_test'],
];

const hostFamily = fc
  .record({
    hosts: fc.oneof(
      { weight: 4, arbitrary: fc.constantFrom(...HOSTS) },
      { weight: 1, arbitrary: hostValue.map((h) => [`Host: ${h}`]) },
    ),
    version: fc.constantFrom('HTTP/1.1', 'HTTP/1.1', 'HTTP/1.0'),
    target: fc.constantFrom('/host', '/host', 'http://example.test/host', 'http://other.test/host'),
    tail,
  })
  .map(
    ({ hosts, version, target, tail }) =>
      render({ method: 'GET', target, version, fields: [...hosts, 'X-After: 1'], body: '' }) + tail,
  );

// ------------------------------------------------------------------ valid, mutated, pipelined

const validFamily = validRequest({ duplicateContentLength: true }).map((g) => g.raw);

const mutatedFamily = fc
  .tuple(validRequest(), fc.array(mutation, { minLength: 1, maxLength: 3 }))
  .map(([g, muts]) => applyMutations(g.raw, muts));

/** Small requests to chain: mostly valid, some from the framing and odd families. */
const pipelineMember = fc.oneof(
  { weight: 4, arbitrary: validRequest({ leadingCrlf: false }).map((g) => g.raw) },
  { weight: 1, arbitrary: framingFamily },
  { weight: 1, arbitrary: chunkedFamily },
  { weight: 1, arbitrary: connectionFamily },
  { weight: 1, arbitrary: versionFamily },
);
const pipelineFamily = fc
  .array(pipelineMember, { minLength: 2, maxLength: 3 })
  .map((parts) => parts.join(''));

export const FAMILIES: readonly { name: string; weight: number; arbitrary: fc.Arbitrary<string> }[] = [
  { name: 'valid', weight: 3, arbitrary: validFamily },
  { name: 'mutated', weight: 4, arbitrary: mutatedFamily },
  { name: 'framing', weight: 5, arbitrary: framingFamily },
  { name: 'chunked', weight: 4, arbitrary: chunkedFamily },
  { name: 'whitespace', weight: 2, arbitrary: whitespaceFamily },
  { name: 'bytes', weight: 2, arbitrary: bytesFamily },
  { name: 'target', weight: 2, arbitrary: targetFamily },
  { name: 'version', weight: 1, arbitrary: versionFamily },
  { name: 'expect', weight: 1, arbitrary: expectFamily },
  { name: 'connection', weight: 1, arbitrary: connectionFamily },
  { name: 'host', weight: 2, arbitrary: hostFamily },
  { name: 'pipeline', weight: 2, arbitrary: pipelineFamily },
];

export const fuzzInput: fc.Arbitrary<FuzzInput> = fc.oneof(
  ...FAMILIES.map((f) => ({
    weight: f.weight,
    arbitrary: f.arbitrary.map((bytes): FuzzInput => ({ family: f.name, bytes })),
  })),
);

/**
 * `count` generated inputs for `seed`: the same on every run (fast-check's base size is fixed here to
 * what the test suite uses, whatever the caller configured).
 */
export function sampleInputs(seed: number, count: number): FuzzInput[] {
  const previous = fc.readConfigureGlobal();
  fc.configureGlobal({ ...previous, baseSize: 'medium' });
  try {
    return fc.sample(fuzzInput, { seed, numRuns: count });
  } finally {
    fc.configureGlobal(previous);
  }
}

// ------------------------------------------------------------------ the fixed corpus

const post = (fields: string, body: string) => `POST /corpus HTTP/1.1\r\n${HOST}\r\n${fields}\r\n${body}`;

/** The classic smuggling payloads, always sent (before the generated inputs). */
export const CORPUS: readonly FuzzInput[] = (
  [
    ['simple GET', `GET / HTTP/1.1\r\n${HOST}\r\n\r\n`],
    ['CL body', post('Content-Length: 5\r\n', 'hello')],
    ['chunked body', post('Transfer-Encoding: chunked\r\n', '5\r\nhello\r\n0\r\n\r\n')],
    ['pipelined GETs', `GET /1 HTTP/1.1\r\n${HOST}\r\n\r\nGET /2 HTTP/1.1\r\n${HOST}\r\n\r\n`],
    ['CL.TE', post('Content-Length: 6\r\nTransfer-Encoding: chunked\r\n', `0\r\n\r\nG${SMUGGLED}`)],
    [
      'TE.CL',
      post('Content-Length: 3\r\nTransfer-Encoding: chunked\r\n', `8\r\nSMUGGLED\r\n0\r\n\r\n${SMUGGLED}`),
    ],
    [
      'TE.TE obfuscated',
      post('Transfer-Encoding: chunked\r\nTransfer-encoding: x\r\n', `0\r\n\r\n${SMUGGLED}`),
    ],
    ['CL.CL', post('Content-Length: 0\r\nContent-Length: 44\r\n', SMUGGLED)],
    ['CL list', post('Content-Length: 5, 5\r\n', `hello${SMUGGLED}`)],
    ['TE chunked, identity', post('Transfer-Encoding: chunked, identity\r\n', `0\r\n\r\n${SMUGGLED}`)],
    ['TE identity, chunked', post('Transfer-Encoding: identity, chunked\r\n', `0\r\n\r\n${SMUGGLED}`)],
    ['TE xchunked', post('Transfer-Encoding: xchunked\r\nContent-Length: 5\r\n', `hello${SMUGGLED}`)],
    [
      'TE space before colon',
      post('Transfer-Encoding : chunked\r\nContent-Length: 5\r\n', `0\r\n\r\n${SMUGGLED}`),
    ],
    ['TE obs-fold', post('Transfer-Encoding:\r\n chunked\r\n', `0\r\n\r\n${SMUGGLED}`)],
    ['TE vertical tab', post('Transfer-Encoding:\x0bchunked\r\n', `0\r\n\r\n${SMUGGLED}`)],
    [
      'chunk size overflow',
      post('Transfer-Encoding: chunked\r\n', `ffffffffffffffff1\r\nx\r\n0\r\n\r\n${SMUGGLED}`),
    ],
    [
      'chunk size leading zeros',
      post('Transfer-Encoding: chunked\r\n', `00000000000000000001\r\nx\r\n0\r\n\r\n${SMUGGLED}`),
    ],
    ['chunk bare LF', post('Transfer-Encoding: chunked\r\n', `1\nx\r\n0\r\n\r\n${SMUGGLED}`)],
    ['chunk missing CRLF', post('Transfer-Encoding: chunked\r\n', `1\r\nxx0\r\n\r\n${SMUGGLED}`)],
    ['chunk extension LF', post('Transfer-Encoding: chunked\r\n', `1;a\nx\r\n0\r\n\r\n${SMUGGLED}`)],
    [
      'trailer Content-Length',
      post('Transfer-Encoding: chunked\r\n', `0\r\nContent-Length: 44\r\n\r\n${SMUGGLED}`),
    ],
    ['bare LF head', `GET / HTTP/1.1\n${HOST}\n\n${SMUGGLED}`],
    ['leading SP first field', `GET / HTTP/1.1\r\n Host: other.test\r\n${HOST}\r\n\r\n`],
    ['two Hosts', `GET / HTTP/1.1\r\n${HOST}\r\nHost: other.test\r\n\r\n`],
    ['absolute-form vs Host', `GET http://other.test/abs HTTP/1.1\r\n${HOST}\r\n\r\n`],
    ['HTTP/1.0 TE', `POST / HTTP/1.0\r\n${HOST}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`],
    ['Expect 100-continue', post('Expect: 100-continue\r\nContent-Length: 5\r\n', 'hello')],
    [
      'Connection: Content-Length',
      post('Connection: Content-Length\r\nContent-Length: 5\r\n', `hello${SMUGGLED}`),
    ],
    ['NUL in value', `GET / HTTP/1.1\r\n${HOST}\r\nX-A: a\x00b\r\n\r\n`],
    ['CR in value', `GET / HTTP/1.1\r\n${HOST}\r\nX-A: a\rb\r\n\r\n`],
  ] as const
).map(([name, bytes]) => ({ family: `corpus:${name}`, bytes }));
