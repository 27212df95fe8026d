import {KsctlError} from './errors.js'

/**
 * Whether the run was interrupted (SIGINT or SIGTERM), for the parts that must stop: `ClusterClient` sends no
 * new request and abandons the reads under way (a write under way finishes, so that what changed is known),
 * and a wait stops sleeping. `ClusterCommand` installs the signal handlers and reports what was changed.
 */
class Interruption {
  private controller = new AbortController()
  private receivedSignal: NodeJS.Signals | undefined

  /** Aborted, with the error below as its reason, when the run is interrupted. */
  get signal(): AbortSignal {
    return this.controller.signal
  }

  /** The signal that interrupted the run, if one did. */
  get received(): NodeJS.Signals | undefined {
    return this.receivedSignal
  }

  /** A new run starts uninterrupted (the tests run many commands in one process). */
  reset(): void {
    this.controller = new AbortController()
    this.receivedSignal = undefined
  }

  interrupt(signal: NodeJS.Signals): void {
    if (this.receivedSignal !== undefined) return
    this.receivedSignal = signal
    this.controller.abort(this.error())
  }

  /** What a step that stops because of the interruption throws; the command replaces it with its report. */
  error(): KsctlError {
    return new KsctlError(`interrupted by ${this.receivedSignal ?? 'a signal'}`, {code: 'INTERRUPTED'})
  }

  throwIfInterrupted(): void {
    if (this.receivedSignal !== undefined) throw this.error()
  }
}

export const interruption = new Interruption()
