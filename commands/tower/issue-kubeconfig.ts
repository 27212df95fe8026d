import {Flags} from '@oclif/core'

import {BaseCommand} from '../../src/cli/base-command.js'
import {parseDuration} from '../../src/cli/duration.js'
import {invalidInput} from '../../src/errors.js'
import {writePrivateFile} from '../../src/private-file.js'
import {issueKubeconfig, loadProxyCa} from '../../src/tower/proxy/issue-kubeconfig.js'

export interface IssueKubeconfigResult {
  cluster: string
  server: string
  file: string | undefined
}

export default class TowerIssueKubeconfig extends BaseCommand<typeof TowerIssueKubeconfig> {
  static override summary = 'Issue a kubeconfig that reaches a member cluster through the tower proxy.'
  static override description = [
    "The kubeconfig holds a client certificate signed by the proxy CA (which the front ends require) and the proxy CA as the server's CA. It holds no member credential.",
    '--server is the path-routed front end (https://HOST:PORT/clusters/NAME, the default form) or a per-cluster port (https://HOST:PORT).',
  ].join('\n\n')

  static override examples = [
    '<%= config.bin %> <%= command.id %> --state-dir=/var/lib/ksctl-proxy --cluster=member1 --server=https://tower.example.com:6443/clusters/member1 -f member1.kubeconfig',
  ]

  static override flags = {
    cluster: Flags.string({description: 'member cluster name', required: true}),
    server: Flags.string({description: 'front-end URL the kubeconfig points at', required: true}),
    'ca-cert': Flags.string({description: 'proxy CA certificate'}),
    'ca-key': Flags.string({description: 'key of --ca-cert'}),
    'state-dir': Flags.string({description: "the proxy's --state-dir holding its CA"}),
    'common-name': Flags.string({description: 'subject of the client certificate', default: 'ksctl-admin'}),
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
    const validityMs = parseDuration(flags['kubeconfig-validity'], '--kubeconfig-validity')
    const ca = await loadProxyCa(
      {caCert: flags['ca-cert'], caKey: flags['ca-key'], stateDir: flags['state-dir']},
      false,
    )
    const text = await issueKubeconfig({
      ca,
      cluster: flags.cluster,
      server: flags.server,
      commonName: flags['common-name'],
      validityDays: validityMs / 86_400_000,
    })
    if (flags.file === undefined) this.printSecret(text)
    else writePrivateFile(flags.file, text, '--file')
    return {cluster: flags.cluster, server: flags.server, file: flags.file}
  }

  /** The kubeconfig is the requested output: printed as is (redaction would remove its client key). */
  private printSecret(text: string): void {
    if (!this.jsonEnabled()) process.stdout.write(text)
  }
}
