/**
 * The demo origin on its own, for the container setup (compose.yaml's `origin` service):
 * `node dist/demo/origin-main.js`, listening on DEMO_ORIGIN_HOST (default 0.0.0.0) and DEMO_ORIGIN_PORT
 * (default 8001). Stops on SIGTERM and SIGINT.
 */
import { DEMO_ORIGIN_PORT, startDemoOrigin } from './origin.ts';

const host = process.env.DEMO_ORIGIN_HOST ?? '0.0.0.0';
const port = Number(process.env.DEMO_ORIGIN_PORT ?? DEMO_ORIGIN_PORT);
const server = await startDemoOrigin(host, port);
process.stdout.write(`${JSON.stringify({ msg: 'demo origin listening', host, port })}\n`);
const stop = (): void => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  // WebSocket tunnels are not the HTTP server's to close: they get a second, then the process ends.
  setTimeout(() => process.exit(0), 1000);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
