/** The help text, one place for every command. */
export const USAGE = `Usage: zproxy <command> [options]

Commands:
  run [CONFIG]           Start the proxy. CONFIG defaults to ./zproxy.json when it exists,
                         otherwise the built-in demo (proxy on 127.0.0.1:8000 and, with TLS,
                         :8443; demo origin on :8001).
    --log-level LEVEL    fatal, error, warn, info, debug, trace or silent (default: info)
    --watch              Reload when CONFIG changes (checked every second), as SIGHUP does
  check CONFIG           Validate a configuration file; list every problem and warning.
    --json               Print the result as JSON on stdout.
  reload [CONFIG]        Make the zproxy running CONFIG (default ./zproxy.json) read it again, through
                         its admin listener (the config's admin block); exit 1 with the errors when
                         the file is refused (the running config keeps serving). SIGHUP does the same.
    --json               Print the instance's answer as JSON on stdout.
  health [CONFIG]        Exit 0 when the zproxy running CONFIG is alive: GET /healthz at its admin
                         listener, else a connection to its first listener (a container HEALTHCHECK).
  explain CONFIG METHOD URL
                         Show, without sending anything, what zproxy does with the request:
                         listener, route (or why 404/405), filters, upstream targets and the
                         head the upstream would receive.
    -H "name: value"     A request field (repeatable; Host replaces the URL's authority)
    --client ADDRESS     The client's IP address (default 127.0.0.1)
    --json               Print the explanation as JSON on stdout.
  bench URL              Load a URL (http://, https://, ws://, wss://) and report req/s, latency
                         percentiles, statuses, errors and the generator's own CPU.
    -c, --connections N  Connections (default 10)
    -d, --duration D     How long: 10s, 500ms, 1m or seconds (default 10s)
    --concurrency N      Requests in flight per connection: HTTP/1.1 pipelining depth,
                         HTTP/2 streams, WebSocket messages (default 1; 10 for http2)
    --no-keepalive       HTTP/1.1: one connection per request
    --protocol P         http1, http2 (TLS for https://, h2c for http://) or websocket
                         (default: websocket for ws:// and wss://, else http1)
    --rate N             Constant rate, N requests per second in all; latencies corrected
                         for coordinated omission (default: closed loop, as fast as answered)
    --method M           Request method (default GET; POST with a body)
    -H "name: value"     A request field (repeatable)
    --body TEXT          The request body (WebSocket: the message)
    --body-file FILE     The request body from a file
    --message-bytes N    WebSocket message size (default 64)
    -t, --threads N      Worker threads, each running its share of the connections (default 1)
    --timeout D          A request unanswered this long is an error (default 10s)
    -k, --insecure       Do not verify the target's TLS certificate
    --json               Print every figure as JSON on stdout.
  compare                Measure zproxy against nginx, HAProxy, Caddy and Envoy (those on the
                         PATH; a missing one is reported and skipped) with zproxy's own generator:
                         req/s per core, latency percentiles, peak RSS; see zproxy compare --help.
    --all                Every scenario (HTTP/1.1 small, 64k, 1m, close; h2c, h2; ws; filters)
    --config FILE        zproxy runs FILE, the others the same plain routes
    --report DIR         Write DIR/report.html with charts, report.md and report.json

Options:
  -h, --help             Show this help (also: zproxy help, zproxy <command> --help).
  -v, --version          Show the version.

Exit status: 0 success, 1 invalid configuration or failure (bench: no request completed;
compare: it could not run, or a run had errors),
2 bad command line. explain exits 0 whatever the answer would be.
`;
