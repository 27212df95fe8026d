import {Flags} from '@oclif/core'

import {renderChanges} from '../../src/cli/changes-view.js'
import {ClusterCommand} from '../../src/cli/cluster-command.js'
import {clusterNameArg, clusterRecordFlags, clusterRecordOf} from '../../src/cli/cluster-record.js'
import {formatDuration, parseDuration} from '../../src/cli/duration.js'
import {contextFlag, dryRunFlag} from '../../src/cli/flags.js'
import {invalidInput} from '../../src/errors.js'
import {
  DEFAULT_JOIN_TOKEN_TTL_MS,
  hostInvite,
  MAX_JOIN_TOKEN_TTL_MS,
  type HostInviteResult,
} from '../../src/kubesphere/host-invite.js'
import {TOKEN_WAIT_MS} from '../../src/kubesphere/member-join.js'
import {log} from '../../src/log.js'
import {redact, revealed} from '../../src/redact.js'

export default class HostInvite extends ClusterCommand<typeof HostInvite> {
  static override summary =
    'Invite a member to join from its own side: register its Cluster and print the command to run on the member.'
  static override description = [
    "The host's half of a two-sided join, for when no one machine has both clusters' kubeconfigs. Checks the host (a KubeSphere host whose tower Service sends agents to ksctl's proxy, an address members can reach, the proxy's serving key), registers the Cluster (or keeps one registered before), waits until the proxy has initialized it, and makes a join token for it: random, for this cluster only, good for one join, expiring after --ttl, kept on the host only as a hash (Secret kubesphere-system/ksctl-join-tokens).",
    "Prints the member-side command on stdout: ksctl member register NAME with the token, the proxy address and the pin of the proxy's key, which the member checks the proxy by before it sends the token. The agent token and the jwtSecret are not printed: the member gets them from the proxy for the token. List and revoke tokens with ksctl join-token.",
    `Where the host still runs Tower's proxy, which cannot trade a token, it says so and what to do instead. Waits up to ${formatDuration(TOKEN_WAIT_MS)} for the proxy unless --timeout is given. Running it again for a registered Cluster makes a new token and changes nothing else.`,
  ].join('\n\n')

  static override examples = [
    '<%= config.bin %> <%= command.id %> member1 --context host',
    '<%= config.bin %> <%= command.id %> idc-beijing --context host --ttl 4h --label cluster.kubesphere.io/group=production',
    '<%= config.bin %> <%= command.id %> member1 --context host --dry-run',
  ]

  static override args = {name: clusterNameArg}

  static override flags = {
    context: contextFlag,
    ttl: Flags.string({
      description: `how long the join token is good for (at most ${formatDuration(MAX_JOIN_TOKEN_TTL_MS)})`,
      default: formatDuration(DEFAULT_JOIN_TOKEN_TTL_MS),
    }),
    ...clusterRecordFlags,
    'proxy-address': Flags.string({
      description:
        "address members reach the proxy at instead of the host's published one, https://host:port",
    }),
    'dry-run': dryRunFlag,
  }

  async run(): Promise<HostInviteResult> {
    const {flags} = this
    const record = clusterRecordOf(this.args.name, flags)
    const ttlMs = parseDuration(flags.ttl, '--ttl')
    if (ttlMs <= 0 || ttlMs > MAX_JOIN_TOKEN_TTL_MS) {
      throw invalidInput(
        `--ttl ${flags.ttl} must be longer than 0s and at most ${formatDuration(MAX_JOIN_TOKEN_TTL_MS)}`,
        ['a join token is an invitation: make a new one when it runs out (ksctl host invite again)'],
      )
    }
    const host = this.clients().forContext(flags.context)
    const result = await hostInvite(host, {
      ...record,
      proxyAddress: flags['proxy-address'],
      ttlMs,
      dryRun: this.dryRunMode(),
      waitTimeoutMs: this.waitTimeoutMs,
    })
    for (const warning of result.warnings) log.warn(warning)
    // The token is what the user asked for: in --json and on stdout as it is, never redacted.
    revealed(result.invitation)
    if (result.dryRun) {
      this.print(renderChanges(result.changes, true))
      this.print(`the member would run:\n  ${result.invitation.registerCommand}\n`)
      return result
    }
    if (!this.jsonEnabled()) {
      // stdout is the command to run on the member; what changed is progress, on stderr.
      process.stderr.write(redact(renderChanges(result.changes, false)))
      process.stdout.write(`${result.invitation.registerCommand}\n`)
    }
    log.info(
      `run it where the member's kubeconfig is (add --context or --kubeconfig); join token ${result.tokenId ?? ''} is ` +
        `good for one join until ${result.expiresAt ?? ''}; revoke it: ksctl join-token revoke ${result.tokenId ?? ''} --context ${host.context}`,
    )
    return result
  }
}
