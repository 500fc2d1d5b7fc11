/**
 * JSON text -> value, with the line and column of the first syntax error when the text is broken
 * (V8's messages do not always carry a position, so a small scanner finds it).
 */

export type JsonTextResult =
  | { readonly ok: true; readonly value: unknown }
  | { readonly ok: false; readonly line: number; readonly column: number; readonly problem: string };

export function parseJsonText(text: string): JsonTextResult {
  const body = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  try {
    return { ok: true, value: JSON.parse(body) };
  } catch (error) {
    const found = locateSyntaxError(body);
    const offset = found?.offset ?? body.length;
    const problem = found?.problem ?? (error instanceof Error ? error.message : String(error));
    const { line, column } = lineAndColumn(body, offset);
    return { ok: false, line, column, problem };
  }
}

/** 1-based line and column of a UTF-16 offset. */
export function lineAndColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text.charCodeAt(i) === 0x0a) {
      line++;
      lineStart = i + 1;
    }
  }
  return { line, column: offset - lineStart + 1 };
}

class SyntaxProblem {
  readonly offset: number;
  readonly problem: string;
  constructor(offset: number, problem: string) {
    this.offset = offset;
    this.problem = problem;
  }
}

/** Scans JSON text; returns the first syntax error, or null when the text is valid. */
export function locateSyntaxError(text: string): { offset: number; problem: string } | null {
  const scanner = new Scanner(text);
  try {
    scanner.value();
    scanner.whitespace();
    if (scanner.pos < text.length) throw scanner.unexpected('after the end of the JSON value');
    return null;
  } catch (error) {
    if (error instanceof SyntaxProblem) return { offset: error.offset, problem: error.problem };
    throw error;
  }
}

const LITERALS = ['true', 'false', 'null'] as const;
const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;

class Scanner {
  readonly text: string;
  pos = 0;

  constructor(text: string) {
    this.text = text;
  }

  unexpected(context: string): SyntaxProblem {
    if (this.pos >= this.text.length)
      return new SyntaxProblem(this.pos, `unexpected end of input ${context}`);
    return new SyntaxProblem(this.pos, `unexpected ${JSON.stringify(this.text[this.pos])} ${context}`);
  }

  whitespace(): void {
    while (this.pos < this.text.length) {
      const c = this.text[this.pos];
      if (c === ' ' || c === '\t' || c === '\n' || c === '\r') this.pos++;
      else break;
    }
  }

  value(): void {
    this.whitespace();
    const c = this.text[this.pos];
    if (c === '{') this.object();
    else if (c === '[') this.array();
    else if (c === '"') this.string();
    else if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) this.number();
    else this.literal(c);
  }

  literal(c: string | undefined): void {
    for (const literal of LITERALS) {
      if (c === literal[0]) {
        for (let i = 0; i < literal.length; i++, this.pos++) {
          if (this.text[this.pos] !== literal[i]) throw this.unexpected(`in ${literal}`);
        }
        return;
      }
    }
    throw this.unexpected('where a value was expected');
  }

  object(): void {
    this.pos++;
    this.whitespace();
    if (this.text[this.pos] === '}') {
      this.pos++;
      return;
    }
    for (;;) {
      this.whitespace();
      if (this.text[this.pos] !== '"') throw this.unexpected('where a double-quoted key was expected');
      this.string();
      this.whitespace();
      if (this.text[this.pos] !== ':') throw this.unexpected('where ":" was expected after a key');
      this.pos++;
      this.value();
      this.whitespace();
      const c = this.text[this.pos];
      if (c === ',') {
        this.pos++;
        continue;
      }
      if (c === '}') {
        this.pos++;
        return;
      }
      throw this.unexpected('where "," or "}" was expected');
    }
  }

  array(): void {
    this.pos++;
    this.whitespace();
    if (this.text[this.pos] === ']') {
      this.pos++;
      return;
    }
    for (;;) {
      this.value();
      this.whitespace();
      const c = this.text[this.pos];
      if (c === ',') {
        this.pos++;
        continue;
      }
      if (c === ']') {
        this.pos++;
        return;
      }
      throw this.unexpected('where "," or "]" was expected');
    }
  }

  string(): void {
    this.pos++;
    for (;;) {
      if (this.pos >= this.text.length) throw this.unexpected('in a string');
      const code = this.text.charCodeAt(this.pos);
      if (code === 0x22) {
        this.pos++;
        return;
      }
      if (code < 0x20) throw new SyntaxProblem(this.pos, 'unescaped control character in a string');
      if (code === 0x5c) {
        const next = this.text[this.pos + 1];
        if (next === 'u') {
          if (!/^[0-9A-Fa-f]{4}$/.test(this.text.slice(this.pos + 2, this.pos + 6))) {
            throw new SyntaxProblem(this.pos, 'invalid \\u escape in a string');
          }
          this.pos += 6;
          continue;
        }
        if (next === undefined || !'"\\/bfnrt'.includes(next)) {
          throw new SyntaxProblem(this.pos, 'invalid escape in a string');
        }
        this.pos += 2;
        continue;
      }
      this.pos++;
    }
  }

  number(): void {
    NUMBER.lastIndex = this.pos;
    const match = NUMBER.exec(this.text);
    if (match === null) {
      this.pos++;
      throw this.unexpected('in a number');
    }
    this.pos += match[0].length;
  }
}
