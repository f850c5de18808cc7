import { SingleBar } from 'cli-progress';

/** Progress output: a terminal bar, a live notebook output, periodic log lines, or none. */
export type ProgressStyle = 'bar' | 'notebook' | 'log' | 'off';

/** Picks the style from MODARCH_PROGRESS, else from whether this runs in a Jupyter kernel or a terminal. */
export function defaultProgressStyle(): ProgressStyle {
  const forced = process.env.MODARCH_PROGRESS;
  if (forced === 'bar' || forced === 'notebook' || forced === 'log' || forced === 'off') return forced;
  if (process.env.JPY_PARENT_PID) return 'notebook';
  return process.stderr.isTTY ? 'bar' : 'log';
}

/**
 * Shows how far a long job is: items done out of total, rate and estimated time left.
 * In a notebook it rewrites one output in place (at most once a second); in a log it writes
 * a line at most every 20 seconds.
 */
export class Progress {
  private readonly started = Date.now();
  private bar?: SingleBar;
  private display?: { html(text: string): void };
  private lastShown = 0;
  private detail = '';

  constructor(
    private readonly label: string,
    private readonly total: number,
    private readonly unit = 'steps',
    private readonly style: ProgressStyle = defaultProgressStyle(),
  ) {
    if (style === 'bar') {
      this.bar = new SingleBar({
        format: `${label} [{bar}] {value}/{total} ${unit} | {rate}/s | left {eta_formatted} | {detail}`,
        barsize: 24,
        hideCursor: false,
        stream: process.stderr,
      });
      this.bar.start(total, 0, { rate: '0', detail: '' });
    }
    if (style === 'notebook') {
      // tslab is only importable inside its kernel; load it here so the library works elsewhere.
      // eslint-disable-next-line @typescript-eslint/no-var-requires
      this.display = require('tslab').newDisplay();
    }
  }

  /** Records that `done` items are finished; `detail` is a short status such as the loss. */
  update(done: number, detail = ''): void {
    this.detail = detail;
    const elapsed = (Date.now() - this.started) / 1000;
    const rate = elapsed > 0 ? done / elapsed : 0;
    if (this.bar) this.bar.update(done, { rate: rate.toFixed(1), detail });
    const now = Date.now();
    if (this.style === 'notebook' && (now - this.lastShown > 1000 || done === this.total)) {
      this.lastShown = now;
      this.display?.html(this.renderHtml(done, rate, elapsed));
    }
    if (this.style === 'log' && now - this.lastShown > 20_000) {
      this.lastShown = now;
      console.error(`${this.label}: ${this.summary(done, rate, elapsed)}`);
    }
  }

  /** Marks the job finished and leaves a final summary. */
  finish(): void {
    const elapsed = (Date.now() - this.started) / 1000;
    const rate = elapsed > 0 ? this.total / elapsed : 0;
    if (this.bar) {
      this.bar.update(this.total, { rate: rate.toFixed(1), detail: this.detail });
      this.bar.stop();
    }
    if (this.style === 'notebook') this.display?.html(this.renderHtml(this.total, rate, elapsed));
    if (this.style === 'log') console.error(`${this.label}: ${this.summary(this.total, rate, elapsed)}`);
  }

  private summary(done: number, rate: number, elapsed: number): string {
    const left = rate > 0 ? (this.total - done) / rate : NaN;
    const parts = [`${done}/${this.total} ${this.unit}`, `${rate.toFixed(1)} ${this.unit}/s`];
    parts.push(done >= this.total ? `took ${formatSeconds(elapsed)}` : `left ${formatSeconds(left)}`);
    if (this.detail) parts.push(this.detail);
    return parts.join(' | ');
  }

  private renderHtml(done: number, rate: number, elapsed: number): string {
    const percent = this.total > 0 ? (100 * done) / this.total : 100;
    const text = escapeHtml(`${this.label}: ${this.summary(done, rate, elapsed)}`);
    return (
      `<div style="font-family:monospace;font-size:12px">` +
      `<div style="width:320px;height:8px;background:#e5e7eb;border-radius:4px;overflow:hidden;display:inline-block;vertical-align:middle">` +
      `<div style="width:${percent.toFixed(1)}%;height:100%;background:#2563eb"></div></div> ${text}</div>`
    );
  }
}

/** Formats seconds as "42s", "3m 05s" or "2h 10m". */
export function formatSeconds(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const whole = Math.round(seconds);
  if (whole < 60) return `${whole}s`;
  if (whole < 3600) return `${Math.floor(whole / 60)}m ${String(whole % 60).padStart(2, '0')}s`;
  return `${Math.floor(whole / 3600)}h ${String(Math.floor((whole % 3600) / 60)).padStart(2, '0')}m`;
}

function escapeHtml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}
