/**
 * "Loupe: Attach to Production…": target, mode, duration, reason (and ticket where the policy asks), then the
 * grant (waiting for approvals when needed), then a debug session of the `loupe` type with the grant in it.
 */
import * as vscode from 'vscode';
import { describeBrokerError, type GrantAnswer, type TargetInfo } from '../adapter/brokerApi';
import type { LoupeAttachArguments } from '../adapter/config';
import { DEBUG_TYPE, launchConfigFor } from './debugType';
import { requestAccess } from './requestAccess';
import type { Identity } from './signIn';

export function register(context: vscode.ExtensionContext, deps: { identity: Identity; output: vscode.OutputChannel }): void {
  context.subscriptions.push(vscode.commands.registerCommand('loupe.attach', () => attach(deps.identity, deps.output)));
}

async function attach(identity: Identity, output: vscode.OutputChannel): Promise<boolean> {
  const broker = await identity.api();
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
    targets.map((t) => ({
      label: t.name,
      description: `${t.modes.join(' / ')}${t.evaluation?.includes('v8') ? ' · V8 evaluation available' : ''} · up to ${Math.round(t.maxDurationSeconds / 60)} min${t.ticketRequired ? ' · ticket required' : ''}`,
      target: t,
    })),
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
  // Only offered where a rule allows it; the default stays Loupe expressions.
  let evaluation: 'loupe' | 'v8' = 'loupe';
  if (t.evaluation?.includes('v8')) {
    const e = await vscode.window.showQuickPick(
      [
        { label: 'Loupe expressions', description: 'default: the broker evaluates them; no app code runs', evaluation: 'loupe' as const },
        { label: 'V8 evaluation (privileged)', description: 'may call app functions and getters; redaction is best-effort; every evaluation raises an alert', evaluation: 'v8' as const },
      ],
      { title: 'Loupe: Attach to Production: evaluation', ignoreFocusOut: true },
    );
    if (!e) return false;
    evaluation = e.evaluation;
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
    grant = await requestAccess(
      broker,
      { target: t.name, mode, ...(evaluation === 'v8' ? { evaluation } : {}), durationSeconds: Number(minutes) * 60, reason: reason.trim(), ...(ticket ? { ticket: ticket.trim() } : {}) },
      output,
    );
  } catch (err) {
    void vscode.window.showErrorMessage(`Loupe: grant refused: ${describeBrokerError(err)}`);
    return false;
  }
  if (!grant) return false;
  const folder = vscode.workspace.workspaceFolders?.[0];
  const config: vscode.DebugConfiguration & LoupeAttachArguments = {
    type: DEBUG_TYPE,
    request: 'attach',
    name: `Loupe: ${t.name} (${mode}${grant.evaluation === 'v8' ? ', V8 eval' : ''})`,
    target: t.name,
    mode: mode as 'pause' | 'snapshot',
    ...(grant.evaluation === 'v8' ? { evaluation: 'v8' as const } : {}),
    reason: reason.trim(),
    ...(ticket ? { ticket: ticket.trim() } : {}),
    ...launchConfigFor(folder, t.name),
    grantToken: grant.token,
    attachUrl: grant.attachUrl,
    grantId: grant.grantId,
    expiresAt: grant.expiresAt,
  };
  output.appendLine(
    `grant ${grant.grantId} for ${t.name} (${mode}${grant.evaluation === 'v8' ? ', V8 evaluation: app code may run, redaction best-effort' : ''}) until ${grant.expiresAt}${grant.capped ? ' (capped by policy)' : ''}`,
  );
  return vscode.debug.startDebugging(folder, config);
}
