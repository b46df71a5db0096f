import * as z from './schema.js';

// What a manifest may name. A package is untrusted input: a unit name reaches systemctl's
// command line and a module name, src or dst reach logs, reports and the file system.

/** systemd's unit types (systemd.unit(5)); a name must end in one of them. */
const unitTypes = [
  'service',
  'socket',
  'target',
  'device',
  'mount',
  'automount',
  'swap',
  'timer',
  'path',
  'slice',
  'scope',
];

/** systemd's limit on a unit name (UNIT_NAME_MAX is 256 with its NUL). */
export const UNIT_NAME_MAX = 255;

// systemd's characters ([A-Za-z0-9:_.\\-], '@' only between a template and its instance, the
// instance may hold '@' too); a template without an instance ("a@.service") cannot be started.
const unitPattern = new RegExp(`^[A-Za-z0-9:_.\\\\-]+(?:@[A-Za-z0-9:_.\\\\@-]+)?\\.(?:${unitTypes.join('|')})$`);

/**
 * A unit name as systemd's own rules have it, and never starting with '-' (systemd allows
 * "-.mount", but a leading dash would read as an option to systemctl even with "--" before it
 * in a caller that forgot the "--"; no printer unit needs one).
 */
export const unitNameSchema = z.string().check(
  z.maxLength(UNIT_NAME_MAX),
  z.refine((s) => unitPattern.test(s) && !s.startsWith('-'), 'must be a systemd unit name'),
);

/** C0 controls, DEL and C1 controls: newline, NUL, escape and the like have no place in a name or path. */
const controlCharacter = /[\u0000-\u001f\u007f-\u009f]/;

/** A string that carries no control character (a log line, a report or a terminal would read it). */
export const plainText = (schema: z.ZodMiniString) =>
  schema.check(
    z.refine((s) => !controlCharacter.test(s), 'must not contain control characters (newline, NUL, escape...)'),
  );
