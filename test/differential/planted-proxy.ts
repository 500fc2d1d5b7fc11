/**
 * A deliberately wrong proxy for the harness's self-test: it frames every request by its Content-Length
 * alone (a Transfer-Encoding field is dropped, the body is not de-chunked), the classic CL.TE desync. It
 * forwards each request on a fresh upstream connection and relays the answer. The harness must report
 * what it does differently from nginx and HAProxy.
 */
import net from 'node:net';

export interface PlantedProxy {
  readonly port: number;
  close(): Promise<void>;
}

export async function startPlantedProxy(upstreamPort: number): Promise<PlantedProxy> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    sockets.add(client);
    client.setTimeout(10_000, () => client.destroy());
    client.on('error', () => {});
    client.on('close', () => sockets.delete(client));
    let input = '';
    let busy = false;
    const next = () => {
      if (busy) return;
      const headEnd = input.indexOf('\r\n\r\n');
      if (headEnd === -1) return;
      const lines = input.slice(0, headEnd).split('\r\n');
      const cl = lines.find((l) => /^content-length:/i.test(l));
      const length = cl === undefined ? 0 : Number.parseInt(cl.slice(cl.indexOf(':') + 1).trim(), 10) || 0;
      if (input.length < headEnd + 4 + length) return;
      const kept = lines.filter((l) => !/^transfer-encoding:/i.test(l));
      const request = `${kept.join('\r\n')}\r\n\r\n${input.slice(headEnd + 4, headEnd + 4 + length)}`;
      input = input.slice(headEnd + 4 + length);
      busy = true;
      const upstream = net.connect({ host: '127.0.0.1', port: upstreamPort });
      sockets.add(upstream);
      upstream.setTimeout(10_000, () => upstream.destroy());
      upstream.on('error', () => {});
      upstream.on('connect', () => upstream.write(Buffer.from(request, 'latin1')));
      upstream.on('data', (c: Buffer) => client.write(c));
      upstream.on('close', () => {
        sockets.delete(upstream);
        busy = false;
        next();
      });
    };
    client.on('data', (c: Buffer) => {
      input += c.latin1Slice(0, c.length);
      next();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
