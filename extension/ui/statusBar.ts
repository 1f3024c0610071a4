/**
 * The live Loupe sessions and their grants, from the adapter's `loupe.grant` and `loupe.sessionEnded` events, and
 * the status bar's countdown of the grant that ends first (click: end the session).
 */
import * as vscode from 'vscode';
import type { GrantEventBody, SessionEndedEventBody } from '../adapter/config';
import { DEBUG_TYPE } from './debugType';
import { statusTextFor } from './statusText';

export interface LiveGrant extends GrantEventBody {
  readonly session: vscode.DebugSession;
}

export class LiveSessions implements vscode.Disposable {
  private readonly live = new Map<string, LiveGrant>();
  private readonly status = vscode.window.createStatusBarItem('loupe.session', vscode.StatusBarAlignment.Left, 100);
  private readonly ticker = setInterval(() => this.render(), 1000);

  constructor() {
    this.status.name = 'Loupe session';
    this.status.command = 'loupe.endSession';
  }

  get all(): LiveGrant[] {
    return [...this.live.values()];
  }

  add(session: vscode.DebugSession, grant: GrantEventBody): void {
    this.live.set(session.id, { ...grant, session });
    this.render();
  }

  /** True when the session was live. */
  remove(session: vscode.DebugSession): boolean {
    const removed = this.live.delete(session.id);
    if (removed) this.render();
    return removed;
  }

  /** The live grants without their sessions (for the integration tests). */
  grants(): GrantEventBody[] {
    return this.all.map(({ session: _s, ...g }) => g);
  }

  statusBarText(): string | undefined {
    return this.live.size > 0 ? this.status.text : undefined;
  }

  render(): void {
    const next = this.all.filter((g) => g.expiresAt).sort((a, b) => Date.parse(a.expiresAt) - Date.parse(b.expiresAt))[0];
    if (!next) {
      this.status.hide();
      return;
    }
    const { text, tooltip, secondsLeft: left } = statusTextFor(next, Date.now(), this.all);
    this.status.text = text;
    this.status.tooltip = tooltip;
    this.status.backgroundColor = left <= 60 ? new vscode.ThemeColor('statusBarItem.warningBackground') : undefined;
    this.status.show();
  }

  dispose(): void {
    clearInterval(this.ticker);
    this.status.dispose();
  }
}

export function register(context: vscode.ExtensionContext): LiveSessions {
  const live = new LiveSessions();
  context.subscriptions.push(
    live,
    vscode.debug.onDidReceiveDebugSessionCustomEvent((e) => {
      if (e.session.type !== DEBUG_TYPE) return;
      if (e.event === 'loupe.grant') live.add(e.session, e.body as GrantEventBody);
      else if (e.event === 'loupe.sessionEnded') {
        live.remove(e.session);
        live.render();
        // One message, not an error dialog per pending request.
        void vscode.window.showWarningMessage((e.body as SessionEndedEventBody).message);
      }
    }),
    vscode.debug.onDidTerminateDebugSession((s) => live.remove(s)),
  );
  return live;
}
