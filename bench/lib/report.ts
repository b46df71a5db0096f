// The one table of `make bench`: each row a median figure beside a reference measured in the
// same run, and their ratio, since absolute figures vary from machine to machine.

export interface Row {
  measure: string;
  value: string;
  reference: string;
  ratio: string;
  runs: string;
}

const MiB = 1024 * 1024;

export const fmt = {
  ms: (ms: number) =>
    ms >= 10_000
      ? `${(ms / 1000).toFixed(1)} s`
      : ms >= 100
        ? `${ms.toFixed(0)} ms`
        : `${ms.toFixed(ms >= 10 ? 1 : 2)} ms`,
  rate: (bytesPerSecond: number) => `${(bytesPerSecond / MiB).toFixed(bytesPerSecond >= 100 * MiB ? 0 : 2)} MiB/s`,
  mib: (bytes: number) => `${(bytes / MiB).toFixed(bytes >= 100 * MiB ? 0 : 1)} MiB`,
  size: (bytes: number) => (bytes >= 1024 * MiB ? `${bytes / (1024 * MiB)} GiB` : `${bytes / MiB} MiB`),
  bytes: (n: number) =>
    n >= MiB ? `${(n / MiB).toFixed(2)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(0)} KiB` : `${n} B`,
  ratio: (r: number) =>
    Number.isFinite(r) ? `${r >= 100 ? r.toFixed(0) : r >= 10 ? r.toFixed(1) : r.toFixed(2)}×` : '–',
};

export function table(rows: Row[]): string {
  const head = ['Measure', 'Median', 'Reference (same run)', 'Ratio', 'Runs'];
  const lines = [head, head.map(() => '---'), ...rows.map((r) => [r.measure, r.value, r.reference, r.ratio, r.runs])];
  return lines.map((cells) => `| ${cells.map((c) => c.replace(/\|/g, '\\|')).join(' | ')} |`).join('\n');
}
