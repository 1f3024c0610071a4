import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe } from 'node:test';
import { LocalDirectoryStore } from '../../broker/audit/stores/localStore';
import { runStoreContract } from './storeContract';

describe('audit store contract: local directory', () => {
  const dir = mkdtempSync(join(tmpdir(), 'loupe-store-'));
  runStoreContract(() => new LocalDirectoryStore(dir), { enforcesRetention: false });
});
