import { closeSync, openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as cf from '../../lib/index.js';
import { devices, Rng } from '../support/helpers.js';
import { tempDir } from '../support/io_fixtures.js';

const test = suite('file_read');
const rng = new Rng(9);

test('readFileInto fills f32, bf16 and i32 tensors with the file bytes at any position, on every device', () => {
  const { dir, remove } = tempDir();
  const path = join(dir, 'bytes.bin');
  const values = rng.array(1001, 5);
  const bytes = Buffer.from(values.buffer);
  // Three unaligned positions: the bytes of f32 values at 3, as i32 and as bf16 pairs.
  writeFileSync(path, Buffer.concat([Buffer.from([7, 7, 7]), bytes]));
  const fd = openSync(path, 'r');
  try {
    for (const device of devices()) {
      cf.scope(() => {
        const f = cf.empty([7, 143], { device });
        cf.native.readFileInto(f, fd, 3);
        assert.equal([...f.toArray()], [...values]);
        const i = cf.empty([1000], { dtype: 'i32', device });
        cf.native.readFileInto(i, fd, 7);
        assert.equal([...i.toArray()], [...new Int32Array(values.buffer, 4, 1000)]);
        const h = cf.empty([2, 3], { dtype: 'bf16', device });
        cf.native.readFileInto(h, fd, 3);
        const halves = new Uint16Array(values.buffer, 0, 6);
        assert.equal([...h.toArray()], [...halves].map((b) => new Float32Array(new Uint32Array([b << 16]).buffer)[0]!));
        const window = cf.zeros([4], { device }).view([2], 1);
        cf.native.readFileInto(window, fd, 3 + 4 * 10);
        assert.equal([...window.toArray()], [values[10]!, values[11]!]);
        cf.native.readFileInto(cf.empty([0], { device }), fd, 1 << 20);
      });
    }
  } finally {
    closeSync(fd);
    remove();
  }
});

test('readFileInto: a short file, a bad descriptor and bad arguments are errors', () => {
  const { dir, remove } = tempDir();
  const path = join(dir, 'short.bin');
  writeFileSync(path, Buffer.alloc(10));
  const fd = openSync(path, 'r');
  try {
    cf.scope(() => {
      const t = cf.empty([3]);
      assert.throws(() => cf.native.readFileInto(t, fd, 0), /readFileInto: the file ends at byte 10, 2 bytes short of the tensor/);
      assert.throws(() => cf.native.readFileInto(t, fd, 20), /readFileInto: the file ends at byte 20, 12 bytes short/);
      assert.throws(() => cf.native.readFileInto(t, 1 << 29, 0), /readFileInto: reading at byte 0 failed: Bad file descriptor/);
      assert.throws(() => cf.native.readFileInto(t, -1, 0), /readFileInto: expected .* for fd, got -1/);
      assert.throws(() => cf.native.readFileInto(t, fd, 1.5), /readFileInto: expected .* for position, got 1.5/);
      assert.throws(() => (cf.native.readFileInto as (...a: unknown[]) => void)(t, fd), /readFileInto/);
      assert.throws(() => cf.native.readFileInto({} as cf.Tensor, fd, 0), /readFileInto: expected .* for tensor/);
    });
  } finally {
    closeSync(fd);
    remove();
  }
});

test.run();
