import {Args, Flags} from '@oclif/core'

import {ClusterCommand} from '../src/cli/cluster-command.js'
import {hostContextFlag, memberContextFlag} from '../src/cli/flags.js'
import {styleFor} from '../src/cli/style.js'
import {ExitCode} from '../src/errors.js'
import {diagnose, type DoctorReport, type Finding} from '../src/kubesphere/doctor.js'
import {validateProxyClusterName} from '../src/kubesphere/names.js'
import {parseTunnelServer} from '../src/kubesphere/tunnel-probe.js'

export default class Doctor extends ClusterCommand<typeof Doctor> {
  static override summary = 'Explain why a member cluster does not join, or confirm that it is healthy.'
  static override description = [
    "Runs every check behind \"Waiting for the cluster to join\": the host's proxy address (and whether a tower proxy answers there), the Cluster's connection type and joinFederation, the agent on the member (present, available, the same token, name and proxy address as the host), jwtSecret fingerprints, the member's role, the Cluster's conditions, and the tunnel itself: a request to the member through the proxy (AgentAvailable alone stays True while an agent hangs).",
    'Each finding says what is wrong, why it matters and what fixes it. The last line says healthy only when every check was made and passed; a check that could not be made (no --member-context, a tunnel not reachable from here) is listed as skipped or as a warning. Exit 1 when a check fails, else 0.',
  ].join('\n\n')

  static override examples = [
    '<%= config.bin %> <%= command.id %> member1 --host-context host --member-context member1',
    '<%= config.bin %> <%= command.id %> member1 --host-context host --json',
    '<%= config.bin %> <%= command.id %> member1 --host-context host --member-context member1 --tunnel-server https://127.0.0.1:16443',
  ]

  static override args = {
    name: Args.string({description: 'the member cluster name on the host', required: true}),
  }

  static override flags = {
    'host-context': {...hostContextFlag, required: true},
    'member-context': memberContextFlag,
    'tunnel-server': Flags.string({
      description:
        "https URL at which this machine reaches the cluster's kubernetes front end on the proxy (default: the server of the Cluster's issued kubeconfig), e.g. a kubectl port-forward to service mc-NAME",
    }),
  }

  async run(): Promise<DoctorReport> {
    const name = validateProxyClusterName(this.args.name, 'NAME')
    const tunnel = this.flags['tunnel-server']
    const tunnelServer = tunnel === undefined ? undefined : parseTunnelServer(tunnel)
    const clients = this.clients()
    const host = clients.forContext(this.flags['host-context'], '--host-context')
    const member =
      this.flags['member-context'] === undefined
        ? undefined
        : clients.forContext(this.flags['member-context'], '--member-context')
    const report = await diagnose(host, member, name, {tunnelServer})
    this.print(renderReport(report))
    if (report.findings.some((finding) => finding.status === 'fail')) process.exitCode = ExitCode.Failure
    return report
  }
}

function renderReport(report: DoctorReport): string {
  const style = styleFor(process.stdout)
  const mark: Record<Finding['status'], string> = {
    ok: style.green('ok  '),
    warn: style.yellow('warn'),
    fail: style.red('FAIL'),
    skipped: style.dim('skip'),
  }
  const lines = report.findings.flatMap((finding) => [
    `${mark[finding.status]}  ${finding.check}: ${finding.message}`,
    ...(finding.why === undefined ? [] : [`      why: ${finding.why}`]),
    ...(finding.fix === undefined ? [] : [`      fix: ${finding.fix}`]),
  ])
  return [...lines, report.summary].join('\n') + '\n'
}
