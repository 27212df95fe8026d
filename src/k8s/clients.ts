import {ClusterClient} from './cluster-client.js'
import {KubeconfigSet, type KubeconfigSource} from './kubeconfig.js'
import {WriteJournal} from './write-journal.js'

/**
 * The clients of one command run: the kubeconfig is read once, and each context gets its own
 * ClusterClient (and KubeConfig), created on first use and reused after.
 */
export class ClusterClients {
  private readonly clients = new Map<string, ClusterClient>()
  /** Every write this run's clients made, on any cluster. */
  readonly journal = new WriteJournal()

  constructor(
    readonly kubeconfig: KubeconfigSet,
    private readonly requestTimeoutMs?: number,
  ) {}

  static load(source: KubeconfigSource, requestTimeoutMs?: number): ClusterClients {
    return new ClusterClients(KubeconfigSet.load(source), requestTimeoutMs)
  }

  /** The client for a context; `undefined` means the kubeconfig's current context. */
  forContext(requested: string | undefined, flag = '--context'): ClusterClient {
    const context = this.kubeconfig.resolveContext(requested, flag)
    let client = this.clients.get(context)
    if (client === undefined) {
      client = new ClusterClient(
        context,
        this.kubeconfig.forContext(context),
        this.requestTimeoutMs,
        this.journal,
      )
      this.clients.set(context, client)
    }
    return client
  }
}
