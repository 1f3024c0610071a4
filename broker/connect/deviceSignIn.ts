/**
 * Sign-in from a terminal: the OAuth 2.0 device authorization grant (RFC 8628) through oauth4webapi. The user opens
 * the verification URL in any browser and enters the code; this process polls the token endpoint until the provider
 * answers. The token the broker gets is chosen as the editor's sign-in chooses it (extension/oidcSignIn.ts).
 */
import * as oauth from 'oauth4webapi';
import { sleep } from '../../extension/adapter/accessRequests';
import { discoverProvider, OidcSignInError, signInError, tokenRequestOptions, tokensFrom, type OidcSettings, type OidcTokens } from '../../extension/oidcSignIn';

export interface DevicePrompt {
  readonly verificationUri: string;
  /** The URL with the code in it, where the provider gives one. */
  readonly verificationUriComplete?: string;
  readonly userCode: string;
  /** Seconds the code stays valid. */
  readonly expiresIn: number;
}

export interface DeviceSignInOptions {
  /** Shows the URL and code to the user. */
  readonly onPrompt: (prompt: DevicePrompt) => void;
  readonly signal?: AbortSignal;
  /** Poll interval when the provider names none (RFC 8628 says 5 s). */
  readonly defaultIntervalMs?: number;
}

export async function signInWithDeviceCode(settings: OidcSettings, options: DeviceSignInOptions): Promise<OidcTokens> {
  const provider = await discoverProvider(settings.issuer);
  if (typeof provider.device_authorization_endpoint !== 'string') {
    throw new OidcSignInError(
      `${settings.issuer} offers no device authorization endpoint (the sign-in for terminals): ask for it to be enabled for ${settings.clientId}, or pass a token with --token-file or LOUPE_TOKEN`,
    );
  }
  const client: oauth.Client = { client_id: settings.clientId };
  let device: oauth.DeviceAuthorizationResponse;
  try {
    const parameters: Record<string, string> = { scope: settings.scopes, ...(settings.resource ? { resource: settings.resource } : {}) };
    const response = await oauth.deviceAuthorizationRequest(provider, client, oauth.None(), parameters, tokenRequestOptions(settings));
    device = await oauth.processDeviceAuthorizationResponse(provider, client, response);
  } catch (err) {
    throw signInError(err, 'the device authorization endpoint', provider.device_authorization_endpoint);
  }
  options.onPrompt({
    verificationUri: device.verification_uri,
    ...(device.verification_uri_complete ? { verificationUriComplete: device.verification_uri_complete } : {}),
    userCode: device.user_code,
    expiresIn: device.expires_in,
  });
  let intervalMs = typeof device.interval === 'number' ? device.interval * 1000 : (options.defaultIntervalMs ?? 5000);
  const deadline = Date.now() + device.expires_in * 1000;
  for (;;) {
    if (options.signal?.aborted) throw new OidcSignInError('sign-in cancelled');
    await sleep(intervalMs, options.signal).catch(() => {
      throw new OidcSignInError('sign-in cancelled');
    });
    if (Date.now() > deadline) throw new OidcSignInError(`the code ${device.user_code} expired before the sign-in was completed; run the command again`);
    try {
      const response = await oauth.deviceCodeGrantRequest(provider, client, oauth.None(), device.device_code, tokenRequestOptions(settings));
      return tokensFrom(await oauth.processDeviceCodeResponse(provider, client, response), settings);
    } catch (err) {
      if (err instanceof oauth.ResponseBodyError && err.error === 'authorization_pending') continue;
      // RFC 8628 §3.5: slow down adds 5 s to the interval for this and later requests.
      if (err instanceof oauth.ResponseBodyError && err.error === 'slow_down') {
        intervalMs += 5000;
        continue;
      }
      if (err instanceof oauth.ResponseBodyError && err.error === 'access_denied') throw new OidcSignInError('the sign-in was declined in the browser', { cause: err });
      if (err instanceof oauth.ResponseBodyError && err.error === 'expired_token')
        throw new OidcSignInError(`the code ${device.user_code} expired before the sign-in was completed; run the command again`, { cause: err });
      throw signInError(err, 'the token endpoint', provider.token_endpoint!);
    }
  }
}
