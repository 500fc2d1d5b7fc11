/**
 * zproxy's public API, for embedding and for user filters (docs/filters.md, "User filters"). Nothing
 * else is exported.
 */
export {
  ConfigError,
  type ConfigIssue,
  type ConfigWarning,
  checkConfigFile,
  type LoadedConfig,
  loadConfigFile,
  loadConfigFileWithWarnings,
  parseConfig,
  parseConfigWithWarnings,
} from './config/load.ts';
export type {
  Config,
  LimitsConfig,
  ListenerConfig,
  MiddlewareConfig,
  RouteConfig,
  UpstreamDefaultsConfig,
} from './config/schema.ts';
export { ERROR_CODES, type ErrorCode, type ErrorSide, ZpError } from './errors.ts';
export { Exchange } from './exchange.ts';
export type {
  FieldEdits,
  FieldReader,
  Filter,
  FilterContext,
  FilterEnvironment,
  FilterFactory,
  FilterRequest,
  FilterResponse,
  LocalResponse,
  PhaseResult,
} from './pipeline/contract.ts';
export { ProxyServer, type ProxyServerOptions } from './server/proxy-server.ts';
