/**
 * Which local user opened a loopback connection, on Linux: the kernel lists every TCP socket with its owner's uid in
 * /proc/net/tcp and /proc/net/tcp6. The endpoint holds this user's production grant, so another user's process on
 * the same machine must not use it (node --inspect has no such check).
 */
import { readFileSync } from 'node:fs';

/**
 * The uid owning the client end of the connection from `remotePort` to `localPort`; 'unsupported' where the kernel
 * does not list sockets (not Linux); undefined when the connection is not listed (already gone).
 */
export function peerUid(localPort: number, remotePort: number): number | undefined | 'unsupported' {
  const tables: string[] = [];
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    try {
      tables.push(readFileSync(file, 'utf8'));
    } catch {
      /* absent: not Linux, or no IPv6 */
    }
  }
  if (tables.length === 0) return 'unsupported';
  const client = remotePort.toString(16).toUpperCase().padStart(4, '0');
  const server = localPort.toString(16).toUpperCase().padStart(4, '0');
  for (const table of tables) {
    for (const line of table.split('\n').slice(1)) {
      // sl local_address rem_address st tx:rx tr:when retrnsmt uid …
      const fields = line.trim().split(/\s+/);
      if (fields.length < 8) continue;
      const [, local, remote, , , , , uid] = fields;
      if (local!.endsWith(`:${client}`) && remote!.endsWith(`:${server}`) && isLoopback(local!) && isLoopback(remote!)) return Number(uid);
    }
  }
  return undefined;
}

/** 127.0.0.0/8 (little-endian hex in /proc), its IPv4-mapped IPv6 form, or ::1. */
function isLoopback(address: string): boolean {
  const ip = address.split(':')[0]!;
  if (ip.length === 8) return ip.endsWith('7F');
  return ip === '00000000000000000000000001000000' || (ip.startsWith('0000000000000000FFFF0000') && ip.endsWith('7F'));
}
