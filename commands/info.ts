import {ClusterCommand} from '../src/cli/cluster-command.js'
import {contextFlag, outputFlag} from '../src/cli/flags.js'
import {renderStructured} from '../src/cli/output.js'
import {detectKubeSphere, type KubeSphereInfo} from '../src/kubesphere/detect.js'
import {renderInfo} from '../src/kubesphere/info-view.js'

export default class Info extends ClusterCommand<typeof Info> {
  static override summary =
    'Show what KubeSphere runs behind a kubeconfig context, and its multi-cluster setup.'
  static override description =
    'Detects KubeSphere 3.x (ks-installer) or 4.x (ks-core), its version, the multi-cluster role (host, member or none), the host cluster name, the tower proxy Service and the proxy address members are told to dial. A cluster without KubeSphere is reported as such (exit 0).'

  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --context host --json',
  ]

  static override flags = {context: contextFlag, output: outputFlag}

  async run(): Promise<KubeSphereInfo> {
    const info = await detectKubeSphere(this.clients().forContext(this.flags.context))
    this.print(this.flags.output === 'text' ? renderInfo(info) : renderStructured(info, this.flags.output))
    return info
  }
}
