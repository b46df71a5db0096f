import pino from 'pino';

export type Logger = pino.Logger;

// journald reads a "<N>" syslog priority prefix on each stdout line (SyslogLevelPrefix=).
const journalPriority: Record<number, number> = { 10: 7, 20: 7, 30: 6, 40: 4, 50: 3, 60: 2 };

/**
 * The process's logger: JSON lines on stdout, written synchronously so a SIGKILL or OOM kill
 * loses none. Node's own output (warnings, an uncaught exception's stack) goes through it too,
 * so that every line the process writes is JSON.
 */
export function createLogger(service: string, level: string, env = process.env): Logger {
  const log = journalOrPlain(service, level, env);
  jsonProcessOutput(log);
  return log;
}

function jsonProcessOutput(log: Logger): void {
  // replaces node's default printer of warnings (plain text on stderr)
  process.removeAllListeners('warning');
  process.on('warning', (w) => log.warn({ warning: w.name, err: w.message }, 'node warning'));
  // what node would print before exiting 1, as one JSON line (unhandled rejections arrive here too)
  process.on('uncaughtException', (e) => {
    log.fatal({ err: e }, 'uncaught exception');
    process.exit(1);
  });
}

function journalOrPlain(service: string, level: string, env: NodeJS.ProcessEnv): Logger {
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
