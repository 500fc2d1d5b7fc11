/**
 * An example user filter: finds the tenant of each request (a header, or the first label of the Host)
 * and forwards it to the upstream as `x-tenant-id`; without a tenant the request is answered 400 when
 * `required` is set. Named in a config as:
 *
 *   { "type": "module", "path": "./filters/tenant.ts", "config": { "header": "x-tenant", "required": true } }
 *
 * Types come from the zproxy package; Node strips them when it loads the file.
 */
import type { Filter, FilterContext, FilterEnvironment, FilterFactory, LocalResponse } from 'zproxy';

interface TenantConfig {
  /** Request header that names the tenant; when absent, the Host's first label is used. */
  readonly header?: string;
  /** Answer 400 to requests without a tenant (default false: they are forwarded without one). */
  readonly required?: boolean;
  /** Field sent upstream (default x-tenant-id). */
  readonly forward_as?: string;
}

/** A tenant id: letters, digits and '-', 1 to 63 characters (a DNS label). */
const TENANT = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

const MISSING: LocalResponse = {
  status: 400,
  headers: { 'content-type': 'application/json', 'cache-control': 'no-store' },
  body: '{"error":{"code":"TENANT_REQUIRED","message":"The request names no tenant"}}',
};

class TenantFilter implements Filter {
  readonly header: string | null;
  readonly required: boolean;
  readonly forwardAs: string;

  constructor(config: TenantConfig) {
    this.header = config.header?.toLowerCase() ?? null;
    this.required = config.required ?? false;
    this.forwardAs = config.forward_as ?? 'x-tenant-id';
  }

  onRequest(ctx: FilterContext): LocalResponse | undefined {
    let tenant =
      this.header === null ? undefined : ctx.request.headers.get(this.header)?.trim().toLowerCase();
    if (tenant === undefined) {
      const host = ctx.request.host.toLowerCase();
      const dot = host.indexOf('.');
      if (dot > 0) tenant = host.slice(0, dot);
    }
    // A value the client sent under the forwarded name is never trusted.
    ctx.upstreamHeaders.remove(this.forwardAs);
    if (tenant === undefined || !TENANT.test(tenant)) return this.required ? MISSING : undefined;
    ctx.upstreamHeaders.set(this.forwardAs, tenant);
    return undefined;
  }
}

const factory: FilterFactory<TenantConfig> = {
  type: 'tenant',
  create(config: TenantConfig, _env: FilterEnvironment): Filter {
    if (config.header !== undefined && typeof config.header !== 'string') {
      throw new Error('config.header must be a string');
    }
    return new TenantFilter(config);
  },
};

export default factory;
