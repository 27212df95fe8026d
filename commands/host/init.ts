import {Flags} from '@oclif/core'

import {ClusterCommand} from '../../src/cli/cluster-command.js'
import {renderChanges} from '../../src/cli/changes-view.js'
import {contextFlag, dryRunFlag} from '../../src/cli/flags.js'
import {formatDuration} from '../../src/cli/duration.js'
import {
  hostInit,
  INSTALLER_LOGS_COMMAND,
  INSTALLER_WAIT_MS,
  type HostInitResult,
} from '../../src/kubesphere/host-init.js'

export default class HostInit extends ClusterCommand<typeof HostInit> {
  static override summary =
    'Make a cluster the KubeSphere multi-cluster host (3.x), or check that it is one (4.x).'
  static override description = [
    'KubeSphere 3.x: sets spec.multicluster.clusterRole to host (and hostClusterName with --name) in the ks-installer ClusterConfiguration, leaving every other field as it was; the installer then installs the tower proxy.',
    'KubeSphere 4.x: every ks-core install is a host, and Helm owns the objects, so this checks the role, the host Cluster object and the tower extension and reports what is missing.',
    'Running it again on a host with the same name changes nothing.',
  ].join('\n\n')

  static override examples = [
    '<%= config.bin %> <%= command.id %> --context host',
    '<%= config.bin %> <%= command.id %> --context host --name beijing --wait --timeout 15m',
    '<%= config.bin %> <%= command.id %> --context host --dry-run',
  ]

  static override flags = {
    context: contextFlag,
    name: Flags.string({
      description: 'host cluster name (lowercase letters, digits, "-", "."; default: host)',
    }),
    wait: Flags.boolean({
      description: `wait until ks-installer reports the multicluster component enabled (up to ${formatDuration(INSTALLER_WAIT_MS)}, or --timeout)`,
      default: false,
    }),
    force: Flags.boolean({
      description: 'rename a host that already has a name or members (KubeSphere advises against it)',
      default: false,
    }),
    'dry-run': dryRunFlag,
  }

  async run(): Promise<HostInitResult> {
    const result = await hostInit(this.clients().forContext(this.flags.context), {
      name: this.flags.name,
      force: this.flags.force,
      dryRun: this.dryRunMode(),
      wait: this.flags.wait,
      waitTimeoutMs: this.waitTimeoutMs,
    })
    this.print(describe(result))
    return result
  }
}

function describe(result: HostInitResult): string {
  if (result.edition === '4.x') {
    return `context ${result.context} is the KubeSphere 4.x host "${result.hostClusterName}" with the tower extension installed; nothing to change\n`
  }
  if (result.alreadyHost) {
    return `context ${result.context} is already the KubeSphere host "${result.hostClusterName}"; nothing to change\n`
  }
  const changes = renderChanges(result.changes, result.dryRun)
  if (result.dryRun) return changes
  if (result.multiclusterStatus === 'enabled')
    return `${changes}multicluster is enabled: the host "${result.hostClusterName}" is ready\n`
  return `${changes}ks-installer is now installing the multicluster component; follow it with:\n  ${INSTALLER_LOGS_COMMAND}\nor run again with --wait\n`
}
