import {setTimeout as delay} from 'node:timers/promises'

/**
 * Runs the passes of a stand-in's roles one after the other, again and again, `intervalMs` apart, as controllers
 * reconcile: a pass that fails is tried again on the next round (its error goes to `onError`), and `stop()`
 * returns once the round under way has finished, so that nothing writes after it.
 */
export class StandInLoop {
  private running: Promise<void> | undefined
  private stopped = false
  private paused = false

  constructor(
    private readonly passes: (() => Promise<void>)[],
    private readonly intervalMs: number,
    private readonly onError: (error: unknown) => void = () => undefined,
  ) {}

  /** Starts the rounds; after stop(), starts them again (a test stops the stand-in and later resumes it). */
  start(): this {
    this.stopped = false
    this.running = this.run()
    return this
  }

  /** Freezes the roles (a test of what waits without them); they carry on when unpaused. */
  pause(paused = true): void {
    this.paused = paused
  }

  async stop(): Promise<void> {
    this.stopped = true
    await this.running
  }

  private isStopped(): boolean {
    return this.stopped
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      if (!this.paused) {
        for (const pass of this.passes) {
          // stop() may have been called while the previous pass ran.
          if (this.isStopped()) return
          await pass().catch(this.onError)
        }
      }
      await delay(this.intervalMs)
    }
  }
}
