import {ClusterCommand} from '../src/cli/cluster-command.js'
import {contextFlag, outputFlag} from '../src/cli/flags.js'
import {renderStructured} from '../src/cli/output.js'
import {readHostStatus, type HostStatus} from '../src/kubesphere/status.js'
import {renderHostStatus} from '../src/kubesphere/status-view.js'

export default class Status extends ClusterCommand<typeof Status> {
  static override summary = "Show a host's clusters: connection, agent, readiness and versions."
  static override description = [
    'Lists the Cluster objects of a KubeSphere host, its own included (marked "(host)"): the connection type (direct or proxy), a proxy cluster\'s AgentAvailable condition as the proxy reports it (not verified: ksctl doctor sends a request through the tunnel), the Ready condition, the Kubernetes and KubeSphere versions the host last saw (and why one is unknown), and the age of the Cluster object.',
    "Above the table: the host's name and the proxy address agents dial.",
  ].join('\n\n')

  static override examples = [
    '<%= config.bin %> <%= command.id %> --context host',
    '<%= config.bin %> <%= command.id %> --context host --json',
  ]

  static override flags = {context: contextFlag, output: outputFlag}

  async run(): Promise<HostStatus> {
    const status = await readHostStatus(this.clients().forContext(this.flags.context))
    this.print(
      this.flags.output === 'text'
        ? renderHostStatus(status, this.now())
        : renderStructured(status, this.flags.output),
    )
    return status
  }

  /** The time the AGE column counts from; tests pin it. */
  protected now(): Date {
    return new Date()
  }
}
