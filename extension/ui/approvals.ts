/** "Loupe: Review Access Requests…", for approvers: pick a pending request, approve or deny it with a comment. */
import * as vscode from 'vscode';
import { describeBrokerError, type AccessRequestInfo } from '../adapter/brokerApi';
import type { Identity } from './signIn';

export function register(context: vscode.ExtensionContext, deps: { identity: Identity }): void {
  context.subscriptions.push(vscode.commands.registerCommand('loupe.reviewRequests', () => reviewRequests(deps.identity)));
}

async function reviewRequests(identity: Identity): Promise<void> {
  const broker = await identity.api();
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
      label: `${r.requester.name || r.requester.sub} → ${r.target} (${r.mode}${r.evaluation === 'v8' ? ', V8 evaluation' : ''})`,
      description: `${Math.round(r.durationSeconds / 60)} min · ${r.approvals.length} of ${r.minApprovals} approvals · until ${new Date(r.expiresAt).toLocaleTimeString()}`,
      detail: `${r.evaluation === 'v8' ? '$(warning) asks for V8 evaluation: app code may run in the target, redaction is best-effort · ' : ''}${r.reason}${r.ticket ? ` · ticket ${r.ticket}` : ''}${r.cause ? ` · after the alert ${r.cause.rule}: ${r.cause.message}` : ''}`,
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
