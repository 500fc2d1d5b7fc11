/**
 * The `headers` filter (docs/filters.md, "headers"): header rules on the forwarded request and on the
 * response, a path rewrite, and a request id.
 *
 * - onRequest: the request id (kept from the client when trusted and usable, else a UUID) goes on the
 *   exchange (access log `request_id`), the forwarded request and, with `response`, the response; then the
 *   `response` rules are made as response edits. Edits made in onRequest reach the upstream's response and
 *   the local answers of later filters (a 401, a 429) alike.
 * - onUpstreamRequest (after every filter's onRequest): the rewrite, then the `request` rules.
 * Each side's rules run remove, then set, then add.
 *
 * Values are templates compiled once: literal text and variables (`${client_ip}`, `${http_x_user}`...).
 * A value without variables is a constant string; substituted values have control characters other than
 * HTAB (CR, LF and NUL among them) replaced by spaces, so no client-controlled text can split a field.
 */
import { randomUUID } from 'node:crypto';
import type { HeaderRulesConfig, HeadersConfig, RewriteConfig } from '../config/headers-schema.ts';
import { isManagedName } from '../http/fields.ts';
import type {
  FieldEdits,
  Filter,
  FilterContext,
  FilterEnvironment,
  FilterFactory,
  PhaseResult,
} from '../pipeline/contract.ts';
import type { FilterModule } from '../pipeline/registry.ts';

// Variable codes of a compiled template.
const V_CLIENT_IP = 0;
const V_REQUEST_ID = 1;
const V_HOST = 2;
const V_METHOD = 3;
const V_PATH = 4;
const V_QUERY = 5;
const V_SCHEME = 6;
/** `${http_<name>}`: the request field <name>. */
const V_HTTP = 7;
/** Literal text (the route's pattern is folded in at compile time). */
const LITERAL = -1;

const VARIABLES: Readonly<Record<string, number>> = {
  client_ip: V_CLIENT_IP,
  request_id: V_REQUEST_ID,
  host: V_HOST,
  method: V_METHOD,
  path: V_PATH,
  query: V_QUERY,
  scheme: V_SCHEME,
};

/** The variable names, for error messages. */
const VARIABLE_NAMES = 'client_ip, request_id, host, method, path, query, scheme, route, http_<name>';

/** Control characters a substituted value may not carry (HTAB is allowed in field values). */
const CONTROL = /[\0-\x08\n-\x1f\x7f]/g;
/** A request id worth keeping: 1 to 200 visible ASCII characters. */
const USABLE_ID = /^[\x21-\x7e]{1,200}$/;

/** A config error: its message starts with `config.<field>: ` (the chain prefixes the entry's path). */
export class HeadersConfigError extends Error {
  constructor(field: string, message: string) {
    super(`config.${field}: ${message}`);
    this.name = 'HeadersConfigError';
  }
}

/**
 * A field value: parallel lists of parts, each LITERAL (text) or a variable code (text: the field name of
 * V_HTTP, else ''). `constant` is the whole value when it has no variables.
 */
export class Template {
  readonly constant: string | null;
  readonly kinds: readonly number[];
  readonly texts: readonly string[];

  constructor(kinds: number[], texts: string[]) {
    this.kinds = kinds;
    this.texts = texts;
    this.constant = kinds.length === 0 ? '' : kinds.length === 1 && kinds[0] === LITERAL ? texts[0]! : null;
  }

  /** The value for this exchange. */
  render(ctx: FilterContext): string {
    const constant = this.constant;
    if (constant !== null) return constant;
    const kinds = this.kinds;
    const texts = this.texts;
    let out = '';
    for (let i = 0; i < kinds.length; i++) {
      const kind = kinds[i]!;
      out += kind === LITERAL ? texts[i]! : variable(ctx, kind, texts[i]!);
    }
    return out;
  }
}

function variable(ctx: FilterContext, kind: number, name: string): string {
  const request = ctx.request;
  let value: string;
  switch (kind) {
    case V_CLIENT_IP:
      value = request.clientAddress;
      break;
    case V_REQUEST_ID:
      value = ctx.exchange.requestId ?? '';
      break;
    case V_HOST:
      value = request.host;
      break;
    case V_METHOD:
      value = request.method;
      break;
    case V_PATH:
      value = request.path;
      break;
    case V_QUERY:
      value = request.query === '' ? '' : request.query.slice(1);
      break;
    case V_SCHEME:
      value = request.scheme;
      break;
    default:
      value = request.headers.get(name) ?? '';
  }
  return value.replace(CONTROL, ' ');
}

/**
 * Compiles `text` into a Template. `${name}` is a variable; `$${` is a literal `${`; any other `$` is
 * literal. `field` names the value in error messages.
 */
export function compileTemplate(text: string, field: string, route: string): Template {
  const kinds: number[] = [];
  const texts: string[] = [];
  let literal = '';
  let i = 0;
  while (i < text.length) {
    const dollar = text.indexOf('$', i);
    if (dollar === -1) {
      literal += text.slice(i);
      break;
    }
    literal += text.slice(i, dollar);
    if (text.startsWith('$${', dollar)) {
      literal += '${';
      i = dollar + 3;
      continue;
    }
    if (text.charCodeAt(dollar + 1) !== 0x7b /* { */) {
      literal += '$';
      i = dollar + 1;
      continue;
    }
    const close = text.indexOf('}', dollar + 2);
    if (close === -1) {
      throw new HeadersConfigError(
        field,
        `unterminated variable ${text.slice(dollar)} (write $\${ for a literal \${)`,
      );
    }
    const name = text.slice(dollar + 2, close);
    i = close + 1;
    if (name === 'route') {
      literal += route;
      continue;
    }
    let kind = Object.hasOwn(VARIABLES, name) ? VARIABLES[name]! : undefined;
    let header = '';
    if (kind === undefined && name.startsWith('http_') && /^[0-9a-z_-]+$/i.test(name.slice(5))) {
      kind = V_HTTP;
      header = name.slice(5).toLowerCase().replace(/_/g, '-');
    }
    if (kind === undefined) {
      throw new HeadersConfigError(field, `unknown variable \${${name}} (known: ${VARIABLE_NAMES})`);
    }
    if (literal !== '') {
      kinds.push(LITERAL);
      texts.push(literal);
      literal = '';
    }
    kinds.push(kind);
    texts.push(header);
  }
  if (literal !== '') {
    kinds.push(LITERAL);
    texts.push(literal);
  }
  return new Template(kinds, texts);
}

/**
 * A rule's field name in lowercase. The fields zproxy manages itself (framing, Host, hop-by-hop: the one
 * rule of src/http/fields.ts, which FieldEditList applies to every filter at run time) are refused here,
 * when the config is loaded.
 */
function checkName(name: string, field: string): string {
  const lower = name.toLowerCase();
  if (isManagedName(lower)) {
    throw new HeadersConfigError(
      field,
      `${lower} is a hop-by-hop or framing field that zproxy manages itself; the headers filter cannot change it`,
    );
  }
  return lower;
}

/** One side's rules, compiled: names lowercase, values as templates. */
export class HeaderRules {
  readonly remove: readonly string[];
  readonly setNames: readonly string[];
  readonly setValues: readonly Template[];
  readonly addNames: readonly string[];
  readonly addValues: readonly Template[];

  constructor(config: HeaderRulesConfig, field: string, route: string) {
    this.remove = (config.remove ?? []).map((name, i) => checkName(name, `${field}.remove[${i}]`));
    const setNames: string[] = [];
    const setValues: Template[] = [];
    for (const [name, value] of Object.entries(config.set ?? {})) {
      const where = `${field}.set.${name}`;
      setNames.push(checkName(name, where));
      setValues.push(compileTemplate(value, where, route));
    }
    const addNames: string[] = [];
    const addValues: Template[] = [];
    for (const [name, value] of Object.entries(config.add ?? {})) {
      const where = `${field}.add.${name}`;
      const lower = checkName(name, where);
      if (typeof value === 'string') {
        addNames.push(lower);
        addValues.push(compileTemplate(value, where, route));
      } else {
        value.forEach((one, i) => {
          addNames.push(lower);
          addValues.push(compileTemplate(one, `${where}[${i}]`, route));
        });
      }
    }
    this.setNames = setNames;
    this.setValues = setValues;
    this.addNames = addNames;
    this.addValues = addValues;
  }

  get empty(): boolean {
    return this.remove.length === 0 && this.setNames.length === 0 && this.addNames.length === 0;
  }

  apply(ctx: FilterContext, edits: FieldEdits): void {
    const remove = this.remove;
    for (let i = 0; i < remove.length; i++) edits.remove(remove[i]!);
    const setNames = this.setNames;
    const setValues = this.setValues;
    for (let i = 0; i < setNames.length; i++) edits.set(setNames[i]!, setValues[i]!.render(ctx));
    const addNames = this.addNames;
    const addValues = this.addValues;
    for (let i = 0; i < addNames.length; i++) edits.add(addNames[i]!, addValues[i]!.render(ctx));
  }
}

/**
 * The rewrite of the forwarded path: a prefix at a segment boundary, or the first match of a regular
 * expression. The query is kept; a result that does not start with `/` gets one.
 */
export class Rewrite {
  /** The prefix without its trailing `/` ('' for `/`: every path); null for a regex rewrite. */
  readonly prefix: string | null;
  readonly regex: RegExp | null;
  readonly replacement: string;

  constructor(config: RewriteConfig) {
    if ('prefix' in config) {
      this.prefix = config.prefix.endsWith('/') ? config.prefix.slice(0, -1) : config.prefix;
      this.regex = null;
      this.replacement = config.replacement.endsWith('/')
        ? config.replacement.slice(0, -1)
        : config.replacement;
    } else {
      this.prefix = null;
      try {
        this.regex = new RegExp(config.regex);
      } catch (error) {
        throw new HeadersConfigError(
          'rewrite.regex',
          `invalid regular expression: ${(error as Error).message}`,
        );
      }
      this.replacement = config.replacement;
    }
  }

  /** The rewritten path and query, or null when the path does not match. */
  apply(target: string): string | null {
    const q = target.indexOf('?');
    const path = q === -1 ? target : target.slice(0, q);
    let out: string;
    const prefix = this.prefix;
    if (prefix !== null) {
      if (!path.startsWith(prefix)) return null;
      if (path.length !== prefix.length && path.charCodeAt(prefix.length) !== 0x2f /* / */) return null;
      out = this.replacement + path.slice(prefix.length);
    } else {
      out = path.replace(this.regex!, this.replacement);
      if (out === path) return null;
    }
    if (out.charCodeAt(0) !== 0x2f) out = `/${out}`;
    return q === -1 ? out : out + target.slice(q);
  }
}

export class HeadersFilter implements Filter {
  readonly requestRules: HeaderRules | null;
  readonly responseRules: HeaderRules | null;
  readonly rewrite: Rewrite | null;
  /** The request id's field name; null when request ids are off. */
  readonly idHeader: string | null;
  readonly trustIncoming: boolean;
  readonly idOnResponse: boolean;

  constructor(config: HeadersConfig, env: Pick<FilterEnvironment, 'route'>) {
    const request =
      config.request === undefined ? null : new HeaderRules(config.request, 'request', env.route);
    const response =
      config.response === undefined ? null : new HeaderRules(config.response, 'response', env.route);
    this.requestRules = request === null || request.empty ? null : request;
    this.responseRules = response === null || response.empty ? null : response;
    this.rewrite = config.rewrite === undefined ? null : new Rewrite(config.rewrite);
    const id = config.request_id;
    this.idHeader = id === undefined ? null : checkName(id.header ?? 'x-request-id', 'request_id.header');
    this.trustIncoming = id?.trust_incoming ?? true;
    this.idOnResponse = id?.response ?? true;
    // An unused phase stays absent, so the chain records it as null.
    if (this.idHeader === null && this.responseRules === null) {
      (this as { onRequest?: unknown }).onRequest = undefined;
    }
    if (this.rewrite === null && this.requestRules === null) {
      (this as { onUpstreamRequest?: unknown }).onUpstreamRequest = undefined;
    }
  }

  onRequest(ctx: FilterContext): PhaseResult {
    const header = this.idHeader;
    if (header !== null) {
      let id = this.trustIncoming ? ctx.request.headers.get(header) : undefined;
      if (id === undefined || !USABLE_ID.test(id)) id = randomUUID();
      ctx.exchange.requestId = id;
      ctx.upstreamHeaders.set(header, id);
      if (this.idOnResponse) ctx.responseHeaders.set(header, id);
    }
    const rules = this.responseRules;
    if (rules !== null) rules.apply(ctx, ctx.responseHeaders);
    return undefined;
  }

  onUpstreamRequest(ctx: FilterContext): undefined {
    const rewrite = this.rewrite;
    if (rewrite !== null) {
      const target = rewrite.apply(ctx.upstreamTarget);
      if (target !== null) ctx.setUpstreamTarget(target);
    }
    const rules = this.requestRules;
    if (rules !== null) rules.apply(ctx, ctx.upstreamHeaders);
    return undefined;
  }
}

export const headersFactory: FilterFactory<HeadersConfig> = {
  type: 'headers',
  create(config: HeadersConfig, env: FilterEnvironment): Filter {
    return new HeadersFilter(config, env);
  },
};

/** The `headers` filter module (src/pipeline/registry.ts). */
export const headersFilter: FilterModule<HeadersConfig> = {
  type: 'headers',
  loadSchema: async () => (await import('../config/headers-schema.ts')).HeadersConfigSchema,
  factory: headersFactory,
};
