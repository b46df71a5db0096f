// How big and how many: the full plan of `make bench`, or a small one for a smoke run
// (BENCH_QUICK=1) that exercises every benchmark in about a minute; BENCH_ONLY picks benchmarks.

const MiB = 1024 * 1024;

/** The bounds README's "Bounds" section sets, which rows name beside their figure. */
export const bounds = { progressMs: 100, capped100MBSeconds: 300 };

export interface Plan {
  quick: boolean;
  /** BENCH_ONLY=download,install: just those benchmarks (names in main.ts), or null for all. */
  only: string[] | null;
  /** The "100 MB" and "1 GB" packages of README's bounds (MiB, as the README's 104857600). */
  smallPackage: number;
  largePackage: number;
  /** The SIGKILL-and-resume runs at 10 Mbit/s use a smaller file (100 MiB takes ~84 s there). */
  resumeCappedPackage: number;
  capBytesPerSecond: number;
  /** The payload each tool installs in the side-by-side rows against SWUpdate and Mender. */
  peersPayload: number;
  runs: {
    small: number;
    large: number;
    cappedSmall: number;
    cappedLarge: number;
    cappedResume: number;
    latency: number;
    coldStart: number;
    resume: number;
    install: number;
    idle: number;
    arm64: number;
    peers: number;
  };
  latencyRequestsPerSecond: number;
  /** How long each /progress latency run polls while downloads run back to back. */
  latencyRunMs: number;
  installFileCounts: number[];
  installFileBytes: number;
  unitsPerPackage: number;
}

export function makePlan(env = process.env): Plan {
  const quick = env.BENCH_QUICK === '1';
  return {
    quick,
    only: env.BENCH_ONLY
      ? env.BENCH_ONLY.split(',')
          .map((s) => s.trim())
          .filter(Boolean)
      : null,
    smallPackage: quick ? 8 * MiB : 100 * MiB,
    largePackage: quick ? 32 * MiB : 1024 * MiB,
    resumeCappedPackage: quick ? 1 * MiB : 16 * MiB,
    capBytesPerSecond: 10_000_000 / 8,
    peersPayload: quick ? 8 * MiB : 100 * MiB,
    runs: quick
      ? {
          small: 2,
          large: 2,
          cappedSmall: 1,
          cappedLarge: 1,
          cappedResume: 1,
          latency: 1,
          coldStart: 3,
          resume: 2,
          install: 2,
          idle: 1,
          arm64: 1,
          peers: 2,
        }
      : {
          small: 5,
          large: 3,
          cappedSmall: 3,
          cappedLarge: 3,
          cappedResume: 3,
          latency: 3,
          coldStart: 10,
          resume: 5,
          install: 5,
          idle: 3,
          arm64: 3,
          peers: 7,
        },
    latencyRequestsPerSecond: 20,
    latencyRunMs: quick ? 3000 : 10_000,
    installFileCounts: [10, 100, 1000],
    installFileBytes: 16 * 1024,
    unitsPerPackage: 3,
  };
}
