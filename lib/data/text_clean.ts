// Caption cleaning as OpenCLIP applies it before BPE: a subset of ftfy's fixes, HTML
// unescaping twice (OpenCLIP calls html.unescape twice, so doubly escaped captions such as
// "&amp;quot;" come out as '"'), whitespace runs collapsed to one space and stripped, and
// lower-casing. Whitespace is Python's (str.isspace), not JavaScript's \s: the two differ on
// U+001C..U+001F and U+0085 (space in Python only) and U+FEFF (space in JavaScript only), and
// a tokenizer that is to give OpenCLIP's ids must split where Python splits.

/** Python's whitespace characters, as the body of a regex character class. */
export const PY_WHITESPACE = '\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';

const WHITESPACE_RUN = new RegExp(`[${PY_WHITESPACE}]+`, 'g');
// Whitespace that collapsing would change: anything but a lone inner space.
const UNTIDY_WHITESPACE = new RegExp(`[${PY_WHITESPACE.replace(' ', '')}]|  |^ | $`);

// Windows-1252's characters for bytes 0x80..0x9F; the five bytes it leaves undefined map to
// themselves. Both html.unescape (numeric references &#128;..&#159;) and ftfy (stray C1
// controls) read these code points as Windows-1252, as browsers do.
const CP1252_C1 =
  '\u20ac\x81\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030\u0160\u2039\u0152\x8d\u017d\x8f' +
  '\x90\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u02dc\u2122\u0161\u203a\u0153\x9d\u017e\u0178';

// The HTML 4 named references (plus &apos;), with their HTML5 values: name, '*' where the
// name is also recognised without its semicolon (the legacy names), and the code point in hex.
// The rest of HTML5's 2,231 names (&NotNestedLessLess; and the like) do not occur in image
// captions in practice and are left as written.
const ENTITY_TABLE =
  'Aacute*:c1 aacute*:e1 Acirc*:c2 acirc*:e2 acute*:b4 AElig*:c6 aelig*:e6 Agrave*:c0 agrave*:e0 ' +
  'alefsym:2135 Alpha:391 alpha:3b1 AMP*:26 amp*:26 and:2227 ang:2220 apos:27 Aring*:c5 aring*:e5 ' +
  'asymp:2248 Atilde*:c3 atilde*:e3 Auml*:c4 auml*:e4 bdquo:201e Beta:392 beta:3b2 brvbar*:a6 bull:2022 ' +
  'cap:2229 Ccedil*:c7 ccedil*:e7 cedil*:b8 cent*:a2 Chi:3a7 chi:3c7 circ:2c6 clubs:2663 cong:2245 ' +
  'COPY*:a9 copy*:a9 crarr:21b5 cup:222a curren*:a4 Dagger:2021 dagger:2020 dArr:21d3 darr:2193 deg*:b0 ' +
  'Delta:394 delta:3b4 diams:2666 divide*:f7 Eacute*:c9 eacute*:e9 Ecirc*:ca ecirc*:ea Egrave*:c8 ' +
  'egrave*:e8 empty:2205 emsp:2003 ensp:2002 Epsilon:395 epsilon:3b5 equiv:2261 Eta:397 eta:3b7 ETH*:d0 ' +
  'eth*:f0 Euml*:cb euml*:eb euro:20ac exist:2203 fnof:192 forall:2200 frac12*:bd frac14*:bc frac34*:be ' +
  'frasl:2044 Gamma:393 gamma:3b3 ge:2265 GT*:3e gt*:3e hArr:21d4 harr:2194 hearts:2665 hellip:2026 ' +
  'Iacute*:cd iacute*:ed Icirc*:ce icirc*:ee iexcl*:a1 Igrave*:cc igrave*:ec image:2111 infin:221e ' +
  'int:222b Iota:399 iota:3b9 iquest*:bf isin:2208 Iuml*:cf iuml*:ef Kappa:39a kappa:3ba Lambda:39b ' +
  'lambda:3bb lang:27e8 laquo*:ab lArr:21d0 larr:2190 lceil:2308 ldquo:201c le:2264 lfloor:230a ' +
  'lowast:2217 loz:25ca lrm:200e lsaquo:2039 lsquo:2018 LT*:3c lt*:3c macr*:af mdash:2014 micro*:b5 ' +
  'middot*:b7 minus:2212 Mu:39c mu:3bc nabla:2207 nbsp*:a0 ndash:2013 ne:2260 ni:220b not*:ac ' +
  'notin:2209 nsub:2284 Ntilde*:d1 ntilde*:f1 Nu:39d nu:3bd Oacute*:d3 oacute*:f3 Ocirc*:d4 ocirc*:f4 ' +
  'OElig:152 oelig:153 Ograve*:d2 ograve*:f2 oline:203e Omega:3a9 omega:3c9 Omicron:39f omicron:3bf ' +
  'oplus:2295 or:2228 ordf*:aa ordm*:ba Oslash*:d8 oslash*:f8 Otilde*:d5 otilde*:f5 otimes:2297 ' +
  'Ouml*:d6 ouml*:f6 para*:b6 part:2202 permil:2030 perp:22a5 Phi:3a6 phi:3c6 Pi:3a0 pi:3c0 piv:3d6 ' +
  'plusmn*:b1 pound*:a3 Prime:2033 prime:2032 prod:220f prop:221d Psi:3a8 psi:3c8 QUOT*:22 quot*:22 ' +
  'radic:221a rang:27e9 raquo*:bb rArr:21d2 rarr:2192 rceil:2309 rdquo:201d real:211c REG*:ae reg*:ae ' +
  'rfloor:230b Rho:3a1 rho:3c1 rlm:200f rsaquo:203a rsquo:2019 sbquo:201a Scaron:160 scaron:161 ' +
  'sdot:22c5 sect*:a7 shy*:ad Sigma:3a3 sigma:3c3 sigmaf:3c2 sim:223c spades:2660 sub:2282 sube:2286 ' +
  'sum:2211 sup:2283 sup1*:b9 sup2*:b2 sup3*:b3 supe:2287 szlig*:df Tau:3a4 tau:3c4 there4:2234 ' +
  'Theta:398 theta:3b8 thetasym:3d1 thinsp:2009 THORN*:de thorn*:fe tilde:2dc times*:d7 trade:2122 ' +
  'Uacute*:da uacute*:fa uArr:21d1 uarr:2191 Ucirc*:db ucirc*:fb Ugrave*:d9 ugrave*:f9 uml*:a8 ' +
  'upsih:3d2 Upsilon:3a5 upsilon:3c5 Uuml*:dc uuml*:fc weierp:2118 Xi:39e xi:3be Yacute*:dd yacute*:fd ' +
  'yen*:a5 Yuml:178 yuml*:ff Zeta:396 zeta:3b6 zwj:200d zwnj:200c';

/** Reference text (without the '&') to its character: "amp;" always, "amp" for legacy names. */
const ENTITIES: ReadonlyMap<string, string> = (() => {
  const m = new Map<string, string>();
  for (const entry of ENTITY_TABLE.split(' ')) {
    const [key, hex] = entry.split(':') as [string, string];
    const legacy = key.endsWith('*');
    const name = legacy ? key.slice(0, -1) : key;
    const ch = String.fromCodePoint(parseInt(hex, 16));
    m.set(name + ';', ch);
    if (legacy) m.set(name, ch);
  }
  return m;
})();

const CHARREF = /&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)/g;

function numericReference(ref: string): string {
  const hex = ref[1] === 'x' || ref[1] === 'X';
  const digits = ref.slice(hex ? 2 : 1).replace(/;$/, '');
  const cp = parseInt(digits, hex ? 16 : 10);
  if (cp === 0) return '\ufffd';
  if (cp === 0x0d) return '\r';
  if (cp >= 0x80 && cp <= 0x9f) return CP1252_C1[cp - 0x80]!;
  if ((cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) return '\ufffd';
  // Code points that HTML forbids in references are dropped, as Python's html.unescape does.
  const forbidden =
    (cp >= 0x01 && cp <= 0x08) || cp === 0x0b || (cp >= 0x0e && cp <= 0x1f) || cp === 0x7f ||
    (cp >= 0xfdd0 && cp <= 0xfdef) || (cp & 0xfffe) === 0xfffe;
  return forbidden ? '' : String.fromCodePoint(cp);
}

function replaceReference(whole: string, ref: string): string {
  if (ref[0] === '#') return numericReference(ref);
  const exact = ENTITIES.get(ref);
  if (exact !== undefined) return exact;
  // "&notit;" is "&not" followed by "it;": the longest legacy name that prefixes the text wins.
  for (let n = ref.length - 1; n > 1; n--) {
    const ch = ENTITIES.get(ref.slice(0, n));
    if (ch !== undefined) return ch + ref.slice(n);
  }
  return whole;
}

/** Python's html.unescape: named and numeric character references to characters. */
export function htmlUnescape(text: string): string {
  return text.includes('&') ? text.replace(CHARREF, replaceReference) : text;
}

const LIGATURES: Readonly<Record<string, string>> = {
  '\u0132': 'IJ', '\u0133': 'ij', '\u0149': '\u02bcn', '\u01f1': 'DZ', '\u01f2': 'Dz', '\u01f3': 'dz',
  '\u01c4': 'D\u017d', '\u01c5': 'D\u017e', '\u01c6': 'd\u017e', '\u01c7': 'LJ', '\u01c8': 'Lj', '\u01c9': 'lj',
  '\u01ca': 'NJ', '\u01cb': 'Nj', '\u01cc': 'nj', '\ufb00': 'ff', '\ufb01': 'fi', '\ufb02': 'fl',
  '\ufb03': 'ffi', '\ufb04': 'ffl', '\ufb05': '\u017ft', '\ufb06': 'st',
};
const LIGATURE_RE = new RegExp(`[${Object.keys(LIGATURES).join('')}]`, 'g');
const C1_RE = /[\x80-\x9f]/g;
const WIDE_RE = /[\uff01-\uffef]/g;
const DOUBLE_QUOTE_RE = /[\u201c-\u201f]/g;
const SINGLE_QUOTE_RE = /[\u02bc\u2018-\u201b]/g;
// With the u flag a valid surrogate pair is one code point, so only lone halves match.
const LONE_SURROGATE_RE = /[\ud800-\udfff]/gu;
const TERMINAL_ESCAPE_RE = /\x1b\[(?:\p{Nd}|;)*[a-zA-Z]/gu;
const CONTROL_RE = /[\x00-\x08\x0b\x0e-\x1f\x7f\u206a-\u206f\ufeff\ufff9-\ufffc\u{1d173}-\u{1d17a}\u{e0000}-\u{e007f}]/gu;
// Printable ASCII with tab, newline and carriage return is left unchanged by every fix below.
const NEEDS_FIX_RE = /[^\t\n\r\x20-\x7e]/;
// Every character some replacement below would change; most non-ASCII captions have none, and
// then only NFC is left to do.
const REPLACED_RE =
  /[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f\u0132\u0133\u0149\u01c4-\u01cc\u01f1-\u01f3\u02bc\u2018-\u201f\u206a-\u206f\u3000\ud800-\udfff\ufb00-\ufb06\ufeff\uff01-\uffef\ufff9-\ufffc\u{1d173}-\u{1d17a}\u{e0000}-\u{e007f}]/u;

/**
 * The deterministic part of ftfy.fix_text, in ftfy's order: C1 controls read as Windows-1252,
 * Latin ligatures split, full-width forms narrowed, curly quotes straightened, lone surrogates
 * replaced, terminal escapes and invisible control characters removed, NFC. Not included:
 * ftfy's mojibake repair (a statistical guess at a wrong decoding) and its own HTML pass (the
 * tokenizer unescapes twice after this anyway). One pass reaches ftfy's fixed point: no step's
 * output is input that an earlier step would change.
 */
export function basicTextFix(text: string): string {
  if (!NEEDS_FIX_RE.test(text)) return text;
  if (!REPLACED_RE.test(text)) return text.normalize('NFC');
  return text
    .replace(C1_RE, (c) => CP1252_C1[c.charCodeAt(0) - 0x80]!)
    .replace(LIGATURE_RE, (c) => LIGATURES[c]!)
    .replace(WIDE_RE, (c) => c.normalize('NFKC'))
    .replace(/\u3000/g, ' ')
    .replace(DOUBLE_QUOTE_RE, '"')
    .replace(SINGLE_QUOTE_RE, "'")
    .replace(LONE_SURROGATE_RE, '\ufffd')
    .replace(TERMINAL_ESCAPE_RE, '')
    .replace(CONTROL_RE, '')
    .normalize('NFC');
}

/**
 * OpenCLIP's 'lower' cleaning: optional ftfy-like fixes, html.unescape twice, whitespace runs
 * to one space, stripped, lower-cased.
 */
export function cleanText(text: string, fix = true): string {
  let t = fix ? basicTextFix(text) : text;
  t = htmlUnescape(htmlUnescape(t));
  if (!UNTIDY_WHITESPACE.test(t)) return t.toLowerCase();
  t = t.replace(WHITESPACE_RUN, ' ');
  const start = t.charCodeAt(0) === 0x20 ? 1 : 0;
  const end = t.length > start && t.charCodeAt(t.length - 1) === 0x20 ? t.length - 1 : t.length;
  return t.slice(start, end).toLowerCase();
}
