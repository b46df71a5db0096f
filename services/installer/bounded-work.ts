// File operations a few at a time: each one is a hop to libuv's thread pool (four threads), and
// one at a time leaves the pool idle while the event loop waits on each in turn (an install of
// 1000 small files spent most of its time so). Nothing here returns or throws while a task it
// started still runs: a caller that undoes what failed (a staging tree discarded, the record
// written) must not race writes still under way.

/** How many file operations the installer keeps in flight at once: the thread pool's four busy while the event loop queues the next. */
export const FILE_WORK_WIDTH = 8;

/**
 * Tasks started one by one, at most `width` running at once. Of the tasks that fail, the one
 * started first is what is thrown, once all have ended: every task started before it has ended
 * too, so that is the failure one at a time would have met (the same error from run to run).
 */
export class BoundedWork {
  private readonly running = new Set<Promise<void>>();
  private failure: { error: unknown; order: number } | null = null;
  private started = 0;

  constructor(private readonly width: number = FILE_WORK_WIDTH) {}

  /**
   * Starts `task` as soon as fewer than `width` run; `alone`: once none does, and waits for it
   * (a large file, whose buffers several at once would add to the installer's peak). After a
   * failure it starts nothing: it waits for the tasks under way and throws (see the class).
   */
  async start(task: () => Promise<void>, { alone = false }: { alone?: boolean } = {}): Promise<void> {
    while (this.running.size >= (alone ? 1 : this.width)) await Promise.race(this.running);
    if (this.failure) return this.done();
    const order = this.started++;
    const run: Promise<void> = task()
      .catch((error: unknown) => {
        if (!this.failure || order < this.failure.order) this.failure = { error, order };
      })
      .finally(() => this.running.delete(run));
    this.running.add(run);
    if (alone) await this.done();
  }

  /** Waits for every task started, then throws the failure of the one started first, if any. */
  async done(): Promise<void> {
    await this.settled();
    if (this.failure) throw this.failure.error;
  }

  /** Waits for every task started, failed or not. */
  async settled(): Promise<void> {
    while (this.running.size) await Promise.all(this.running);
  }
}

/**
 * `body` starting tasks on a BoundedWork: returns once it and every task it started have ended,
 * throwing `body`'s own failure first, then the first task's.
 */
export async function withBoundedWork(
  body: (work: BoundedWork) => Promise<void>,
  width = FILE_WORK_WIDTH,
): Promise<void> {
  const work = new BoundedWork(width);
  try {
    await body(work);
  } finally {
    await work.settled();
  }
  await work.done();
}

/** `each` over `items`, at most `width` at once (see BoundedWork). */
export const forEachBounded = <T>(
  items: Iterable<T>,
  each: (item: T) => Promise<void>,
  width = FILE_WORK_WIDTH,
): Promise<void> =>
  withBoundedWork(async (work) => {
    for (const item of items) await work.start(() => each(item));
  }, width);
