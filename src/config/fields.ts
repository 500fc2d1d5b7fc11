/**
 * Small builders for annotated schema fields. Every field carries a description (which names its
 * default) and, where the generic wording would be vague, an `x-expected` phrase that the error
 * reporter uses verbatim ("an http:// URL such as ..."). `x-expected` is stripped from the shipped
 * JSON Schema file.
 */
import { type TSchema, type TUnsafe, Type } from '@sinclair/typebox';

/** Annotation keyword holding the human words for what a location must hold. */
export const EXPECTED_KEYWORD = 'x-expected';

export interface FieldOptions {
  readonly description: string;
  readonly default?: unknown;
  readonly expected?: string;
}

/** Schema options for a field: description (with its default spelled out), default, expected words. */
export function annotate(options: FieldOptions): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (options.default === undefined) {
    out.description = options.description;
  } else {
    out.description = `${options.description} Default: ${JSON.stringify(options.default)}.`;
    out.default = options.default;
  }
  if (options.expected !== undefined) out[EXPECTED_KEYWORD] = options.expected;
  return out;
}

export interface IntegerOptions extends FieldOptions {
  readonly minimum?: number;
  readonly maximum?: number;
}

export function integerField(options: IntegerOptions) {
  const limits: Record<string, number> = {};
  if (options.minimum !== undefined) limits.minimum = options.minimum;
  if (options.maximum !== undefined) limits.maximum = options.maximum;
  return Type.Integer({ ...annotate(options), ...limits });
}

export function booleanField(options: FieldOptions) {
  return Type.Boolean(annotate(options));
}

/** A string restricted to a fixed list of values (emitted as `enum`, which editors complete). */
export function stringEnum<const T extends string>(values: readonly T[], options?: FieldOptions): TUnsafe<T> {
  return Type.Unsafe<T>({
    ...(options === undefined ? {} : annotate(options)),
    type: 'string',
    enum: [...values],
  });
}

/** An object that accepts any keys (its contents are validated elsewhere). */
export function openObject(options: FieldOptions): TUnsafe<Record<string, unknown>> {
  return Type.Unsafe<Record<string, unknown>>({ ...annotate(options), type: 'object' });
}

/** Marks a schema with expected words without changing it. */
export function withExpected<T extends TSchema>(schema: T, expected: string): T {
  return { ...schema, [EXPECTED_KEYWORD]: expected };
}
