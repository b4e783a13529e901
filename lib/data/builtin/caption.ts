// A training caption for a scene, in one of several sentence patterns with synonyms and
// optional attributes (size, fill, count, position, background, distractors), so that no word
// alone gives the class away and a model has to tie the words to what is drawn. The patterns
// avoid the zero-shot templates' wordings ("a photo of …"): evaluation prompts are unseen.
import type { SampleRandom } from './random.js';
import type { Distractor, Position, Scene } from './scene.js';
import { COLOUR_WORDS, type ColourKind, COUNT_WORDS, DIGIT_NAMES, NEUTRALS, type NeutralKind, SHAPE_WORDS } from './vocabulary.js';

/** Canonical words most of the time, synonyms otherwise. */
function word(names: readonly string[], random: SampleRandom): string {
  return random.chance(0.6) ? names[0]! : random.pick(names.slice(1));
}

function article(next: string): string {
  return /^[aeiou]/.test(next) ? 'an' : 'a';
}

function colourWord(colour: ColourKind | NeutralKind, random: SampleRandom): string {
  return colour in COLOUR_WORDS ? word(COLOUR_WORDS[colour as ColourKind].names, random) : random.pick(NEUTRALS[colour as NeutralKind].words);
}

const POSITION_PHRASES: Readonly<Record<Position, readonly string[]>> = {
  'top left': ['in the top left corner', 'at the upper left', 'near the top left'],
  top: ['at the top', 'near the top edge', 'in the upper middle'],
  'top right': ['in the top right corner', 'at the upper right', 'near the top right'],
  left: ['on the left', 'at the left side', 'towards the left'],
  centre: ['in the middle', 'in the centre', 'at the center'],
  right: ['on the right', 'at the right side', 'towards the right'],
  'bottom left': ['in the bottom left corner', 'at the lower left', 'near the bottom left'],
  bottom: ['at the bottom', 'near the bottom edge', 'in the lower middle'],
  'bottom right': ['in the bottom right corner', 'at the lower right', 'near the bottom right'],
};

const SIZE_WORDS = { small: ['small', 'little', 'tiny'], medium: ['medium-sized', 'mid-sized'], large: ['large', 'big', 'huge'] } as const;

/** "a large striped crimson disc", "two small blue boxes", "one green star". */
function mainPhrase(scene: Scene, random: SampleRandom): string {
  const noun = random.chance(0.6) ? SHAPE_WORDS[scene.shape].nouns[0]! : random.pick(SHAPE_WORDS[scene.shape].nouns.slice(1));
  const parts: string[] = [];
  if (random.chance(0.45)) parts.push(random.pick(SIZE_WORDS[scene.size]));
  if (scene.fill === 'striped' && random.chance(0.7)) parts.push(random.pick(['striped', 'stripy', 'banded']));
  parts.push(word(COLOUR_WORDS[scene.colour].names, random));
  const body = parts.join(' ');
  if (scene.count === 1) return `${random.chance(0.85) ? article(body) : 'one'} ${body} ${noun.singular}`;
  const count = random.chance(0.8) ? COUNT_WORDS[scene.count]! : String(scene.count);
  return `${count} ${body} ${noun.plural}`;
}

/** The same object with the colour after the noun: "a circle coloured red". */
function invertedPhrase(scene: Scene, random: SampleRandom): string {
  const noun = random.pick(SHAPE_WORDS[scene.shape].nouns);
  const colour = word(COLOUR_WORDS[scene.colour].names, random);
  const verb = random.pick(['coloured', 'painted', 'in']);
  if (scene.count === 1) return `${article(noun.singular)} ${noun.singular} ${verb} ${colour}`;
  return `${COUNT_WORDS[scene.count]} ${noun.plural} ${verb} ${colour}`;
}

function distractorPhrase(d: Distractor, random: SampleRandom): string {
  if (d.kind === 'digit') {
    const digit = random.chance(0.5) ? String(d.digit) : DIGIT_NAMES[d.digit]!;
    const noun = random.pick(['digit', 'number', 'numeral']);
    if (random.chance(0.5)) return `the ${noun} ${digit}`;
    const colour = colourWord(d.colour, random);
    return `${article(colour)} ${colour} ${noun} ${digit}`;
  }
  const colour = colourWord(d.colour, random);
  const noun = random.pick(SHAPE_WORDS[d.shape].nouns).singular;
  const size = random.pick(['small ', 'tiny ', '']);
  return `${article(size + colour)} ${size}${colour} ${noun}`;
}

function backgroundPhrase(scene: Scene, random: SampleRandom): string {
  const bg = scene.background;
  const tone = random.pick(NEUTRALS[bg.tone].words);
  const noun = random.pick(['background', 'backdrop']);
  const prep = random.pick(['on', 'against', 'over']);
  switch (bg.kind) {
    case 'plain':
      return `${prep} ${article(tone)} ${tone} ${noun}`;
    case 'noisy':
      return `${prep} a ${random.pick(['noisy', 'grainy', 'speckled'])} ${tone} ${noun}`;
    case 'gradient':
      return `${prep} a ${random.pick(['gradient', 'fading', 'shaded'])} ${noun}`;
    case 'striped':
      return `${prep} a ${random.pick(['striped', 'lined'])} ${noun}`;
  }
}

const LEADS = ['', '', '', 'a picture of ', 'an image of ', 'a render of ', 'there is ', 'we see ', 'a sketch showing ', 'a scene with '];

export function captionScene(scene: Scene, random: SampleRandom): string {
  const subject = random.chance(0.8) ? mainPhrase(scene, random) : invertedPhrase(scene, random);
  const extras: string[] = [];
  if (scene.position !== undefined && random.chance(0.45)) extras.push(random.pick(POSITION_PHRASES[scene.position]));
  if (random.chance(0.35)) extras.push(backgroundPhrase(scene, random));
  const mentioned = scene.distractors.filter(() => random.chance(0.6));
  if (mentioned.length > 0) {
    const joined = mentioned.map((d) => distractorPhrase(d, random)).join(' and ');
    extras.push(`${random.pick(['next to', 'beside', 'with', 'and'])} ${joined}`);
  }
  // Shuffle the extras (Fisher–Yates) so no attribute owns a slot in the sentence.
  for (let i = extras.length - 1; i > 0; i--) {
    const j = random.int(i + 1);
    [extras[i], extras[j]] = [extras[j]!, extras[i]!];
  }
  const sentence = [random.pick(LEADS) + subject, ...extras].join(random.chance(0.7) ? ' ' : ', ');
  return random.chance(0.3) ? sentence + '.' : sentence;
}
