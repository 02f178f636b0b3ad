// Message IDs are decimal strings of 64-bit integers: they overflow a JS
// Number (2^53), so every comparison goes through BigInt.

export function cmpId(a, b) {
  const x = BigInt(a), y = BigInt(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

export function maxId(a, b) {
  if (a == null) return b;
  if (b == null) return a;
  return cmpId(a, b) >= 0 ? a : b;
}

export function nextId(a) {
  return (BigInt(a) + 1n).toString();
}

// SortedIds keeps message IDs in ascending order, without duplicates.
export class SortedIds {
  constructor() { this.ids = []; }
  get length() { return this.ids.length; }
  first() { return this.ids[0]; }
  last() { return this.ids[this.ids.length - 1]; }
  // index of the first id >= id
  lowerBound(id) {
    const v = BigInt(id);
    let lo = 0, hi = this.ids.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (BigInt(this.ids[mid]) < v) lo = mid + 1; else hi = mid;
    }
    return lo;
  }
  has(id) {
    const i = this.lowerBound(id);
    return i < this.ids.length && this.ids[i] === id;
  }
  // insert returns the id that follows the new one (or null if it is last),
  // or undefined if the id was already there.
  insert(id) {
    const i = this.lowerBound(id);
    if (i < this.ids.length && this.ids[i] === id) return undefined;
    this.ids.splice(i, 0, id);
    return i + 1 < this.ids.length ? this.ids[i + 1] : null;
  }
  clear() { this.ids = []; }
}
