// File access for checkpoint formats: exact-range reads and atomic replacement.
import { closeSync, fsyncSync, openSync, readSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { argError } from '../tensor/check.js';

/**
 * `path` as a string, or an error naming `op` and `arg`. Node's fs calls also take numbers as
 * file descriptors: a number that slipped through would read or write whatever that descriptor
 * is (a pipe read can block forever), so every path from outside is checked here first.
 */
export function checkPath(op: string, arg: string, path: unknown): string {
  if (typeof path !== 'string' || path.length === 0) throw argError(op, arg, 'a non-empty file path', path);
  return path;
}

// readSync / writeSync move at most 2 GiB - 1 per call.
const IO_CHUNK = 1 << 30;

/** Fills `target` from the file at `position`; a short read means the file was truncated. */
export function readExact(fd: number, target: Uint8Array, position: number, op: string, file: string): void {
  let done = 0;
  while (done < target.length) {
    const n = readSync(fd, target, done, Math.min(IO_CHUNK, target.length - done), position + done);
    if (n === 0) throw new Error(`${op}: ${file}: unexpected end of file at byte ${position + done} (file truncated?)`);
    done += n;
  }
}

/** Writes all of `data` at the file's current position. */
export function writeAll(fd: number, data: Uint8Array): void {
  let done = 0;
  while (done < data.length) done += writeSync(fd, data, done, Math.min(IO_CHUNK, data.length - done));
}

/**
 * Replaces `path` with what `write` puts into a new file: the bytes go to a temporary file
 * in the same directory (so the rename stays on one file system), are flushed to disk, and
 * only then renamed over `path`. A failure at any point leaves `path` as it was and removes
 * the temporary file. `op` prefixes the error when the temporary file cannot be created.
 */
export function writeFileAtomic(path: string, write: (fd: number) => void, op: string): void {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  let fd: number;
  try {
    fd = openSync(tmp, 'wx');
  } catch (e) {
    throw new Error(`${op}: ${path}: cannot create a temporary file beside it (${(e as Error).message})`);
  }
  let renamed = false;
  try {
    try {
      write(fd);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
    renamed = true;
    syncDirectory(dirname(path));
  } finally {
    if (!renamed) {
      try {
        unlinkSync(tmp);
      } catch {
        // already gone: nothing to clean up
      }
    }
  }
}

/**
 * Makes a rename in `dir` durable. Some platforms cannot open or fsync a directory; the data
 * is on disk regardless, so that is not an error.
 */
export function syncDirectory(dir: string): void {
  let fd: number;
  try {
    fd = openSync(dir, 'r');
  } catch {
    return;
  }
  try {
    fsyncSync(fd);
  } catch {
    // directory fsync unsupported here
  } finally {
    closeSync(fd);
  }
}
