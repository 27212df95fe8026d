import {invalidInput} from '../errors.js'
import type {ClusterClient} from '../k8s/cluster-client.js'
import {
  defaultKsctlAgentImage,
  renderAgentManifest,
  renderKsctlAgentManifest,
  type ManifestObject,
  type ProxyTrust,
} from './agent-manifest.js'
import {trustFlagOf, type AgentRenderRequest} from './agent-input.js'
import {chooseRuntime, ksctlProxyAddress, type TunnelRuntime} from './agent-runtime.js'
import {readAgentSettings, readProxyTrust, type AgentSettings} from './agent-settings.js'

/** What `ksctl agent render` renders, and from what. */
export interface AgentRender {
  settings: AgentSettings
  runtime: TunnelRuntime
  /** Why this runtime, in words (stderr). */
  runtimeWhy: string
  /** The address the agent dials: the published one, for ksctl's agent as `wss://`. */
  agentAddress: string
  /** ksctl's agent: how it trusts the proxy. */
  trust?: ProxyTrust
  objects: ManifestObject[]
}

/**
 * Reads what the manifest needs (from the host, or from the request alone when it has the token) and renders it
 * for the runtime the host runs, or the one asked for when the host agrees.
 */
export async function planAgentRender(
  request: AgentRenderRequest,
  host: () => ClusterClient,
): Promise<AgentRender> {
  const {offline} = request
  let settings: AgentSettings
  let runtime: TunnelRuntime
  let runtimeWhy: string
  let trust: ProxyTrust | undefined
  if (offline !== undefined) {
    settings = offline
    runtime = request.runtime ?? 'tower'
    runtimeWhy =
      request.runtime === undefined
        ? "rendered from a token (--token), without reading the host: Tower's agent unless --runtime ksctl"
        : '--runtime ksctl, rendered from a token (--token), without reading the host'
    if (runtime === 'ksctl') trust = readProxyTrustOffline(request)
  } else {
    const client = host()
    ;({runtime, why: runtimeWhy} = await chooseRuntime(client, request.runtime))
    const given = trustFlagOf(request.trust)
    if (runtime === 'tower' && given !== undefined) {
      throw invalidInput(`${given} is for ksctl's agent, and ${runtimeWhy}`, [
        `leave out ${given}: Tower's agent dials the proxy without TLS`,
      ])
    }
    const image = request.overrides.image ?? (runtime === 'ksctl' ? defaultKsctlAgentImage() : undefined)
    settings = await readAgentSettings(client, request.clusterName, {...request.overrides, image})
    if (runtime === 'ksctl') trust = await readProxyTrust(client, request.trust)
  }
  const common = {
    clusterName: settings.clusterName,
    token: settings.token,
    image: settings.image,
    replicas: request.replicas,
    httpProxy: request.httpProxy,
    resources: request.resources,
  }
  if (trust === undefined) {
    return {
      settings,
      runtime,
      runtimeWhy,
      agentAddress: settings.proxyAddress,
      objects: renderAgentManifest({
        ...common,
        edition: settings.edition,
        proxyAddress: settings.proxyAddress,
      }),
    }
  }
  const agentAddress = ksctlProxyAddress(settings.proxyAddress, settings.proxyAddressSource)
  return {
    settings,
    runtime,
    runtimeWhy,
    agentAddress,
    trust,
    objects: renderKsctlAgentManifest({...common, proxyAddress: agentAddress, trust}),
  }
}

/** Rendering from a token, the request's own trust: agent-input has made sure there is one. */
function readProxyTrustOffline(request: AgentRenderRequest): ProxyTrust {
  if (request.trust.pin !== undefined) return {pin: request.trust.pin}
  if (request.trust.caPem !== undefined) return {caPem: request.trust.caPem}
  throw new Error('internal error: ksctl agent from a token without --proxy-ca or --proxy-pin')
}
