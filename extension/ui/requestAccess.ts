/**
 * Asking the broker for access: a grant at once, or an access request that waits for approvals (the two-person
 * rule). A cancellable progress notification follows such a request until approvers decide. Approved: the grant
 * is collected; denied: the approver's comment is shown; cancelled: the request is withdrawn so approvers no
 * longer see it.
 */
import * as vscode from 'vscode';
import { outcomeText, pendingText, waitForDecision } from '../adapter/accessRequests';
import { describeBrokerError, type AccessRequestInfo, type BrokerApi, type GrantAnswer, type GrantRequest } from '../adapter/brokerApi';

/** The grant, or undefined when there is none to use (denied, expired, withdrawn: the user was told). Throws when the broker refuses the request. */
export async function requestAccess(broker: BrokerApi, request: GrantRequest, output: vscode.OutputChannel): Promise<GrantAnswer | undefined> {
  const answer = await broker.requestAccess(request);
  return 'grant' in answer ? answer.grant : awaitApproval(broker, answer.pending, output);
}

async function awaitApproval(broker: BrokerApi, pending: AccessRequestInfo, output: vscode.OutputChannel): Promise<GrantAnswer | undefined> {
  output.appendLine(`access request ${pending.requestId}: ${pending.message}`);
  const cancelled = new AbortController();
  let final: AccessRequestInfo;
  try {
    final = await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: `Loupe: access to ${pending.target} needs approval`, cancellable: true }, (progress, token) => {
      token.onCancellationRequested(() => cancelled.abort());
      return waitForDecision(broker, pending.requestId, {
        signal: cancelled.signal,
        onUpdate: (r) => {
          progress.report({ message: pendingText(r) });
          output.appendLine(`access request ${r.requestId}: ${r.message}`);
        },
      });
    });
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
