import {Flags} from '@oclif/core'

import {ClusterCommand} from '../../src/cli/cluster-command.js'
import {contextFlag, dryRunFlag, outputFlag, yesFlag} from '../../src/cli/flags.js'
import {confirmOrFail} from '../../src/cli/prompts.js'
import {log} from '../../src/log.js'
import {installProxy, type ProxyInstallResult} from '../../src/proxy-install/install.js'
import {renderInstall, renderObjects} from '../../src/proxy-install/view.js'

export default class ProxyInstall extends ClusterCommand<typeof ProxyInstall> {
  static override summary = "Run ksctl's tunnel proxy on a KubeSphere host in the place of Tower's."
  static override description = [
    "Makes ServiceAccount, RBAC (only what the proxy's Kubernetes mode calls), the proxy CA and serving key (Secrets ksctl-tower-ca and ksctl-tower-serving) and Deployment ksctl-tower-proxy in kubesphere-system, scales Tower's Deployment tower to 0, and points Service tower at ksctl's proxy, keeping its name, type, ports and address: proxyPublishAddress and `proxy set-address` still hold. What was there is recorded in ConfigMap ksctl-tower-install for `ksctl proxy uninstall`.",
    "Members on Tower's agent (which cannot reach ksctl's proxy) first get ksctl's agent, through Tower's tunnel, beside Tower's; then the proxy is switched, and Tower's agent is removed through ksctl's tunnel. If a member cannot be given ksctl's agent, nothing is switched and the install is undone. -o yaml refuses such members: it cannot move them. A step that fails undoes the ones before it. Run it again to repair what a ks-installer run or a Helm upgrade of the tower extension changed back; --dry-run shows that drift.",
    '-o yaml (or json) prints the objects for GitOps and applies nothing; the Secrets are left out (they hold keys). The design: docs/deployment.md, "Replacing Tower\'s proxy".',
  ].join('\n\n')

  static override examples = [
    '<%= config.bin %> <%= command.id %> --context host --image registry.example.com/ksctl:0.1.0',
    '<%= config.bin %> <%= command.id %> --context host --image registry.example.com/ksctl:0.1.0 --dry-run',
    '<%= config.bin %> <%= command.id %> --context host --image registry.example.com/ksctl:0.1.0 -o yaml > ksctl-proxy.yaml',
  ]

  static override flags = {
    context: contextFlag,
    image: Flags.string({
      description:
        "ksctl's image, as your registry serves it (default: the installed one, else ksctl:<version>)",
    }),
    'server-name': Flags.string({
      description:
        "another DNS name or IP agents use for the proxy, for its certificate (repeatable; the tower Service's names and the published address are always in it)",
      multiple: true,
      default: [],
    }),
    output: outputFlag,
    'dry-run': dryRunFlag,
    yes: yesFlag,
  }

  async run(): Promise<ProxyInstallResult> {
    const {flags} = this
    const result = await installProxy(this.clients().forContext(flags.context), {
      image: flags.image,
      serverNames: flags['server-name'],
      dryRun: this.dryRunMode(),
      renderOnly: flags.output !== 'text',
      confirm: (question) => confirmOrFail(question, flags.yes),
      waitTimeoutMs: this.waitTimeoutMs,
    })
    for (const omitted of result.omitted ?? []) log.info(`not printed: ${omitted}`)
    for (const note of result.notes) log.info(`note: ${note}`)
    if (flags.output !== 'text') this.print(renderObjects(result.objects ?? [], flags.output))
    else this.print(renderInstall(result))
    return result
  }
}
