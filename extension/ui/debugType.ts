/**
 * The `loupe` debug type: its adapter runs inline in the extension host; a launch.json configuration gets the
 * signed-in identity (the adapter then requests the grant) and a reason; F5 without launch.json is the guided attach.
 */
import * as vscode from 'vscode';
import type { LoupeAttachArguments } from '../adapter/config';
import { LoupeDebugSession } from '../adapter/loupeDebugSession';
import { brokerUrl, type Identity } from './signIn';

export const DEBUG_TYPE = 'loupe';

/** A launch.json `loupe` configuration for this target, for its localRoot/remoteRoot/outFiles. */
export function launchConfigFor(folder: vscode.WorkspaceFolder | undefined, target: string): Partial<LoupeAttachArguments> {
  const configs = vscode.workspace.getConfiguration('launch', folder?.uri).get<any[]>('configurations') ?? [];
  const match = configs.find((c) => c?.type === DEBUG_TYPE && c?.target === target);
  if (!match) return folder ? { localRoot: folder.uri.fsPath } : {};
  const { localRoot, remoteRoot, sourceMaps, outFiles } = match;
  const sub = (v: string) => v.replace(/\$\{workspaceFolder\}/g, folder?.uri.fsPath ?? '');
  return {
    ...(localRoot ? { localRoot: sub(localRoot) } : folder ? { localRoot: folder.uri.fsPath } : {}),
    ...(remoteRoot ? { remoteRoot } : {}),
    ...(sourceMaps !== undefined ? { sourceMaps } : {}),
    ...(outFiles ? { outFiles: (outFiles as string[]).map(sub) } : {}),
  };
}

function defaultConfiguration(): vscode.DebugConfiguration {
  return {
    type: DEBUG_TYPE,
    request: 'attach',
    name: 'Loupe: attach to production',
    target: 'checkout',
    mode: 'pause',
    durationSeconds: 900,
    localRoot: '${workspaceFolder}',
    remoteRoot: '/app',
    outFiles: ['${workspaceFolder}/dist/**/*.js'],
  };
}

export function register(context: vscode.ExtensionContext, deps: { identity: Identity }): void {
  const { identity } = deps;
  context.subscriptions.push(
    vscode.debug.registerDebugAdapterDescriptorFactory(DEBUG_TYPE, {
      createDebugAdapterDescriptor: () => new vscode.DebugAdapterInlineImplementation(new LoupeDebugSession() as unknown as vscode.DebugAdapter),
    }),
    vscode.debug.registerDebugConfigurationProvider(DEBUG_TYPE, {
      provideDebugConfigurations: () => [defaultConfiguration()],
      resolveDebugConfiguration: async (_folder, config) => {
        if (!config.type && !config.request && !config.name) {
          // F5 with no launch.json: the guided attach.
          void vscode.commands.executeCommand('loupe.attach');
          return undefined;
        }
        return config;
      },
      resolveDebugConfigurationWithSubstitutedVariables: async (folder, config) => {
        const c = config as vscode.DebugConfiguration & LoupeAttachArguments;
        if (c.grantToken && c.attachUrl) return c;
        // A launch.json configuration: the adapter requests the grant with the signed-in identity.
        c.brokerUrl ||= brokerUrl();
        const t = c.identityToken ?? (await identity.tokenOrSignIn());
        if (!t) return undefined;
        c.identityToken = t;
        c.brokerUrl ||= brokerUrl();
        if (!c.localRoot && folder) c.localRoot = folder.uri.fsPath;
        if (!c.reason?.trim()) {
          const reason = await vscode.window.showInputBox({ title: `Loupe: why are you attaching to ${c.target}?`, prompt: 'Recorded with every action of the session.', ignoreFocusOut: true });
          if (!reason?.trim()) return undefined;
          c.reason = reason.trim();
        }
        return c;
      },
    }),
  );
}
