// Resizing position embeddings when a checkpoint meets a model of another image size or
// context length, as OpenCLIP's resize_pos_embed / resize_text_pos_embed do: the patch grid
// is resampled with PyTorch's antialiased bicubic interpolation (F.interpolate, mode 'bicubic',
// antialias=True, align_corners=False; the class token's row is kept), the text positions
// with plain linear interpolation (align_corners=False). Tables are small, so this runs on
// the host on Float32Arrays.
import { argError, checkInteger } from '../tensor/check.js';

const MAX_POSITIONS = 1 << 16;

function checkTable(op: string, table: unknown, width: unknown): number {
  if (!(table instanceof Float32Array)) throw argError(op, 'table', 'a Float32Array', table);
  const w = checkInteger(op, 'width', width, 1, 1 << 16);
  if (table.length === 0 || table.length % w !== 0) throw argError(op, 'table', `a length that is a positive multiple of width ${w}`, table.length);
  return table.length / w;
}

/** Keys' cubic convolution with a = -0.5, the filter of PyTorch's (and PIL's) antialiased bicubic. */
function cubicAA(xIn: number): number {
  const a = -0.5;
  const x = Math.abs(xIn);
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
  return 0;
}

/**
 * Per output index, the first input index and the normalized weights of PyTorch's separable
 * antialiased bicubic resampling from `inSize` to `outSize` (support widens when shrinking).
 */
function bicubicAAWeights(inSize: number, outSize: number): { start: number; weights: number[] }[] {
  const scale = inSize / outSize;
  const support = scale >= 1 ? 2 * scale : 2;
  const invScale = scale >= 1 ? 1 / scale : 1;
  const out: { start: number; weights: number[] }[] = [];
  for (let i = 0; i < outSize; i++) {
    const center = scale * (i + 0.5);
    const start = Math.max(Math.trunc(center - support + 0.5), 0);
    const end = Math.min(Math.trunc(center + support + 0.5), inSize);
    const weights: number[] = [];
    let total = 0;
    for (let j = start; j < end; j++) {
      const w = cubicAA((j - center + 0.5) * invScale);
      weights.push(w);
      total += w;
    }
    out.push({ start, weights: total !== 0 ? weights.map((w) => w / total) : weights });
  }
  return out;
}

/**
 * The vision position table [1 + g·g, width] (class row first, a square grid of g = sqrt of the
 * patch rows) resized to the grid [gh, gw]: [1 + gh·gw, width].
 */
export function resizeVisionPositions(table: Float32Array, width: number, grid: [number, number]): Float32Array {
  const op = 'resizeVisionPositions';
  const patches = checkTable(op, table, width) - 1;
  if (!Array.isArray(grid) || grid.length !== 2) throw argError(op, 'grid', '[height, width] in patches', grid);
  checkInteger(op, 'grid[0]', grid[0], 1, MAX_POSITIONS);
  checkInteger(op, 'grid[1]', grid[1], 1, MAX_POSITIONS);
  if (grid[0] * grid[1] > MAX_POSITIONS) throw argError(op, 'grid', `at most ${MAX_POSITIONS} patches`, grid);
  const g = Math.round(Math.sqrt(patches));
  if (!Number.isInteger(patches) || g * g !== patches) {
    throw new Error(`resizeVisionPositions: expected a table of 1 + g*g rows of width ${width}, got ${table.length / width} rows`);
  }
  const [gh, gw] = grid;
  const rowsTaps = bicubicAAWeights(g, gh);
  const colTaps = bicubicAAWeights(g, gw);
  // Columns first (within each old grid row), then rows, as the separable kernel does.
  const wide = new Float32Array(g * gw * width);
  for (let r = 0; r < g; r++) {
    for (let c = 0; c < gw; c++) {
      const { start, weights } = colTaps[c]!;
      for (let d = 0; d < width; d++) {
        let s = 0;
        for (let k = 0; k < weights.length; k++) s += weights[k]! * table[(1 + r * g + start + k) * width + d]!;
        wide[(r * gw + c) * width + d] = s;
      }
    }
  }
  const out = new Float32Array((1 + gh * gw) * width);
  out.set(table.subarray(0, width), 0);
  for (let r = 0; r < gh; r++) {
    const { start, weights } = rowsTaps[r]!;
    for (let c = 0; c < gw; c++) {
      for (let d = 0; d < width; d++) {
        let s = 0;
        for (let k = 0; k < weights.length; k++) s += weights[k]! * wide[((start + k) * gw + c) * width + d]!;
        out[(1 + r * gw + c) * width + d] = s;
      }
    }
  }
  return out;
}

/** The text position table [n, width] linearly resized to [length, width]. */
export function resizeTextPositions(table: Float32Array, width: number, length: number): Float32Array {
  const n = checkTable('resizeTextPositions', table, width);
  checkInteger('resizeTextPositions', 'length', length, 1, MAX_POSITIONS);
  const out = new Float32Array(length * width);
  const scale = n / length;
  for (let i = 0; i < length; i++) {
    const src = Math.max((i + 0.5) * scale - 0.5, 0);
    const i0 = Math.min(Math.floor(src), n - 1);
    const i1 = Math.min(i0 + 1, n - 1);
    const t = src - i0;
    for (let d = 0; d < width; d++) out[i * width + d] = (1 - t) * table[i0 * width + d]! + t * table[i1 * width + d]!;
  }
  return out;
}
