/**
 * The "Loupe Alerts" view (Run and Debug container) for owners of a target: GET /v1/alerts, newest first, one row per
 * alert (rule and target; user, time and message), the evidence in its tooltip and as its children. Refreshed every
 * `loupe.alerts.refreshSeconds` while the view is visible and on "Loupe: Refresh Alerts"; while it is hidden, owners
 * are still asked at that interval so a new alert raises a notification, once per alert (remembered across restarts).
 * What is fetched and how it is worded lives in ./alerts (no vscode).
 */
import * as vscode from 'vscode';
import { BrokerApi } from './adapter/brokerApi';
import { AlertWatcher, alertRow, alertTooltip, evidenceRow, notificationText, pollAlerts, type AlertInfo } from './alerts';

export const ALERTS_VIEW = 'loupe.alerts';

type AlertNode = { readonly alert: AlertInfo; readonly evidence?: AlertInfo['evidence'][number] };

export interface AlertsViewHost {
  brokerUrl(): string;
  /** The stored identity token, never asking the user. */
  storedToken(): Promise<string | undefined>;
  /** The token, signing in when there is none (for the refresh command the user runs). */
  tokenOrSignIn(): Promise<string | undefined>;
  log(line: string): void;
}

/** The `sub` of a JWT, without checking it (the broker does): it only keys what was already notified. */
function subjectOf(token: string): string {
  try {
    return String(JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')).sub ?? '');
  } catch {
    return '';
  }
}

export class AlertsView implements vscode.TreeDataProvider<AlertNode>, vscode.Disposable {
  private alerts: readonly AlertInfo[] = [];
  private readonly changed = new vscode.EventEmitter<AlertNode | undefined>();
  readonly onDidChangeTreeData = this.changed.event;
  private readonly view: vscode.TreeView<AlertNode>;
  private watcher: { key: string; watcher: AlertWatcher } | undefined;
  /** The last answer said the caller owns a target (or is an admin): worth asking while hidden. */
  private owner = false;
  private timer: NodeJS.Timeout | undefined;
  private polling: Promise<void> | undefined;
  private readonly disposables: vscode.Disposable[] = [];

  constructor(
    private readonly context: vscode.ExtensionContext,
    private readonly host: AlertsViewHost,
  ) {
    this.view = vscode.window.createTreeView(ALERTS_VIEW, { treeDataProvider: this, showCollapseAll: true });
    this.view.message = 'Loading alerts…';
    this.disposables.push(
      this.view,
      this.changed,
      this.view.onDidChangeVisibility((e) => (e.visible ? void this.refresh(false) : undefined)),
      vscode.workspace.onDidChangeConfiguration((e) => {
        if (e.affectsConfiguration('loupe.alerts.refreshSeconds')) this.schedule();
        if (e.affectsConfiguration('loupe.brokerUrl')) void this.refresh(false);
      }),
    );
    this.schedule();
    void this.refresh(false);
  }

  /** What the view lists now (newest first). */
  get current(): readonly AlertInfo[] {
    return this.alerts;
  }

  private schedule(): void {
    if (this.timer) clearInterval(this.timer);
    const seconds = Math.max(5, vscode.workspace.getConfiguration('loupe.alerts').get<number>('refreshSeconds') ?? 30);
    this.timer = setInterval(() => {
      const notify = vscode.workspace.getConfiguration('loupe.alerts').get<boolean>('notify') ?? true;
      if (this.view.visible || (notify && this.owner)) void this.refresh(false);
    }, seconds * 1000);
  }

  /** Asks the broker now; `interactive` (the refresh command) signs in when needed. */
  refresh(interactive: boolean): Promise<void> {
    this.polling ??= this.poll(interactive).finally(() => (this.polling = undefined));
    return this.polling;
  }

  private async poll(interactive: boolean): Promise<void> {
    const url = this.host.brokerUrl();
    const token = interactive ? await this.host.tokenOrSignIn() : await this.host.storedToken();
    if (!url || !token) {
      this.owner = false;
      this.show([], 'Sign in (Loupe: Sign In…) to see the alerts of the targets you own.');
      return;
    }
    const key = `${url}|${subjectOf(token)}`;
    if (this.watcher?.key !== key) {
      // Remembered ids: what arrived while VS Code was closed is new. None: the first look only learns what is there.
      this.watcher = { key, watcher: new AlertWatcher({ seen: this.context.globalState.get<string[]>(`loupe.alerts.seen:${key}`) ?? [] }) };
    }
    const { watcher } = this.watcher;
    const lastSeen = watcher.seenIds.at(-1);
    const result = await pollAlerts(new BrokerApi(url, token), watcher);
    if (result.kind === 'not-owner') {
      this.owner = false;
      this.show([], result.message);
      return;
    }
    if (result.kind === 'error') {
      this.host.log(`alerts: ${result.message}`);
      this.view.message = this.alerts.length ? `${result.message} (the list below is from the last answer)` : result.message;
      return;
    }
    this.owner = true;
    if (watcher.seenIds.at(-1) !== lastSeen) await this.context.globalState.update(`loupe.alerts.seen:${key}`, [...watcher.seenIds]);
    this.show(result.alerts, result.alerts.length === 0 ? 'No alerts for the targets you own.' : undefined);
    const text = notificationText(result.fresh);
    if (text && (vscode.workspace.getConfiguration('loupe.alerts').get<boolean>('notify') ?? true)) {
      this.host.log(text);
      void vscode.window.showWarningMessage(text, 'Show Alerts').then((pick) => (pick ? vscode.commands.executeCommand(`${ALERTS_VIEW}.focus`) : undefined));
    }
  }

  private show(alerts: readonly AlertInfo[], message: string | undefined): void {
    this.alerts = alerts;
    this.view.message = message;
    this.view.badge = alerts.length ? { value: alerts.length, tooltip: `${alerts.length} Loupe alert${alerts.length === 1 ? '' : 's'}` } : undefined;
    this.changed.fire(undefined);
  }

  getChildren(node?: AlertNode): AlertNode[] {
    if (!node) return this.alerts.map((alert) => ({ alert }));
    if (node.evidence) return [];
    return node.alert.evidence.map((evidence) => ({ alert: node.alert, evidence }));
  }

  getTreeItem(node: AlertNode): vscode.TreeItem {
    if (node.evidence) {
      const row = evidenceRow(node.evidence);
      const item = new vscode.TreeItem(row.label, vscode.TreeItemCollapsibleState.None);
      item.description = row.description;
      item.tooltip = row.description;
      item.iconPath = new vscode.ThemeIcon('debug-stackframe-dot');
      return item;
    }
    const row = alertRow(node.alert);
    const item = new vscode.TreeItem(row.label, node.alert.evidence.length ? vscode.TreeItemCollapsibleState.Collapsed : vscode.TreeItemCollapsibleState.None);
    item.id = node.alert.id;
    item.description = row.description;
    item.tooltip = new vscode.MarkdownString(alertTooltip(node.alert));
    item.iconPath = new vscode.ThemeIcon(node.alert.action === 'end-session' ? 'error' : 'warning');
    item.contextValue = 'loupe.alert';
    return item;
  }

  dispose(): void {
    if (this.timer) clearInterval(this.timer);
    for (const d of this.disposables) d.dispose();
  }
}
