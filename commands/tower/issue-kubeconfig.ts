import {Flags} from '@oclif/core'

import {BaseCommand} from '../../src/cli/base-command.js'
import {parseDuration} from '../../src/cli/duration.js'
import {invalidInput} from '../../src/errors.js'
import {writePrivateFile} from '../../src/private-file.js'
import {defaultIdentity, issueKubeconfig, loadProxyCa} from '../../src/tower/proxy/issue-kubeconfig.js'
import {identityProblem} from '../../src/tower/shared/identity.js'

export interface IssueKubeconfigResult {
  cluster: string
  server: string
  user: string
  groups: string[]
  file: string | undefined
}

export default class TowerIssueKubeconfig extends BaseCommand<typeof TowerIssueKubeconfig> {
  static override summary = 'Issue a kubeconfig that reaches a member cluster through the tower proxy.'
  static override description = [
    "The kubeconfig holds a client certificate signed by the proxy CA (which the front ends require) and the proxy CA as the server's CA. It holds no member credential.",
    "The certificate is bound to --cluster: the proxy refuses it for any other cluster. It names --user and --group (its CN and O): the agent relays each request to the member as that identity (Kubernetes impersonation), so the member's RBAC must grant it what it may do, and its audit log shows it.",
    '--server is the path-routed front end (https://HOST:PORT/clusters/NAME, the default form) or a per-cluster port (https://HOST:PORT).',
  ].join('\n\n')

  static override examples = [
    '<%= config.bin %> <%= command.id %> --state-dir=/var/lib/ksctl-proxy --cluster=member1 --server=https://tower.example.com:6443/clusters/member1 --user=alice --group=dev -f member1.kubeconfig',
  ]

  static override flags = {
    cluster: Flags.string({description: 'member cluster name', required: true}),
    server: Flags.string({description: 'front-end URL the kubeconfig points at', required: true}),
    'ca-cert': Flags.string({description: 'proxy CA certificate'}),
    'ca-key': Flags.string({description: 'key of --ca-cert'}),
    'state-dir': Flags.string({description: "the proxy's --state-dir holding its CA"}),
    user: Flags.string({
      description: "the user the member sees (the certificate's CN)",
      default: defaultIdentity.user,
      aliases: ['common-name'],
      deprecateAliases: true,
    }),
    group: Flags.string({
      description: "a group the member sees (the certificate's O; repeatable)",
      multiple: true,
      default: [],
    }),
    'kubeconfig-validity': Flags.string({
      description: 'validity of the client certificate',
      default: '8760h',
    }),
    file: Flags.string({char: 'f', description: 'write the kubeconfig here (mode 0600) instead of stdout'}),
  }

  async run(): Promise<IssueKubeconfigResult> {
    const {flags} = this
    const url = URL.canParse(flags.server) ? new URL(flags.server) : undefined
    if (url?.protocol !== 'https:') throw invalidInput('--server must be an https:// URL of a front end')
    const routed = /^\/clusters\/([^/]+)\/?$/.exec(url.pathname)?.[1]
    if (routed !== undefined && routed !== flags.cluster) {
      throw invalidInput(
        `--server names cluster ${routed} but --cluster is ${flags.cluster}: the certificate is bound to --cluster, and the proxy would refuse it at ${flags.server}`,
        [`use --server ${url.origin}/clusters/${flags.cluster}`],
      )
    }
    const identity = {user: flags.user, groups: flags.group}
    const problem = identityProblem(identity)
    if (problem !== undefined) throw invalidInput(`--user ${JSON.stringify(flags.user)}, --group: ${problem}`)
    const validityMs = parseDuration(flags['kubeconfig-validity'], '--kubeconfig-validity')
    const ca = await loadProxyCa(
      {caCert: flags['ca-cert'], caKey: flags['ca-key'], stateDir: flags['state-dir']},
      false,
    )
    const text = await issueKubeconfig({
      ca,
      cluster: flags.cluster,
      server: flags.server,
      identity,
      validityDays: validityMs / 86_400_000,
    })
    if (flags.file === undefined) this.printSecret(text)
    else writePrivateFile(flags.file, text, '--file')
    return {cluster: flags.cluster, server: flags.server, ...identity, file: flags.file}
  }

  /** The kubeconfig is the requested output: printed as is (redaction would remove its client key). */
  private printSecret(text: string): void {
    if (!this.jsonEnabled()) process.stdout.write(text)
  }
}
