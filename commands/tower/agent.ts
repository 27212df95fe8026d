import {readFile} from 'node:fs/promises'

import {Flags} from '@oclif/core'

import {BaseCommand} from '../../src/cli/base-command.js'
import {parseDuration} from '../../src/cli/duration.js'
import {invalidInput, usageError} from '../../src/errors.js'
import {log} from '../../src/log.js'
import {redactor} from '../../src/redact.js'
import {checkPlainLink, normalizeProxyUrl, TowerAgent} from '../../src/tower/agent/agent.js'
import {egressProxyFor} from '../../src/tower/agent/egress-proxy.js'
import {
  buildDestinations,
  defaultServiceAccountDir,
  kubeconfigCredentials,
  parseAllowFlags,
  serviceAccountCredentials,
} from '../../src/tower/agent/agent-dial.js'
import {OpsServer} from '../../src/tower/shared/health.js'
import {defaultKeepalive, parseKeepalive} from '../../src/tower/shared/keepalive.js'
import {TowerMetrics} from '../../src/tower/shared/metrics.js'
import {parseHostPort} from '../../src/tower/shared/net.js'
import {exitOnEscapedError, runUntilSignalled} from '../../src/tower/shared/signals.js'

export default class TowerAgentCommand extends BaseCommand<typeof TowerAgentCommand> {
  static override summary = 'Run the tunnel agent in a member cluster: dial the proxy, serve its streams.'
  static override description = [
    "Takes Tower's agent flags and defaults, so a rendered agent manifest can run it unchanged.",
    "It connects out to --proxy-server over WebSocket (wss:// verified by --proxy-ca or --proxy-pin; plain ws:// for an http:// address only with --insecure-plain, which the proxy needs too), and dials only its own destinations: kubernetes (with the member's credentials, which never leave the member), kubesphere, and the --allow names.",
    "Each request to kubernetes runs on the member as the client the proxy verified (the user and groups of its certificate, by Kubernetes impersonation), never as the agent's own account: the agent's service account needs only impersonate on users and groups.",
    'It honours HTTPS_PROXY (for wss://), HTTP_PROXY (for ws://), ALL_PROXY and NO_PROXY: through an http:// proxy it tunnels with CONNECT and still verifies the tower proxy itself before sending its token.',
    'With --token-file it reads the token again every --token-check-interval while connected: a rotated token is handed over to without a break (a new session with it takes the new requests, and the previous one serves its open streams, kubectl watches included, for up to --token-handover-grace). A token the proxy refuses leaves the tunnel on the previous one, and the handover is tried again at the next check.',
    'It reconnects for ever with backoff (unless --max-retry); SIGHUP retries now (or checks the token, when connected); SIGTERM drains open streams, then exits. Long-running: there is no --json result.',
  ].join('\n\n')

  // A long-running process has no result document; its logs (--log-format json) are the machine interface.
  static override enableJsonFlag = false

  static override examples = [
    '<%= config.bin %> <%= command.id %> --name=member1 --token-file=/etc/ksctl/token --proxy-server=https://tower.example.com:8080 --proxy-ca=/etc/ksctl/ca.crt',
  ]

  static override flags = {
    name: Flags.string({description: 'name of this member cluster on the host', required: true}),
    token: Flags.string({
      description: 'tunnel token (prefer --token-file: a flag shows in the process list)',
    }),
    'token-file': Flags.string({
      description: 'file holding the tunnel token, re-read before every connection and while connected',
    }),
    'token-check-interval': Flags.string({
      description:
        'with --token-file: how often a connected agent reads the token again, to hand over to a rotated one',
      default: '10s',
    }),
    'token-handover-grace': Flags.string({
      description:
        'after a handover to a rotated token, how long the previous session may still serve its open streams (watches)',
      default: '1h',
    }),
    'proxy-server': Flags.string({
      description: 'address of the tower proxy (http→ws, https→wss; port defaults to 80/443)',
      default: 'http://127.0.0.1:8080',
    }),
    'proxy-ca': Flags.string({description: 'PEM file of the CA that signed the proxy certificate'}),
    'proxy-pin': Flags.string({description: 'sha256:<hex> of the proxy certificate public key (SPKI)'}),
    'insecure-plain': Flags.boolean({
      description:
        'take an http:// --proxy-server: plain ws://, token and requests unencrypted (the proxy needs --insecure-plain too)',
      default: false,
    }),
    keepalive: Flags.string({
      description: 'interval of tunnel pings; a link silent for three intervals is dead',
      default: defaultKeepalive,
    }),
    'kubernetes-service': Flags.string({
      description: 'the member kube-apiserver, host[:port] (port 443), without --kubeconfig',
      default: 'kubernetes.default.svc',
    }),
    'kubesphere-service': Flags.string({
      description: 'the member ks-apiserver, host[:port] (port 80)',
      default: 'ks-apiserver.kubesphere-system.svc',
    }),
    'service-account-dir': Flags.string({
      description: 'directory with the service-account token and ca.crt (re-read for every stream)',
      default: defaultServiceAccountDir,
    }),
    context: Flags.string({
      description: 'kubeconfig context whose credentials reach the member (with --kubeconfig)',
    }),
    allow: Flags.string({
      description:
        'another destination, NAME=host:port (repeatable); host clients reach it at /clusters/CLUSTER/destinations/NAME/',
      multiple: true,
      default: [],
    }),
    'max-retry': Flags.integer({
      description: 'give up when the first attempt and this many retries failed in a row (0: retry for ever)',
      default: 0,
      min: 0,
    }),
    'max-retry-interval': Flags.string({
      description: 'longest wait between attempts, a Retry-After from the proxy included',
      default: '2m',
    }),
    'grace-period': Flags.string({
      description: 'on SIGTERM, how long open streams may finish',
      default: '30s',
    }),
    'metrics-address': Flags.string({description: 'host:port for /healthz, /readyz and /metrics'}),
    v: Flags.integer({description: "Tower's klog verbosity: 0-3 info, 4 and more debug", min: 0}),
  }

  async run(): Promise<void> {
    const {flags} = this
    if (flags.v !== undefined) log.configure(flags.v >= 4 ? 'debug' : 'info')
    exitOnEscapedError(log)
    redactor.register(flags.token)
    const token = tokenSource(flags.token, flags['token-file'])
    const proxyUrl = normalizeProxyUrl(flags['proxy-server'])
    checkPlainLink(proxyUrl, flags['insecure-plain'])
    const egressProxy = egressProxyFor(proxyUrl)
    if (
      proxyUrl.protocol === 'ws:' &&
      (flags['proxy-ca'] !== undefined || flags['proxy-pin'] !== undefined)
    ) {
      throw usageError('--proxy-ca and --proxy-pin need an https:// --proxy-server')
    }
    const pin = flags['proxy-pin']
    if (pin !== undefined && !/^sha256:[0-9a-f]{64}$/.test(pin)) {
      throw invalidInput('--proxy-pin must be sha256: followed by 64 lowercase hex digits')
    }
    const agentLog = log.child({component: 'agent', cluster: flags.name})
    const destinations = buildDestinations({
      cluster: flags.name,
      log: agentLog,
      kubernetes:
        flags.kubeconfig === undefined
          ? serviceAccountCredentials(flags['kubernetes-service'], flags['service-account-dir'])
          : await kubeconfigCredentials(flags.kubeconfig, flags.context),
      kubesphere: parseHostPort(flags['kubesphere-service'], 80, '--kubesphere-service'),
      allowed: parseAllowFlags(flags.allow),
    })
    const metrics = new TowerMetrics()
    const agent = new TowerAgent({
      name: flags.name,
      token,
      proxyUrl,
      insecurePlain: flags['insecure-plain'],
      ...(flags['proxy-ca'] !== undefined && {proxyCa: await readFile(flags['proxy-ca'], 'utf8')}),
      ...(pin !== undefined && {proxyPin: pin}),
      ...(egressProxy !== undefined && {egressProxy}),
      keepaliveMs: parseKeepalive(flags.keepalive),
      maxRetry: flags['max-retry'],
      maxRetryIntervalMs: parseDuration(flags['max-retry-interval'], '--max-retry-interval'),
      goAwayGraceMs: parseDuration(flags['grace-period'], '--grace-period'),
      tokenCheckMs: boundedDuration(flags['token-check-interval'], '--token-check-interval'),
      handoverGraceMs: boundedDuration(flags['token-handover-grace'], '--token-handover-grace'),
      destinations,
      log: agentLog,
      metrics,
    })
    const ops =
      flags['metrics-address'] === undefined
        ? undefined
        : await OpsServer.start({address: flags['metrics-address'], metrics, ready: () => agent.ready})
    try {
      await runUntilSignalled(
        agent.start(),
        async () => {
          agentLog.info('stopping: draining open streams')
          await agent.stop()
        },
        () => {
          agentLog.info(agent.ready ? 'SIGHUP: checking the token now' : 'SIGHUP: reconnecting now')
          agent.retryNow()
        },
      )
    } finally {
      await ops?.close()
    }
  }
}

/** The longest wait a timer takes (about 24.8 days). */
const maxTimerMs = 2 ** 31 - 1

/** A duration from a second to what a timer can wait: shorter would spin, longer would fire at once. */
function boundedDuration(text: string, flag: string): number {
  const ms = parseDuration(text, flag)
  if (ms < 1000 || ms > maxTimerMs) {
    throw invalidInput(`${flag} "${text}" must be from 1s to 596h`, [`e.g. ${flag}=10s or ${flag}=1h`])
  }
  return ms
}

function tokenSource(token: string | undefined, tokenFile: string | undefined): () => Promise<string> {
  if ((token === undefined) === (tokenFile === undefined))
    throw usageError('give exactly one of --token and --token-file')
  if (token !== undefined) return () => Promise.resolve(token)
  return async () => {
    const text = (await readFile(tokenFile ?? '', 'utf8')).trim()
    redactor.register(text)
    return text
  }
}
