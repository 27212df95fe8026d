import {Args, Flags} from '@oclif/core'

import {renderChanges} from '../../src/cli/changes-view.js'
import {ClusterCommand} from '../../src/cli/cluster-command.js'
import {contextFlag, dryRunFlag} from '../../src/cli/flags.js'
import {rotateAgentToken, type AgentTokenRotateResult} from '../../src/agent-token/rotate.js'

export default class AgentTokenRotate extends ClusterCommand<typeof AgentTokenRotate> {
  static override summary =
    "Rotate a member's agent token without cutting its connection (needs ksctl's proxy on the host)."
  static override description = [
    "ksctl's proxy takes the new token to the member through the tunnel (into the agent's Secret ksctl-tower-agent-token), accepts both tokens while each agent hands its tunnel over to a session on the new one (open requests and watches finish on the old session), and then makes the new token the Cluster's: from then on the old one is refused.",
    "The new token, its lifetime and the rotation's progress are kept in Secret kubesphere-system/ksctl-agent-tokens, referenced from the Cluster; the current token stays in Cluster.spec.connection.token, where KubeSphere reads it. With --lifetime the proxy renews the token itself, the same way, once two thirds of its lifetime passed.",
    "By default the command waits until the agents are on the new token; a rotation already under way is followed, not replaced. Needs ksctl's agent on the member (ksctl member join --runtime ksctl).",
  ].join('\n\n')

  static override examples = [
    '<%= config.bin %> <%= command.id %> member1 --context host',
    '<%= config.bin %> <%= command.id %> member1 --context host --lifetime 720h --no-wait',
  ]

  static override args = {
    name: Args.string({description: 'the proxy Cluster whose agent token to rotate', required: true}),
  }

  static override flags = {
    context: contextFlag,
    lifetime: Flags.string({
      description:
        'how long each token of the cluster is accepted from now on (e.g. 720h, at least 10m); the proxy renews it at two thirds. "none" removes it',
    }),
    wait: Flags.boolean({
      description:
        'wait until the agents are on the new token and the old one is refused (up to 5m, or --timeout)',
      default: true,
      allowNo: true,
    }),
    'dry-run': dryRunFlag,
  }

  async run(): Promise<AgentTokenRotateResult> {
    const {lifetime} = this.flags
    const result = await rotateAgentToken(this.clients().forContext(this.flags.context), {
      cluster: this.args.name,
      lifetime: lifetime === 'none' ? null : lifetime,
      wait: this.flags.wait,
      waitTimeoutMs: this.waitTimeoutMs,
      dryRun: this.dryRunMode(),
    })
    this.print(renderChanges(result.changes, result.dryRun))
    if (!result.dryRun) {
      this.print(
        result.state === 'rotated'
          ? `cluster "${result.cluster}" has a new agent token; the old one is refused\n`
          : `asked ksctl's proxy to rotate the agent token of cluster "${result.cluster}"; follow it: ksctl agent-token list --context ${result.context}\n`,
      )
    }
    return result
  }
}
