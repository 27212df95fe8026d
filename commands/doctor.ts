import {Args} from '@oclif/core'

import {ClusterCommand} from '../src/cli/cluster-command.js'
import {hostContextFlag, memberContextFlag} from '../src/cli/flags.js'
import {styleFor} from '../src/cli/style.js'
import {ExitCode} from '../src/errors.js'
import {diagnose, type DoctorReport, type Finding} from '../src/kubesphere/doctor.js'
import {validateProxyClusterName} from '../src/kubesphere/names.js'

export default class Doctor extends ClusterCommand<typeof Doctor> {
  static override summary = 'Explain why a member cluster does not join, or confirm that it is healthy.'
  static override description = [
    "Runs every check behind \"Waiting for the cluster to join\": the host's proxy address (and whether it accepts connections from here), the Cluster's connection type and joinFederation, the agent on the member (present, available, the same token, name and proxy address as the host), jwtSecret fingerprints, the member's role, and the Cluster's conditions.",
    'Each finding says what is wrong, why it matters and what fixes it. Exit 0 when healthy, 1 when a check fails. Without --member-context the member checks are skipped.',
  ].join('\n\n')

  static override examples = [
    '<%= config.bin %> <%= command.id %> member1 --host-context host --member-context member1',
    '<%= config.bin %> <%= command.id %> member1 --host-context host --json',
  ]

  static override args = {
    name: Args.string({description: 'the member cluster name on the host', required: true}),
  }

  static override flags = {
    'host-context': {...hostContextFlag, required: true},
    'member-context': memberContextFlag,
  }

  async run(): Promise<DoctorReport> {
    const name = validateProxyClusterName(this.args.name, 'NAME')
    const clients = this.clients()
    const host = clients.forContext(this.flags['host-context'], '--host-context')
    const member =
      this.flags['member-context'] === undefined
        ? undefined
        : clients.forContext(this.flags['member-context'], '--member-context')
    const report = await diagnose(host, member, name)
    this.print(renderReport(report))
    if (!report.healthy) process.exitCode = ExitCode.Failure
    return report
  }
}

function renderReport(report: DoctorReport): string {
  const style = styleFor(process.stdout)
  const mark: Record<Finding['status'], string> = {
    ok: style.green('ok  '),
    warn: style.yellow('warn'),
    fail: style.red('FAIL'),
  }
  const lines = report.findings.flatMap((finding) => [
    `${mark[finding.status]}  ${finding.check}: ${finding.message}`,
    ...(finding.why === undefined ? [] : [`      why: ${finding.why}`]),
    ...(finding.fix === undefined ? [] : [`      fix: ${finding.fix}`]),
  ])
  const verdict = report.healthy
    ? `cluster "${report.name}" is healthy`
    : `cluster "${report.name}": ${report.findings.filter((f) => f.status === 'fail').length} check(s) failed`
  return [...lines, verdict].join('\n') + '\n'
}
