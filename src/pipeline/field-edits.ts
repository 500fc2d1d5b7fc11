/**
 * The edits filters make to a message's fields (FieldEdits of the contract), kept as the set of names
 * whose received fields are dropped and the fields added, in order. The engines apply them when they
 * write the message: received fields whose name is in `dropped` are skipped, then `added` is written.
 *
 * An edit throws a TypeError (the phase runner answers 500 ZP_ERR_FILTER_FAILED and logs it) for a name
 * that is not a token, a value with CR, LF or NUL, and a field zproxy manages: the framing fields, Host and
 * the hop-by-hop ones (isManagedName, src/http/fields.ts), which the engines write themselves.
 */
import { isManagedName } from '../http/fields.ts';
import type { FieldEdits } from './contract.ts';

/** RFC 9110 §5.1 token characters. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/;

/** CR, LF and NUL can never be in a field value (RFC 9110 §5.5). */
const FORBIDDEN_VALUE = /[\r\n\0]/;

/** Names already checked (filters use a handful of names, mostly from their config). */
const CHECKED_NAMES = new Map<string, string>();

function checkName(name: string): string {
  const known = CHECKED_NAMES.get(name);
  if (known !== undefined) return known;
  const lower = name.toLowerCase();
  if (!TOKEN.test(lower)) throw new TypeError(`invalid field name ${JSON.stringify(name)}`);
  if (isManagedName(lower)) {
    throw new TypeError(
      `field ${lower} is managed by zproxy (framing, Host or hop-by-hop): filters cannot set, add or remove it`,
    );
  }
  if (CHECKED_NAMES.size < 1024) CHECKED_NAMES.set(name, lower);
  return lower;
}

function checkValue(name: string, value: string): string {
  // A RegExp, not a charCodeAt loop: values are often strings built by concatenation (cons strings), which
  // the RegExp flattens once while charCodeAt walks them for every character.
  if (typeof value !== 'string' || FORBIDDEN_VALUE.test(value)) {
    throw new TypeError(`invalid value for field ${name}: CR, LF and NUL are not allowed`);
  }
  const n = value.length;
  if (n === 0) return value;
  // Most values start and end with a visible ASCII character: nothing to trim, no new string.
  const first = value.charCodeAt(0);
  const last = value.charCodeAt(n - 1);
  return first > 0x20 && first < 0x7f && last > 0x20 && last < 0x7f ? value : value.trim();
}

export class FieldEditList implements FieldEdits {
  /** Lowercase names whose received fields are not written (each once; a handful at most). */
  readonly dropped: string[] = [];
  /** Fields to write after the received ones: name (lowercase), value, name, value... */
  readonly added: string[] = [];

  set(name: string, value: string): void {
    const n = checkName(name);
    const v = checkValue(n, value);
    this.drop(n);
    this.added.push(n, v);
  }

  add(name: string, value: string): void {
    const n = checkName(name);
    this.added.push(n, checkValue(n, value));
  }

  remove(name: string): void {
    this.drop(checkName(name));
  }

  /** Drops the received fields named `n` (lowercase, checked) and the ones added so far. */
  private drop(n: string): void {
    if (!this.dropped.includes(n)) this.dropped.push(n);
    const added = this.added;
    let w = 0;
    for (let r = 0; r < added.length; r += 2) {
      if (added[r] === n) continue;
      if (w !== r) {
        added[w] = added[r]!;
        added[w + 1] = added[r + 1]!;
      }
      w += 2;
    }
    if (w !== added.length) added.length = w;
  }

  /** True when the received fields named `lowerName` are not written. */
  drops(lowerName: string): boolean {
    return this.dropped.includes(lowerName);
  }

  /** True when nothing was edited. */
  get empty(): boolean {
    return this.dropped.length === 0 && this.added.length === 0;
  }

  /** The added fields as HTTP/1.1 field lines (each ending in CRLF). */
  lines(): string {
    let out = '';
    const added = this.added;
    for (let i = 0; i < added.length; i += 2) out += `${added[i]}: ${added[i + 1]}\r\n`;
    return out;
  }

  /** Applies the edits to a header object (node:http / node:http2 shape: lowercase names, lists for repeats). */
  applyTo(headers: Record<string, string | string[] | number | undefined>): void {
    for (const name of this.dropped) delete headers[name];
    const added = this.added;
    for (let i = 0; i < added.length; i += 2) {
      const name = added[i]!;
      const value = added[i + 1]!;
      const prior = headers[name];
      if (prior === undefined) headers[name] = value;
      else if (Array.isArray(prior)) prior.push(value);
      else headers[name] = [String(prior), value];
    }
  }

  /** Applies the edits to a flat field list (`[name, value, ...]`, names in any case). */
  applyToList(fields: string[]): string[] {
    let out = fields;
    if (this.dropped.length > 0) {
      out = [];
      for (let i = 0; i < fields.length; i += 2) {
        if (!this.dropped.includes(fields[i]!.toLowerCase())) out.push(fields[i]!, fields[i + 1]!);
      }
    }
    const added = this.added;
    for (let i = 0; i < added.length; i++) out.push(added[i]!);
    return out;
  }
}
