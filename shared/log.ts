import pino from 'pino';

export type Logger = pino.Logger;

// journald reads a "<N>" syslog priority prefix on each stdout line (SyslogLevelPrefix=).
const journalPriority: Record<number, number> = { 10: 7, 20: 7, 30: 6, 40: 4, 50: 3, 60: 2 };

/** JSON lines on stdout, written synchronously so a SIGKILL or OOM kill loses none. */
export function createLogger(service: string, level: string, env = process.env): Logger {
  const out = pino.destination({ dest: 1, sync: true });
  if (!env.JOURNAL_STREAM) return pino({ level, base: { service } }, out);
  const stream = {
    [pino.symbols.needsMetadataGsym]: true,
    lastLevel: 30,
    write(line: string) {
      out.write(`<${journalPriority[stream.lastLevel] ?? 6}>${line}`);
    },
  };
  // journald stamps time, pid and unit itself
  return pino({ level, base: { service }, timestamp: false }, stream);
}
