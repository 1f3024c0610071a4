import type { AuditConfig } from '../../config/types';
import type { AuditStore } from './auditStore';
import { LocalDirectoryStore } from './localStore';
import type { S3AuditStore } from './s3Store';

export function createAuditStore(config: AuditConfig['store']): AuditStore {
  if (config.kind === 'local') return new LocalDirectoryStore(config.dir);
  // Loaded only when configured: the AWS SDK is large and most brokers in development never use it.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { S3AuditStore: Store } = require('./s3Store') as { S3AuditStore: typeof S3AuditStore };
  return new Store({
    bucket: config.bucket,
    prefix: config.prefix,
    ...(config.forcePathStyle !== undefined ? { forcePathStyle: config.forcePathStyle } : {}),
    ...(config.endpoint ? { endpoint: config.endpoint } : {}),
    ...(config.region ? { region: config.region } : {}),
  });
}
