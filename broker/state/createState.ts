import { hostname } from 'node:os';
import type { LoupeConfig } from '../config/types';
import { FileStateBackend } from './fileState';
import { PostgresStateBackend } from './pgState';
import type { StateBackend } from './stateBackend';

/** The configured state backend: PostgreSQL when `state.postgres` is set, else the state directory. Not started. */
export function createStateBackend(config: LoupeConfig, log?: (line: string) => void): StateBackend {
  const postgres = config.state.postgres;
  if (!postgres) return new FileStateBackend(config.stateDir);
  return new PostgresStateBackend({ url: postgres.url, schema: postgres.schema, pollIntervalMs: config.state.noticePollSeconds * 1000, ...(log ? { log } : {}) });
}

/** This replica's name in the registry of live sessions: configured, or the host name and process id. */
export function replicaName(config: LoupeConfig): string {
  return config.state.replica ?? `${hostname()}-${process.pid}`;
}
