import {Flags} from '@oclif/core'

import {ClusterCommand} from '../../src/cli/cluster-command.js'
import {contextFlag} from '../../src/cli/flags.js'
import {renderTable} from '../../src/cli/output.js'
import {listJoinTokens, type JoinTokenList} from '../../src/join-token/manage.js'
import {log} from '../../src/log.js'

export default class JoinTokenListCommand extends ClusterCommand<typeof JoinTokenListCommand> {
  static override summary = "List a host's join tokens: cluster, state and expiry (never the tokens)."
  static override description = [
    'Join tokens are made by ksctl host invite. The host keeps a record of each (its public ID, cluster, expiry, and who used it), not the token: the secret part exists only in the printed command.',
    'STATE is valid, used, expired or revoked. Records are kept until a day after their token expired, so that a late use is told why it is refused; the next invite or revoke removes older ones.',
  ].join('\n\n')

  static override examples = [
    '<%= config.bin %> <%= command.id %> --context host',
    '<%= config.bin %> <%= command.id %> --context host --cluster member1 --json',
  ]

  static override flags = {
    context: contextFlag,
    cluster: Flags.string({description: "only this cluster's tokens"}),
  }

  async run(): Promise<JoinTokenList> {
    const list = await listJoinTokens(this.clients().forContext(this.flags.context), {
      cluster: this.flags.cluster,
    })
    for (const key of list.unreadable)
      log.warn(`key ${key} of the join-token Secret holds no readable record; left as it is`)
    if (list.tokens.length === 0) {
      this.print(`no join tokens in context "${list.context}"\n`)
      return list
    }
    this.print(
      renderTable(
        ['ID', 'CLUSTER', 'STATE', 'EXPIRES', 'CREATED', 'USED BY'],
        list.tokens.map((token) => [
          token.id,
          token.cluster,
          token.state,
          token.expiresAt,
          token.createdAt,
          token.usedBy ?? '',
        ]),
      ),
    )
    return list
  }
}
