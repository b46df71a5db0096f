import { readlinkSync } from 'node:fs';
import type { Notifier } from '../../shared/notify.js';
import { versionOfDir } from '../../shared/version-dirs.js';
import type { View } from './status-view.js';

const MAX_ERROR = 200;

/** What `systemctl status tope-api-gateway` says: the stage, the version it concerns, the version the printer runs. */
export function statusText(view: View, running: string | null): string {
  const { stage, error } = view.status;
  const version =
    view.active === 'installer'
      ? view.records.installer?.version
      : view.active === 'fetcher'
        ? view.records.fetcher?.job?.version
        : undefined;
  const about = stage !== 'idle' && version ? ` ${version}` : '';
  const failure =
    stage === 'failed' && error ? ` (${error.length > MAX_ERROR ? `${error.slice(0, MAX_ERROR)}...` : error})` : '';
  return `${stage}${about}${failure}; ${running ? `running ${running}` : 'no version installed'}`;
}

/**
 * The gateway's STATUS=, refreshed after each request from the records it already reads. Only a
 * change is sent (each is a systemd-notify run), so ota-gui's polling costs nothing here.
 */
export class StatusLine {
  private last = '';

  constructor(
    private readonly notifier: Notifier,
    private readonly currentLink: string,
    private readonly readView: () => Promise<View>,
  ) {}

  async ready(): Promise<void> {
    this.last = await this.text();
    this.notifier.ready(this.last);
  }

  async refresh(): Promise<void> {
    const text = await this.text();
    if (text === this.last) return;
    this.last = text;
    this.notifier.status(text);
  }

  private async text(): Promise<string> {
    const view = await this.readView();
    // synchronous, like the records' stat (status-view.ts): run after every request, and the
    // asynchronous call is a trip through the thread pool that costs more than the readlink
    let target: string | null = null;
    try {
      target = readlinkSync(this.currentLink);
    } catch {
      // no version installed (or not readable): said so in the text
    }
    return statusText(view, target && versionOfDir(target));
  }
}
