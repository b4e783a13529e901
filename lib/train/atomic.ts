// Atomic file replacement for checkpoints and logs: the data goes to a temporary file in the
// target's folder, is flushed to disk (fsync), renamed over the target (atomic within one
// file system), and the folder is fsynced so the rename itself survives a power cut. A crash
// at any point leaves either the old file or the complete new one, never a torn mix.
import { randomBytes } from 'node:crypto';
import { open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { checkPath, syncDirectory, writeAll, writeFileAtomic as replaceFileAtomically } from '../io/files.js';
import { argError } from '../tensor/check.js';

/** Streams the content: call `write` for each chunk, in order (await each call). */
export type AtomicWriter = (write: (chunk: Uint8Array | string) => Promise<void>) => void | Promise<void>;

function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
}

/** Replaces `path` atomically with `data` (bytes, a string as UTF-8, or a writer that streams chunks). */
export async function writeFileAtomic(path: string, data: Uint8Array | string | AtomicWriter): Promise<void> {
  const op = 'writeFileAtomic';
  checkPath(op, 'path', path);
  if (typeof data !== 'string' && !(data instanceof Uint8Array) && typeof data !== 'function') {
    throw argError(op, 'data', 'a Uint8Array, a string or a writer function', data);
  }
  const tmp = tempPathFor(path);
  const fh = await open(tmp, 'wx');
  try {
    try {
      if (typeof data === 'function') {
        await data(async (chunk) => {
          if (typeof chunk !== 'string' && !(chunk instanceof Uint8Array)) throw argError(op, 'a written chunk', 'a Uint8Array or a string', chunk);
          await fh.writeFile(chunk);
        });
      } else {
        await fh.writeFile(data);
      }
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw e;
  }
  syncDirectory(dirname(path));
}

/** writeFileAtomic for bytes or a string, synchronously (the same replacement lib/io uses). */
export function writeFileAtomicSync(path: string, data: Uint8Array | string): void {
  const op = 'writeFileAtomicSync';
  checkPath(op, 'path', path);
  if (typeof data !== 'string' && !(data instanceof Uint8Array)) throw argError(op, 'data', 'a Uint8Array or a string', data);
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  replaceFileAtomically(path, (fd) => writeAll(fd, bytes), op);
}
