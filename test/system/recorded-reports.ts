// Reads what the device-api stand-in (device-api-recorder.ts) recorded: the bodies of the POSTs
// to the product's report path, in order. A line that does not parse is the torn last append of a
// request cut by a power loss, never acknowledged, so it is skipped; so is anything sent elsewhere.
// It imports only a module with no imports, so it runs inside the power-cut VM too.
import { REPORT_PATH } from '../../shared/device-api.js';

export function recordedReports<Report = unknown>(recorded: string | null | undefined): Report[] {
  return (recorded ?? '')
    .split('\n')
    .filter(Boolean)
    .flatMap((line) => {
      try {
        const entry = JSON.parse(line) as { method?: string; path?: string; body?: string };
        return entry.method === 'POST' && entry.path === REPORT_PATH ? [JSON.parse(entry.body ?? '') as Report] : [];
      } catch {
        return [];
      }
    });
}
