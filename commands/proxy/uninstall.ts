import {Flags} from '@oclif/core'

import {ClusterCommand} from '../../src/cli/cluster-command.js'
import {contextFlag, dryRunFlag, yesFlag} from '../../src/cli/flags.js'
import {confirmOrFail} from '../../src/cli/prompts.js'
import {log} from '../../src/log.js'
import {uninstallProxy, type ProxyUninstallResult} from '../../src/proxy-install/uninstall.js'
import {renderUninstall} from '../../src/proxy-install/view.js'

export default class ProxyUninstall extends ClusterCommand<typeof ProxyUninstall> {
  static override summary = "Put Tower's proxy back on a host: undo `ksctl proxy install`."
  static override description = [
    "From the install's record (ConfigMap ksctl-tower-install): points Service tower at Tower's pods again, deletes ksctl's proxy and waits for its pods to stop, puts every mc-NAME Service back as it was (those ksctl's proxy made for later Clusters in Tower's form), scales Tower back, and deletes what the install made (Secrets that were there before stay), the record last.",
    "Members on ksctl's agent (which cannot reach Tower's proxy) first get Tower's agent again, through ksctl's tunnel, beside ksctl's; then the proxy is switched, and ksctl's agent is removed through Tower's tunnel. If a member cannot be given Tower's agent, nothing is switched and every member is left as it was. --force skips that: they lose their connection until joined again. A run that fails midway continues when run again.",
  ].join('\n\n')

  static override examples = [
    '<%= config.bin %> <%= command.id %> --context host',
    '<%= config.bin %> <%= command.id %> --context host --dry-run',
  ]

  static override flags = {
    context: contextFlag,
    force: Flags.boolean({
      description:
        "go back without moving members on ksctl's agent to Tower's first (for members whose tunnel does not work): they lose their connection until joined again with --runtime tower",
      default: false,
    }),
    'dry-run': dryRunFlag,
    yes: yesFlag,
  }

  async run(): Promise<ProxyUninstallResult> {
    const {flags} = this
    const result = await uninstallProxy(this.clients().forContext(flags.context), {
      dryRun: this.dryRunMode(),
      force: flags.force,
      confirm: (question) => confirmOrFail(question, flags.yes),
      waitTimeoutMs: this.waitTimeoutMs,
    })
    for (const note of result.notes) log.warn(note)
    this.print(renderUninstall(result))
    return result
  }
}
