/**
 * The demo origin started by `zproxy run` without a config (`npm start`): a tiny HTTP server that answers
 * every request with a JSON description of what it received, so a proxied answer is visible at once.
 */
import http from 'node:http';

export const DEMO_ORIGIN_PORT = 8001;

export function startDemoOrigin(host = '127.0.0.1', port = DEMO_ORIGIN_PORT): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    let received = 0;
    req.on('data', (chunk: Buffer) => {
      received += chunk.length;
    });
    req.on('end', () => {
      const body = JSON.stringify(
        {
          message: 'Hello from the zproxy demo origin',
          method: req.method,
          url: req.url,
          http_version: req.httpVersion,
          body_bytes: received,
          headers: req.headers,
        },
        null,
        2,
      );
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(`${body}`);
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}
