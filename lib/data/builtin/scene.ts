// What one built-in sample shows, drawn from its generator: a background, the main object (one
// or two copies of one shape in one colour: the sample's class), and up to two distractors
// (smaller shapes of another shape and colour, or hand-drawn digits). Geometry is in fractions
// of the image side, so the same scene renders at any resolution.
import { type DistanceFn, SHAPE_DISTANCE } from './geometry.js';
import type { SampleRandom } from './random.js';
import { digitDistance } from './stroke_font.js';
import {
  classIndex,
  COLOUR_KINDS,
  COLOUR_WORDS,
  type ColourKind,
  NEUTRALS,
  type NeutralKind,
  type Rgb,
  SHAPE_KINDS,
  type ShapeKind,
} from './vocabulary.js';

export type BackgroundKind = 'plain' | 'gradient' | 'noisy' | 'striped';
export type Fill = 'solid' | 'striped';
export type SizeWord = 'small' | 'medium' | 'large';
export type Position =
  | 'top left'
  | 'top'
  | 'top right'
  | 'left'
  | 'centre'
  | 'right'
  | 'bottom left'
  | 'bottom'
  | 'bottom right';

export interface Background {
  kind: BackgroundKind;
  tone: NeutralKind;
  /** The second tone of gradients and stripes. */
  secondTone: NeutralKind;
  rgb: Rgb;
  secondRgb: Rgb;
  /** Direction of gradients and stripes, radians. */
  angle: number;
  /** Stripe period, fraction of the image side. */
  period: number;
  /** Per-pixel noise amplitude (0..255 units); 0 for all kinds but 'noisy'. */
  noise: number;
  noiseSeed: number;
}

/** One thing to draw: a distance function placed, scaled, rotated and coloured. */
export interface Drawable {
  x: number;
  y: number;
  radius: number;
  rotation: number;
  rgb: Rgb;
  fill: Fill;
  stripeAngle: number;
  /** Stripes per object radius. */
  stripeFrequency: number;
  distance: DistanceFn;
}

export type Distractor =
  | { kind: 'shape'; shape: ShapeKind; colour: ColourKind }
  | { kind: 'digit'; digit: number; colour: ColourKind | NeutralKind };

export interface Scene {
  label: number;
  shape: ShapeKind;
  colour: ColourKind;
  count: number;
  size: SizeWord;
  /** Where the main object is; undefined when there are several copies. */
  position: Position | undefined;
  fill: Fill;
  background: Background;
  /** The distractors actually placed, in drawing order. */
  distractors: Distractor[];
  /** Everything to draw, back to front: distractors first, then the main object's copies. */
  drawables: Drawable[];
}

const NEUTRAL_KINDS = Object.keys(NEUTRALS) as NeutralKind[];
const POSITIONS: readonly (readonly Position[])[] = [
  ['top left', 'top', 'top right'],
  ['left', 'centre', 'right'],
  ['bottom left', 'bottom', 'bottom right'],
];

function jitter(rgb: Rgb, amount: number, random: SampleRandom): Rgb {
  const c = (v: number): number => Math.min(255, Math.max(0, v + random.uniform(-amount, amount)));
  return [c(rgb[0]), c(rgb[1]), c(rgb[2])];
}

function colourDistance(a: Rgb, b: Rgb): number {
  return Math.hypot(a[0] - b[0], a[1] - b[1], a[2] - b[2]);
}

function luminance(c: Rgb): number {
  return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2];
}

function drawBackground(objectRgb: Rgb, random: SampleRandom): Background {
  const kind = (['plain', 'gradient', 'noisy', 'striped'] as const)[random.weighted([4, 3, 2, 1])]!;
  // Retry tones until the main colour stands out from both of them.
  let tone: NeutralKind = 'white';
  let secondTone: NeutralKind = 'grey';
  for (let attempt = 0; attempt < 16; attempt++) {
    tone = random.pick(NEUTRAL_KINDS);
    secondTone = random.pick(NEUTRAL_KINDS);
    const ok =
      colourDistance(NEUTRALS[tone].rgb, objectRgb) > 90 &&
      (kind === 'plain' || kind === 'noisy' || colourDistance(NEUTRALS[secondTone].rgb, objectRgb) > 90);
    if (ok && tone !== secondTone) break;
  }
  return {
    kind,
    tone,
    secondTone,
    rgb: jitter(NEUTRALS[tone].rgb, 14, random),
    secondRgb: jitter(NEUTRALS[secondTone].rgb, 14, random),
    angle: random.uniform(0, Math.PI),
    period: random.uniform(0.12, 0.3),
    noise: kind === 'noisy' ? random.uniform(18, 40) : 0,
    noiseSeed: Math.floor(random.next() * 0x100000000),
  };
}

function drawable(x: number, y: number, radius: number, rgb: Rgb, fill: Fill, distance: DistanceFn, random: SampleRandom, rotate: boolean): Drawable {
  return {
    x,
    y,
    radius,
    rotation: rotate ? random.uniform(-0.2, 0.2) : 0,
    rgb,
    fill,
    stripeAngle: random.uniform(0, Math.PI),
    stripeFrequency: random.uniform(2.2, 3.4),
    distance,
  };
}

interface Disc {
  x: number;
  y: number;
  r: number;
}

/** A centre for a disc of radius r inside the image, clear of `taken` by `clearance` × radii. */
function place(r: number, taken: readonly Disc[], clearance: number, random: SampleRandom): Disc | undefined {
  for (let attempt = 0; attempt < 24; attempt++) {
    const x = random.uniform(r, 1 - r);
    const y = random.uniform(r, 1 - r);
    if (taken.every((d) => Math.hypot(d.x - x, d.y - y) > clearance * (d.r + r))) return { x, y, r };
  }
  return undefined;
}

export function drawScene(random: SampleRandom): Scene {
  const shape = random.pick(SHAPE_KINDS);
  const colour = random.pick(COLOUR_KINDS);
  const wantedCount = random.chance(0.8) ? 1 : 2;
  const fill: Fill = random.chance(0.15) ? 'striped' : 'solid';
  const baseRgb = jitter(COLOUR_WORDS[colour].rgb, 22, random);
  const background = drawBackground(baseRgb, random);

  // Main objects are large: a tiny ViT learns shapes far faster when they span several patches.
  const radius = wantedCount === 1 ? random.uniform(0.28, 0.42) : random.uniform(0.2, 0.25);
  const size: SizeWord = wantedCount > 1 || radius < 0.32 ? 'small' : radius > 0.37 ? 'large' : 'medium';
  const mains: Disc[] = [];
  for (let k = 0; k < wantedCount; k++) {
    const disc = place(radius * random.uniform(0.92, 1.08), mains, 1.05, random);
    if (disc !== undefined) mains.push(disc);
  }
  // The first copy always fits: nothing is placed before it.
  const count = mains.length;
  const first = mains[0]!;
  const position = count === 1 ? POSITIONS[Math.min(2, Math.floor(first.y * 3))]![Math.min(2, Math.floor(first.x * 3))] : undefined;

  const distractors: Distractor[] = [];
  const drawables: Drawable[] = [];
  const taken: Disc[] = [...mains];
  const wantedDistractors = random.weighted([3, 4, 2]);
  for (let k = 0; k < wantedDistractors; k++) {
    const r = random.uniform(0.06, 0.1);
    const disc = place(r, taken, 0.95, random);
    if (disc === undefined) continue;
    taken.push(disc);
    if (random.chance(0.5)) {
      const other = random.pick(SHAPE_KINDS.filter((s) => s !== shape));
      const otherColour = random.pick(COLOUR_KINDS.filter((c) => c !== colour));
      distractors.push({ kind: 'shape', shape: other, colour: otherColour });
      const rgb = jitter(COLOUR_WORDS[otherColour].rgb, 22, random);
      drawables.push(drawable(disc.x, disc.y, disc.r, rgb, 'solid', SHAPE_DISTANCE[other], random, true));
    } else {
      const digit = random.int(10);
      // Digits are ink-coloured (the neutral furthest from the background) or in another class colour.
      const ink: NeutralKind = luminance(background.rgb) > 110 ? 'black' : 'white';
      const digitColour: ColourKind | NeutralKind = random.chance(0.5) ? ink : random.pick(COLOUR_KINDS.filter((c) => c !== colour));
      distractors.push({ kind: 'digit', digit, colour: digitColour });
      const rgb = digitColour in NEUTRALS ? NEUTRALS[digitColour as NeutralKind].rgb : COLOUR_WORDS[digitColour as ColourKind].rgb;
      drawables.push(drawable(disc.x, disc.y, disc.r * 1.15, jitter(rgb, 16, random), 'solid', digitDistance(digit, random), random, false));
    }
  }
  for (const m of mains) {
    drawables.push(drawable(m.x, m.y, m.r, jitter(baseRgb, 8, random), fill, SHAPE_DISTANCE[shape], random, shape !== 'circle'));
  }
  return { label: classIndex(shape, colour), shape, colour, count, size, position, fill, background, distractors, drawables };
}
