import {Args, Flags} from '@oclif/core'

import {ClusterCommand} from '../../src/cli/cluster-command.js'
import {dryRunFlag, hostContextFlag, memberContextFlag, yesFlag} from '../../src/cli/flags.js'
import {confirmOrFail} from '../../src/cli/prompts.js'
import {memberLeave, type MemberLeaveResult} from '../../src/kubesphere/member-leave.js'
import {renderMemberLeave} from '../../src/kubesphere/member-leave-view.js'

export default class MemberLeave extends ClusterCommand<typeof MemberLeave> {
  static override summary =
    'Remove a member cluster from its host: its agent, its Cluster, and its member role.'
  static override description = [
    "Checks first that the host's Cluster NAME stands for the member (by the member's kube-system UID) and is not the host's own, that you may make every change, and that KubeSphere will be able to finish deleting the Cluster.",
    "Then, after confirmation: deletes the Cluster on the host and waits until KubeSphere has let it go (its controller reaches the member through the agent), then deletes the agent on the member, Deployment first: Tower's (Deployment cluster-agent, and on KubeSphere 4.x its ServiceAccount and ClusterRoleBinding tower), ksctl's (Deployment ksctl-tower-agent and every other object its manifest made: its token Secret, proxy CA ConfigMap, ServiceAccount and RBAC; only objects labelled app.kubernetes.io/managed-by=ksctl), or both during a runtime migration; never the kubesphere-system Namespace; then on 3.x sets the member's clusterRole back to none (its jwtSecret stays) and on 4.x removes the annotations that name the host from the member's kubesphere-system Namespace.",
    'Safe to run again: what is gone is reported as already removed. Without a terminal, --yes is required.',
  ].join('\n\n')

  static override examples = [
    '<%= config.bin %> <%= command.id %> member1 --host-context host --member-context member1',
    '<%= config.bin %> <%= command.id %> member1 --host-context host --member-context member1 --dry-run',
    '<%= config.bin %> <%= command.id %> member1 --host-context host --member-context member1 --yes --force',
  ]

  static override args = {
    name: Args.string({description: "the member's Cluster name on the host", required: true}),
  }

  static override flags = {
    'host-context': {...hostContextFlag, required: true},
    'member-context': {...memberContextFlag, required: true},
    force: Flags.boolean({
      description:
        "when the member cannot be reached: remove the host's Cluster anyway (unchecked) and say what the member keeps",
      default: false,
    }),
    yes: yesFlag,
    'dry-run': dryRunFlag,
  }

  async run(): Promise<MemberLeaveResult> {
    const {flags} = this
    const clients = this.clients()
    const result = await memberLeave(
      clients.forContext(flags['host-context'], '--host-context'),
      clients.forContext(flags['member-context'], '--member-context'),
      {
        name: this.args.name,
        dryRun: this.dryRunMode(),
        waitTimeoutMs: this.waitTimeoutMs,
        force: flags.force,
        confirm: (question) => confirmOrFail(question, flags.yes),
      },
    )
    this.print(renderMemberLeave(result))
    return result
  }
}
