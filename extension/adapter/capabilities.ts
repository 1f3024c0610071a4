/** What the adapter tells the client it supports: everything that would change program state is off. */
import type { DebugProtocol } from '@vscode/debugprotocol';

export const capabilities: DebugProtocol.Capabilities = {
  supportsConfigurationDoneRequest: true,
  supportsConditionalBreakpoints: true,
  supportsHitConditionalBreakpoints: true,
  supportsLogPoints: true,
  supportsEvaluateForHovers: true,
  supportsLoadedSourcesRequest: true,
  supportsTerminateRequest: false,
  supportTerminateDebuggee: false,
  supportsSetVariable: false,
  supportsSetExpression: false,
  supportsRestartFrame: false,
  supportsRestartRequest: false,
  supportsStepBack: false,
  supportsCompletionsRequest: false,
  supportsExceptionInfoRequest: false,
  supportsFunctionBreakpoints: false,
  supportsDataBreakpoints: false,
  supportsReadMemoryRequest: false,
  supportsValueFormattingOptions: false,
  exceptionBreakpointFilters: [
    { filter: 'uncaught', label: 'Uncaught Exceptions', default: false },
    { filter: 'all', label: 'All Exceptions', default: false },
  ],
};
