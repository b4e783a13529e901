// Zero-shot prompts for the built-in classes, in the style of OpenCLIP's template lists: short
// generic sentences with '{}' where the class name goes. None of them is a training-caption
// pattern (captions never say "photo", "rendering", "drawing", "example" or "itap"), so a model
// scores well only if it has tied the class words themselves to the images.
export const BUILTIN_TEMPLATES: readonly string[] = [
  'a photo of a {}.',
  'a blurry photo of a {}.',
  'a close-up photo of the {}.',
  'a low resolution photo of a {}.',
  'a pixelated photo of the {}.',
  'a rendering of a {}.',
  'a drawing of the {}.',
  'an example of a {}.',
  'itap of a {}.',
  'a {} in a photo.',
];
