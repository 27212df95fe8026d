import {createHash, type X509Certificate} from 'node:crypto'
import http from 'node:http'
import net from 'node:net'
import tls from 'node:tls'

import {KsctlError} from '../errors.js'
import {isJoinErrorCode, type JoinErrorCode} from './exchange-protocol.js'

/** The proxy as the member knows it: the address it was given and the pin of the key it must present. */
export interface PinnedProxy {
  /** `https://host:port`. */
  url: URL
  /** `sha256:<hex>` of the serving key's SubjectPublicKeyInfo. */
  pin: string
}

export const PIN_PATTERN = /^sha256:[0-9a-f]{64}$/

/** A refusal by the proxy, with the code JOIN-EXCHANGE.md gives it. */
export class JoinExchangeRefusal extends Error {
  override readonly name = 'JoinExchangeRefusal'
  constructor(
    readonly code: JoinErrorCode,
    message: string,
    readonly status: number,
    readonly retryAfterMs: number | undefined,
  ) {
    super(message)
  }
}

/** `sha256:<hex>` of a certificate's public key (SPKI, DER), as `--pin` and the proxy's logs write it. */
export function spkiPin(certificate: X509Certificate): string {
  return `sha256:${createHash('sha256')
    .update(certificate.publicKey.export({type: 'spki', format: 'der'}))
    .digest('hex')}`
}

/**
 * One HTTPS request to the proxy, sent only once the proxy proved it holds the pinned key: the TLS handshake
 * completes, the certificate's public key is compared with the pin, and only then is the request (which
 * carries a join token or an agent token) written. The certificate chain is not verified: the pin is the
 * proxy's identity, as kubeadm's discovery-token-ca-cert-hash is. Resolves with the status and JSON body of a
 * 2xx answer; a refusal rejects with {@link JoinExchangeRefusal}, anything else with a KsctlError.
 */
export async function pinnedRequest(
  proxy: PinnedProxy,
  request: {method: 'GET' | 'POST'; path: string; headers?: Record<string, string>; body?: object},
  timeoutMs: number,
): Promise<unknown> {
  const socket = await verifiedSocket(proxy, timeoutMs)
  const body = request.body === undefined ? undefined : JSON.stringify(request.body)
  return new Promise((resolve, reject) => {
    const outgoing = http.request(
      {
        method: request.method,
        host: proxy.url.hostname,
        port: proxy.url.port,
        path: request.path,
        headers: {
          accept: 'application/json',
          ...(body !== undefined && {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
          }),
          ...request.headers,
        },
        createConnection: () => socket,
        ...(timeoutMs > 0 && {timeout: timeoutMs}),
      },
      (response) => {
        const chunks: Buffer[] = []
        response.on('data', (chunk: Buffer) => chunks.push(chunk))
        response.on('error', (error) => reject(unreachable(proxy, error)))
        response.on('end', () => {
          socket.destroy()
          try {
            resolve(answer(proxy, response, Buffer.concat(chunks).toString('utf8')))
          } catch (error) {
            reject(error instanceof Error ? error : new Error(String(error)))
          }
        })
      },
    )
    outgoing.on('timeout', () => outgoing.destroy(timedOut(proxy, timeoutMs)))
    outgoing.on('error', (error) => reject(error instanceof KsctlError ? error : unreachable(proxy, error)))
    outgoing.end(body)
  })
}

function answer(proxy: PinnedProxy, response: http.IncomingMessage, text: string): unknown {
  const status = response.statusCode ?? 0
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    parsed = undefined
  }
  if (status >= 200 && status < 300 && parsed !== undefined) return parsed
  const error = (parsed as {error?: {code?: unknown; message?: unknown}} | undefined)?.error
  if (isJoinErrorCode(error?.code) && typeof error.message === 'string') {
    const seconds = Number(response.headers['retry-after'])
    throw new JoinExchangeRefusal(
      error.code,
      error.message,
      status,
      Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : undefined,
    )
  }
  throw new KsctlError(
    `${proxy.url.origin} answered HTTP ${status} without a join exchange answer: is it ksctl's tower proxy ` +
      '(Kubernetes mode, version with the join exchange)?',
    {
      code: 'API_ERROR',
      suggestions: [
        'check --proxy: it is the address ksctl host invite printed, where agents connect',
        'on the host: ksctl info --context <host> shows which proxy runs',
      ],
    },
  )
}

/** A TLS connection to the proxy whose key matches the pin; nothing has been written on it yet. */
function verifiedSocket(proxy: PinnedProxy, timeoutMs: number): Promise<tls.TLSSocket> {
  const host = proxy.url.hostname.replace(/^\[|\]$/g, '')
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host,
      port: Number(proxy.url.port || '443'),
      ...(net.isIP(host) === 0 && {servername: host}),
      ALPNProtocols: ['http/1.1'],
      // The pin is the proxy's identity; the chain is checked against it below, before anything is sent.
      rejectUnauthorized: false,
    })
    const timer =
      timeoutMs > 0 ? setTimeout(() => socket.destroy(timedOut(proxy, timeoutMs)), timeoutMs) : undefined
    socket.once('error', (error: Error) => {
      clearTimeout(timer)
      reject(error instanceof KsctlError ? error : unreachable(proxy, error))
    })
    socket.once('secureConnect', () => {
      clearTimeout(timer)
      const certificate = socket.getPeerX509Certificate()
      const presented = certificate === undefined ? 'no certificate' : spkiPin(certificate)
      if (presented !== proxy.pin.toLowerCase()) {
        socket.destroy()
        reject(
          new KsctlError(
            `the proxy at ${proxy.url.origin} presented key ${presented}, not the pinned ${proxy.pin}: ` +
              'nothing was sent to it, and nothing was changed',
            {
              code: 'TLS_VERIFICATION_FAILED',
              suggestions: [
                'check --proxy and --pin against what ksctl host invite printed; a different key means another server answers at that address',
                "the pin is the proxy's serving key (Secret kubesphere-system/ksctl-tower-serving on the host): ask the host's admin for the current one",
              ],
            },
          ),
        )
        return
      }
      resolve(socket)
    })
  })
}

function unreachable(proxy: PinnedProxy, error: Error): KsctlError {
  return new KsctlError(`cannot reach the proxy at ${proxy.url.origin}: ${error.message}`, {
    code: 'UNREACHABLE',
    cause: error,
    suggestions: [
      'check --proxy: the address ksctl host invite printed, which this cluster must reach (firewall, egress proxy)',
    ],
  })
}

function timedOut(proxy: PinnedProxy, timeoutMs: number): KsctlError {
  return new KsctlError(`the proxy at ${proxy.url.origin} did not answer within ${String(timeoutMs)} ms`, {
    code: 'TIMEOUT',
    suggestions: ['check --proxy and the network to it, or allow more time with --timeout'],
  })
}
