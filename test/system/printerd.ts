// The printer service a test package updates: runs the version it was started from and says
// so in a file, then idles. A version whose bin/printerd says "crash" exits at once.
import { readFileSync, writeFileSync } from 'node:fs';

const body = readFileSync('/opt/tope/versions/current/bin/printerd', 'utf8');
writeFileSync('/run/printerd.version', body);
if (body.includes('crash')) process.exit(3);
setInterval(() => undefined, 60_000);
