import type {V1Service} from '@kubernetes/client-node'

import {invalidInput, KsctlError, type ObjectRef} from '../errors.js'
import type {ClusterClient} from '../k8s/cluster-client.js'
import {PROXY_POD_SELECTOR} from '../tower/proxy/kubernetes/kubernetes-registry.js'
import {KUBESPHERE_NAMESPACE, TOWER_SERVICE_NAME} from './constants.js'
import {parseProxyAddress} from './proxy-address.js'

/** Whose tunnel a member's agent belongs to: ksctl's (`ksctl tower agent`) or KubeSphere's Tower. */
export const TUNNEL_RUNTIMES = ['ksctl', 'tower'] as const
export type TunnelRuntime = (typeof TUNNEL_RUNTIMES)[number]

/** What the host runs, and the evidence in words for the user. */
export interface HostRuntime {
  runtime: TunnelRuntime
  /** What the `tower` Service says, e.g. `service kubesphere-system/tower selects app=tower`. */
  evidence: string
}

/** The runtime a command renders the agent for, and why, for stderr. */
export interface RuntimeChoice {
  runtime: TunnelRuntime
  why: string
}

const towerService: ObjectRef = {
  resource: 'services',
  name: TOWER_SERVICE_NAME,
  namespace: KUBESPHERE_NAMESPACE,
}

/** Whether a `tower` Service selects ksctl's proxy: its selector is exactly {@link PROXY_POD_SELECTOR} (what `ksctl proxy install` sets). */
export function selectsKsctlProxy(service: V1Service | undefined): boolean {
  const selector = service?.spec?.selector ?? {}
  const wanted = Object.entries(PROXY_POD_SELECTOR)
  return (
    Object.keys(selector).length === wanted.length && wanted.every(([key, value]) => selector[key] === value)
  )
}

/** The runtime the host runs, read from its `tower` Service (members dial the proxy through it). */
export async function detectHostRuntime(host: ClusterClient): Promise<HostRuntime> {
  const service = await host.findService(KUBESPHERE_NAMESPACE, TOWER_SERVICE_NAME)
  const name = `service ${KUBESPHERE_NAMESPACE}/${TOWER_SERVICE_NAME}`
  if (service === undefined) return {runtime: 'tower', evidence: `the host has no ${name}`}
  const selector = Object.entries(service.spec?.selector ?? {})
    .map(([key, value]) => `${key}=${value}`)
    .join(',')
  const selects = selector === '' ? 'has no selector' : `selects ${selector}`
  return {runtime: selectsKsctlProxy(service) ? 'ksctl' : 'tower', evidence: `${name} ${selects}`}
}

/**
 * The runtime to render the agent for: what the host runs, or `requested` when it agrees. An agent of the other
 * runtime could never connect (Tower's proxy answers ksctl's agent with 404; ksctl's proxy refuses Tower's SSH
 * handshake), so a disagreement is an error, raised before anything is changed.
 */
export async function chooseRuntime(
  host: ClusterClient,
  requested: TunnelRuntime | undefined,
): Promise<RuntimeChoice> {
  const detected = await detectHostRuntime(host)
  const runs = detected.runtime === 'ksctl' ? "ksctl's proxy" : "Tower's proxy"
  if (requested === undefined) {
    return {runtime: detected.runtime, why: `the host runs ${runs}: ${detected.evidence}`}
  }
  if (requested === detected.runtime) {
    return {
      runtime: requested,
      why: `--runtime ${requested}, and the host runs ${runs}: ${detected.evidence}`,
    }
  }
  const context = host.context
  if (requested === 'ksctl') {
    throw new KsctlError(
      `--runtime ksctl: the host in context "${context}" runs Tower's proxy (${detected.evidence}), and ksctl's ` +
        "agent cannot connect to it (Tower's proxy answers its WebSocket with 404)",
      {
        code: 'PRECONDITION_FAILED',
        context,
        object: towerService,
        suggestions: [
          `install ksctl's proxy on the host first (it points the tower Service at itself): ksctl proxy install --context ${context}`,
          "or use Tower's agent, which this host runs: leave out --runtime, or --runtime tower",
        ],
      },
    )
  }
  throw new KsctlError(
    `--runtime tower: the host in context "${context}" runs ksctl's proxy (${detected.evidence}), and Tower's ` +
      'agent cannot connect to it (websocket: bad handshake)',
    {
      code: 'PRECONDITION_FAILED',
      context,
      object: towerService,
      suggestions: [
        "use ksctl's agent, which this host runs: leave out --runtime, or --runtime ksctl",
        `or put Tower's proxy back first: ksctl proxy uninstall --context ${context}`,
      ],
    },
  )
}

/** `--runtime`'s value, checked. */
export function parseRuntime(value: string | undefined): TunnelRuntime | undefined {
  if (value === undefined) return undefined
  if ((TUNNEL_RUNTIMES as readonly string[]).includes(value)) return value as TunnelRuntime
  throw invalidInput(`--runtime ${JSON.stringify(value)} must be ksctl or tower`, [
    "e.g. --runtime ksctl (ksctl's agent, for a host that runs ksctl's proxy)",
  ])
}

/**
 * The address ksctl's agent dials, from the published one: `wss://host:port`. KubeSphere publishes `http://` (a
 * LoadBalancer-derived address always is, kubesphere.md §5.4) because Tower's agent link is plain; ksctl's proxy
 * serves TLS on the same Service port, so only the scheme changes.
 */
export function ksctlProxyAddress(published: string, flag: string): string {
  const url = parseProxyAddress(published, flag)
  // The URL parser drops a scheme's default port, which is not wss's default for http://.
  const port = url.port === '' ? (url.protocol === 'https:' ? '443' : '80') : url.port
  return `wss://${url.hostname}:${port}`
}
