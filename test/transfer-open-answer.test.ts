import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { Agent } from 'undici';
import { transfer } from '../services/fetcher/transfer.js';
import { UpdaterError } from '../shared/errors.js';
import { Origin } from './helpers/origin.js';
import { waitFor } from './helpers/wait.js';
import { tempDir } from './helpers/temp-dir.js';

// A failure between an answer's headers and its body (here: the part file cannot be truncated
// for a restart from byte 0) must not leave that answer open. Unread, it holds its connection
// paused by backpressure, with the bytes already buffered, for as long as the process lives; and
// if that connection ever fails, its body emits 'error' with nobody listening: an uncaught
// exception, the fetcher dead instead of a resumable DOWNLOAD_FAILED. The file is made
// immutable (chattr +i, root only) once the transfer has opened it: the truncate fails, EPERM.

const SIZE = 8 * 1024 * 1024; // more than the socket buffers: the answer is still arriving when the failure comes
const skip = process.getuid?.() !== 0 ? 'chattr +i needs root' : undefined;

test(
  'a disk failure before a 200 body is read fails the transfer as DOWNLOAD_FAILED and closes that answer and its connection',
  { skip },
  async () => {
    const origin = await new Origin(SIZE).start();
    const agent = new Agent();
    let open = 0;
    agent.on('connect', () => open++).on('disconnect', () => open--);
    const dir = tempDir('open-answer-');
    const partFile = path.join(dir, 'pkg.part');
    await fsp.writeFile(partFile, origin.body.subarray(0, 100_000));
    try {
      origin.sequence({ kind: 'ignore-range' }); // 200 to a resume: the transfer must start over from byte 0
      await assert.rejects(
        transfer({
          url: origin.url(),
          size: SIZE,
          partFile,
          start: { offset: 100_000, etag: origin.etag, lastModified: null },
          allowHttp: true,
          dispatcher: agent,
          retryAttempts: 0,
          retryBaseMs: 1,
          retryAfterMaxMs: 1,
          signal: new AbortController().signal,
          onProgress: () => undefined,
          onRequest: () => execFileSync('chattr', ['+i', partFile]),
        }),
        (e: unknown) =>
          e instanceof UpdaterError && e.code === 'DOWNLOAD_FAILED' && /cannot write the package/.test(e.message),
      );
      // the answer is dropped with its connection, not left paused: nothing can come of it later
      await waitFor("the failed answer's connection closed", () => open === 0, 5000);
    } finally {
      execFileSync('chattr', ['-i', partFile]);
      await origin.stop();
      await agent.destroy(); // not close(): that would wait for an answer left open
    }
  },
);
