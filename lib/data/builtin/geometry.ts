// Signed distance functions of the built-in shapes, in an object's own frame: the shape is
// centred on the origin and fits the disc of radius SHAPE_EXTENT; negative inside, positive outside, in units of
// the object's radius. The rasterizer turns distances into anti-aliased coverage.
import type { ShapeKind } from './vocabulary.js';

/** Every shape lies within this radius of its centre, whatever its rotation. */
export const SHAPE_EXTENT = 1.2;

export type DistanceFn = (x: number, y: number) => number;

/** Distance from (x, y) to the segment (ax, ay)-(bx, by). */
export function segmentDistance(x: number, y: number, ax: number, ay: number, bx: number, by: number): number {
  const dx = bx - ax;
  const dy = by - ay;
  const px = x - ax;
  const py = y - ay;
  const len2 = dx * dx + dy * dy;
  const t = len2 > 0 ? Math.min(1, Math.max(0, (px * dx + py * dy) / len2)) : 0;
  const ex = px - t * dx;
  const ey = py - t * dy;
  return Math.sqrt(ex * ex + ey * ey);
}

/** Signed distance to a closed polygon given as flat [x0, y0, x1, y1, …] (either winding). */
function polygonDistance(vertices: Float64Array): DistanceFn {
  const n = vertices.length / 2;
  return (x, y) => {
    let best = Infinity;
    let inside = false;
    for (let i = 0, j = n - 1; i < n; j = i++) {
      const xi = vertices[2 * i]!;
      const yi = vertices[2 * i + 1]!;
      const xj = vertices[2 * j]!;
      const yj = vertices[2 * j + 1]!;
      const d = segmentDistance(x, y, xj, yj, xi, yi);
      if (d < best) best = d;
      // Even-odd crossing test of a ray towards +x.
      if (yi > y !== yj > y && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
    }
    return inside ? -best : best;
  };
}

function regularPolygon(corners: number, radius: number, startAngle: number): Float64Array {
  const v = new Float64Array(2 * corners);
  for (let k = 0; k < corners; k++) {
    const a = startAngle + (2 * Math.PI * k) / corners;
    v[2 * k] = radius * Math.cos(a);
    v[2 * k + 1] = radius * Math.sin(a);
  }
  return v;
}

function starPolygon(points: number, outer: number, inner: number): Float64Array {
  const v = new Float64Array(4 * points);
  for (let k = 0; k < 2 * points; k++) {
    const a = -Math.PI / 2 + (Math.PI * k) / points;
    const r = k % 2 === 0 ? outer : inner;
    v[2 * k] = r * Math.cos(a);
    v[2 * k + 1] = r * Math.sin(a);
  }
  return v;
}

/** Signed distance to an axis-aligned box of half-sizes (hx, hy). */
function boxDistance(x: number, y: number, hx: number, hy: number): number {
  const qx = Math.abs(x) - hx;
  const qy = Math.abs(y) - hy;
  const ox = Math.max(qx, 0);
  const oy = Math.max(qy, 0);
  return Math.sqrt(ox * ox + oy * oy) + Math.min(Math.max(qx, qy), 0);
}

// Sizes chosen so that the shapes look about equally large at the same radius.
const TRIANGLE = polygonDistance(regularPolygon(3, 1.0, -Math.PI / 2));
const STAR = polygonDistance(starPolygon(5, 1.05, 0.45));

export const SHAPE_DISTANCE: Readonly<Record<ShapeKind, DistanceFn>> = {
  circle: (x, y) => Math.sqrt(x * x + y * y) - 0.92,
  square: (x, y) => boxDistance(x, y, 0.76, 0.76),
  // Centred on its bounding box rather than its centroid, so it does not poke out at the top.
  triangle: (x, y) => TRIANGLE(x, y - 0.25),
  star: STAR,
  cross: (x, y) => Math.min(boxDistance(x, y, 0.95, 0.3), boxDistance(x, y, 0.3, 0.95)),
};
