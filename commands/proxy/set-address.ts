import {Args, Flags} from '@oclif/core'

import {ClusterCommand} from '../../src/cli/cluster-command.js'
import {renderChanges} from '../../src/cli/changes-view.js'
import {contextFlag, dryRunFlag} from '../../src/cli/flags.js'
import {chooseOrFail} from '../../src/cli/prompts.js'
import {log} from '../../src/log.js'
import {setProxyAddress, type SetProxyAddressResult} from '../../src/kubesphere/proxy-address.js'

export default class ProxySetAddress extends ClusterCommand<typeof ProxySetAddress> {
  static override summary = 'Publish the address member agents dial to reach the tower proxy.'
  static override description = [
    "Inspects Service kubesphere-system/tower. With a LoadBalancer address, that address is used and nothing needs setting. Otherwise (LoadBalancer pending, or a NodePort Service) give ADDRESS, or pick one of the nodes' addresses at the prompt.",
    'The address is written where the installed KubeSphere reads it: 3.x the ks-installer ClusterConfiguration; 4.x the kubesphere-config ConfigMap and, when it exists, the tower connection Secret (keeping its other settings). ks-apiserver is restarted where it must reload.',
  ].join('\n\n')

  static override examples = [
    '<%= config.bin %> <%= command.id %> --context host',
    '<%= config.bin %> <%= command.id %> http://203.0.113.10:30721 --context host',
    '<%= config.bin %> <%= command.id %> http://203.0.113.10:30721 --context host --dry-run',
  ]

  static override args = {
    address: Args.string({description: 'http(s)://host:port that every member node can reach'}),
  }

  static override flags = {
    context: contextFlag,
    'agent-image': Flags.string({description: 'agent image members run (KubeSphere 4.x only)'}),
    'no-restart': Flags.boolean({
      description: 'do not restart ks-apiserver after the change',
      default: false,
    }),
    'dry-run': dryRunFlag,
  }

  async run(): Promise<SetProxyAddressResult> {
    const result = await setProxyAddress(this.clients().forContext(this.flags.context), {
      address: this.args.address,
      agentImage: this.flags['agent-image'],
      restart: !this.flags['no-restart'],
      dryRun: this.dryRunMode(),
      choose: (offer) =>
        chooseOrFail('ADDRESS', {
          ...offer,
          message: 'The tower Service has no LoadBalancer address. Which address can every member reach?',
        }),
    })
    for (const warning of result.warnings) log.warn(warning)
    this.print(describe(result))
    for (const note of result.notes) log.info(`note: ${note}`)
    return result
  }
}

function describe(result: SetProxyAddressResult): string {
  const lines: string[] = []
  if (result.source === 'load-balancer') {
    lines.push(`proxy address of context ${result.context}: ${result.address} (tower LoadBalancer)`)
  } else {
    const changes = renderChanges(result.changes, result.dryRun).trimEnd()
    lines.push(
      changes === ''
        ? `proxy address of context ${result.context} is already ${result.address}; nothing to change`
        : changes,
    )
    for (const name of result.restarted)
      lines.push(`${result.dryRun ? 'would restart' : 'restarted'} deployment kubesphere-system/${name}`)
  }
  return lines.join('\n') + '\n'
}
