/**
 * The "Snapshots" view (Run and Debug container): the captures of the live Loupe snapshot sessions, newest first,
 * fed by the adapter's `loupe.snapshot` events. Selecting one asks its session's adapter (custom request
 * `loupe.showSnapshot`) to show it as the stopped state; the target runs on all along. Wording lives in ./snapshotList.
 */
import * as vscode from 'vscode';
import type { SnapshotEventBody, SnapshotShownEventBody } from './adapter/config';
import { SnapshotList, snapshotRow } from './snapshotList';

export const SNAPSHOTS_VIEW = 'loupe.snapshots';

type SnapshotNode = { readonly sessionId: string; readonly captureId?: string };

export class SnapshotsView implements vscode.TreeDataProvider<SnapshotNode>, vscode.Disposable {
  private readonly list = new SnapshotList();
  private readonly sessions = new Map<string, vscode.DebugSession>();
  private readonly changed = new vscode.EventEmitter<SnapshotNode | undefined>();
  readonly onDidChangeTreeData = this.changed.event;
  private readonly view: vscode.TreeView<SnapshotNode>;

  constructor() {
    this.view = vscode.window.createTreeView(SNAPSHOTS_VIEW, { treeDataProvider: this });
    this.update();
  }

  /** The adapter's custom events; returns true when the event was one of the view's. */
  onEvent(session: vscode.DebugSession, event: string, body: unknown): boolean {
    if (event === 'loupe.snapshot') {
      this.sessions.set(session.id, session);
      this.list.add(session.id, session.name, body as SnapshotEventBody);
    } else if (event === 'loupe.snapshotShown') {
      this.list.markShown(session.id, (body as SnapshotShownEventBody).captureId);
    } else return false;
    this.update();
    return true;
  }

  endSession(session: vscode.DebugSession): void {
    this.sessions.delete(session.id);
    if (this.list.endSession(session.id)) this.update();
  }

  /** `loupe.showSnapshot`: from a row, or (command palette) picked from the list. */
  async show(node?: SnapshotNode): Promise<void> {
    let target = node?.captureId ? node : undefined;
    if (!target) {
      const items = this.list.list().flatMap((s) => s.captures.map((c) => ({ ...snapshotRow(c, c.captureId === s.shown), node: { sessionId: s.sessionId, captureId: c.captureId } })));
      if (items.length === 0) return void vscode.window.showInformationMessage('Loupe: no snapshot yet. In a snapshot session, set a breakpoint: each hit is captured while the process runs on.');
      const picked = await vscode.window.showQuickPick(items, { title: 'Loupe: Show Snapshot', matchOnDescription: true });
      if (!picked) return;
      target = picked.node;
    }
    const session = this.sessions.get(target.sessionId);
    if (!session) return void vscode.window.showWarningMessage('Loupe: that session has ended; its captures are in its transcript.');
    try {
      await session.customRequest('loupe.showSnapshot', { captureId: target.captureId });
    } catch (err) {
      void vscode.window.showErrorMessage(`Loupe: cannot show the snapshot: ${(err as Error).message}`);
    }
  }

  getTreeItem(node: SnapshotNode): vscode.TreeItem {
    const session = this.list.list().find((s) => s.sessionId === node.sessionId);
    if (!node.captureId) {
      const item = new vscode.TreeItem(session?.name ?? 'Loupe session', vscode.TreeItemCollapsibleState.Expanded);
      item.description = `${session?.captures.length ?? 0} captures`;
      return item;
    }
    const capture = this.list.find(node.sessionId, node.captureId);
    if (!capture) return new vscode.TreeItem('(no longer kept)');
    const shown = session?.shown === capture.captureId;
    const row = snapshotRow(capture, shown);
    const item = new vscode.TreeItem(row.label, vscode.TreeItemCollapsibleState.None);
    item.description = row.description;
    item.tooltip = row.tooltip;
    item.iconPath = new vscode.ThemeIcon(shown ? 'debug-stackframe-focused' : capture.truncated ? 'warning' : 'device-camera');
    item.id = `${node.sessionId}/${capture.captureId}`;
    item.contextValue = 'loupe.snapshot';
    item.command = { command: 'loupe.showSnapshot', title: 'Show Snapshot', arguments: [node] };
    return item;
  }

  getChildren(node?: SnapshotNode): SnapshotNode[] {
    const sessions = this.list.list();
    const captures = (sessionId: string) => (sessions.find((s) => s.sessionId === sessionId)?.captures ?? []).map((c) => ({ sessionId, captureId: c.captureId }));
    if (node) return node.captureId ? [] : captures(node.sessionId);
    // One session: its captures directly; several: one node per session.
    if (sessions.length === 1) return captures(sessions[0]!.sessionId);
    return sessions.map((s) => ({ sessionId: s.sessionId }));
  }

  private update(): void {
    const empty = this.list.list().every((s) => s.captures.length === 0);
    this.view.message = empty ? 'Captures of a Loupe snapshot session appear here: set a breakpoint, and each hit is captured while the process runs on.' : undefined;
    this.changed.fire(undefined);
  }

  dispose(): void {
    this.view.dispose();
    this.changed.dispose();
  }
}
