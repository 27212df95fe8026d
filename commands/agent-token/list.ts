import {ClusterCommand} from '../../src/cli/cluster-command.js'
import {contextFlag} from '../../src/cli/flags.js'
import {renderTable} from '../../src/cli/output.js'
import {listAgentTokens, type AgentTokenList} from '../../src/agent-token/list.js'

export default class AgentTokenListCommand extends ClusterCommand<typeof AgentTokenListCommand> {
  static override summary =
    "List the agent tokens of a host's proxy clusters: rotation, lifetime, expiry (never the tokens)."
  static override description =
    "PHASE is current (no rotation under way), requested (ksctl's proxy is to take the new token to the member), delivered (the member has it; its agents move to it) or failing (the proxy says why it cannot go on, in ERROR). ISSUED is when ksctl last rotated the token; a token Tower or KubeSphere made has no known start."

  static override examples = [
    '<%= config.bin %> <%= command.id %> --context host',
    '<%= config.bin %> <%= command.id %> --context host --json',
  ]

  static override flags = {context: contextFlag}

  async run(): Promise<AgentTokenList> {
    const list = await listAgentTokens(this.clients().forContext(this.flags.context))
    if (list.clusters.length === 0) {
      this.print(`no proxy clusters in context "${list.context}"\n`)
      return list
    }
    this.print(
      renderTable(
        ['CLUSTER', 'PHASE', 'ISSUED', 'LIFETIME', 'EXPIRES', 'ERROR'],
        list.clusters.map((row) => [
          row.cluster,
          row.phase,
          row.issuedAt ?? '',
          row.lifetime ?? '',
          row.expiresAt ?? '',
          row.error ?? '',
        ]),
      ),
    )
    return list
  }
}
