/**
 * The Loupe VS Code extension: commands, the `loupe` debug type (its adapter runs inline), sign-in with the
 * identity token kept in SecretStorage, and a status bar countdown of the grant. A convenience, not a guard:
 * the broker enforces everything. Each feature registers itself from extension/ui/; this only wires them.
 */
import * as vscode from 'vscode';
import type { GrantEventBody } from './adapter/config';
import * as approvals from './ui/approvals';
import * as attach from './ui/attach';
import * as debugType from './ui/debugType';
import * as revoke from './ui/revoke';
import * as signIn from './ui/signIn';
import * as statusBar from './ui/statusBar';
import * as transcripts from './ui/transcripts';
import * as views from './ui/views';

export interface LoupeExtensionApi {
  /** Live Loupe sessions and their grants (for the integration tests). */
  liveGrants(): readonly GrantEventBody[];
  statusBarText(): string | undefined;
}

export function activate(context: vscode.ExtensionContext): LoupeExtensionApi {
  const output = vscode.window.createOutputChannel('Loupe');
  context.subscriptions.push(output);
  const identity = signIn.register(context, { output });
  const live = statusBar.register(context);
  views.register(context, { identity, output });
  attach.register(context, { identity, output });
  revoke.register(context, { identity, live, output });
  transcripts.register(context, { identity, output });
  approvals.register(context, { identity });
  debugType.register(context, { identity });
  return { liveGrants: () => live.grants(), statusBarText: () => live.statusBarText() };
}

export function deactivate(): void {}
