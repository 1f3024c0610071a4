/**
 * Sign-in: the identity token in SecretStorage, renewed with the stored refresh token when it expires; signing in
 * through the configured OpenID provider (loupe.oidc.*) or, always available, with a pasted token. Commands
 * "Loupe: Sign In…" and "Loupe: Sign Out".
 */
import * as vscode from 'vscode';
import { BrokerApi, describeBrokerError } from '../adapter/brokerApi';
import { refreshTokens, signInWithBrowser, tokenExpiry, type OidcSettings, type OidcTokens } from '../oidcSignIn';

const TOKEN_KEY = 'loupe.identityToken';
const REFRESH_KEY = 'loupe.oidcRefresh';

export const brokerUrl = () => vscode.workspace.getConfiguration('loupe').get<string>('brokerUrl')?.trim() || '';

function oidcSettings(): OidcSettings | undefined {
  const settings = vscode.workspace.getConfiguration('loupe.oidc');
  const issuer = settings.get<string>('issuer')?.trim();
  const clientId = settings.get<string>('clientId')?.trim();
  if (!issuer || !clientId) return undefined;
  const resource = settings.get<string>('resource')?.trim();
  return { issuer, clientId, scopes: settings.get<string>('scopes')?.trim() || 'openid profile offline_access', ...(resource ? { resource } : {}) };
}

/** The signed-in identity, for every feature that asks the broker. */
export class Identity implements vscode.Disposable {
  private readonly changed = new vscode.EventEmitter<void>();
  /** Signed in or out: an owner's alerts may now be asked for, or not. */
  readonly onDidChange = this.changed.event;

  constructor(
    private readonly context: vscode.ExtensionContext,
    private readonly output: vscode.OutputChannel,
  ) {}

  /** The stored identity token; an expired one is renewed with the stored refresh token, or dropped (sign in again). */
  async token(): Promise<string | undefined> {
    const secrets = this.context.secrets;
    const current = await secrets.get(TOKEN_KEY);
    const expiresAt = current ? tokenExpiry(current) : undefined;
    // A margin, so a token does not expire between here and the broker.
    if (!current || expiresAt === undefined || expiresAt - 30_000 > Date.now()) return current;
    const oidc = oidcSettings();
    const saved = await secrets.get(REFRESH_KEY);
    let refresh: { issuer?: string; clientId?: string; refreshToken?: string } = {};
    try {
      refresh = saved ? JSON.parse(saved) : {};
    } catch {
      // unreadable: treated as absent
    }
    if (oidc && refresh.refreshToken && refresh.issuer === oidc.issuer && refresh.clientId === oidc.clientId) {
      try {
        const tokens = await refreshTokens(oidc, refresh.refreshToken);
        await secrets.store(TOKEN_KEY, tokens.brokerToken);
        if (tokens.refreshToken) await secrets.store(REFRESH_KEY, JSON.stringify({ issuer: oidc.issuer, clientId: oidc.clientId, refreshToken: tokens.refreshToken }));
        this.output.appendLine(`identity token renewed with ${oidc.issuer}`);
        return tokens.brokerToken;
      } catch (err) {
        this.output.appendLine(`identity token could not be renewed: ${(err as Error).message}`);
      }
    }
    await secrets.delete(TOKEN_KEY);
    await secrets.delete(REFRESH_KEY);
    return undefined;
  }

  /** The token, signing in when there is none. */
  async tokenOrSignIn(): Promise<string | undefined> {
    return (await this.token()) ?? (await this.signIn());
  }

  /** The broker's API with the signed-in identity (signing in first when needed). */
  async api(): Promise<BrokerApi | undefined> {
    const url = brokerUrl();
    const t = await this.tokenOrSignIn();
    if (!t) return undefined;
    return new BrokerApi(brokerUrl() || url, t);
  }

  /** Sign-in through the configured OpenID provider (loupe.oidc.*) or, always available, a pasted token. */
  async signIn(): Promise<string | undefined> {
    let url = brokerUrl();
    if (!url) {
      url = (await vscode.window.showInputBox({ title: 'Loupe: broker URL', prompt: 'The URL of your Loupe broker', placeHolder: 'https://loupe.example.com', ignoreFocusOut: true })) ?? '';
      if (!url) return undefined;
      await vscode.workspace.getConfiguration('loupe').update('brokerUrl', url, vscode.ConfigurationTarget.Global);
    }
    const oidc = oidcSettings();
    if (oidc) {
      const choice = await vscode.window.showQuickPick(
        [
          { label: `Sign in with ${oidc.issuer}`, description: 'opens your browser', browser: true },
          { label: 'Paste a development token', description: '`loupe token`, or a token from your identity provider', browser: false },
        ],
        { title: 'Loupe: Sign In', ignoreFocusOut: true },
      );
      if (!choice) return undefined;
      if (choice.browser) return this.signInWithProvider(url, oidc);
    }
    const value = await vscode.window.showInputBox({
      title: 'Loupe: Sign In',
      prompt: `Identity token for ${url} (from your identity provider, or \`loupe token\` for the development issuer). Kept in VS Code's secret storage.`,
      password: true,
      ignoreFocusOut: true,
      validateInput: (v) => (v.trim().split('.').length === 3 ? undefined : 'expected a JWT (three dot-separated parts)'),
    });
    if (!value) return undefined;
    return this.keepToken(url, value.trim());
  }

  dispose(): void {
    this.changed.dispose();
  }

  async signOut(): Promise<void> {
    await this.context.secrets.delete(TOKEN_KEY);
    await this.context.secrets.delete(REFRESH_KEY);
    this.changed.fire();
  }

  private async signInWithProvider(url: string, oidc: OidcSettings): Promise<string | undefined> {
    let tokens: OidcTokens;
    try {
      tokens = await vscode.window.withProgress(
        { location: vscode.ProgressLocation.Notification, title: `Loupe: signing in with ${oidc.issuer} in your browser…`, cancellable: true },
        (_progress, cancel) => {
          const abort = new AbortController();
          cancel.onCancellationRequested(() => abort.abort());
          return signInWithBrowser(oidc, { openBrowser: (authorizeUrl) => vscode.env.openExternal(vscode.Uri.parse(authorizeUrl)), signal: abort.signal });
        },
      );
    } catch (err) {
      void vscode.window.showErrorMessage(`Loupe: sign-in failed: ${(err as Error).message}`);
      return undefined;
    }
    return this.keepToken(url, tokens.brokerToken, oidc, tokens.refreshToken);
  }

  /** Keeps a token once the broker accepts it (and the refresh token that renews it), both in SecretStorage. */
  private async keepToken(url: string, candidate: string, oidc?: OidcSettings, refreshToken?: string): Promise<string | undefined> {
    try {
      const targets = await new BrokerApi(url, candidate).targets();
      await this.context.secrets.store(TOKEN_KEY, candidate);
      if (oidc && refreshToken) await this.context.secrets.store(REFRESH_KEY, JSON.stringify({ issuer: oidc.issuer, clientId: oidc.clientId, refreshToken }));
      else await this.context.secrets.delete(REFRESH_KEY);
      this.changed.fire();
      void vscode.window.showInformationMessage(
        `Loupe: signed in to ${url}. You may attach to ${targets.length} target${targets.length === 1 ? '' : 's'}${targets.length ? `: ${targets.map((t) => t.name).join(', ')}` : ''}.`,
      );
      return candidate;
    } catch (err) {
      void vscode.window.showErrorMessage(`Loupe: sign-in failed: ${describeBrokerError(err)}`);
      return undefined;
    }
  }
}

export function register(context: vscode.ExtensionContext, deps: { output: vscode.OutputChannel }): Identity {
  const identity = new Identity(context, deps.output);
  context.subscriptions.push(
    identity,
    vscode.commands.registerCommand('loupe.signIn', () => identity.signIn()),
    vscode.commands.registerCommand('loupe.signOut', async () => {
      await identity.signOut();
      void vscode.window.showInformationMessage('Loupe: signed out.');
    }),
  );
  return identity;
}
