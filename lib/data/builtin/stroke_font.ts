// A small stroke font for the digits 0–9, drawn by hand for this project: each glyph is a few
// polylines in a box 0.6 wide and 1 tall (y down). Every sample wobbles the points, slants the
// glyph and picks a pen width, so no two digits look quite the same (a "hand-drawn" look).
import { type DistanceFn, segmentDistance } from './geometry.js';
import type { SampleRandom } from './random.js';

type Polyline = readonly number[];

const GLYPHS: readonly (readonly Polyline[])[] = [
  [[0.3, 0, 0.52, 0.12, 0.58, 0.5, 0.52, 0.88, 0.3, 1, 0.08, 0.88, 0.02, 0.5, 0.08, 0.12, 0.3, 0]],
  [[0.12, 0.22, 0.34, 0, 0.34, 1]],
  [[0.04, 0.2, 0.2, 0.02, 0.44, 0.04, 0.56, 0.24, 0.46, 0.5, 0.04, 1, 0.6, 1]],
  [[0.04, 0.1, 0.3, 0, 0.52, 0.12, 0.5, 0.34, 0.24, 0.48, 0.52, 0.6, 0.56, 0.85, 0.3, 1, 0.04, 0.9]],
  [
    [0.44, 1, 0.44, 0],
    [0.44, 0, 0.02, 0.68, 0.6, 0.68],
  ],
  [[0.56, 0, 0.1, 0, 0.06, 0.44, 0.34, 0.38, 0.56, 0.58, 0.52, 0.9, 0.26, 1, 0.02, 0.9]],
  [[0.5, 0.04, 0.26, 0.04, 0.08, 0.34, 0.04, 0.74, 0.24, 1, 0.5, 0.92, 0.56, 0.66, 0.36, 0.5, 0.08, 0.6]],
  [[0.02, 0, 0.58, 0, 0.24, 1]],
  [
    [0.3, 0.47, 0.1, 0.34, 0.08, 0.12, 0.3, 0, 0.52, 0.12, 0.5, 0.34, 0.3, 0.47],
    [0.3, 0.47, 0.56, 0.62, 0.56, 0.86, 0.3, 1, 0.04, 0.86, 0.04, 0.62, 0.3, 0.47],
  ],
  [[0.52, 0.38, 0.3, 0.5, 0.08, 0.38, 0.06, 0.14, 0.28, 0, 0.5, 0.1, 0.56, 0.36, 0.44, 1]],
];

/**
 * The distance function of one hand-drawn digit, in an object frame where the glyph's height
 * spans [-1, 1] (so it fits the same disc as the shapes).
 */
export function digitDistance(digit: number, random: SampleRandom): DistanceFn {
  const glyph = GLYPHS[digit];
  if (glyph === undefined) throw new Error(`digitDistance: expected a digit in [0, 9] for digit, got ${digit}`);
  const slant = random.uniform(-0.25, 0.15);
  const halfPen = random.uniform(0.07, 0.11);
  const wobble = 0.035;
  // Segments as flat [ax, ay, bx, by, …] in the object frame: centre the 0.6×1 box, scale ×2.
  const segments: number[] = [];
  for (const line of glyph) {
    let px = 0;
    let py = 0;
    for (let k = 0; k < line.length; k += 2) {
      const y = (line[k + 1]! - 0.5) * 2 + random.uniform(-wobble, wobble) * 2;
      const x = (line[k]! - 0.3) * 2 + random.uniform(-wobble, wobble) * 2 - slant * y;
      if (k > 0) segments.push(px, py, x, y);
      px = x;
      py = y;
    }
  }
  const flat = Float64Array.from(segments);
  return (x, y) => {
    let best = Infinity;
    for (let s = 0; s < flat.length; s += 4) {
      const d = segmentDistance(x, y, flat[s]!, flat[s + 1]!, flat[s + 2]!, flat[s + 3]!);
      if (d < best) best = d;
    }
    return best - halfPen;
  };
}
