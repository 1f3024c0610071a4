/**
 * Standalone entry of the Loupe debug adapter (dist/debugAdapter.js): DAP on stdin/stdout, or, with --server=PORT,
 * on a TCP port of 127.0.0.1 (one session per connection). Tests drive this very file.
 *
 * The server is ours rather than DebugSession.run's: that one ignores a --server value it cannot read (and then
 * speaks DAP on stdin/stdout as if nothing was asked), listens on every interface, and leaves a session's broker
 * connection open when its client goes away without a disconnect. Here a bad value is an error, the port is on
 * loopback only, and a client that vanishes ends its session (the broker removes its breakpoints and resumes the
 * target).
 */
import { createServer, type Socket } from 'node:net';
import { parseArgs } from 'node:util';
import { LoupeDebugSession } from './loupeDebugSession';

const usage = 'usage: node debugAdapter.js [--server=PORT]   (DAP on stdin/stdout, or on 127.0.0.1:PORT; PORT 1-65535, or 0 for a free one)';

function fail(message: string): never {
  process.stderr.write(`loupe debug adapter: ${message}\n${usage}\n`);
  process.exit(2);
}

/** The --server port, undefined for stdin/stdout; exits with a message for anything it cannot use. */
function serverPort(argv: string[]): number | undefined {
  let values: { server?: string; help?: boolean };
  try {
    ({ values } = parseArgs({ args: argv, options: { server: { type: 'string' }, help: { type: 'boolean', short: 'h' } }, strict: true, allowPositionals: false }));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') fail('--server needs a port: --server=PORT');
    const unknown = argv.find((arg) => !/^(?:--server(?:=.*)?|--help|-h)$/.test(arg));
    fail(unknown !== undefined ? `unknown argument "${unknown}"` : (err as Error).message);
  }
  if (values.help) {
    process.stdout.write(`${usage}\n`);
    process.exit(0);
  }
  const value = values.server;
  if (value === undefined) return undefined;
  if (value === '') fail('--server needs a port: --server=PORT');
  if (!/^\d{1,5}$/.test(value) || Number(value) > 65535) fail(`--server=${value}: not a TCP port (a whole number from 1 to 65535, or 0 for a free one)`);
  return Number(value);
}

function serve(port: number): void {
  const server = createServer((socket: Socket) => {
    const session = new LoupeDebugSession();
    session.setRunAsServer(true);
    // The protocol layer reports stream errors as 'error' events: a socket reset must not end the process.
    let closed = false;
    session.on('error', (event: { body?: unknown }) => {
      if (!closed) process.stderr.write(`loupe debug adapter: ${String(event?.body ?? 'stream error')}\n`);
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      // Whatever the client did or did not say: its session ends with it. A session already disconnected answers
      // again into the closed socket, which is ignored.
      closed = true;
      session.handleMessage({ seq: 0, type: 'request', command: 'disconnect', arguments: {} } as Parameters<LoupeDebugSession['handleMessage']>[0]);
    });
    session.start(socket, socket);
  });
  server.on('error', (err: NodeJS.ErrnoException) => {
    const why = err.code === 'EADDRINUSE' ? 'the port is in use' : err.code === 'EACCES' ? 'not allowed to listen on it' : err.message;
    process.stderr.write(`loupe debug adapter: cannot listen on 127.0.0.1:${port}: ${why}\n`);
    process.exit(1);
  });
  server.listen(port, '127.0.0.1', () => {
    const address = server.address();
    const actual = typeof address === 'object' && address ? address.port : port;
    process.stderr.write(`loupe debug adapter: listening for DAP on 127.0.0.1:${actual}\n`);
  });
}

const port = serverPort(process.argv.slice(2));
if (port === undefined) LoupeDebugSession.run(LoupeDebugSession);
else serve(port);
