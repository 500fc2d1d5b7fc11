import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import { test } from 'node:test';
import fc from 'fast-check';
import { FieldList } from '../../src/http/fields.ts';
import { parseResponseHead, ResponseHead } from '../../src/http1/parse-head.ts';
import {
  DECODED_OK,
  DECODED_TOO_LARGE,
  HpackDecoder,
  HpackEncoder,
  HpackError,
  HUFFMAN_CODE_LENGTHS,
  huffmanCodes,
} from '../../src/http2/hpack.ts';
import { FLAG, FRAME, frame, PREFACE, settingsFrame } from '../helpers/h2-frames.ts';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

function decodeAll(decoder: HpackDecoder, block: Buffer, max = 1 << 30): string[][] {
  const out: string[] = [];
  decoder.decode(block, 0, block.length, out, max);
  const pairs: string[][] = [];
  for (let i = 0; i < out.length; i += 2) pairs.push([out[i]!, out[i + 1]!]);
  return pairs;
}

const HUFFMAN_CODES = huffmanCodes();

/** The length in bytes of `s` (latin1) once Huffman-coded. */
function huffmanLength(s: string): number {
  let bits = 0;
  for (let i = 0; i < s.length; i++) bits += HUFFMAN_CODE_LENGTHS[s.charCodeAt(i) & 0xff]!;
  return Math.ceil(bits / 8);
}

/** Huffman-codes `s` (latin1) into `dst` at `pos` (RFC 7541 §5.2, EOS-prefix padding); returns the end. */
function huffmanEncode(s: string, dst: Uint8Array, pos: number): number {
  let acc = 0n;
  let pending = 0n;
  for (let i = 0; i < s.length; i++) {
    const sym = s.charCodeAt(i) & 0xff;
    acc = (acc << BigInt(HUFFMAN_CODE_LENGTHS[sym]!)) | BigInt(HUFFMAN_CODES[sym]!);
    pending += BigInt(HUFFMAN_CODE_LENGTHS[sym]!);
    while (pending >= 8n) {
      pending -= 8n;
      dst[pos++] = Number((acc >> pending) & 0xffn);
    }
    acc &= (1n << pending) - 1n;
  }
  if (pending > 0n) dst[pos++] = Number((acc << (8n - pending)) | ((1n << (8n - pending)) - 1n));
  return pos;
}

test('the Huffman codes rebuilt from the code lengths are those of RFC 7541 Appendix B', () => {
  const codes = huffmanCodes();
  // A sample of the appendix's table (symbol: code as hex), across every code length.
  const table: Record<number, number> = {
    0: 0x1ff8,
    1: 0x7fffd8,
    9: 0xffffea,
    10: 0x3ffffffc,
    32: 0x14,
    48: 0x0,
    58: 0x5c,
    92: 0x7fff0,
    97: 0x3,
    126: 0x1ffd,
    128: 0xfffe6,
    153: 0x1fffdc,
    199: 0x1ffffec,
    203: 0x7ffffde,
    220: 0xffffffd,
    255: 0x3ffffee,
    256: 0x3fffffff,
  };
  for (const [sym, code] of Object.entries(table)) assert.equal(codes[Number(sym)], code, `symbol ${sym}`);
});

test('RFC 7541 C.4: requests with Huffman coding decode, and the dynamic table evolves as specified', () => {
  const d = new HpackDecoder();
  assert.deepEqual(decodeAll(d, hex('8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff')), [
    [':method', 'GET'],
    [':scheme', 'http'],
    [':path', '/'],
    [':authority', 'www.example.com'],
  ]);
  assert.equal(d.tableSize, 57);
  assert.deepEqual(decodeAll(d, hex('8286 84be 5886 a8eb 1064 9cbf')), [
    [':method', 'GET'],
    [':scheme', 'http'],
    [':path', '/'],
    [':authority', 'www.example.com'],
    ['cache-control', 'no-cache'],
  ]);
  assert.equal(d.tableSize, 110);
  assert.deepEqual(decodeAll(d, hex('8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf')), [
    [':method', 'GET'],
    [':scheme', 'https'],
    [':path', '/index.html'],
    [':authority', 'www.example.com'],
    ['custom-key', 'custom-value'],
  ]);
  assert.equal(d.tableSize, 164);
});

test('RFC 7541 C.6: responses with Huffman coding evict from a 256-byte table', () => {
  const d = new HpackDecoder(256);
  const block1 = hex(`4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
    2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3`);
  assert.deepEqual(decodeAll(d, block1), [
    [':status', '302'],
    ['cache-control', 'private'],
    ['date', 'Mon, 21 Oct 2013 20:13:21 GMT'],
    ['location', 'https://www.example.com'],
  ]);
  assert.equal(d.tableSize, 222);
  assert.deepEqual(decodeAll(d, hex('4883 640e ffc1 c0bf')), [
    [':status', '307'],
    ['cache-control', 'private'],
    ['date', 'Mon, 21 Oct 2013 20:13:21 GMT'],
    ['location', 'https://www.example.com'],
  ]);
  assert.equal(d.tableSize, 222);
  const block3 = hex(`88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
    77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0
    03ed 4ee5 b106 3d50 07`);
  assert.deepEqual(decodeAll(d, block3), [
    [':status', '200'],
    ['cache-control', 'private'],
    ['date', 'Mon, 21 Oct 2013 20:13:22 GMT'],
    ['location', 'https://www.example.com'],
    ['content-encoding', 'gzip'],
    ['set-cookie', 'foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1'],
  ]);
  assert.equal(d.tableSize, 215);
});

test('Huffman coding round-trips any string of octets', () => {
  const d = new HpackDecoder();
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
      const s = Buffer.from(bytes).toString('latin1');
      const n = huffmanLength(s);
      const block = Buffer.alloc(12 + n);
      block[0] = 0x00; // literal without indexing, new name
      block[1] = 0x81; // Huffman, length 1: "a" is 00011 + 111 padding
      block[2] = 0x1f;
      let pos = 3;
      // value length as a 7-bit prefix integer with the H bit
      if (n < 127) block[pos++] = 0x80 | n;
      else {
        block[pos++] = 0xff;
        let rest = n - 127;
        while (rest >= 128) {
          block[pos++] = (rest & 0x7f) | 0x80;
          rest >>= 7;
        }
        block[pos++] = rest;
      }
      const end = huffmanEncode(s, block, pos);
      assert.equal(end - pos, n);
      assert.deepEqual(decodeAll(d, block.subarray(0, end)), [['a', s]]);
    }),
  );
});

test('the encoder produces blocks the decoder reads back exactly', () => {
  const name = fc.stringMatching(/^[a-z0-9-]{1,20}$/);
  const value = fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b).toString('latin1'));
  const encoder = new HpackEncoder();
  const decoder = new HpackDecoder();
  fc.assert(
    fc.property(
      fc.constantFrom(200, 204, 302, 404, 500, 999),
      fc.array(fc.tuple(fc.oneof(name, fc.constantFrom('content-type', 'server', 'vary')), value)),
      (status, fields) => {
        encoder.begin();
        encoder.status(status);
        for (const [n, v] of fields) encoder.field(n, v);
        const block = Buffer.from(encoder.end());
        assert.deepEqual(decodeAll(decoder, block), [[':status', String(status)], ...fields]);
        assert.equal(decoder.tableSize, 0);
      },
    ),
  );
});

test('fieldOf: fields taken from a parsed HTTP/1.1 head (bytes) or a field list read back exactly', () => {
  const name = fc.stringMatching(/^[A-Za-z0-9-]{1,20}$/);
  // Field values as HTTP/1.1 carries them: no whitespace at either end (the parser trims it), short ones
  // (copied by a loop) and long ones (a native copy).
  const value = fc
    .uint8Array({ maxLength: 120 })
    .map((b) => Buffer.from(b.map((c) => (c < 0x21 || c === 0x7f ? 0x61 : c))).toString('latin1'));
  const encoder = new HpackEncoder();
  const decoder = new HpackDecoder();
  const limits = { maxHeaderBytes: 1 << 20, maxHeaderCount: 1000, maxUriBytes: 8192 };
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.oneof(name, fc.constantFrom('Content-Type', 'server', 'Date', 'vary')), value), {
        maxLength: 12,
      }),
      (fields) => {
        const text = `HTTP/1.1 200 OK\r\n${fields.map(([n, v]) => `${n}: ${v}\r\n`).join('')}\r\n`;
        const buf = Buffer.from(text, 'latin1');
        const head = new ResponseHead();
        assert.equal(parseResponseHead(buf, 0, buf.length, limits, head), buf.length);
        const expected = [[':status', '200'], ...fields.map(([n, v]) => [n.toLowerCase(), v])];
        const list = new FieldList(fields.flatMap(([n, v]) => [n.toLowerCase(), v]));
        for (const source of [head, list]) {
          encoder.begin();
          encoder.status(200);
          for (let i = 0; i < source.fieldCount; i++) encoder.fieldOf(source.lowerFieldName(i), source, i);
          assert.deepEqual(decodeAll(decoder, Buffer.from(encoder.end())), expected);
        }
      },
    ),
  );
});

test('a static name+value pair is one byte', () => {
  const encoder = new HpackEncoder();
  encoder.begin();
  encoder.status(200);
  encoder.field('accept-encoding', 'gzip, deflate');
  assert.deepEqual([...encoder.end()], [0x88, 0x90]);
});

test('compression errors are refused with HpackError', () => {
  const cases: [string, string][] = [
    ['80', 'index 0'],
    ['be', 'index 62 with an empty dynamic table'],
    ['ff ff ff ff ff 0f', 'integer over 2^31'],
    ['ff 80', 'truncated integer'],
    ['0f', 'truncated name index'],
    ['00 85 61', 'string longer than the block'],
    ['00 81 1f 81 fe', 'Huffman padding that is not all ones (a then "!"-prefix)'],
    ['00 81 1f 84 ff ff ff ff', 'EOS encoded in the string'],
    ['00 81 1f 82 1f ff', 'padding longer than 7 bits'],
    ['82 20', 'table size update after a field'],
    ['3f e2 1f', 'table size update over the limit (4097)'],
  ];
  for (const [bytes, what] of cases) {
    assert.throws(() => decodeAll(new HpackDecoder(), hex(bytes)), HpackError, what);
  }
});

test('a table size update at the start of a block is honoured and evicts', () => {
  const d = new HpackDecoder();
  // literal with incremental indexing: custom-key: custom-value (54 bytes in the table)
  const insert = Buffer.concat([
    hex('40 0a'),
    Buffer.from('custom-key'),
    hex('0c'),
    Buffer.from('custom-value'),
  ]);
  decodeAll(d, insert);
  assert.equal(d.tableSize, 54);
  assert.deepEqual(decodeAll(d, hex('20 be').subarray(0, 1)), []);
  assert.equal(d.tableSize, 0);
  assert.throws(() => decodeAll(d, hex('be')), HpackError);
  // An entry larger than the whole table empties it and is not added.
  decodeAll(d, hex('3f 11')); // size 48
  decodeAll(d, insert);
  assert.equal(d.tableSize, 0);
});

test('a list over the size limit is decoded to the end but its extra fields are dropped', () => {
  const d = new HpackDecoder();
  const big = 'x'.repeat(1000);
  const insert = Buffer.concat([hex('40 01'), Buffer.from('a'), hex('7f e9 06'), Buffer.from(big)]);
  const bomb = Buffer.concat([insert, Buffer.alloc(2000, 0xbe)]);
  const out: string[] = [];
  assert.equal(d.decode(bomb, 0, bomb.length, out, 16 * 1024), DECODED_TOO_LARGE);
  assert.equal(out.length, 2 * 15); // 15 fields of 1033 bytes fit in 16 KiB
  // The table is still in step: the next block can index the entry.
  const out2: string[] = [];
  assert.equal(d.decode(hex('be'), 0, 1, out2, 16 * 1024), DECODED_OK);
  assert.deepEqual(out2, ['a', big]);
});

/**
 * Differential test against nghttp2's encoder: a node:http2 client sends requests with random fields to
 * a raw socket; the test reads the HEADERS frames and decodes them with one HpackDecoder per connection,
 * as a server would. nghttp2 uses Huffman coding, the dynamic table and eviction as it sees fit.
 */
test('header blocks from node:http2 (nghttp2) decode to exactly the fields sent', async () => {
  const sent: Record<string, string>[] = [];
  const decoded: string[][] = [];
  const server = net.createServer((socket) => {
    const decoder = new HpackDecoder();
    let buf = Buffer.alloc(0);
    let prefaceSeen = false;
    socket.write(settingsFrame([]));
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (!prefaceSeen) {
        if (buf.length < PREFACE.length) return;
        buf = buf.subarray(PREFACE.length);
        prefaceSeen = true;
      }
      while (buf.length >= 9) {
        const len = buf.readUIntBE(0, 3);
        if (buf.length < 9 + len) break;
        const type = buf[3]!;
        const flags = buf[4]!;
        const id = buf.readUInt32BE(5);
        if (type === FRAME.SETTINGS && !(flags & FLAG.ACK)) socket.write(frame(FRAME.SETTINGS, FLAG.ACK, 0));
        if (type === FRAME.HEADERS) {
          assert.ok(flags & FLAG.END_HEADERS);
          const out: string[] = [];
          decoder.decode(buf, 9, 9 + len, out, 1 << 30);
          decoded.push(out);
          const block = Buffer.from([0x88]); // :status 200
          socket.write(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, id, block));
        }
        buf = buf.subarray(9 + len);
      }
    });
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  const field = fc.tuple(
    fc.stringMatching(/^[a-z][a-z0-9-]{0,15}$/),
    fc.stringMatching(/^[\x21-\x7e]([\x20-\x7e]{0,40}[\x21-\x7e])?$/),
  );
  const requests = fc.sample(fc.array(field, { minLength: 1, maxLength: 12 }), { numRuns: 150, seed: 7 });
  const client = http2.connect(`http://127.0.0.1:${port}`);
  try {
    for (const fields of requests) {
      const headers: Record<string, string> = { ':path': '/p', ':authority': 'example.test' };
      for (const [n, v] of fields) if (!(n in headers) && !n.startsWith('x-http2')) headers[n] = v;
      delete headers.te;
      for (const hop of [
        'connection',
        'keep-alive',
        'upgrade',
        'transfer-encoding',
        'proxy-connection',
        'host',
      ])
        delete headers[hop];
      sent.push(headers);
      const req = client.request(headers, { endStream: true });
      await new Promise<void>((resolve, reject) => {
        req.on('response', () => resolve());
        req.on('error', reject);
      });
      req.close();
    }
  } finally {
    client.close();
    server.close();
  }
  assert.equal(decoded.length, sent.length);
  sent.forEach((headers, i) => {
    const got: Record<string, string> = {};
    const out = decoded[i]!;
    for (let j = 0; j < out.length; j += 2) got[out[j]!] = out[j + 1]!;
    delete got[':method'];
    delete got[':scheme'];
    assert.deepEqual(got, headers);
  });
  // Later requests reuse the dynamic table (indexed fields), so the table path was exercised.
  assert.ok(decoded.length >= 100);
});
