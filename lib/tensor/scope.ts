// Memory scopes: every tensor created while a scope is open belongs to it and is disposed
// when the scope closes, except the tensors the scope's function returns (they move to the
// enclosing scope) and tensors passed to keep(). Modelled on tfjs's tidy.
import { argError } from './check.js';
import type { Tensor } from './tensor.js';

const stack: Set<Tensor>[] = [];

/** Registers a new tensor with the innermost open scope, if any. */
export function track(t: Tensor): void {
  const s = stack[stack.length - 1];
  if (s) {
    s.add(t);
    t.scopeSet = s;
  }
}

/** Removes a tensor from scope tracking: it lives until disposed (or garbage collected). */
export function keep<X>(x: X): X {
  for (const t of tensorsIn(x)) {
    t.scopeSet?.delete(t);
    t.scopeSet = null;
  }
  return x;
}

/** Tensors reachable from a value through arrays, Maps, Sets and plain objects. */
export function tensorsIn(x: unknown, out: Set<Tensor> = new Set(), depth = 0): Set<Tensor> {
  if (x === null || typeof x !== 'object' || depth > 8) return out;
  if (isTensor(x)) {
    out.add(x);
  } else if (Array.isArray(x) || x instanceof Set) {
    for (const v of x) tensorsIn(v, out, depth + 1);
  } else if (x instanceof Map) {
    for (const v of x.values()) tensorsIn(v, out, depth + 1);
  } else if (Object.getPrototypeOf(x) === Object.prototype) {
    for (const v of Object.values(x)) tensorsIn(v, out, depth + 1);
  }
  return out;
}

function isTensor(x: object): x is Tensor {
  return (x as { isTensor?: unknown }).isTensor === true;
}

/**
 * Runs fn; disposes every tensor it created except those in its result, which move to the
 * enclosing scope. fn must be synchronous (a returned Promise is refused: tensors created
 * after an await could not be told apart from other code's).
 */
export function scope<R>(fn: () => R): R {
  if (typeof fn !== 'function') throw argError('scope', 'fn', 'a function', fn);
  const s = new Set<Tensor>();
  stack.push(s);
  let result: R;
  try {
    result = fn();
  } catch (e) {
    stack.pop();
    for (const t of s) t.dispose();
    throw e;
  }
  stack.pop();
  if (result instanceof Promise) {
    // The refused function's own failure would otherwise surface later as an unhandled rejection.
    result.catch(() => {});
    for (const t of s) t.dispose();
    throw new Error('scope: expected a synchronous function, got one that returned a Promise');
  }
  const kept = tensorsIn(result);
  const parent = stack[stack.length - 1];
  for (const t of s) {
    if (kept.has(t)) {
      t.scopeSet = null;
      if (parent) {
        parent.add(t);
        t.scopeSet = parent;
      }
    } else {
      t.dispose();
    }
  }
  return result;
}

/** Number of scopes open now (0 outside any). */
export function scopeDepth(): number {
  return stack.length;
}
