/**
 * "Loupe: Download Transcript…", for auditors: pick a recorded session, save its transcript, keys and report into
 * a folder, verify it here, and show the report.
 */
import { join } from 'node:path';
import * as vscode from 'vscode';
import { describeBrokerError } from '../adapter/brokerApi';
import { describeCheck, listRecordedSessions, NotAuditorError, saveTranscript, sessionRow } from '../transcripts';
import type { Identity } from './signIn';

export function register(context: vscode.ExtensionContext, deps: { identity: Identity; output: vscode.OutputChannel }): void {
  context.subscriptions.push(vscode.commands.registerCommand('loupe.downloadTranscript', () => downloadTranscript(deps.identity, deps.output)));
}

async function downloadTranscript(identity: Identity, output: vscode.OutputChannel): Promise<void> {
  const broker = await identity.api();
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
    if (saved.reportFile) {
      const panel = vscode.window.createWebviewPanel('loupe.report', `Loupe session ${id.slice(0, 8)}`, vscode.ViewColumn.Active, { enableScripts: false });
      panel.webview.html = Buffer.from(await vscode.workspace.fs.readFile(vscode.Uri.file(saved.reportFile))).toString('utf8');
    } else output.appendLine(`no report: ${saved.reportRefused}`);
    const text = `Loupe: session saved to ${saved.dir} (transcript.ndjson, keys.json${saved.reportFile ? ', report.html' : `; no report: the broker does not render one this large, so render it with: loupe audit render ${saved.dir} -o ${join(saved.dir, 'report.html')}`}); ${describeCheck(saved.check)}. Check it offline: loupe audit verify ${saved.dir}`;
    if (saved.check.ok) void vscode.window.showInformationMessage(text);
    else void vscode.window.showErrorMessage(text);
  } catch (err) {
    void vscode.window.showErrorMessage(`Loupe: ${err instanceof NotAuditorError ? err.message : `cannot download the transcript: ${describeBrokerError(err)}`}`);
  }
}
