import { promises as fsp } from 'node:fs';
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
    const [view, target] = await Promise.all([this.readView(), fsp.readlink(this.currentLink).catch(() => null)]);
    return statusText(view, target && versionOfDir(target));
  }
}
