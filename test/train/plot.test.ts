import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import sharp from 'sharp';
import * as cf from '../../lib/index.js';

const test = suite('plot');

async function rawPixels(png: Buffer): Promise<{ data: Buffer; width: number; height: number; channels: number }> {
  const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height, channels: info.channels };
}

test('encodePng round-trips exact pixels through a real decoder', async () => {
  const rgb = Uint8Array.from([255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30, 40, 50, 60, 70, 80, 90]);
  const png = cf.encodePng(3, 2, rgb);
  const meta = await sharp(png).metadata();
  assert.equal([meta.format, meta.width, meta.height, meta.channels], ['png', 3, 2, 3]);
  const { data } = await rawPixels(png);
  assert.equal([...data], [...rgb]);
  assert.throws(() => cf.encodePng(2, 2, new Uint8Array(5)), /encodePng: expected 12 bytes of RGB for 2×2, got 5/);
});

test('the loss curve passes through every data point; axes and empty space are where expected', async () => {
  const points = Array.from({ length: 51 }, (_, i) => ({ step: i * 20, loss: 5 - i * 0.08 }));
  const { png, layout } = cf.renderLossCurve(points, { width: 500, height: 300 });
  const meta = await sharp(png).metadata();
  assert.equal([meta.format, meta.width, meta.height], ['png', 500, 300]);
  const img = await rawPixels(png);
  const at = (x: number, y: number): number[] => {
    const i = (Math.round(y) * img.width + Math.round(x)) * img.channels;
    return [img.data[i]!, img.data[i + 1]!, img.data[i + 2]!];
  };
  const near = (x: number, y: number, c: readonly number[]): boolean => {
    for (let dx = -1; dx <= 2; dx++) for (let dy = -1; dy <= 2; dy++) if (at(x + dx, y + dy).every((v, k) => v === c[k])) return true;
    return false;
  };
  assert.is(layout.xMin, 0);
  assert.is(layout.xMax, 1000);
  assert.ok(layout.yMin <= 1 && layout.yMax >= 5);
  for (const p of points) {
    const [x, y] = cf.toPixel(layout, p.step, p.loss);
    assert.ok(x >= layout.left && x <= layout.right && y >= layout.top && y <= layout.bottom, `point ${p.step} inside the plot area`);
    assert.ok(near(x, y, cf.CURVE_COLOR), `curve pixel at step ${p.step} (${x.toFixed(1)}, ${y.toFixed(1)})`);
  }
  // The loss falls: far above the first half of the curve and far below its end there is no curve.
  const [qx, qy] = cf.toPixel(layout, 250, 4.9);
  assert.not.ok(near(qx, qy, cf.CURVE_COLOR));
  assert.not.equal(at(qx, qy), [...cf.CURVE_COLOR]);
  const [rx, ry] = cf.toPixel(layout, 900, layout.yMin + 0.05);
  assert.not.ok(near(rx, ry, cf.CURVE_COLOR));
  // The axes are black lines along the plot area's left and bottom edges.
  assert.equal(at(layout.left, (layout.top + layout.bottom) / 2), [0, 0, 0]);
  assert.equal(at((layout.left + layout.right) / 2 + 3, layout.bottom), [0, 0, 0]);
});

test('nice ticks and bad arguments', () => {
  assert.equal(cf.niceTicks(0.3, 4.7), [0, 1, 2, 3, 4, 5]);
  assert.equal(cf.niceTicks(0, 1000), [0, 200, 400, 600, 800, 1000]);
  assert.equal(cf.niceTicks(2.31, 2.36), [2.31, 2.32, 2.33, 2.34, 2.35, 2.36]);
  const one = cf.renderLossCurve([{ step: 3, loss: 1 }]);
  assert.ok(one.png.length > 100);
  assert.throws(() => cf.renderLossCurve([]), /renderLossCurve: expected a non-empty array/);
  assert.throws(() => cf.renderLossCurve([{ step: 0, loss: NaN }]), /renderLossCurve: expected \{step, loss\} with finite numbers for points\[0\]/);
});

test.run();
