/**
 * The two views in Run and Debug: Snapshots (captures of snapshot sessions, each shown as a stop on selection)
 * and Loupe Alerts (for owners), with their commands.
 */
import * as vscode from 'vscode';
import { AlertsView } from '../alertsView';
import { SnapshotsView } from '../snapshotsView';
import { DEBUG_TYPE } from './debugType';
import { brokerUrl, type Identity } from './signIn';

export function register(context: vscode.ExtensionContext, deps: { identity: Identity; output: vscode.OutputChannel }): void {
  const { identity, output } = deps;
  const alertsView = new AlertsView(context, {
    brokerUrl,
    storedToken: () => identity.token(),
    tokenOrSignIn: () => identity.tokenOrSignIn(),
    log: (line) => output.appendLine(line),
  });
  const snapshotsView = new SnapshotsView();
  context.subscriptions.push(
    alertsView,
    snapshotsView,
    // An owner's alerts, now that there is an identity to ask with (or none after sign-out).
    identity.onDidChange(() => void alertsView.refresh(false)),
    vscode.debug.onDidReceiveDebugSessionCustomEvent((e) => {
      if (e.session.type === DEBUG_TYPE) snapshotsView.onEvent(e.session, e.event, e.body);
    }),
    vscode.debug.onDidTerminateDebugSession((s) => snapshotsView.endSession(s)),
    vscode.commands.registerCommand('loupe.showSnapshot', (node?: Parameters<SnapshotsView['show']>[0]) => snapshotsView.show(node)),
    vscode.commands.registerCommand('loupe.refreshAlerts', () => alertsView.refresh(true)),
  );
}
