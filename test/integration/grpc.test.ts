import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import { CertDir } from '../helpers/certs.ts';
import { type StartedProxy, startProxy } from '../helpers/proxy.ts';

interface EchoRequest {
  text: string;
  count: number;
}
interface EchoReply {
  text: string;
  index: number;
}

type EchoClient = grpc.Client & {
  Unary(
    req: EchoRequest,
    md: grpc.Metadata,
    opts: grpc.CallOptions,
    cb: (err: grpc.ServiceError | null, res?: EchoReply) => void,
  ): grpc.ClientUnaryCall;
  ServerStream(req: EchoRequest, md?: grpc.Metadata): grpc.ClientReadableStream<EchoReply>;
  ClientStream(
    cb: (err: grpc.ServiceError | null, res?: EchoReply) => void,
  ): grpc.ClientWritableStream<EchoRequest>;
  Bidi(): grpc.ClientDuplexStream<EchoRequest, EchoReply>;
  Fail(req: EchoRequest, cb: (err: grpc.ServiceError | null, res?: EchoReply) => void): grpc.ClientUnaryCall;
  Slow(
    req: EchoRequest,
    md: grpc.Metadata,
    opts: grpc.CallOptions,
    cb: (err: grpc.ServiceError | null, res?: EchoReply) => void,
  ): grpc.ClientUnaryCall;
};

const definition = protoLoader.loadSync(new URL('../fixtures/grpc/echo.proto', import.meta.url).pathname, {
  keepCase: true,
  defaults: true,
});
const pkg = grpc.loadPackageDefinition(definition) as unknown as {
  zproxy: { test: { Echo: grpc.ServiceClientConstructor } };
};
const Echo = pkg.zproxy.test.Echo;

/** Calls cancelled on the server (the Slow handler records how long after the call started). */
const cancelledAfterMs: number[] = [];

function makeServer(): grpc.Server {
  const server = new grpc.Server();
  server.addService(Echo.service, {
    Unary(call: grpc.ServerUnaryCall<EchoRequest, EchoReply>, cb: grpc.sendUnaryData<EchoReply>) {
      const seen = call.metadata.get('x-client-meta')[0];
      const md = new grpc.Metadata();
      md.set('x-server-header', 'head-value');
      call.sendMetadata(md);
      const trailer = new grpc.Metadata();
      trailer.set('x-server-trailer', 'trailer-value');
      cb(null, { text: `echo ${call.request.text} meta=${String(seen)}`, index: 0 }, trailer);
    },
    ServerStream(call: grpc.ServerWritableStream<EchoRequest, EchoReply>) {
      for (let i = 0; i < call.request.count; i++)
        call.write({ text: `${call.request.text}-${i}`, index: i });
      call.end();
    },
    ClientStream(call: grpc.ServerReadableStream<EchoRequest, EchoReply>, cb: grpc.sendUnaryData<EchoReply>) {
      const texts: string[] = [];
      call.on('data', (m: EchoRequest) => texts.push(m.text));
      call.on('end', () => cb(null, { text: texts.join(','), index: texts.length }));
    },
    Bidi(call: grpc.ServerDuplexStream<EchoRequest, EchoReply>) {
      let i = 0;
      call.on('data', (m: EchoRequest) => call.write({ text: `re:${m.text}`, index: i++ }));
      call.on('end', () => call.end());
    },
    Fail(_call: grpc.ServerUnaryCall<EchoRequest, EchoReply>, cb: grpc.sendUnaryData<EchoReply>) {
      cb({ code: grpc.status.FAILED_PRECONDITION, details: 'the widget is not ready: ünïcode ok' });
    },
    Slow(call: grpc.ServerUnaryCall<EchoRequest, EchoReply>, cb: grpc.sendUnaryData<EchoReply>) {
      const start = Date.now();
      const timer = setTimeout(() => cb(null, { text: 'too late', index: 0 }), 5000);
      call.on('cancelled', () => {
        clearTimeout(timer);
        cancelledAfterMs.push(Date.now() - start);
      });
    },
  });
  return server;
}

function bind(server: grpc.Server, credentials: grpc.ServerCredentials): Promise<number> {
  return new Promise((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', credentials, (err, port) => (err ? reject(err) : resolve(port))),
  );
}

/** A unary call; resolves once both the reply and the final status (with its trailers) have arrived. */
function unary(client: EchoClient, req: EchoRequest, md = new grpc.Metadata()) {
  return new Promise<{ reply: EchoReply; headers: grpc.Metadata; trailers: grpc.Metadata }>(
    (resolve, reject) => {
      let headers = new grpc.Metadata();
      let reply: EchoReply | null = null;
      let trailers: grpc.Metadata | null = null;
      const done = () => {
        if (reply !== null && trailers !== null) resolve({ reply, headers, trailers });
      };
      const call = client.Unary(req, md, {}, (err, res) => {
        if (err) reject(err);
        else {
          reply = res!;
          done();
        }
      });
      call.on('metadata', (m: grpc.Metadata) => {
        headers = m;
      });
      call.on('status', (s: grpc.StatusObject) => {
        trailers = s.metadata;
        done();
      });
    },
  );
}

function runCalls(getClient: () => EchoClient) {
  test('unary call, with metadata both ways (headers and trailers)', async () => {
    const md = new grpc.Metadata();
    md.set('x-client-meta', 'from-client');
    const { reply, headers, trailers } = await unary(getClient(), { text: 'hi', count: 0 }, md);
    assert.equal(reply.text, 'echo hi meta=from-client');
    assert.equal(headers.get('x-server-header')[0], 'head-value');
    assert.equal(trailers.get('x-server-trailer')[0], 'trailer-value');
  });

  test('server streaming: 100 messages in order', async () => {
    const got: EchoReply[] = [];
    await new Promise<void>((resolve, reject) => {
      const call = getClient().ServerStream({ text: 's', count: 100 });
      call.on('data', (m: EchoReply) => got.push(m));
      call.on('error', reject);
      call.on('end', resolve);
    });
    assert.equal(got.length, 100);
    got.forEach((m, i) => {
      assert.equal(m.index, i);
      assert.equal(m.text, `s-${i}`);
    });
  });

  test('client streaming: 100 messages in order', async () => {
    const reply = await new Promise<EchoReply>((resolve, reject) => {
      const call = getClient().ClientStream((err, res) => (err ? reject(err) : resolve(res!)));
      for (let i = 0; i < 100; i++) call.write({ text: String(i), count: 0 });
      call.end();
    });
    assert.equal(reply.index, 100);
    assert.equal(reply.text, Array.from({ length: 100 }, (_, i) => String(i)).join(','));
  });

  test('bidirectional streaming: 100 messages each way, interleaved, in order', async () => {
    const got: EchoReply[] = [];
    await new Promise<void>((resolve, reject) => {
      const call = getClient().Bidi();
      let sent = 0;
      // Each message is sent after the previous answer arrived: the stream is really interleaved.
      call.on('data', (m: EchoReply) => {
        got.push(m);
        if (sent < 100) call.write({ text: String(sent++), count: 0 });
        else call.end();
      });
      call.on('error', reject);
      call.on('end', resolve);
      call.write({ text: String(sent++), count: 0 });
    });
    assert.equal(got.length, 101 - 1);
    got.forEach((m, i) => {
      assert.equal(m.index, i);
      assert.equal(m.text, `re:${i}`);
    });
  });

  test('an error status arrives with its code and message intact', async () => {
    const err = await new Promise<grpc.ServiceError>((resolve) => {
      getClient().Fail({ text: '', count: 0 }, (e) => resolve(e!));
    });
    assert.equal(err.code, grpc.status.FAILED_PRECONDITION);
    assert.equal(err.details, 'the widget is not ready: ünïcode ok');
  });

  test('a client deadline: DEADLINE_EXCEEDED for the client, and the server sees its call cancelled', async () => {
    const before = cancelledAfterMs.length;
    const start = Date.now();
    const err = await new Promise<grpc.ServiceError>((resolve) => {
      getClient().Slow({ text: '', count: 0 }, new grpc.Metadata(), { deadline: Date.now() + 300 }, (e) =>
        resolve(e!),
      );
    });
    assert.equal(err.code, grpc.status.DEADLINE_EXCEEDED);
    assert.ok(Date.now() - start < 2000);
    while (cancelledAfterMs.length === before && Date.now() - start < 2000) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(cancelledAfterMs.length, before + 1, 'the server saw the cancellation');
    assert.ok(cancelledAfterMs.at(-1)! < 1300, `cancelled after ${cancelledAfterMs.at(-1)} ms`);
  });
}

describe('gRPC through zproxy over h2c (client -> zproxy h2c -> h2c:// upstream)', () => {
  let server: grpc.Server;
  let proxy: StartedProxy;
  let client: EchoClient;

  before(async () => {
    server = makeServer();
    const port = await bind(server, grpc.ServerCredentials.createInsecure());
    proxy = await startProxy({
      protocols: ['http1', 'http2'],
      routes: [{ path: '/zproxy.test.Echo', upstream: `h2c://127.0.0.1:${port}`, methods: ['POST'] }],
    });
    client = new Echo(`127.0.0.1:${proxy.port}`, grpc.credentials.createInsecure()) as unknown as EchoClient;
  });
  after(async () => {
    client.close();
    await proxy.close();
    await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
  });

  runCalls(() => client);

  test('every call went through zproxy (access log)', async () => {
    await new Promise((r) => setTimeout(r, 50));
    const lines = proxy.accessLogs().filter((l) => String(l.target).startsWith('/zproxy.test.Echo/'));
    const methods = new Set(lines.map((l) => String(l.target).split('/')[2]));
    for (const m of ['Unary', 'ServerStream', 'ClientStream', 'Bidi', 'Fail', 'Slow'])
      assert.ok(methods.has(m), m);
    assert.ok(lines.every((l) => l.version === '2'));
  });
});

describe('gRPC through zproxy over TLS both ways (client -> zproxy h2 -> h2:// upstream)', () => {
  let certs: CertDir;
  let server: grpc.Server;
  let proxy: StartedProxy;
  let client: EchoClient;

  before(async () => {
    certs = new CertDir();
    const ca = certs.makeCa('ca', 'zproxy grpc CA');
    const upstreamCert = certs.makeSigned('upstream', ['grpc.upstream.test'], ca);
    const proxyCert = certs.makeSigned('proxy', ['grpc.proxy.test'], ca);
    server = makeServer();
    const port = await bind(
      server,
      grpc.ServerCredentials.createSsl(null, [
        { cert_chain: readFileSync(upstreamCert.cert), private_key: readFileSync(upstreamCert.key) },
      ]),
    );
    proxy = await startProxy({
      protocols: ['http1', 'http2'],
      tls: { enabled: true, cert_file: proxyCert.cert, key_file: proxyCert.key },
      upstream_defaults: { tls: { ca_file: ca.cert, server_name: 'grpc.upstream.test' } },
      routes: [{ path: '/zproxy.test.Echo', upstream: `h2://127.0.0.1:${port}`, methods: ['POST'] }],
    });
    client = new Echo(`127.0.0.1:${proxy.port}`, grpc.credentials.createSsl(readFileSync(ca.cert)), {
      'grpc.ssl_target_name_override': 'grpc.proxy.test',
    }) as unknown as EchoClient;
  });
  after(async () => {
    client.close();
    await proxy.close();
    await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
    certs.remove();
  });

  runCalls(() => client);
});
