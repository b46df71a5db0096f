import type { Journal } from '../../services/installer/journal.js';

/** A journal of an install of 2.0.0 with nothing done yet, with `fields` in place of its own. */
export const testJournal = (fields: Partial<Journal> = {}): Journal => ({
  phase: 'staging',
  version: '2.0.0',
  targetDir: 'v2.0.0',
  stagingDir: '.staging-1',
  fromDir: null,
  previousBefore: null,
  units: [],
  backups: [],
  error: null,
  recoveryAttempts: 0,
  securityVersion: 0,
  ...fields,
});
