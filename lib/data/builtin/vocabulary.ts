// The words and colours the built-in dataset draws from. A class is a (shape, colour) pair; its
// zero-shot name uses the first (canonical) word of each, and captions use all the synonyms
// so that a model has to learn that "crimson disc" and "red circle" are the same thing.

export type Rgb = readonly [number, number, number];

export interface Noun {
  singular: string;
  plural: string;
}

export interface ShapeWords {
  /** Canonical word first (used in class names), synonyms after it. */
  nouns: readonly Noun[];
}

export interface ColourWords {
  /** Canonical word first (used in class names), synonyms after it. */
  names: readonly string[];
  rgb: Rgb;
}

export const SHAPE_KINDS = ['circle', 'square', 'triangle', 'star', 'cross'] as const;
export type ShapeKind = (typeof SHAPE_KINDS)[number];

export const SHAPE_WORDS: Readonly<Record<ShapeKind, ShapeWords>> = {
  circle: {
    nouns: [
      { singular: 'circle', plural: 'circles' },
      { singular: 'disc', plural: 'discs' },
      { singular: 'round blob', plural: 'round blobs' },
    ],
  },
  square: {
    nouns: [
      { singular: 'square', plural: 'squares' },
      { singular: 'box', plural: 'boxes' },
      { singular: 'block', plural: 'blocks' },
    ],
  },
  triangle: {
    nouns: [
      { singular: 'triangle', plural: 'triangles' },
      { singular: 'triangular shape', plural: 'triangular shapes' },
      { singular: 'wedge', plural: 'wedges' },
    ],
  },
  star: {
    nouns: [
      { singular: 'star', plural: 'stars' },
      { singular: 'five-pointed star', plural: 'five-pointed stars' },
      { singular: 'starburst', plural: 'starbursts' },
    ],
  },
  cross: {
    nouns: [
      { singular: 'cross', plural: 'crosses' },
      { singular: 'plus sign', plural: 'plus signs' },
      { singular: 'plus shape', plural: 'plus shapes' },
    ],
  },
};

export const COLOUR_KINDS = ['red', 'green', 'blue', 'yellow', 'purple'] as const;
export type ColourKind = (typeof COLOUR_KINDS)[number];

export const COLOUR_WORDS: Readonly<Record<ColourKind, ColourWords>> = {
  red: { names: ['red', 'crimson', 'scarlet'], rgb: [214, 40, 36] },
  green: { names: ['green', 'emerald', 'grassy green'], rgb: [38, 168, 62] },
  blue: { names: ['blue', 'azure', 'cobalt'], rgb: [36, 84, 224] },
  yellow: { names: ['yellow', 'golden', 'lemon'], rgb: [242, 206, 30] },
  purple: { names: ['purple', 'violet', 'plum'], rgb: [142, 48, 186] },
};

/** Neutral tones for backgrounds and digits, so that colour words only ever name objects. */
export const NEUTRALS = {
  white: { words: ['white', 'pale'], rgb: [238, 238, 232] },
  lightGrey: { words: ['light grey', 'light gray'], rgb: [196, 196, 192] },
  grey: { words: ['grey', 'gray'], rgb: [126, 126, 124] },
  darkGrey: { words: ['dark grey', 'charcoal'], rgb: [58, 58, 60] },
  black: { words: ['black', 'dark'], rgb: [16, 16, 18] },
  beige: { words: ['beige', 'cream'], rgb: [226, 212, 182] },
} as const satisfies Record<string, { words: readonly string[]; rgb: Rgb }>;
export type NeutralKind = keyof typeof NEUTRALS;

export const DIGIT_NAMES = ['zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine'] as const;

export const COUNT_WORDS = ['', 'one', 'two'] as const;

/** The class index of a (shape, colour) pair: shapes major, colours minor. */
export function classIndex(shape: ShapeKind, colour: ColourKind): number {
  return SHAPE_KINDS.indexOf(shape) * COLOUR_KINDS.length + COLOUR_KINDS.indexOf(colour);
}

/** "red circle", "green circle", …: one name per class, in class-index order. */
export function classNames(): string[] {
  const names: string[] = [];
  for (const shape of SHAPE_KINDS) {
    for (const colour of COLOUR_KINDS) names.push(`${COLOUR_WORDS[colour].names[0]} ${SHAPE_WORDS[shape].nouns[0]!.singular}`);
  }
  return names;
}
