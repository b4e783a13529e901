// Renders a scene into an HWC RGB byte image. Each drawable is shaded inside its bounding box,
// exactly only near its outline: coverage = clamp(0.5 - signed distance in pixels, 0, 1), one
// sample per pixel centre, which anti-aliases edges as a one-pixel box filter would.
import { SHAPE_EXTENT } from './geometry.js';
import { mix32 } from './random.js';
import type { Background, Drawable, Scene } from './scene.js';

function paintBackground(bg: Background, size: number, out: Float32Array): void {
  const ca = Math.cos(bg.angle);
  const sa = Math.sin(bg.angle);
  const [r0, g0, b0] = bg.rgb;
  const [r1, g1, b1] = bg.secondRgb;
  const periodPx = bg.period * size;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const i = (y * size + x) * 3;
      let t = 0;
      if (bg.kind === 'gradient') {
        // Projection onto the gradient direction, mapped to [0, 1] over the image's extent.
        const u = ((x + 0.5) / size - 0.5) * ca + ((y + 0.5) / size - 0.5) * sa;
        t = Math.min(1, Math.max(0, u / 1.42 + 0.5));
      } else if (bg.kind === 'striped') {
        const u = (x + 0.5) * ca + (y + 0.5) * sa;
        // A triangle wave through a steep ramp: hard stripes, edges smoothed over ~one pixel.
        const phase = Math.abs(((u / periodPx) % 1 + 1) % 1 - 0.5) * 2;
        t = Math.min(1, Math.max(0, (phase - 0.5) * periodPx + 0.5));
      }
      let n = 0;
      if (bg.noise > 0) n = ((mix32(bg.noiseSeed ^ (y * size + x)) / 4294967296) * 2 - 1) * bg.noise;
      out[i] = r0 + (r1 - r0) * t + n;
      out[i + 1] = g0 + (g1 - g0) * t + n;
      out[i + 2] = b0 + (b1 - b0) * t + n;
    }
  }
}

// Side of the pixel blocks that are classified as a whole (all outside, all inside) from one
// distance evaluation at their centre, so that the exact per-pixel work follows the outline.
const BLOCK = 4;

function paintDrawable(d: Drawable, size: number, out: Float32Array): void {
  const cx = d.x * size;
  const cy = d.y * size;
  const rPx = d.radius * size;
  const reach = rPx * SHAPE_EXTENT + 1;
  const x0 = Math.max(0, Math.floor(cx - reach));
  const x1 = Math.min(size - 1, Math.ceil(cx + reach));
  const y0 = Math.max(0, Math.floor(cy - reach));
  const y1 = Math.min(size - 1, Math.ceil(cy + reach));
  const cr = Math.cos(d.rotation);
  const sr = Math.sin(d.rotation);
  const cs = Math.cos(d.stripeAngle);
  const ss = Math.sin(d.stripeAngle);
  const [r, g, b] = d.rgb;
  // Stripes alternate the colour with a darker shade of it, so the colour's name still holds.
  const dr = r * 0.45;
  const dg = g * 0.45;
  const db = b * 0.45;
  // Distances are 1-Lipschitz, so a block whose centre is further than half its diagonal plus
  // the half-pixel ramp from the outline is uniformly covered (or uncovered).
  const blockMargin = (BLOCK * Math.SQRT1_2 + 0.5) / rPx;
  const distanceAt = (x: number, y: number): number => {
    const px = (x - cx) / rPx;
    const py = (y - cy) / rPx;
    // Into the object's frame: rotate by -rotation.
    return d.distance(cr * px + sr * py, -sr * px + cr * py);
  };
  for (let by = y0; by <= y1; by += BLOCK) {
    for (let bx = x0; bx <= x1; bx += BLOCK) {
      const ey = Math.min(by + BLOCK, y1 + 1);
      const ex = Math.min(bx + BLOCK, x1 + 1);
      const centre = distanceAt((bx + ex) / 2, (by + ey) / 2);
      if (centre > blockMargin) continue;
      const inside = centre < -blockMargin;
      for (let y = by; y < ey; y++) {
        for (let x = bx; x < ex; x++) {
          const coverage = inside ? 1 : Math.min(1, Math.max(0, 0.5 - distanceAt(x + 0.5, y + 0.5) * rPx));
          if (coverage === 0) continue;
          let fr = r;
          let fg = g;
          let fb = b;
          if (d.fill === 'striped') {
            const px = (x + 0.5 - cx) / rPx;
            const py = (y + 0.5 - cy) / rPx;
            const lx = cr * px + sr * py;
            const ly = -sr * px + cr * py;
            const wave = Math.sin((lx * cs + ly * ss) * d.stripeFrequency * Math.PI);
            const dark = Math.min(1, Math.max(0, wave * rPx * 0.5 + 0.5));
            fr = r + (dr - r) * dark;
            fg = g + (dg - g) * dark;
            fb = b + (db - b) * dark;
          }
          const i = (y * size + x) * 3;
          out[i] = out[i]! + (fr - out[i]!) * coverage;
          out[i + 1] = out[i + 1]! + (fg - out[i + 1]!) * coverage;
          out[i + 2] = out[i + 2]! + (fb - out[i + 2]!) * coverage;
        }
      }
    }
  }
}

/** The scene as size×size×3 bytes, rows top to bottom, RGB interleaved. */
export function renderScene(scene: Scene, size: number): Uint8Array {
  const work = new Float32Array(size * size * 3);
  paintBackground(scene.background, size, work);
  for (const d of scene.drawables) paintDrawable(d, size, work);
  const image = new Uint8Array(work.length);
  for (let i = 0; i < work.length; i++) image[i] = Math.min(255, Math.max(0, Math.round(work[i]!)));
  return image;
}
