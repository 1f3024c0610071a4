/**
 * "Loupe: End Session" (also the status bar's click): stops the session and revokes its grant, so the grant
 * cannot be attached with again.
 */
import * as vscode from 'vscode';
import { BrokerApi, describeBrokerError } from '../adapter/brokerApi';
import { DEBUG_TYPE } from './debugType';
import { brokerUrl, type Identity } from './signIn';
import type { LiveSessions } from './statusBar';

export function register(context: vscode.ExtensionContext, deps: { identity: Identity; live: LiveSessions; output: vscode.OutputChannel }): void {
  context.subscriptions.push(vscode.commands.registerCommand('loupe.endSession', () => endSession(deps)));
}

async function endSession({ identity, live, output }: { identity: Identity; live: LiveSessions; output: vscode.OutputChannel }): Promise<void> {
  const sessions = live.all;
  if (sessions.length === 0) {
    const loupeSessions = vscode.debug.activeDebugSession?.type === DEBUG_TYPE ? [vscode.debug.activeDebugSession] : [];
    for (const s of loupeSessions) await vscode.debug.stopDebugging(s);
    if (loupeSessions.length === 0) void vscode.window.showInformationMessage('Loupe: no live session.');
    return;
  }
  let chosen = sessions;
  if (sessions.length > 1) {
    const pick = await vscode.window.showQuickPick(
      sessions.map((s) => ({ label: s.target, description: `${s.mode}, until ${new Date(s.expiresAt).toLocaleTimeString()}`, s })),
      { title: 'Loupe: End Session' },
    );
    if (!pick) return;
    chosen = [pick.s];
  }
  for (const s of chosen) {
    live.remove(s.session);
    await vscode.debug.stopDebugging(s.session);
    // Ending means the grant is spent: revoke it so it cannot be attached with again.
    const t = await identity.token();
    if (t && s.grantId && brokerUrl()) {
      const pending = await new BrokerApi(brokerUrl(), t).revokeGrant(s.grantId).catch((err) => void output.appendLine(`revoke ${s.grantId}: ${describeBrokerError(err)}`));
      if (pending) output.appendLine(`Loupe: ${pending}`);
    }
    output.appendLine(`session on ${s.target} ended by the user`);
  }
  live.render();
}
