import type {Command} from '@oclif/core'

import {ClusterClients} from '../k8s/clients.js'
import {BaseCommand} from './base-command.js'

/**
 * A command that talks to clusters: {@link BaseCommand} plus the run's Kubernetes clients. The tower
 * processes extend BaseCommand alone, so that standalone they never load the Kubernetes client library
 * (~85 MiB of memory each).
 */
export abstract class ClusterCommand<T extends typeof Command> extends BaseCommand<T> {
  private clientSet: ClusterClients | undefined

  /** The clients of this run, built from `--kubeconfig` (or KUBECONFIG) on first use. */
  protected clients(): ClusterClients {
    this.clientSet ??= ClusterClients.load({kubeconfig: this.flags.kubeconfig}, this.timeoutMs)
    return this.clientSet
  }
}
