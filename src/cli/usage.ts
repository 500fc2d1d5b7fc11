/** The help text, one place for every command. */
export const USAGE = `Usage: zproxy <command> [options]

Commands:
  run [CONFIG]           Start the proxy. CONFIG defaults to ./zproxy.json when it exists,
                         otherwise the built-in demo (proxy on 127.0.0.1:8000, demo origin on :8001).
    --log-level LEVEL    fatal, error, warn, info, debug, trace or silent (default: info)
  check CONFIG           Validate a configuration file; list every problem and warning.
    --json               Print the result as JSON on stdout.

Options:
  -h, --help             Show this help (also: zproxy help, zproxy <command> --help).
  -v, --version          Show the version.

Exit status: 0 success, 1 invalid configuration or failure, 2 bad command line.
`;
