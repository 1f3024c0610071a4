import type { AlertRules, WebhookConfig } from './schema/alerts';

// The alert rules are defined in ./schema/alerts.ts (validated there, merged over these defaults in ./crossCheck.ts).
export { alertActions, type AlertAction, type AlertRules, type WebhookConfig } from './schema/alerts';

/** Names whose reads are worth an alert, compared case- and separator-insensitively. */
export const defaultSensitiveNames = ['password', 'passwd', 'secret', 'token', 'authorization', 'cookie', 'apiKey', 'privateKey', 'ssn', 'creditCard', 'cardNumber', 'cvv'];

export const defaultAlertRules: AlertRules = {
  evaluationRate: { perMinute: 60, action: 'none' },
  readRate: { perMinute: 300, action: 'none' },
  capturedBytes: { perSession: 5 * 1024 * 1024, action: 'none' },
  refusals: { count: 5, withinSeconds: 60, action: 'none' },
  sensitiveReads: { names: defaultSensitiveNames, action: 'none' },
  firstAttach: { days: 30, action: 'none' },
  longPause: { seconds: 20, action: 'none' },
  watchdogResume: { action: 'none' },
  concurrentTargets: { max: 3, action: 'none' },
  failedAttaches: { count: 10, withinSeconds: 60, action: 'none' },
  targetUnresponsive: { action: 'none' },
  v8Evaluation: { action: 'none' },
};

export interface AlertingConfig {
  readonly rules: AlertRules;
  readonly webhooks: readonly WebhookConfig[];
  readonly deadLetterFile: string;
  /** Audit events as Elastic Common Schema JSON lines: "stdout", a file path, or off. */
  readonly ecsOutput?: string;
}
