import {Flags} from '@oclif/core'

import {ClusterCommand} from '../../src/cli/cluster-command.js'
import {renderChanges} from '../../src/cli/changes-view.js'
import {clusterNameArg, clusterRecordFlags, clusterRecordOf} from '../../src/cli/cluster-record.js'
import {dryRunFlag, hostContextFlag, memberContextFlag} from '../../src/cli/flags.js'
import {formatDuration} from '../../src/cli/duration.js'
import {handOffStdout} from '../../src/cli/stdout-handoff.js'
import {invalidInput} from '../../src/errors.js'
import {checkPin} from '../../src/kubesphere/agent-input.js'
import {agentManifestYaml} from '../../src/kubesphere/agent-manifest.js'
import {parseRuntime, TUNNEL_RUNTIMES} from '../../src/kubesphere/agent-runtime.js'
import {JOIN_WAIT_MS} from '../../src/kubesphere/join-wait.js'
import {
  followJoin,
  memberJoin,
  TOKEN_WAIT_MS,
  type MemberJoinResult,
} from '../../src/kubesphere/member-join.js'
import {log} from '../../src/log.js'
import {checkPrivateFilePath, writePrivateFile} from '../../src/private-file.js'
import {redact, revealed} from '../../src/redact.js'

export type MemberJoinOutput = MemberJoinResult & {agentFile?: string}

export default class MemberJoin extends ClusterCommand<typeof MemberJoin> {
  static override summary = 'Join a member cluster to a host through the tower proxy (agent connection).'
  static override description = [
    "Checks both clusters first (reachable, distinct, a host with a proxy address, a member that is neither a host nor joined elsewhere, a free name, and your rights for every change), and holds a lock on the host while it registers the member, so that it cannot be registered twice. Then: on KubeSphere 3.x copies the host's jwtSecret into the member's ClusterConfiguration and sets its role to member; creates the Cluster on the host; waits for the proxy to issue its token; and renders the agent, which it applies to the member with --apply, or writes to --output FILE (mode 0600: it holds the token) or stdout.",
    "The agent is the one the host's proxy takes: ksctl's (Deployment ksctl-tower-agent: the token in a Secret, wss:// verified by the proxy CA from the host or --proxy-pin, a ServiceAccount that may only impersonate) when the host's tower Service selects app.kubernetes.io/name=ksctl-tower-proxy, else Tower's (Deployment cluster-agent, as KubeSphere serves it). --runtime names one; a runtime the host does not run is refused before anything changes. Which one and why is printed on stderr.",
    'With --wait it then follows the Cluster until Ready, however the agent is applied: by --apply, or by you from the file or stdout (stdout is closed once the manifest is written, so it can be piped to kubectl apply -f -).',
    `Waits give up after ${formatDuration(TOKEN_WAIT_MS)} for the token and ${formatDuration(JOIN_WAIT_MS)} for Ready unless --timeout is given. Safe to run again: it continues where it stopped and changes nothing once done; Ctrl-C says what it changed.`,
  ].join('\n\n')

  static override examples = [
    '<%= config.bin %> <%= command.id %> member1 --host-context host --member-context member1 --apply --wait',
    '<%= config.bin %> <%= command.id %> idc-beijing --host-context host --member-context idc --label cluster.kubesphere.io/group=production --output agent.yaml',
    '<%= config.bin %> <%= command.id %> member1 --host-context host --member-context member1 --wait | kubectl --context member1 apply -f -',
    '<%= config.bin %> <%= command.id %> member1 --host-context host --member-context member1 --apply --dry-run',
    '<%= config.bin %> <%= command.id %> member1 --host-context host --member-context member1 --runtime ksctl --apply --wait',
  ]

  static override args = {name: clusterNameArg}

  static override flags = {
    'host-context': {...hostContextFlag, required: true},
    'member-context': {...memberContextFlag, required: true},
    ...clusterRecordFlags,
    'proxy-address': Flags.string({
      description: "address agents dial instead of the host's published one, http(s)://host:port",
    }),
    'agent-image': Flags.string({
      description:
        "agent image (default: Tower's: the host's configured agentImage; ksctl's: ksctl:<version>)",
    }),
    runtime: Flags.string({
      description: "whose agent: ksctl or tower (default: the runtime the host's tower Service leads to)",
      options: [...TUNNEL_RUNTIMES],
    }),
    'proxy-pin': Flags.string({
      description:
        "ksctl's agent: trust the proxy by the sha256:<hex> pin of its serving key, not the CA the host keeps",
    }),
    replicas: Flags.integer({
      description: 'agent replicas; above 1 adds anti-affinity and a PodDisruptionBudget',
      min: 1,
    }),
    apply: Flags.boolean({
      description: 'apply the agent manifest to the member',
      default: false,
      exclusive: ['output'],
    }),
    output: Flags.string({
      description: 'write the agent manifest to this file (mode 0600)',
      exclusive: ['apply'],
    }),
    wait: Flags.boolean({
      description:
        `after the agent is applied (--apply) or written (--output, stdout), wait until the Cluster is Ready ` +
        `(up to ${formatDuration(JOIN_WAIT_MS)}, or --timeout)`,
      default: false,
    }),
    'dry-run': dryRunFlag,
  }

  async run(): Promise<MemberJoinOutput> {
    const {flags} = this
    const record = clusterRecordOf(this.args.name, flags)
    const {name} = record
    const manifestOnStdout = !flags.apply && flags.output === undefined
    if (flags.wait && manifestOnStdout && this.jsonEnabled() && this.dryRunMode() === false) {
      throw invalidInput(
        '--wait with --json needs --apply or --output FILE: the JSON document, which holds the agent manifest, ' +
          'is written only when the wait is over, too late to apply the agent',
        ['add --apply, or --output agent.yaml and apply that file while ksctl waits'],
      )
    }
    // Before anything changes: a path that cannot be written would fail the join after its last change.
    if (flags.output !== undefined) checkPrivateFilePath(flags.output, '--output')
    const clients = this.clients()
    const host = clients.forContext(flags['host-context'], '--host-context')
    const member = clients.forContext(flags['member-context'], '--member-context')
    const result: MemberJoinOutput = await memberJoin(host, member, {
      ...record,
      proxyAddress: flags['proxy-address'],
      agentImage: flags['agent-image'],
      replicas: flags.replicas,
      runtime: parseRuntime(flags.runtime),
      proxyPin: flags['proxy-pin'] === undefined ? undefined : checkPin(flags['proxy-pin'], '--proxy-pin'),
      apply: flags.apply,
      dryRun: this.dryRunMode(),
      requestTimeoutMs: this.timeoutMs,
      waitTimeoutMs: this.waitTimeoutMs,
    })
    for (const warning of result.warnings) log.warn(warning)
    const changes = renderChanges(result.changes, result.dryRun)
    // When the manifest is stdout's content (for `> agent.yaml` or `| kubectl apply -f -`), the changes are
    // progress, on stderr.
    if (manifestOnStdout && !result.dryRun && !this.jsonEnabled()) process.stderr.write(redact(changes))
    else this.print(changes)
    if (result.agentManifest !== undefined && !result.dryRun) {
      const manifest = agentManifestYaml(result.agentManifest)
      // ksctl's manifest names the namespace on 3.x members too, where it exists: create would stop there.
      const verb = result.runtime === 'ksctl' ? 'apply' : 'create'
      if (flags.output === undefined) {
        // The manifest the user asked for, token included: as it is on stdout (this.print() would redact
        // it) and in --json.
        if (!this.jsonEnabled()) process.stdout.write(manifest)
        revealed(result.agentManifest)
        log.info(`apply it on the member: kubectl --context ${member.context} ${verb} -f <this output>`)
      } else {
        writePrivateFile(flags.output, manifest, '--output')
        log.info(
          `wrote the agent manifest to ${flags.output}, readable only by you: it holds the cluster's token`,
        )
        log.info(`apply it on the member: kubectl --context ${member.context} ${verb} -f ${flags.output}`)
        delete result.agentManifest
        result.agentFile = flags.output
      }
    }
    let resultsOnStderr = false
    if (flags.wait && !result.dryRun) {
      if (!flags.apply) {
        resultsOnStderr = manifestOnStdout && (await handOffStdout())
        log.info(`waiting for cluster "${name}" to become Ready: apply the agent on the member now`)
      }
      Object.assign(result, await followJoin(host, member, name, this.waitTimeoutMs))
    }
    // Once stdout is closed, the wait's own last line on stderr says the cluster is Ready.
    if (result.ready && !resultsOnStderr) this.print(`cluster "${name}" is Ready\n`)
    return result
  }
}
