#!/usr/bin/env node
// A RECORDING STAND-IN for systemctl, for tests that cannot reach a real systemd (the real
// systemd runs come with the units' tests). It keeps unit states in $FAKE_SYSTEMCTL_DIR, logs
// every call with the snapshot `current` named at that moment, and misbehaves on request:
//   units.json: { "<unit>": { "active": bool, "restarts": n } }
//   behaviour.json: { "<unit>": { "missing"?, "failStart"?, "hangStart"?, "hangStop"?, "failStop"?, "unhealthy"? } }
//   each true, or a list of versions: it applies while `current` is one of them. An unhealthy
//   unit comes up, then crash-loops: from the second look on, each finds it restarting. A
//   flapping one stays "active" but its NRestarts grows at each look.
import fs from 'node:fs';
import path from 'node:path';

const dir = process.env.FAKE_SYSTEMCTL_DIR;
const versions = process.env.FAKE_VERSIONS_DIR;
const read = (f, d) => {
  try {
    return JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'));
  } catch {
    return d;
  }
};
const units = read('units.json', {});
const behaviour = read('behaviour.json', {});
const args = process.argv.slice(2).filter((a) => !a.startsWith('--') && a !== '-p' && a !== 'NRestarts');
const [cmd, unit] = args;
let current = null;
try {
  current = fs.readlinkSync(path.join(versions, 'current')).replace(/^v/, '').replace(/~\d+$/, '');
} catch {
  /* none yet */
}
fs.appendFileSync(path.join(dir, 'calls.log'), `${cmd} ${unit} current=${current}\n`);
const known = unit in units || unit in behaviour;
const b = behaviour[unit] ?? {};
const u = (units[unit] ??= { active: false, restarts: 0 });
const save = () => fs.writeFileSync(path.join(dir, 'units.json'), JSON.stringify(units));
const on = (key) => b[key] === true || (Array.isArray(b[key]) && b[key].includes(current));
const hang = () => setTimeout(() => process.exit(1), 15_000);

if (on('missing') && cmd !== 'stop') {
  process.stderr.write(`Unit ${unit} not found.\n`);
  process.exit(cmd === 'is-active' ? (console.log('inactive'), 3) : 5);
}
switch (cmd) {
  case 'cat': // a unit exists when the test declared it
    if (!known) {
      process.stderr.write(`No files found for ${unit}.\n`);
      process.exit(1);
    }
    console.log(`# /etc/systemd/system/${unit}`);
    break;
  case 'is-active': {
    // a crash-looping unit: each look finds it restarted once more
    if (u.active && on('unhealthy') && ++u.looks > 1) {
      u.restarts++;
      save();
      console.log('activating');
      process.exit(3);
    }
    if (u.active && on('unhealthy')) save();
    console.log(u.active ? 'active' : 'inactive');
    process.exit(u.active ? 0 : 3);
  }
  case 'show':
    if (u.active && on('flapping')) {
      u.restarts++;
      save();
    }
    console.log(String(u.restarts));
    break;
  case 'start':
    if (on('hangStart')) hang();
    else if (on('failStart')) {
      process.stderr.write(`Job for ${unit} failed.\n`);
      process.exit(1);
    } else {
      u.active = true;
      u.looks = 0;
      save();
    }
    break;
  case 'stop':
    if (on('hangStop')) hang();
    else if (on('failStop')) {
      process.stderr.write(`Failed to stop ${unit}.\n`);
      process.exit(1);
    } else {
      u.active = false;
      save();
    }
    break;
  default:
    process.stderr.write(`fake systemctl: unsupported ${cmd}\n`);
    process.exit(2);
}
