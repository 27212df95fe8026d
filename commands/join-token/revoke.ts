import {Args, Flags} from '@oclif/core'

import {renderChanges} from '../../src/cli/changes-view.js'
import {ClusterCommand} from '../../src/cli/cluster-command.js'
import {contextFlag, dryRunFlag} from '../../src/cli/flags.js'
import {usageError} from '../../src/errors.js'
import {TOKEN_ID_PATTERN} from '../../src/join-token/token.js'
import {revokeJoinTokens, type JoinTokenRevokeResult} from '../../src/join-token/manage.js'

export default class JoinTokenRevoke extends ClusterCommand<typeof JoinTokenRevoke> {
  static override summary =
    'Revoke a join token by its ID, or all of a cluster, so that the proxy refuses it.'
  static override description =
    'A revoked token is refused by the proxy as revoked; a token already used, expired or revoked is left as it is (revoking cannot undo a join: ksctl member leave does). An ID that names no token is an error, and then nothing is revoked.'

  static override examples = [
    '<%= config.bin %> <%= command.id %> abcdef --context host',
    '<%= config.bin %> <%= command.id %> --cluster member1 --context host',
  ]

  static override args = {
    id: Args.string({description: 'ID of the join token (the part before the dot)'}),
  }

  static override flags = {
    context: contextFlag,
    cluster: Flags.string({description: 'revoke every valid join token of this cluster'}),
    'dry-run': dryRunFlag,
  }

  async run(): Promise<JoinTokenRevokeResult> {
    const {id} = this.args
    if (id !== undefined && !TOKEN_ID_PATTERN.test(id)) {
      throw usageError(
        `"${id}" is not a join token ID (6 characters a-z, 2-7: the part of the token before the dot)`,
      )
    }
    if (id === undefined && this.flags.cluster === undefined) {
      throw usageError('name the join token to revoke (its ID), or --cluster NAME', [
        'the tokens: ksctl join-token list',
      ])
    }
    const ids = id === undefined ? [] : [id]
    const result = await revokeJoinTokens(this.clients().forContext(this.flags.context), {
      ids,
      cluster: this.flags.cluster,
      dryRun: this.dryRunMode(),
    })
    this.print(renderChanges(result.changes, result.dryRun))
    for (const {id, state} of result.unchanged)
      this.print(`join token ${id} is ${state}: nothing to revoke\n`)
    if (result.revoked.length === 0 && result.unchanged.length === 0)
      this.print('no valid join token to revoke\n')
    return result
  }
}
