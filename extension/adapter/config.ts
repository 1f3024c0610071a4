/**
 * The `loupe` debug type's attach configuration. package.json's `contributes.debuggers[0].configurationAttributes.attach`
 * is its JSON schema; test/extension/manifest.test.ts keeps the two in step.
 */
export interface LoupeAttachConfiguration {
  /** Target name as the broker's policy names it. */
  target: string;
  /** `pause` (breakpoints hold the process) or `snapshot`. */
  mode?: 'pause' | 'snapshot';
  /** `v8` asks for the privilege of evaluating expressions in V8 (app functions and getters may run; redaction is best-effort), where the policy allows it. Default `loupe`: the broker interprets expressions. */
  evaluation?: 'loupe' | 'v8';
  /** Requested grant length; the broker caps it to the policy's maximum. */
  durationSeconds?: number;
  /** Why you attach (recorded in the audit trail). */
  reason?: string;
  /** Ticket link or id, where the policy asks for one. */
  ticket?: string;
  /** Base URL of the broker; defaults to the `loupe.brokerUrl` setting. */
  brokerUrl?: string;
  /** Local folder that corresponds to `remoteRoot` on the target. */
  localRoot?: string;
  /** Folder on the target that corresponds to `localRoot`. */
  remoteRoot?: string;
  /** Map locations through source maps (default true). */
  sourceMaps?: boolean;
  /** Glob patterns of the compiled JavaScript files (with source maps) to search for breakpoint locations. */
  outFiles?: string[];
  /** Log the DAP traffic of the adapter to the Debug Console. */
  trace?: boolean;
}

/** What the adapter receives in addition: filled in by the extension, or by a test driving the adapter directly. */
export interface LoupeAttachArguments extends LoupeAttachConfiguration {
  /** Identity token (the adapter then requests the grant itself). */
  identityToken?: string;
  /** An already issued grant: its token and attach URL (then no grant is requested). */
  grantToken?: string;
  attachUrl?: string;
  grantId?: string;
  expiresAt?: string;
}

/** The custom DAP event the adapter sends once the grant is known: the extension's status bar counts it down. */
export interface GrantEventBody {
  grantId: string;
  target: string;
  mode: string;
  expiresAt: string;
  /** 'v8' when the grant may run expressions in V8 (privileged); absent: Loupe expressions. */
  evaluation?: 'v8';
}

/** The Debug Console line at attach of a session whose grant has V8 evaluation. */
export const v8SessionNotice = 'Loupe: this session may run app code in V8 (privileged). Redaction is best-effort.';

/** The custom DAP event sent when the broker ends the session (expiry, revocation, shutdown, target gone, audit failure). */
export interface SessionEndedEventBody {
  code: number;
  reason: string;
  message: string;
}

/**
 * The custom DAP event `loupe.snapshot`, sent for each capture of a snapshot session (the extension's Snapshots view
 * lists them). The custom request `loupe.showSnapshot` `{captureId}` shows one as the stopped state.
 */
export interface SnapshotEventBody {
  captureId: string;
  /** 1, 2, 3… in this session. */
  seq: number;
  capturedAt: string;
  functionName: string;
  /** `service.ts:15`, through source maps where they apply. */
  location: string;
  path?: string;
  line?: number;
  /** The DAP id of the breakpoint that captured it, when it is still set. */
  breakpointId?: number;
  /** Why the capture is incomplete (the broker's time budget or byte limit). */
  truncated?: string;
  /** Why it was not shown as a stop on its own (e.g. the breakpoint's hit count); it can still be selected. */
  notShown?: string;
}

/** The custom DAP event `loupe.snapshotShown`: the capture now presented as the stopped state. */
export interface SnapshotShownEventBody {
  captureId: string;
}
