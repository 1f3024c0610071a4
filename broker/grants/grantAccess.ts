import type { LoupeConfig } from '../config/types';
import { LoupeError } from '../errors';
import type { Identity } from '../identity/verifyIdentity';
import { isAdmin, isOwner, rolesOf } from '../policy/access';
import type { Grant } from './grantStore';

/**
 * The same user: the same subject from the same issuer. Two trusted issuers may each have an "alice"; a subject alone
 * does not say which. (A record without an issuer comes from an older broker: its subject alone decides.)
 */
export function sameUser(holder: { readonly sub: string; readonly issuer?: string }, identity: Identity): boolean {
  return holder.sub === identity.sub && (holder.issuer === undefined || holder.issuer === identity.issuer);
}

/** Who may act on a grant: its holder, and (for revocation) an owner of its target or an admin; anyone else is refused. */
export function mayActOnGrant(config: LoupeConfig, identity: Identity, grant: Grant, action: string, allowOwnersAndAdmins: boolean): Grant {
  if (sameUser(grant, identity)) return grant;
  const roles = rolesOf(config, identity);
  const target = config.targets[grant.target];
  if (allowOwnersAndAdmins && (isAdmin(config, roles) || (target && isOwner(target, roles)))) return grant;
  throw new LoupeError('forbidden', `only the grant's holder${allowOwnersAndAdmins ? ', an owner of the target or an admin' : ''} may ${action} grant ${grant.grantId}`);
}
