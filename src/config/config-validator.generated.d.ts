/** The types of config-validator.generated.js (ajv's standalone validator of ConfigSchema). */
import type { ErrorObject } from 'ajv';

declare const validateConfig: ((data: unknown) => boolean) & { errors?: ErrorObject[] | null };
export default validateConfig;
