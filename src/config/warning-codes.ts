/**
 * The codes of the configuration warnings (warnings.ts): valid configurations that are dangerous. A code
 * is stable once released (operators list them in `accept_risks`); docs/configuration.md, "Warnings",
 * describes each one. Kept apart from the rules so that the schema can list the codes without loading them.
 */
export const WARNING_CODES = [
  'ZP_WARN_CORS_CREDENTIALS_WILDCARD',
  'ZP_WARN_UPSTREAM_TLS_UNVERIFIED',
  'ZP_WARN_TRUSTED_PROXIES_TOO_WIDE',
  'ZP_WARN_BASIC_AUTH_WITHOUT_TLS',
  'ZP_WARN_CACHE_NOT_SHARED',
] as const;

export type WarningCode = (typeof WARNING_CODES)[number];
