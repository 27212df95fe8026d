import type {Command} from '@oclif/core'

import type {KsctlError} from '../errors.js'
import {interruption} from '../interruption.js'
import {ClusterClients} from '../k8s/clients.js'
import {BaseCommand, errorJson, renderError} from './base-command.js'
import {interruptedError} from './interrupted-run.js'
import {progress} from './progress.js'

/** How long an interrupted run may take to finish the writes under way before ksctl stops without them. */
const INTERRUPT_GRACE_MS = 5000

/**
 * A command that talks to clusters: {@link BaseCommand} plus the run's Kubernetes clients, and what happens on
 * Ctrl-C (SIGINT) or SIGTERM: no new request is sent, the wait or read under way ends, a write under way
 * finishes, and the run ends with exit code 130 and a report of what it changed and the command that
 * continues (see `interrupted-run.ts`). A second signal, or writes that take longer than a few seconds, end it
 * at once. The tower processes extend BaseCommand alone: standalone they never load the Kubernetes client
 * library (~85 MiB of memory each), and they handle signals themselves (a graceful drain).
 */
export abstract class ClusterCommand<T extends typeof Command> extends BaseCommand<T> {
  private clientSet: ClusterClients | undefined
  private waitInterrupted: string | undefined
  private forcedStop: NodeJS.Timeout | undefined

  /** The clients of this run, built from `--kubeconfig` (or KUBECONFIG) on first use. */
  protected clients(): ClusterClients {
    this.clientSet ??= ClusterClients.load({kubeconfig: this.flags.kubeconfig}, this.timeoutMs)
    return this.clientSet
  }

  override async init(): Promise<void> {
    await super.init()
    interruption.reset()
    process.on('SIGINT', this.onSignal)
    process.on('SIGTERM', this.onSignal)
  }

  protected override catch(error: Error & {exitCode?: number}): Promise<never> {
    return super.catch(interruption.received === undefined ? error : this.interruptionReport())
  }

  protected override async finally(error: Error | undefined): Promise<unknown> {
    process.off('SIGINT', this.onSignal)
    process.off('SIGTERM', this.onSignal)
    clearTimeout(this.forcedStop)
    return super.finally(error)
  }

  private readonly onSignal = (signal: NodeJS.Signals): void => {
    if (interruption.received !== undefined) {
      this.stopNow()
      return
    }
    this.waitInterrupted = progress.current()
    progress.stop()
    interruption.interrupt(signal)
    this.forcedStop = setTimeout(() => this.stopNow(), INTERRUPT_GRACE_MS)
    this.forcedStop.unref()
  }

  /** Reports and exits without waiting for the writes under way (listed as of unknown outcome). */
  private stopNow(): void {
    const report = this.interruptionReport()
    if (this.jsonEnabled()) this.logJson(errorJson(report))
    else process.stderr.write(renderError(report))
    process.exit(report.exitCode)
  }

  private interruptionReport(): KsctlError {
    return interruptedError({
      signal: interruption.received ?? 'SIGINT',
      waitingFor: this.waitInterrupted,
      changes: this.clientSet?.journal.changes() ?? [],
      pending: this.clientSet?.journal.pending() ?? [],
      commandLine: [this.config.bin, ...(this.id?.split(':') ?? []), ...this.argv],
    })
  }
}
