// The printer service a test package updates: runs the version it was started from and says
// so in a file, then idles. A version whose file says "crash" exits at once. By default it runs
// /opt/tope/versions/current/bin/printerd; PRINTERD_FILE and PRINTERD_STATE name another file
// and the file it writes (the power-cut VM runs two: one per unit its package restarts).
import { readFileSync, writeFileSync } from 'node:fs';

const body = readFileSync(process.env.PRINTERD_FILE ?? '/opt/tope/versions/current/bin/printerd', 'utf8');
writeFileSync(process.env.PRINTERD_STATE ?? '/run/printerd.version', body);
if (body.includes('crash')) process.exit(3);
setInterval(() => undefined, 60_000);
