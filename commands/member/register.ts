import {Args, Flags} from '@oclif/core'

import {renderChanges} from '../../src/cli/changes-view.js'
import {ClusterCommand} from '../../src/cli/cluster-command.js'
import {formatDuration} from '../../src/cli/duration.js'
import {contextFlag, dryRunFlag} from '../../src/cli/flags.js'
import {invalidInput} from '../../src/errors.js'
import {PIN_PATTERN} from '../../src/join-token/exchange-client.js'
import {JOIN_WAIT_MS} from '../../src/kubesphere/join-wait.js'
import {
  followRegistration,
  memberRegister,
  type MemberRegisterResult,
} from '../../src/kubesphere/member-register.js'
import {validateProxyClusterName} from '../../src/kubesphere/names.js'
import {log} from '../../src/log.js'

export default class MemberRegister extends ClusterCommand<typeof MemberRegister> {
  static override summary =
    "Join this cluster to a host from the member's side, with the join token ksctl host invite printed."
  static override description = [
    "The member's half of a two-sided join: it needs only this cluster's kubeconfig. It connects to the host's proxy at --proxy and checks that the proxy holds the key --pin names before it sends anything; there it checks the join token, then checks this cluster (edition, role, not joined elsewhere) and your rights for every change. Only then is the token used (once) for the cluster's agent token, and on KubeSphere 3.x the host's jwtSecret, over that verified connection; then, as member join does on the member: on 3.x the jwtSecret and the member role in the ks-installer ClusterConfiguration, and the agent.",
    "A wrong pin, an unknown, expired, used, revoked or another cluster's token, or a member that cannot join: a clear error, and nothing changed here. --dry-run does not use the token.",
    `With --wait it follows the join until the host reports the cluster Ready, asking the proxy with the agent token (up to ${formatDuration(JOIN_WAIT_MS)}, or --timeout).`,
  ].join('\n\n')

  static override examples = [
    '<%= config.bin %> <%= command.id %> member1 --proxy https://203.0.113.10:8080 --pin sha256:4f1c… --token abcdef.ghijklmnopqrstuvwxyz234567 --wait',
    'KSCTL_JOIN_TOKEN=abcdef.ghijklmnopqrstuvwxyz234567 <%= config.bin %> <%= command.id %> member1 --context idc --proxy https://tower.example.com:8080 --pin sha256:4f1c…',
  ]

  static override args = {
    name: Args.string({description: 'the cluster name the host invited this cluster as', required: true}),
  }

  static override flags = {
    context: contextFlag,
    token: Flags.string({
      description: 'the join token, ID.SECRET (or $KSCTL_JOIN_TOKEN, which keeps it off the command line)',
      env: 'KSCTL_JOIN_TOKEN',
      required: true,
    }),
    proxy: Flags.string({
      description: "the host's proxy, https://host:port, as ksctl host invite printed it",
      required: true,
    }),
    pin: Flags.string({
      description: "sha256:<hex> of the proxy's key, as ksctl host invite printed it",
      required: true,
    }),
    'agent-image': Flags.string({description: "agent image (default: the edition's default)"}),
    replicas: Flags.integer({
      description: 'agent replicas; above 1 adds anti-affinity and a PodDisruptionBudget',
      min: 1,
    }),
    wait: Flags.boolean({
      description: `wait until the host reports the cluster Ready (up to ${formatDuration(JOIN_WAIT_MS)}, or --timeout)`,
      default: false,
    }),
    'dry-run': dryRunFlag,
  }

  async run(): Promise<MemberRegisterResult> {
    const {flags} = this
    const name = validateProxyClusterName(this.args.name, 'NAME')
    const proxy = {url: parseProxyUrl(flags.proxy), pin: parsePin(flags.pin)}
    const member = this.clients().forContext(flags.context)
    const {result, agentToken} = await memberRegister(member, {
      name,
      token: flags.token,
      proxy,
      agentImage: flags['agent-image'],
      replicas: flags.replicas,
      dryRun: this.dryRunMode(),
      requestTimeoutMs: this.timeoutMs,
    })
    for (const warning of result.warnings) log.warn(warning)
    this.print(renderChanges(result.changes, result.dryRun))
    if (flags.wait && agentToken !== undefined) {
      Object.assign(
        result,
        await followRegistration(proxy, name, agentToken, {
          requestTimeoutMs: this.timeoutMs,
          waitTimeoutMs: this.waitTimeoutMs,
        }),
      )
    }
    if (result.ready) this.print(`cluster "${name}" is Ready on the host\n`)
    else if (!result.dryRun && !flags.wait)
      log.info('the agent connects on its own; --wait follows it until Ready')
    return result
  }
}

function parseProxyUrl(text: string): URL {
  let url: URL
  try {
    url = new URL(text)
  } catch {
    throw invalidInput(`--proxy "${text}" is not a URL`, ['e.g. --proxy https://203.0.113.10:8080'])
  }
  if (url.protocol !== 'https:' || url.port === '' || (url.pathname !== '/' && url.pathname !== '')) {
    throw invalidInput(
      `--proxy "${text}" must be https://host:port: the proxy is verified by its key over TLS`,
      ['use the address ksctl host invite printed'],
    )
  }
  return new URL(url.origin)
}

function parsePin(text: string): string {
  const pin = text.trim().toLowerCase()
  if (!PIN_PATTERN.test(pin)) {
    throw invalidInput(`--pin "${text}" is not sha256:<64 hex digits>`, [
      'use the pin ksctl host invite printed',
    ])
  }
  return pin
}
