import yoctoSpinner, {type Spinner} from 'yocto-spinner'

import {log, type LogFormat} from '../log.js'
import {formatDuration, formatElapsed} from './duration.js'

/** The part of a terminal stream a spinner uses; tests pass their own. */
export type ProgressStream = Pick<
  NodeJS.WriteStream,
  'write' | 'isTTY' | 'columns' | 'cursorTo' | 'moveCursor' | 'clearLine'
>

/**
 * A spinner only where someone watches a terminal: the rule yocto-spinner applies to the stream it draws on
 * (not a dumb terminal, not CI), so that the choice made here and the library's agree.
 */
function isInteractive(stream: Pick<NodeJS.WriteStream, 'isTTY'>): boolean {
  return stream.isTTY && process.env.TERM !== 'dumb' && !('CI' in process.env)
}

/**
 * Where a spinner may be drawn: on `stream` when it is interactive and the output is for a person (text logs
 * at level info or more, no `--json`); `undefined` means log lines. NO_COLOR only takes the colour away.
 */
export function spinnerStream(
  stream: ProgressStream,
  output: {logFormat: LogFormat; json: boolean},
): ProgressStream | undefined {
  const forPerson = output.logFormat === 'text' && !output.json && log.enabled('info')
  return forPerson && isInteractive(stream) ? stream : undefined
}

const REDRAW_MS = 1000

/**
 * What a long wait shows on stderr. On an interactive terminal: one spinner line with the current state and
 * the time waited (and the limit), redrawn in place; the final state stays as a line. Otherwise (a pipe, CI,
 * `--log-format json`, `--json`, `--log-level warn`): a log line each time the state changes. One wait at a
 * time; the interruption report names it.
 */
export class Progress {
  private spinnerStream: ProgressStream | undefined
  private spinner: Spinner | undefined
  private redraw: NodeJS.Timeout | undefined
  private lastState = ''
  private startedAt = 0
  private limitMs = 0
  private waitingFor: string | undefined

  /** `spinnerOn`: the terminal to draw on, or `undefined` for log lines. */
  configure(spinnerOn: ProgressStream | undefined): void {
    this.stop()
    this.spinnerStream = spinnerOn
  }

  /** A wait starts; `limitMs` (0: none) is shown beside the time waited. */
  begin(waitingFor: string, limitMs: number): void {
    this.stop()
    this.waitingFor = waitingFor
    this.limitMs = limitMs
    this.startedAt = Date.now()
    this.lastState = ''
  }

  /** The wait's current state: a new line (log mode) or the spinner's text, when it changed. */
  update(state: string): void {
    if (this.waitingFor === undefined || state === this.lastState) return
    this.lastState = state
    if (this.spinnerStream === undefined) {
      log.info(state)
      return
    }
    if (this.spinner === undefined) {
      // Signals are ksctl's to handle (ClusterCommand); the library's own handler would exit at once.
      this.spinner = yoctoSpinner({stream: this.spinnerStream as NodeJS.WriteStream, handleSignals: false})
      this.spinner.start(this.text())
      this.redraw = setInterval(() => {
        if (this.spinner !== undefined) this.spinner.text = this.text()
      }, REDRAW_MS)
    } else {
      this.spinner.text = this.text()
    }
  }

  /** The wait is over; a state it ended in stays on the screen (in log mode it was logged already). */
  end(finalState?: string): void {
    const spinning = this.spinner !== undefined
    this.stop()
    if (spinning && finalState !== undefined) log.info(finalState)
  }

  /** Removes the spinner line at once, before an error or an interruption report is printed. */
  stop(): void {
    clearInterval(this.redraw)
    this.redraw = undefined
    this.spinner?.stop()
    this.spinner = undefined
    this.waitingFor = undefined
  }

  /** The wait under way, if one is: "cluster "member1" to become Ready (waited 12s of 15m)". */
  current(): string | undefined {
    return this.waitingFor === undefined ? undefined : `${this.waitingFor} (waited ${this.waited()})`
  }

  private text(): string {
    return `${this.lastState} (${this.waited()})`
  }

  private waited(): string {
    const waited = formatElapsed(Date.now() - this.startedAt)
    return this.limitMs === 0 ? `${waited}, no time limit` : `${waited} of ${formatDuration(this.limitMs)}`
  }
}

/** The one progress display of a command run, set up by the base command from its flags and stderr. */
export const progress = new Progress()
