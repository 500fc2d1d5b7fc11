/**
 * FieldReader (the filter contract's read-only view of a message's fields) over what each engine holds:
 * a message's fields (FieldSource: a parsed HTTP/1.1 head, a FieldList), or a node:http2 header object.
 */
import type { IncomingHttpHeaders } from 'node:http2';
import type { FieldSource } from '../http/fields.ts';
import type { FieldReader } from './contract.ts';

function joined(name: string, values: readonly string[]): string | undefined {
  if (values.length === 0) return undefined;
  if (values.length === 1) return values[0];
  return values.join(name === 'cookie' ? '; ' : ', ');
}

/**
 * The fields of a message (valid while its source is: for an HTTP/1.1 head, until the connection's next
 * message). The engines keep one per head object and reuse it from message to message.
 */
export class HeadFieldReader implements FieldReader {
  readonly head: FieldSource;

  constructor(head: FieldSource) {
    this.head = head;
  }

  get(name: string): string | undefined {
    const lower = name.toLowerCase();
    const head = this.head;
    const first = head.indexOfField(lower);
    if (first === -1) return undefined;
    // Most fields are sent once: no list for them.
    if (head.indexOfField(lower, first + 1) === -1) return head.fieldValue(first);
    return joined(lower, allValues(head, lower));
  }

  getAll(name: string): readonly string[] {
    return allValues(this.head, name.toLowerCase());
  }

  names(): Iterable<string> {
    const names = new Set<string>();
    const head = this.head;
    for (let i = 0; i < head.fieldCount; i++) names.add(head.lowerFieldName(i));
    return names;
  }
}

/** The fields of a node:http2 header object (pseudo-headers are not fields). */
export class ObjectFieldReader implements FieldReader {
  private readonly headers: IncomingHttpHeaders;

  constructor(headers: IncomingHttpHeaders) {
    this.headers = headers;
  }

  get(name: string): string | undefined {
    const lower = name.toLowerCase();
    if (lower.charCodeAt(0) === 0x3a) return undefined;
    const value = this.headers[lower];
    if (value === undefined) return undefined;
    return Array.isArray(value) ? joined(lower, value) : String(value);
  }

  getAll(name: string): readonly string[] {
    const lower = name.toLowerCase();
    if (lower.charCodeAt(0) === 0x3a) return [];
    const value = this.headers[lower];
    if (value === undefined) return [];
    return Array.isArray(value) ? value : [String(value)];
  }

  names(): Iterable<string> {
    return Object.keys(this.headers).filter((name) => name.charCodeAt(0) !== 0x3a);
  }
}

/** The values of every field named `lower` (lowercase), in order. */
function allValues(head: FieldSource, lower: string): string[] {
  const out: string[] = [];
  for (let i = head.indexOfField(lower); i !== -1; i = head.indexOfField(lower, i + 1))
    out.push(head.fieldValue(i));
  return out;
}
