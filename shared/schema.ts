import { config } from 'zod/mini';
import en from 'zod/v4/locales/en.js';

// zod's mini API, which every schema of the product is written in: the same validation core as
// the classic API (zod 4's `z.string().min(1)`), with functions instead of methods, so a bundle
// carries only what its schemas use. The classic API costs ~13 MiB of RSS per process loaded
// (it builds every method on every schema class and carries every locale), a quarter of a
// process's budget (BENCHMARKS.md, the budget section). English messages, as the classic API
// sets them: errors in the API's envelope and the logs read "Too small: expected ..." as before.
config(en());

// imported as `import * as z from '.../schema.js'`: a namespace whose members the bundler can
// see one by one, so that what no schema uses (the other locales, JSON Schema) is left out
export * from 'zod/mini';
// from the core directly: `z.core.$ZodError` would take the whole core namespace, every locale in it
export { $ZodError, type $ZodType } from 'zod/v4/core';
