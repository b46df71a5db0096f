import path from 'node:path';

// Paths the installer builds by the thousand (a destination per file, an entry per file walked):
// joined and checked name by name instead of through path.join/normalize/relative, which
// normalize the whole path again each time (a few microseconds each under --jitless).

/** Names joined by separators, none of them empty, `.` or `..`: what normalizing leaves as it is. */
export const isPlainRelative = (rel: string): boolean =>
  rel.split(path.sep).every((name) => name !== '' && name !== '.' && name !== '..');

/** An absolute path other than the root, normalized as it stands (no trailing separator). */
export const isPlainAbsolute = (p: string): boolean =>
  p.length > 1 && p.startsWith(path.sep) && isPlainRelative(p.slice(1));

/** `rel` (plain, see isPlainRelative) below `dir` (normalized): what path.join gives for them. */
export const joinPlain = (dir: string, rel: string): string =>
  dir === path.sep ? `${dir}${rel}` : `${dir}${path.sep}${rel}`;
