// The bundles' source maps name only the project's own sources: the segments that map into
// node_modules are dropped, so that c8 (which follows the map of a bundle a test's service ran)
// counts the project's TypeScript and not its dependencies', and a stack trace decoded offline
// lands in our code or in the bundle itself.

const BASE64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const digitOf = new Map([...BASE64].map((c, i) => [c, i]));

function decodeSegment(text: string): number[] {
  const values: number[] = [];
  let value = 0;
  let shift = 0;
  for (const c of text) {
    const digit = digitOf.get(c)!;
    value += (digit & 31) << shift;
    if (digit & 32) {
      shift += 5;
      continue;
    }
    values.push(value & 1 ? -(value >>> 1) : value >>> 1);
    value = 0;
    shift = 0;
  }
  return values;
}

function encodeValue(n: number): string {
  let vlq = n < 0 ? (-n << 1) | 1 : n << 1;
  let out = '';
  do {
    let digit = vlq & 31;
    vlq >>>= 5;
    if (vlq > 0) digit |= 32;
    out += BASE64[digit];
  } while (vlq > 0);
  return out;
}

export interface SourceMap {
  sources: string[];
  names?: string[];
  mappings: string;
  sourcesContent?: Array<string | null>;
}

/** The map without the sources `drop` says to drop, nor any segment that points into one. */
export function keepSources(map: SourceMap, drop: (source: string) => boolean): SourceMap {
  const newIndex = new Map<number, number>();
  const sources: string[] = [];
  map.sources.forEach((s, i) => {
    if (drop(s)) return;
    newIndex.set(i, sources.length);
    sources.push(s);
  });
  // absolute state of the input, relative state of the output (the format's deltas)
  let source = 0;
  let line = 0;
  let column = 0;
  let name = 0;
  let outSource = 0;
  let outLine = 0;
  let outColumn = 0;
  let outName = 0;
  const lines = map.mappings.split(';').map((generated) => {
    let genColumn = 0;
    let outGenColumn = 0;
    const kept: string[] = [];
    for (const text of generated.split(',')) {
      if (!text) continue;
      const v = decodeSegment(text);
      genColumn += v[0];
      if (v.length === 1) continue; // a column with no source: nothing to say
      source += v[1];
      line += v[2];
      column += v[3];
      if (v.length > 4) name += v[4];
      const target = newIndex.get(source);
      if (target === undefined) continue;
      let out = encodeValue(genColumn - outGenColumn) + encodeValue(target - outSource);
      out += encodeValue(line - outLine) + encodeValue(column - outColumn);
      if (v.length > 4) {
        out += encodeValue(name - outName);
        outName = name;
      }
      outGenColumn = genColumn;
      outSource = target;
      outLine = line;
      outColumn = column;
      kept.push(out);
    }
    return kept.join(',');
  });
  return { ...map, sources, sourcesContent: undefined, mappings: lines.join(';') };
}
