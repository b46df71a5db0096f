/** A snapshot directory's version: `v1.2.3` and a reinstall's `v1.2.3~2` are both 1.2.3. */
export const versionOfDir = (dir: string): string => dir.replace(/^v/, '').replace(/~\d+$/, '');
