/**
 * The path and query of an HTTP request as its request line sent them. `new URL(req.url, base)` is no parser for
 * this: it throws on a target like `///` (an unauthenticated request that then faulted the server) and reads
 * `//host/path` as a host, answering for a path the client did not ask. Only the origin form (`/path?query`)
 * names a resource here; any other form is undefined, for the caller to refuse.
 */
export function requestTarget(raw: string | undefined): { readonly path: string; readonly query: URLSearchParams } | undefined {
  const target = raw ?? '/';
  if (!target.startsWith('/')) return undefined;
  const mark = target.indexOf('?');
  return mark < 0 ? { path: target, query: new URLSearchParams() } : { path: target.slice(0, mark), query: new URLSearchParams(target.slice(mark + 1)) };
}

/** The path a request sent, for messages and records: its origin-form path, or (any other form) the target itself, cut short. */
export function sentPath(raw: string | undefined): string {
  return requestTarget(raw)?.path ?? String(raw).slice(0, 200);
}
