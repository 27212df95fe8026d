import {writeFileSync} from 'node:fs'

import {Args, Flags} from '@oclif/core'

import {ClusterCommand} from '../../src/cli/cluster-command.js'
import {renderChanges} from '../../src/cli/changes-view.js'
import {dryRunFlag, hostContextFlag, memberContextFlag} from '../../src/cli/flags.js'
import {parseLabels} from '../../src/cli/labels.js'
import {invalidInput} from '../../src/errors.js'
import {agentManifestYaml} from '../../src/kubesphere/agent-manifest.js'
import {memberJoin, type MemberJoinResult} from '../../src/kubesphere/member-join.js'
import {validateProxyClusterName} from '../../src/kubesphere/names.js'
import {log} from '../../src/log.js'

export type MemberJoinOutput = MemberJoinResult & {agentFile?: string}

export default class MemberJoin extends ClusterCommand<typeof MemberJoin> {
  static override summary = 'Join a member cluster to a host through the tower proxy (agent connection).'
  static override description = `Checks both clusters first (reachable, distinct, a host with a proxy address, a member that is
neither a host nor joined elsewhere, a free name, and your rights for every change), and holds a lock on
the host while it registers the member, so that it cannot be registered twice. Then: on KubeSphere 3.x
copies the host's jwtSecret into the member's ClusterConfiguration and sets its role to member; creates
the Cluster on the host; waits for the proxy to issue its token; and renders the agent, which it applies
to the member with --apply, or writes to --output FILE (mode 0600: it holds the token) or stdout. With
--wait it follows the Cluster until Ready. Safe to run again: it continues where it stopped and changes
nothing once done.`

  static override examples = [
    '<%= config.bin %> <%= command.id %> member1 --host-context host --member-context member1 --apply --wait',
    '<%= config.bin %> <%= command.id %> idc-beijing --host-context host --member-context idc --label cluster.kubesphere.io/group=production --output agent.yaml',
    '<%= config.bin %> <%= command.id %> member1 --host-context host --member-context member1 --apply --dry-run',
  ]

  static override args = {
    name: Args.string({
      description: 'cluster name on the host (lowercase letters, digits, "-"; at most 60)',
      required: true,
    }),
  }

  static override flags = {
    'host-context': {...hostContextFlag, required: true},
    'member-context': {...memberContextFlag, required: true},
    label: Flags.string({
      description: 'label of the Cluster, key=value (repeatable)',
      multiple: true,
      default: [],
    }),
    provider: Flags.string({description: 'provider shown in the console (e.g. "Aliyun ACK")'}),
    description: Flags.string({description: 'description shown in the console'}),
    creator: Flags.string({description: 'KubeSphere user recorded as the creator', default: 'admin'}),
    'proxy-address': Flags.string({
      description: "address agents dial instead of the host's published one, http(s)://host:port",
    }),
    'agent-image': Flags.string({description: "agent image (default: the host's configured agentImage)"}),
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
    wait: Flags.boolean({description: 'wait until the Cluster is Ready (within --timeout)', default: false}),
    'dry-run': dryRunFlag,
  }

  async run(): Promise<MemberJoinOutput> {
    const {flags} = this
    const name = validateProxyClusterName(this.args.name, 'NAME')
    const labels = parseLabels(flags.label)
    if (flags.wait && !flags.apply && this.dryRunMode() === false) {
      throw invalidInput(
        '--wait needs --apply: the agent must be running on the member before the cluster can join',
        ['add --apply, or apply the manifest yourself and follow the Cluster with: ksctl status'],
      )
    }
    const clients = this.clients()
    const host = clients.forContext(flags['host-context'], '--host-context')
    const member = clients.forContext(flags['member-context'], '--member-context')
    const result: MemberJoinOutput = await memberJoin(host, member, {
      name,
      labels,
      provider: flags.provider,
      description: flags.description,
      creator: flags.creator,
      proxyAddress: flags['proxy-address'],
      agentImage: flags['agent-image'],
      replicas: flags.replicas,
      apply: flags.apply,
      wait: flags.wait,
      dryRun: this.dryRunMode(),
      timeoutMs: this.timeoutMs,
    })
    for (const warning of result.warnings) log.warn(warning)
    this.print(renderChanges(result.changes, result.dryRun))
    if (result.agentManifest !== undefined && !result.dryRun) {
      const manifest = agentManifestYaml(result.agentManifest)
      if (flags.output === undefined) {
        // Not this.print(), which redacts: the token is part of the manifest the user asked for.
        if (!this.jsonEnabled()) process.stdout.write(manifest)
        log.info(`apply it on the member: kubectl --context ${member.context} create -f <this output>`)
      } else {
        writeFileSync(flags.output, manifest, {mode: 0o600})
        this.print(
          `wrote the agent manifest to ${flags.output} (it holds the cluster's token: keep it private)\n`,
        )
        this.print(`apply it on the member: kubectl --context ${member.context} create -f ${flags.output}\n`)
        delete result.agentManifest
        result.agentFile = flags.output
      }
    }
    if (result.ready) this.print(`cluster "${name}" is Ready\n`)
    return result
  }
}
