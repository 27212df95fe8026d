import https from 'node:https'
import {checkServerIdentity, createSecureContext, type PeerCertificate, type TLSSocket} from 'node:tls'

import {KubeConfig} from '@kubernetes/client-node'

import {invalidInput} from '../errors.js'
import {kubectl} from '../k8s/kubectl.js'
import {redact, redactor} from '../redact.js'
import {KUBESPHERE_NAMESPACE} from './constants.js'

/** How a request to the member through the proxy went. */
export type TunnelProbe =
  /** The member's kube-apiserver answered `/version`. */
  | {kind: 'answered'; via: string; kubernetesVersion: string; ms: number}
  /** The request reached the proxy, which did not bring the member's answer. */
  | {kind: 'broken'; via: string; reason: string}
  /** No way from here reached the proxy: each way tried, and why it did not. */
  | {kind: 'unchecked'; reasons: string[]}

export interface TunnelProbeTarget {
  name: string
  /** `spec.connection.kubeconfig` of the Cluster (base64), which the proxy issued for the host's clients. */
  issuedKubeconfig: string | undefined
  /** Where this machine reaches the proxy's kubernetes front end, instead of the issued kubeconfig's server. */
  server?: string | undefined
  /** The host's kubeconfig, for the kube-apiserver's service proxy to Service mc-NAME. */
  host: KubeConfig
  timeoutMs: number
}

/**
 * Sends `GET /version` to the member through the proxy, the way the host's controllers reach it, to prove the
 * tunnel: the proxy reports AgentAvailable until an agent's connection closes, so a hung or partitioned agent
 * keeps it True (TOWER v0.2.1 pkg/proxy/proxy.go: Update runs when the SSH connection ends).
 *
 * First with the Cluster's issued kubeconfig (its client certificate, its CA), at its server or at `server`.
 * Its server is Service mc-NAME's ClusterIP, which a machine outside the host's network does not reach; then
 * through the host kube-apiserver's service proxy to mc-NAME, which Tower serves (its front end adds the agent's
 * credential to any request) but ksctl's proxy refuses (it requires the issued client certificate).
 * Only a request that reached the proxy (a verified TLS session with it) and got no answer, or a wrong one,
 * counts as broken; anything short of that is unchecked, with the reason.
 */
export async function probeTunnel(target: TunnelProbeTarget): Promise<TunnelProbe> {
  const reasons: string[] = []
  const issued = readIssuedKubeconfig(target.issuedKubeconfig)
  if (typeof issued === 'string') {
    reasons.push(issued)
  } else {
    const server = target.server ?? issued.server
    const via = `the issued kubeconfig at ${server}`
    const answer = await getVersion(
      new URL('/version', server),
      issued.config,
      target.timeoutMs,
      issued.server,
    )
    const judged = judge(answer, via)
    if (judged !== undefined) return judged
    reasons.push(`${via}: ${unreachableReason(answer)}`)
  }
  if (target.server === undefined) {
    const hostServer = target.host.getCurrentCluster()?.server ?? ''
    const path = `/api/v1/namespaces/${KUBESPHERE_NAMESPACE}/services/https:mc-${target.name}:kubernetes/proxy/version`
    const via = `the host kube-apiserver's service proxy to ${KUBESPHERE_NAMESPACE}/mc-${target.name}`
    const answer = await getVersion(new URL(path, hostServer), target.host, target.timeoutMs)
    if (answer.kind === 'no-answer') {
      return {
        kind: 'broken',
        via,
        reason:
          `${answer.reason} (the host kube-apiserver forwards to the tower pod, which waits for the agent; ` +
          'or it cannot reach the tower pod)',
      }
    }
    const judged = answer.kind === 'response' && answer.status === 200 ? judge(answer, via) : undefined
    if (judged !== undefined) return judged
    // The kube-apiserver answers itself when it cannot forward: no endpoints, forbidden, the proxy refused it.
    const why = answer.kind === 'response' ? `HTTP ${answer.status}: ${answer.message}` : answer.reason
    reasons.push(`${via}: ${why}`)
  }
  return {kind: 'unchecked', reasons}
}

/** `--tunnel-server`: https://host:port, nothing else (the probe adds the path). */
export function parseTunnelServer(text: string): string {
  let url: URL | undefined
  try {
    url = new URL(text)
  } catch {
    url = undefined
  }
  if (url?.protocol !== 'https:' || url.pathname !== '/' || url.search !== '' || url.username !== '') {
    throw invalidInput(`--tunnel-server "${text}" must be https://host:port`, [
      `e.g. --tunnel-server https://127.0.0.1:16443 after ${kubectl('<host-context>', `-n ${KUBESPHERE_NAMESPACE} port-forward service/mc-NAME 16443:6443`)}`,
    ])
  }
  return url.origin
}

type Answer =
  | {kind: 'response'; status: number; message: string; body: string; ms: number}
  /** The TLS session with the server was up, then the answer did not come (in time, or at all). */
  | {kind: 'no-answer'; reason: string}
  /** The server was not reached: refused, unroutable, timed out, or a certificate that is not the server's. */
  | {kind: 'unreached'; reason: string}

function judge(answer: Answer, via: string): TunnelProbe | undefined {
  if (answer.kind === 'unreached') return undefined
  if (answer.kind === 'no-answer') return {kind: 'broken', via, reason: answer.reason}
  const gitVersion = answer.status === 200 ? versionOf(answer.body) : undefined
  if (gitVersion !== undefined) return {kind: 'answered', via, kubernetesVersion: gitVersion, ms: answer.ms}
  return {kind: 'broken', via, reason: `the proxy answered HTTP ${answer.status}: ${answer.message}`}
}

function unreachableReason(answer: Answer): string {
  return answer.kind === 'response' ? `HTTP ${answer.status}` : answer.reason
}

function readIssuedKubeconfig(base64: string | undefined): {config: KubeConfig; server: string} | string {
  if (base64 === undefined || base64 === '')
    return 'the Cluster has no issued kubeconfig (spec.connection.kubeconfig)'
  const config = new KubeConfig()
  try {
    config.loadFromString(Buffer.from(base64, 'base64').toString('utf8'))
  } catch {
    return "the Cluster's issued kubeconfig (spec.connection.kubeconfig) cannot be read"
  }
  for (const user of config.users) redactor.register(user.keyData)
  const server = config.getCurrentCluster()?.server
  if (server === undefined || !/^https:\/\//.test(server)) {
    return "the Cluster's issued kubeconfig (spec.connection.kubeconfig) names no https server"
  }
  return {config, server}
}

/**
 * `GET url` with the credentials of `config`, within `timeoutMs`. The server's certificate must chain to the
 * kubeconfig's CA and name the host dialed or, when another address stands in for it, `expectedServer`'s host.
 */
async function getVersion(
  url: URL,
  config: KubeConfig,
  timeoutMs: number,
  expectedServer?: string,
): Promise<Answer> {
  const options: https.RequestOptions = {}
  try {
    await config.applyToHTTPSOptions(options)
    // Node reads keys and certificates only when a request builds its TLS context, and throws there.
    createSecureContext(options)
  } catch (error) {
    return {
      kind: 'unreached',
      reason: `its credentials cannot be used: ${redact(error instanceof Error ? error.message : String(error))}`,
    }
  }
  const expectedHost =
    expectedServer === undefined ? undefined : new URL(expectedServer).hostname.replace(/^\[|\]$/g, '')
  const started = performance.now()
  return new Promise((resolve) => {
    let secured = false
    let settled = false
    const settle = (answer: Answer): void => {
      if (settled) return
      settled = true
      request.destroy()
      resolve(answer)
    }
    const request = https.request(url, {
      ...options,
      agent: false,
      method: 'GET',
      headers: {...options.headers, Accept: 'application/json'},
      signal: AbortSignal.timeout(timeoutMs),
      checkServerIdentity: (host: string, certificate: PeerCertificate) => {
        const mismatch = checkServerIdentity(host, certificate)
        return mismatch === undefined || expectedHost === undefined
          ? mismatch
          : checkServerIdentity(expectedHost, certificate)
      },
    })
    request.once('socket', (socket: TLSSocket) => socket.once('secureConnect', () => (secured = true)))
    request.once('response', (response) => {
      let body = ''
      response.setEncoding('utf8')
      response.on('data', (chunk: string) => {
        if (body.length < 64 * 1024) body += chunk
      })
      response.once('end', () =>
        settle({
          kind: 'response',
          status: response.statusCode ?? 0,
          message: messageOf(body),
          body,
          ms: Math.round(performance.now() - started),
        }),
      )
      response.once('error', (error) => settle(failure(error, true, timeoutMs)))
      response.once('close', () => settle(failure(new Error('closed'), true, timeoutMs)))
    })
    request.once('error', (error) => settle(failure(error, secured, timeoutMs)))
    request.end()
  })
}

function failure(error: Error & {code?: string}, secured: boolean, timeoutMs: number): Answer {
  const timedOut = error.name === 'AbortError' || error.name === 'TimeoutError'
  if (secured) {
    return {
      kind: 'no-answer',
      reason: timedOut
        ? `no answer within ${timeoutMs / 1000}s`
        : `the connection ended without an answer (${error.code ?? error.message})`,
    }
  }
  if (timedOut) return {kind: 'unreached', reason: `no TLS session within ${timeoutMs / 1000}s`}
  const code = error.code ?? ''
  if (/CERT|SIGNATURE|ALTNAME|ISSUER/.test(code)) {
    return {
      kind: 'unreached',
      reason: `its certificate is not from the kubeconfig's CA (${code}): something else answers there`,
    }
  }
  return {kind: 'unreached', reason: code === '' ? error.message : code}
}

/** A Kubernetes Status's message, else the first line of the body, short and redacted. */
function messageOf(body: string): string {
  try {
    const status = JSON.parse(body) as {kind?: string; message?: string}
    if (status.kind === 'Status' && typeof status.message === 'string')
      return redact(status.message.slice(0, 300))
  } catch {
    // not JSON: a proxy's plain-text answer
  }
  return redact((body.split('\n')[0] ?? '').slice(0, 300))
}

function versionOf(body: string): string | undefined {
  try {
    const version = (JSON.parse(body) as {gitVersion?: unknown}).gitVersion
    return typeof version === 'string' ? version : undefined
  } catch {
    return undefined
  }
}
