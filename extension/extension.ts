/**
 * The Loupe VS Code extension: commands, the `loupe` debug type (its adapter runs inline), sign-in with the
 * identity token kept in SecretStorage, and a status bar countdown of the grant. A convenience, not a guard:
 * the broker enforces everything.
 */
import * as vscode from 'vscode';
import { outcomeText, pendingText, waitForDecision } from './adapter/accessRequests';
import { BrokerApi, describeBrokerError, type AccessRequestInfo, type GrantAnswer, type TargetInfo } from './adapter/brokerApi';
import type { GrantEventBody, LoupeAttachArguments, SessionEndedEventBody } from './adapter/config';
import { LoupeDebugSession } from './adapter/loupeDebugSession';
import { AlertsView } from './alertsView';
import { refreshTokens, signInWithBrowser, tokenExpiry, type OidcSettings, type OidcTokens } from './oidcSignIn';
import { describeCheck, listRecordedSessions, NotAuditorError, saveTranscript, sessionRow } from './transcripts';
import { SnapshotsView } from './snapshotsView';

const TOKEN_KEY = 'loupe.identityToken';
const REFRESH_KEY = 'loupe.oidcRefresh';
const DEBUG_TYPE = 'loupe';

interface LiveGrant extends GrantEventBody {
  session: vscode.DebugSession;
}

export interface LoupeExtensionApi {
  /** Live Loupe sessions and their grants (for the integration tests). */
  liveGrants(): readonly GrantEventBody[];
  statusBarText(): string | undefined;
}

export function activate(context: vscode.ExtensionContext): LoupeExtensionApi {
  const live = new Map<string, LiveGrant>();
  const output = vscode.window.createOutputChannel('Loupe');
  const status = vscode.window.createStatusBarItem('loupe.session', vscode.StatusBarAlignment.Left, 100);
  status.name = 'Loupe session';
  status.command = 'loupe.endSession';
  context.subscriptions.push(output, status);

  const brokerUrl = () => vscode.workspace.getConfiguration('loupe').get<string>('brokerUrl')?.trim() || '';
  const oidcSettings = (): OidcSettings | undefined => {
    const settings = vscode.workspace.getConfiguration('loupe.oidc');
    const issuer = settings.get<string>('issuer')?.trim();
    const clientId = settings.get<string>('clientId')?.trim();
    if (!issuer || !clientId) return undefined;
    const resource = settings.get<string>('resource')?.trim();
    return { issuer, clientId, scopes: settings.get<string>('scopes')?.trim() || 'openid profile offline_access', ...(resource ? { resource } : {}) };
  };

  /** The stored identity token; an expired one is renewed with the stored refresh token, or dropped (sign in again). */
  async function token(): Promise<string | undefined> {
    const current = await context.secrets.get(TOKEN_KEY);
    const expiresAt = current ? tokenExpiry(current) : undefined;
    // A margin, so a token does not expire between here and the broker.
    if (!current || expiresAt === undefined || expiresAt - 30_000 > Date.now()) return current;
    const oidc = oidcSettings();
    const saved = await context.secrets.get(REFRESH_KEY);
    let refresh: { issuer?: string; clientId?: string; refreshToken?: string } = {};
    try {
      refresh = saved ? JSON.parse(saved) : {};
    } catch {
      // unreadable: treated as absent
    }
    if (oidc && refresh.refreshToken && refresh.issuer === oidc.issuer && refresh.clientId === oidc.clientId) {
      try {
        const tokens = await refreshTokens(oidc, refresh.refreshToken);
        await context.secrets.store(TOKEN_KEY, tokens.brokerToken);
        if (tokens.refreshToken) await context.secrets.store(REFRESH_KEY, JSON.stringify({ issuer: oidc.issuer, clientId: oidc.clientId, refreshToken: tokens.refreshToken }));
        output.appendLine(`identity token renewed with ${oidc.issuer}`);
        return tokens.brokerToken;
      } catch (err) {
        output.appendLine(`identity token could not be renewed: ${(err as Error).message}`);
      }
    }
    await context.secrets.delete(TOKEN_KEY);
    await context.secrets.delete(REFRESH_KEY);
    return undefined;
  }

  /** Sign-in through the configured OpenID provider (loupe.oidc.*) or, always available, a pasted token. */
  async function signIn(): Promise<string | undefined> {
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
      if (choice.browser) return signInWithProvider(url, oidc);
    }
    const value = await vscode.window.showInputBox({
      title: 'Loupe: Sign In',
      prompt: `Identity token for ${url} (from your identity provider, or \`loupe token\` for the development issuer). Kept in VS Code's secret storage.`,
      password: true,
      ignoreFocusOut: true,
      validateInput: (v) => (v.trim().split('.').length === 3 ? undefined : 'expected a JWT (three dot-separated parts)'),
    });
    if (!value) return undefined;
    return keepToken(url, value.trim());
  }

  async function signInWithProvider(url: string, oidc: OidcSettings): Promise<string | undefined> {
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
    return keepToken(url, tokens.brokerToken, oidc, tokens.refreshToken);
  }

  /** Keeps a token once the broker accepts it (and the refresh token that renews it), both in SecretStorage. */
  async function keepToken(url: string, candidate: string, oidc?: OidcSettings, refreshToken?: string): Promise<string | undefined> {
    try {
      const targets = await new BrokerApi(url, candidate).targets();
      await context.secrets.store(TOKEN_KEY, candidate);
      if (oidc && refreshToken) await context.secrets.store(REFRESH_KEY, JSON.stringify({ issuer: oidc.issuer, clientId: oidc.clientId, refreshToken }));
      else await context.secrets.delete(REFRESH_KEY);
      void alertsView.refresh(false); // an owner's alerts, now that there is an identity to ask with
      void vscode.window.showInformationMessage(`Loupe: signed in to ${url}. You may attach to ${targets.length} target${targets.length === 1 ? '' : 's'}${targets.length ? `: ${targets.map((t) => t.name).join(', ')}` : ''}.`);
      return candidate;
    } catch (err) {
      void vscode.window.showErrorMessage(`Loupe: sign-in failed: ${describeBrokerError(err)}`);
      return undefined;
    }
  }

  async function api(): Promise<BrokerApi | undefined> {
    const url = brokerUrl();
    const t = (await token()) ?? (await signIn());
    if (!t) return undefined;
    return new BrokerApi(brokerUrl() || url, t);
  }

  /** A launch.json `loupe` configuration for this target, for its localRoot/remoteRoot/outFiles. */
  function launchConfigFor(folder: vscode.WorkspaceFolder | undefined, target: string): Partial<LoupeAttachArguments> {
    const configs = vscode.workspace.getConfiguration('launch', folder?.uri).get<any[]>('configurations') ?? [];
    const match = configs.find((c) => c?.type === DEBUG_TYPE && c?.target === target);
    if (!match) return folder ? { localRoot: folder.uri.fsPath } : {};
    const { localRoot, remoteRoot, sourceMaps, outFiles } = match;
    const sub = (v: string) => v.replace(/\$\{workspaceFolder\}/g, folder?.uri.fsPath ?? '');
    return {
      ...(localRoot ? { localRoot: sub(localRoot) } : folder ? { localRoot: folder.uri.fsPath } : {}),
      ...(remoteRoot ? { remoteRoot } : {}),
      ...(sourceMaps !== undefined ? { sourceMaps } : {}),
      ...(outFiles ? { outFiles: (outFiles as string[]).map(sub) } : {}),
    };
  }

  async function attach(): Promise<boolean> {
    const broker = await api();
    if (!broker) return false;
    output.appendLine(`attach: listing targets at ${broker.baseUrl}`);
    let targets: TargetInfo[];
    try {
      targets = await broker.targets();
      output.appendLine(`attach: ${targets.length} target(s): ${targets.map((t) => t.name).join(', ')}`);
    } catch (err) {
      void vscode.window.showErrorMessage(`Loupe: cannot list targets: ${describeBrokerError(err)}`);
      return false;
    }
    if (targets.length === 0) {
      void vscode.window.showWarningMessage('Loupe: the policy lets you attach to no target.');
      return false;
    }
    const picked = await vscode.window.showQuickPick(
      targets.map((t) => ({ label: t.name, description: `${t.modes.join(' / ')} · up to ${Math.round(t.maxDurationSeconds / 60)} min${t.ticketRequired ? ' · ticket required' : ''}`, target: t })),
      { title: 'Loupe: Attach to Production (1/4): target', placeHolder: 'Which service?', ignoreFocusOut: true },
    );
    if (!picked) return false;
    const t = picked.target;
    let mode = t.modes[0] ?? 'pause';
    if (t.modes.length > 1) {
      const m = await vscode.window.showQuickPick(
        t.modes.map((name) => ({ label: name, description: name === 'pause' ? 'breakpoints hold the process while you look' : 'non-pausing captures' })),
        { title: 'Loupe: Attach to Production (2/4): mode', ignoreFocusOut: true },
      );
      if (!m) return false;
      mode = m.label;
    }
    const maxMinutes = Math.max(1, Math.floor(t.maxDurationSeconds / 60));
    const minutes = await vscode.window.showInputBox({
      title: 'Loupe: Attach to Production (3/4): duration',
      prompt: `Minutes (at most ${maxMinutes})`,
      value: String(Math.min(15, maxMinutes)),
      ignoreFocusOut: true,
      validateInput: (v) => (/^\d+$/.test(v.trim()) && Number(v) >= 1 && Number(v) <= maxMinutes ? undefined : `a whole number of minutes from 1 to ${maxMinutes}`),
    });
    if (!minutes) return false;
    const reason = await vscode.window.showInputBox({
      title: 'Loupe: Attach to Production (4/4): reason',
      prompt: 'Why are you attaching? Recorded with every action of the session.',
      ignoreFocusOut: true,
      validateInput: (v) => (v.trim().length >= 3 ? undefined : 'a reason is required'),
    });
    if (!reason) return false;
    let ticket: string | undefined;
    if (t.ticketRequired) {
      const pattern = t.ticketPattern ? new RegExp(t.ticketPattern) : undefined;
      ticket = await vscode.window.showInputBox({
        title: 'Loupe: ticket',
        prompt: `The policy for ${t.name} asks for a ticket${t.ticketPattern ? ` matching ${t.ticketPattern}` : ''}`,
        ignoreFocusOut: true,
        validateInput: (v) => (pattern && !pattern.test(v.trim()) ? `must match ${t.ticketPattern}` : v.trim() ? undefined : 'a ticket is required'),
      });
      if (!ticket) return false;
    }
    let grant: GrantAnswer | undefined;
    try {
      const answer = await broker.requestAccess({ target: t.name, mode, durationSeconds: Number(minutes) * 60, reason: reason.trim(), ...(ticket ? { ticket: ticket.trim() } : {}) });
      grant = 'grant' in answer ? answer.grant : await awaitApproval(broker, answer.pending);
    } catch (err) {
      void vscode.window.showErrorMessage(`Loupe: grant refused: ${describeBrokerError(err)}`);
      return false;
    }
    if (!grant) return false;
    const folder = vscode.workspace.workspaceFolders?.[0];
    const config: vscode.DebugConfiguration & LoupeAttachArguments = {
      type: DEBUG_TYPE,
      request: 'attach',
      name: `Loupe: ${t.name} (${mode})`,
      target: t.name,
      mode: mode as 'pause' | 'snapshot',
      reason: reason.trim(),
      ...(ticket ? { ticket: ticket.trim() } : {}),
      ...launchConfigFor(folder, t.name),
      grantToken: grant.token,
      attachUrl: grant.attachUrl,
      grantId: grant.grantId,
      expiresAt: grant.expiresAt,
    };
    output.appendLine(`grant ${grant.grantId} for ${t.name} (${mode}) until ${grant.expiresAt}${grant.capped ? ' (capped by policy)' : ''}`);
    return vscode.debug.startDebugging(folder, config);
  }

  /**
   * A request that needs approvals: a cancellable progress notification follows it until approvers decide.
   * Approved: the grant is collected (and the session starts); denied: the approver's comment is shown;
   * cancelled: the request is withdrawn so approvers no longer see it.
   */
  async function awaitApproval(broker: BrokerApi, pending: AccessRequestInfo): Promise<GrantAnswer | undefined> {
    output.appendLine(`access request ${pending.requestId}: ${pending.message}`);
    const cancelled = new AbortController();
    let final: AccessRequestInfo;
    try {
      final = await vscode.window.withProgress(
        { location: vscode.ProgressLocation.Notification, title: `Loupe: access to ${pending.target} needs approval`, cancellable: true },
        (progress, token) => {
          token.onCancellationRequested(() => cancelled.abort());
          return waitForDecision(broker, pending.requestId, {
            signal: cancelled.signal,
            onUpdate: (r) => {
              progress.report({ message: pendingText(r) });
              output.appendLine(`access request ${r.requestId}: ${r.message}`);
            },
          });
        },
      );
    } catch (err) {
      if (cancelled.signal.aborted) {
        await broker.withdrawRequest(pending.requestId).catch((e) => output.appendLine(`withdraw ${pending.requestId}: ${describeBrokerError(e)}`));
        void vscode.window.showInformationMessage(`Loupe: you stopped waiting; the request for ${pending.target} is withdrawn.`);
        return undefined;
      }
      void vscode.window.showErrorMessage(`Loupe: cannot follow the access request: ${describeBrokerError(err)}`);
      return undefined;
    }
    if (final.status === 'approved') {
      void vscode.window.showInformationMessage(`Loupe: ${outcomeText(final)}; starting the session.`);
      return broker.collectGrant(final.requestId);
    }
    if (final.status === 'denied') void vscode.window.showErrorMessage(`Loupe: ${outcomeText(final)}`);
    else void vscode.window.showWarningMessage(`Loupe: ${outcomeText(final)}`);
    return undefined;
  }

  /** For approvers: pick a pending request, approve or deny it with a comment. */
  async function reviewRequests(): Promise<void> {
    const broker = await api();
    if (!broker) return;
    let requests: AccessRequestInfo[];
    try {
      requests = await broker.pendingRequests();
    } catch (err) {
      void vscode.window.showErrorMessage(`Loupe: cannot list access requests: ${describeBrokerError(err)}`);
      return;
    }
    if (requests.length === 0) return void vscode.window.showInformationMessage('Loupe: no access request waits for your decision.');
    const picked = await vscode.window.showQuickPick(
      requests.map((r) => ({
        label: `${r.requester.name || r.requester.sub} → ${r.target} (${r.mode})`,
        description: `${Math.round(r.durationSeconds / 60)} min · ${r.approvals.length} of ${r.minApprovals} approvals · until ${new Date(r.expiresAt).toLocaleTimeString()}`,
        detail: `${r.reason}${r.ticket ? ` · ticket ${r.ticket}` : ''}${r.cause ? ` · after the alert ${r.cause.rule}: ${r.cause.message}` : ''}`,
        r,
      })),
      { title: 'Loupe: Review Access Requests', placeHolder: 'Which request?', matchOnDescription: true, matchOnDetail: true, ignoreFocusOut: true },
    );
    if (!picked) return;
    const decision = await vscode.window.showQuickPick(
      [
        { label: '$(check) Approve', action: 'approve' as const },
        { label: '$(close) Deny', action: 'deny' as const },
      ],
      { title: `Loupe: ${picked.label}`, placeHolder: picked.r.reason, ignoreFocusOut: true },
    );
    if (!decision) return;
    const deny = decision.action === 'deny';
    const comment = await vscode.window.showInputBox({
      title: `Loupe: ${deny ? 'deny' : 'approve'} ${picked.label}`,
      prompt: deny ? 'Why not? The requester sees this comment.' : 'Comment (optional), recorded with your approval',
      ignoreFocusOut: true,
      validateInput: (v) => (deny && v.trim() === '' ? 'a comment is required to deny' : undefined),
    });
    if (comment === undefined) return;
    try {
      const result = deny ? await broker.denyRequest(picked.r.requestId, comment.trim()) : await broker.approveRequest(picked.r.requestId, comment.trim() || undefined);
      void vscode.window.showInformationMessage(`Loupe: ${deny ? 'denied' : 'approved'}: ${result.message}`);
    } catch (err) {
      void vscode.window.showErrorMessage(`Loupe: ${describeBrokerError(err)}`);
    }
  }

  async function endSession(): Promise<void> {
    const sessions = [...live.values()];
    if (sessions.length === 0) {
      const loupeSessions = vscode.debug.activeDebugSession?.type === DEBUG_TYPE ? [vscode.debug.activeDebugSession] : [];
      for (const s of loupeSessions) await vscode.debug.stopDebugging(s);
      if (loupeSessions.length === 0) void vscode.window.showInformationMessage('Loupe: no live session.');
      return;
    }
    let chosen = sessions;
    if (sessions.length > 1) {
      const pick = await vscode.window.showQuickPick(sessions.map((s) => ({ label: s.target, description: `${s.mode}, until ${new Date(s.expiresAt).toLocaleTimeString()}`, s })), { title: 'Loupe: End Session' });
      if (!pick) return;
      chosen = [pick.s];
    }
    for (const s of chosen) {
      live.delete(s.session.id);
      await vscode.debug.stopDebugging(s.session);
      // Ending means the grant is spent: revoke it so it cannot be attached with again.
      const t = await token();
      if (t && s.grantId && brokerUrl()) await new BrokerApi(brokerUrl(), t).revokeGrant(s.grantId).catch((err) => output.appendLine(`revoke ${s.grantId}: ${describeBrokerError(err)}`));
      output.appendLine(`session on ${s.target} ended by the user`);
    }
    render();
  }

  /** For auditors: pick a recorded session, save its transcript, keys and report into a folder, verify it here. */
  async function downloadTranscript(): Promise<void> {
    const broker = await api();
    if (!broker) return;
    let sessions: Awaited<ReturnType<typeof listRecordedSessions>>;
    try {
      sessions = await listRecordedSessions(broker);
    } catch (err) {
      void vscode.window.showErrorMessage(`Loupe: ${err instanceof NotAuditorError ? err.message : `cannot list sessions: ${describeBrokerError(err)}`}`);
      return;
    }
    if (sessions.length === 0) return void vscode.window.showInformationMessage('Loupe: no recorded sessions.');
    const pick = await vscode.window.showQuickPick(
      sessions.map((s) => ({ ...sessionRow(s), s })),
      { title: 'Loupe: Download Transcript', matchOnDescription: true, matchOnDetail: true },
    );
    if (!pick) return;
    const id = pick.s.sessionId;
    const folder = vscode.workspace.workspaceFolders?.[0]?.uri;
    const where = await vscode.window.showOpenDialog({
      title: `Loupe: save session ${id.slice(0, 8)} into (a folder loupe-session-${id.slice(0, 8)}… is made there)`,
      openLabel: 'Save Here',
      canSelectFolders: true,
      canSelectFiles: false,
      canSelectMany: false,
      ...(folder ? { defaultUri: folder } : {}),
    });
    if (!where?.[0]) return;
    try {
      const saved = await saveTranscript(broker, id, where[0].fsPath);
      output.appendLine(`transcript of ${id} saved to ${saved.dir}: ${describeCheck(saved.check)}`);
      for (const problem of saved.check.problems) output.appendLine(`  ${problem}`);
      const panel = vscode.window.createWebviewPanel('loupe.report', `Loupe session ${id.slice(0, 8)}`, vscode.ViewColumn.Active, { enableScripts: false });
      panel.webview.html = Buffer.from(await vscode.workspace.fs.readFile(vscode.Uri.file(saved.reportFile))).toString('utf8');
      const text = `Loupe: session saved to ${saved.dir} (transcript.ndjson, keys.json, report.html); ${describeCheck(saved.check)}. Check it offline: loupe audit verify ${saved.dir}`;
      if (saved.check.ok) void vscode.window.showInformationMessage(text);
      else void vscode.window.showErrorMessage(text);
    } catch (err) {
      void vscode.window.showErrorMessage(`Loupe: ${err instanceof NotAuditorError ? err.message : `cannot download the transcript: ${describeBrokerError(err)}`}`);
    }
  }

  // ---- status bar countdown ----

  function render(): void {
    const next = [...live.values()].filter((g) => g.expiresAt).sort((a, b) => Date.parse(a.expiresAt) - Date.parse(b.expiresAt))[0];
    if (!next) {
      status.hide();
      return;
    }
    const left = Math.max(0, Math.round((Date.parse(next.expiresAt) - Date.now()) / 1000));
    const clock = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, '0')}`;
    status.text = `$(shield) Loupe ${next.target} ${clock}`;
    status.tooltip = `Loupe: ${next.mode} session on ${next.target}, recorded; the grant ends at ${new Date(next.expiresAt).toLocaleTimeString()}. Click to end the session now.`;
    status.backgroundColor = left <= 60 ? new vscode.ThemeColor('statusBarItem.warningBackground') : undefined;
    status.show();
  }
  const ticker = setInterval(render, 1000);
  context.subscriptions.push({ dispose: () => clearInterval(ticker) });

  // ---- alerts for owners (the Loupe Alerts view) ----
  const alertsView = new AlertsView(context, {
    brokerUrl,
    storedToken: token,
    tokenOrSignIn: async () => (await token()) ?? (await signIn()),
    log: (line) => output.appendLine(line),
  });
  context.subscriptions.push(alertsView);

  // ---- the Snapshots view: captures of snapshot sessions, each shown as a stop on selection ----
  const snapshotsView = new SnapshotsView();
  context.subscriptions.push(snapshotsView);

  context.subscriptions.push(
    vscode.debug.onDidReceiveDebugSessionCustomEvent((e) => {
      if (e.session.type !== DEBUG_TYPE) return;
      if (snapshotsView.onEvent(e.session, e.event, e.body)) return;
      if (e.event === 'loupe.grant') {
        live.set(e.session.id, { ...(e.body as GrantEventBody), session: e.session });
        render();
      } else if (e.event === 'loupe.sessionEnded') {
        live.delete(e.session.id);
        render();
        const body = e.body as SessionEndedEventBody;
        // One message, not an error dialog per pending request.
        void vscode.window.showWarningMessage(body.message);
      }
    }),
    vscode.debug.onDidTerminateDebugSession((s) => {
      snapshotsView.endSession(s);
      if (live.delete(s.id)) render();
    }),
    vscode.commands.registerCommand('loupe.attach', attach),
    vscode.commands.registerCommand('loupe.signIn', signIn),
    vscode.commands.registerCommand('loupe.signOut', async () => {
      await context.secrets.delete(TOKEN_KEY);
      await context.secrets.delete(REFRESH_KEY);
      void alertsView.refresh(false);
      void vscode.window.showInformationMessage('Loupe: signed out.');
    }),
    vscode.commands.registerCommand('loupe.endSession', endSession),
    vscode.commands.registerCommand('loupe.downloadTranscript', downloadTranscript),
    vscode.commands.registerCommand('loupe.reviewRequests', reviewRequests),
    vscode.commands.registerCommand('loupe.showSnapshot', (node?: Parameters<SnapshotsView['show']>[0]) => snapshotsView.show(node)),
    vscode.commands.registerCommand('loupe.refreshAlerts', () => alertsView.refresh(true)),
    vscode.debug.registerDebugAdapterDescriptorFactory(DEBUG_TYPE, {
      createDebugAdapterDescriptor: () => new vscode.DebugAdapterInlineImplementation(new LoupeDebugSession() as unknown as vscode.DebugAdapter),
    }),
    vscode.debug.registerDebugConfigurationProvider(DEBUG_TYPE, {
      provideDebugConfigurations: () => [defaultConfiguration()],
      resolveDebugConfiguration: async (folder, config) => {
        if (!config.type && !config.request && !config.name) {
          // F5 with no launch.json: the guided attach.
          void vscode.commands.executeCommand('loupe.attach');
          return undefined;
        }
        return config;
      },
      resolveDebugConfigurationWithSubstitutedVariables: async (folder, config) => {
        const c = config as vscode.DebugConfiguration & LoupeAttachArguments;
        if (c.grantToken && c.attachUrl) return c;
        // A launch.json configuration: the adapter requests the grant with the signed-in identity.
        c.brokerUrl ||= brokerUrl();
        const t = c.identityToken ?? (await token()) ?? (await signIn());
        if (!t) return undefined;
        c.identityToken = t;
        c.brokerUrl ||= brokerUrl();
        if (!c.localRoot && folder) c.localRoot = folder.uri.fsPath;
        if (!c.reason?.trim()) {
          const reason = await vscode.window.showInputBox({ title: `Loupe: why are you attaching to ${c.target}?`, prompt: 'Recorded with every action of the session.', ignoreFocusOut: true });
          if (!reason?.trim()) return undefined;
          c.reason = reason.trim();
        }
        return c;
      },
    }),
  );

  return {
    liveGrants: () => [...live.values()].map(({ session: _s, ...g }) => g),
    statusBarText: () => (live.size > 0 ? status.text : undefined),
  };
}

function defaultConfiguration(): vscode.DebugConfiguration {
  return {
    type: DEBUG_TYPE,
    request: 'attach',
    name: 'Loupe: attach to production',
    target: 'checkout',
    mode: 'pause',
    durationSeconds: 900,
    localRoot: '${workspaceFolder}',
    remoteRoot: '/app',
    outFiles: ['${workspaceFolder}/dist/**/*.js'],
  };
}

export function deactivate(): void {}
