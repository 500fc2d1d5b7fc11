/**
 * h2Request(): one request on a node:http2 client session, with optional body and request trailers;
 * resolves with the status, response headers, trailers and the whole body.
 */
import type http2 from 'node:http2';

export interface H2Response {
  readonly status: number;
  readonly headers: http2.IncomingHttpHeaders;
  readonly trailers: http2.IncomingHttpHeaders;
  readonly body: Buffer;
}

export function h2Request(
  client: http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders,
  body?: Buffer,
  requestTrailers?: http2.OutgoingHttpHeaders,
): Promise<H2Response> {
  return new Promise((resolve, reject) => {
    const req = client.request(headers, {
      endStream: body === undefined,
      waitForTrailers: requestTrailers !== undefined,
    });
    if (requestTrailers !== undefined) req.on('wantTrailers', () => req.sendTrailers(requestTrailers));
    const chunks: Buffer[] = [];
    let responseHeaders: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    req.on('response', (h) => {
      responseHeaders = h;
    });
    req.on('trailers', (t) => {
      trailers = t;
    });
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () =>
      resolve({
        status: Number(responseHeaders[':status']),
        headers: responseHeaders,
        trailers,
        body: Buffer.concat(chunks),
      }),
    );
    req.on('error', reject);
    if (body !== undefined) req.end(body);
  });
}
